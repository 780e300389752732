"""One program for many trials: a study's chunks and rounds share one width, padded lanes are
skipped, and a smaller masked bucket runs on a larger bucket's program when compiling its own
would cost more (jaxtune.execute.sharing, jaxtune.execute.programs)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxtune as jt
from jaxtune.execute import Executor
from jaxtune.execute.programs import over_live_lanes
from jaxtune.execute.sharing import dominates, hosts


def test_hosts_trade_a_compile_against_the_larger_programs_work():
    counts = {(None, 32): 13, (None, 64): 6, (None, 128): 4, (None, 256): 9}

    def flops(b):
        return 1e9 * b[1] / 256  # linear in the width: 1 GFLOP a trial at 256

    # CPU: 13 trials x 1 GFLOP / 3e10 flop/s = 0.43 s < a 1.5 s compile: every bucket on the largest.
    assert set(hosts(counts, flops, "cpu", 1).values()) == {(None, 256)}
    heavy = hosts(counts, lambda b: 100 * flops(b), "cpu", 1)  # 100x the work: each its own program
    assert heavy == {b: b for b in counts}
    # Another static value is another model: never shared; an unknown platform shares nothing.
    assert hosts({("a", 32): 1, ("b", 64): 1}, flops, "cpu", 1) == {("a", 32): ("a", 32), ("b", 64): ("b", 64)}
    assert hosts(counts, flops, "quantum", 1) == {b: b for b in counts}


def test_only_a_bucket_that_can_hold_another_hosts_it():
    assert dominates((2, 64, 16), (2, 32, 16), 1) and not dominates((2, 64, 8), (2, 32, 16), 1)
    assert not dominates((3, 64, 16), (2, 32, 16), 1)  # another static value
    assert dominates((None,), (None,), 0) and not dominates((64,), (None,), 0)  # an inactive branch


def test_padded_lanes_of_a_sequence_are_skipped_and_live_ones_unchanged():
    calls = []

    def one(x):
        jax.debug.callback(lambda: calls.append(1))
        return {"y": x * 2.0}

    for group in (1, 2, None):
        calls.clear()
        fn = jax.jit(over_live_lanes(one, 8, group))
        live = np.arange(8) < 3
        out = jax.block_until_ready(fn(jnp.asarray(live), jnp.arange(8.0)))
        np.testing.assert_array_equal(out["y"][:3], [0.0, 2.0, 4.0])
        ran = {1: 3, 2: 2, None: 1}[group]  # calls of the trial: its live lanes' groups only (a vmapped group: one)
        assert len(calls) == ran, (group, len(calls))
    odd = jax.jit(over_live_lanes(one, 5, 2))(jnp.asarray(np.arange(5) < 5), jnp.arange(5.0))  # a group of 1 left
    np.testing.assert_array_equal(odd["y"], [0.0, 2.0, 4.0, 6.0, 8.0])


def test_every_chunk_of_every_round_runs_on_one_program(key):
    hp = jt.Space({"x": jt.Float(0, 1)}).sample(key, 8)
    ex = Executor(lambda hp, key: {"loss": hp["x"] ** 2}, jt.Space({"x": jt.Float(0, 1)}), max_batch=3)
    sizes = [len(idx) for idx, _, _ in ex.run(hp, jax.random.split(key, 8))]
    assert sizes == [3, 3, 2] and ex.compiles == 1
    for only in ([5], [0, 1, 2, 3, 4]):  # a resumed round's missing trials: the same program
        list(ex.run(hp, jax.random.split(key, 8), only=np.asarray(only)))
    assert ex.compiles == 1


def masked_objective(hp, key):
    w = hp["w"]
    h = jnp.where(jnp.arange(w.size) < w.value, 1.0, 0.0)
    return {"loss": (hp["lr"] - 0.1) ** 2 + 1e-3 * jnp.sum(h)}


MASKED = jt.Space({"lr": jt.Float(1e-3, 1.0, scale="log"), "w": jt.Int(3, 64, masked=True)})


def test_a_masked_study_compiles_one_program_and_the_same_seed_gives_the_same_study(no_sharing, capsys):
    kw = dict(trials=16, rounds=3, metric="loss", seed=2, strategy="coarse_to_fine")
    alone = jt.tune(masked_objective, MASKED, **kw)
    assert alone.timing["programs"] >= 3  # a program per power-of-two bucket
    jt.configure(share_programs=True)
    shared = jt.tune(masked_objective, MASKED, **kw)
    assert shared.timing["programs"] == 1
    again = jt.tune(masked_objective, MASKED, **kw)
    assert [(t["params"], t["value"]) for t in again.trials] == [(t["params"], t["value"]) for t in shared.trials]
    np.testing.assert_allclose([t["value"] for t in shared.trials], [t["value"] for t in alone.trials], rtol=1e-6)
    err = capsys.readouterr().err
    assert re.search(r"\(1 program( \(1 from the cache\))?, ", err.splitlines()[-1]), err.splitlines()[-1]


def test_a_resumed_round_runs_the_programs_an_uninterrupted_one_ran(tmp_path, capsys, no_sharing):
    """The compiling line before a stop and after the resume name the same programs (bucket and
    width), and their trial counts add up to the round's."""
    db = str(tmp_path / "s.db")
    kw = dict(trials=16, rounds=1, metric="loss", seed=2, max_batch=4, storage=db)
    stopped = jt.tune(masked_objective, MASKED, timeout=1e-9, **kw)
    assert stopped.stopped == "timeout" and 0 < len(stopped.trials) < 16
    first = capsys.readouterr().err.splitlines()[0]
    jt.tune(masked_objective, MASKED, **kw)
    resumed = capsys.readouterr().err.splitlines()[0]

    def programs(line):
        return {(b, w) for b, _, w in re.findall(r"(w<=\d+) \((\d+) trials?, (\d+) at once\)", line)}

    assert programs(resumed) <= programs(first) and programs(first), (first, resumed)
    assert sum(int(n) for n in re.findall(r"\((\d+) trials?, \d+ at once\)", resumed)) == 16 - len(stopped.trials)


def test_the_python_api_keeps_compiled_programs_for_the_next_process(tmp_path):
    """With nothing set, jt.tune uses JAX's persistent cache in the user's cache directory and
    says so once; a second process loads its program from there; JAXTUNE_CACHE_DIR=none and
    jt.configure(compile_cache=False) turn it off."""
    import os
    import subprocess
    import sys

    script = (
        "import sys; sys.path.insert(0, 'tests'); import jaxtune as jt; from conftest import SPACE, quad_objective\n"
        "r = jt.tune(quad_objective, SPACE, trials=4, metric='loss')\n"
        "print(r.timing['programs'], r.timing['cached'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JAXTUNE_CACHE_DIR"}
    env.update(HOME=str(tmp_path), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(**extra):
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env | extra, cwd=root)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.split(), proc.stderr

    cache = tmp_path / ".cache" / "jaxtune" / "xla"
    (programs, cached), err = run()
    assert programs == "1" and cached == "0" and err.count(f"compiled programs are kept in {cache}") == 1
    assert any(cache.iterdir())
    assert run()[0] == ["1", "1"]  # the next process loads it
    assert run(JAXTUNE_CACHE_DIR="none")[0] == ["1", "0"]


def test_configure_refuses_what_it_cannot_use():
    with pytest.raises(jt.InputError, match="share_programs must be True or False, got 'yes'"):
        jt.configure(share_programs="yes")
    with pytest.raises(jt.InputError, match="compile_cache must be a directory, True or False, got 3"):
        jt.configure(compile_cache=3)
    assert jt.configure().share_programs is True


@pytest.mark.parametrize(
    "name, options, trials, vmap_width",
    [("hyperband", {}, 27, 1), ("hyperband", {}, 27, None), ("asha", {"min_steps": 4, "eta": 3, "configs": 12}, 4,
     "auto"), ("pbt", {"segment": 6}, 4, "auto")],
)  # fmt: skip
def test_a_population_study_trains_on_one_program_per_model(name, options, trials, vmap_width, monkeypatch):
    """Hyperband (27 configurations, 3 brackets; lanes one at a time or vmapped), ASHA with refills
    and PBT (their lanes vmapped): every rung, bracket, refill and exploit trains on the same
    program (a rung's live lanes flagged, idle ones skipped or dropped)."""
    from conftest import SPACE, make_trainer

    from jaxtune.execute.programs import ProgramCache

    compiled = []
    prefetch = ProgramCache.prefetch

    def spy(self, key, lower):
        if key not in self.futures:
            compiled.append(key)
        return prefetch(self, key, lower)

    monkeypatch.setattr(ProgramCache, "prefetch", spy)
    space = jt.Space({"lr": SPACE.params["lr"], "b1": SPACE.params["b1"]})
    if name == "hyperband":
        space = jt.Space({"steps": jt.Int(4, 36, scale="log", static=True), **space.params})
    result = jt.tune(make_trainer(steps=36 if name == "hyperband" else 24), space, name, trials=trials,
                     rounds=6 if name == "hyperband" else None, metric="val_loss", progress=False,
                     strategy_options=options or None, vmap_width=vmap_width)  # fmt: skip
    if name == "hyperband":
        assert {t["params"]["steps"] for t in result.trials} == {4, 12, 36}  # three budgets, three brackets
    if name == "asha":
        assert len(result.trials) == 12  # 4 lanes refilled to 12 configurations
    training = [k for k in compiled if k[0] in ("segment", "masked")]
    assert len(training) == 1, compiled


def test_a_trial_run_on_a_larger_buckets_program_is_stored_so_and_replays_there(tmp_path):
    """Which program ran each trial is stored (the larger bucket's sizes, where it shared one), and
    the replay binds those sizes: it returns the stored metric."""
    from conftest import MaskedNet, make_trainer

    trainer = make_trainer(steps=20, model=lambda hp, rngs: MaskedNet(hp["hidden"], rngs))
    space = jt.Space({"lr": jt.Float(1e-3, 1e-1, scale="log"), "b1": jt.Float(0.5, 0.99),
                      "hidden": jt.Int(2, 64, scale="log", masked=True)})  # fmt: skip
    db = str(tmp_path / "s.db")
    result = jt.tune(trainer, space, trials=12, metric="val_loss", storage=db, progress=False, seed=1)
    shared = [t for t in result.trials if t.program]
    assert shared and result.timing["programs"] == 1
    assert all(t.program["hidden"] > jt.space.bucket_size(t["params"]["hidden"]) for t in shared)
    loaded = {t.key: t.program for t in jt.Result.load(db).trials}
    assert loaded == {t.key: t.program for t in result.trials}
    t = shared[0]
    _, again = jt.Result.load(db).replay(trainer, t, return_metrics=True)
    np.testing.assert_allclose(again["val_loss"], t["metrics"]["val_loss"], rtol=1e-5)
