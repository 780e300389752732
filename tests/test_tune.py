import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SPACE, CompileCounter, quad_objective

import jaxtune as jt
from jaxtune.execute import Executor


def test_vmapped_trials_equal_each_trial_alone(key):
    hp = SPACE.sample(key, 8)
    keys = jax.random.split(key, 8)
    ex = Executor(quad_objective, SPACE)
    ((idx, metrics, curves),) = list(ex.run(hp, keys))
    np.testing.assert_array_equal(idx, np.arange(8))
    assert curves == {}
    alone = jax.jit(quad_objective)
    for i in range(8):
        one = alone({n: v[i] for n, v in hp.items()}, keys[i])
        np.testing.assert_allclose(metrics["loss"][i], one["loss"], rtol=1e-5)


def test_no_recompilation_between_rounds():
    counter = CompileCounter()
    seen = []
    jt.tune(
        quad_objective,
        SPACE,
        "coarse_to_fine",
        trials=16,
        rounds=4,
        metric="loss",
        progress=lambda r: seen.append((r["compiles"], counter.count)),
    )
    assert [c for c, _ in seen] == [1, 1, 1, 1]  # one executor program for the whole sweep
    assert seen[1][1] == seen[2][1] == seen[3][1]  # nothing at all compiled after round 1


def test_static_parameters_are_python_values_and_bucketed(key):
    seen_types = []

    def objective(hp, key):
        seen_types.append(type(hp["width"]))
        w = jnp.ones((hp["width"],))  # a shape: must be a Python int
        return {"loss": jnp.sum(w) * hp["x"] + 0 * jax.random.uniform(key)}

    space = jt.Space({"width": jt.Choice([2, 4, 8], static=True), "x": jt.Float(0.1, 1.0)})
    reports = []
    result = jt.tune(objective, space, "random", trials=12, rounds=3, metric="loss", progress=reports.append)
    assert set(seen_types) == {int}
    # The objective's Python runs once per static value, however many programs and rounds use it.
    assert len(seen_types) == len({t["params"]["width"] for t in result.trials})
    for t in result.trials:
        assert t["metrics"]["loss"] == pytest.approx(t["params"]["width"] * t["params"]["x"], rel=1e-5)
    # One program per (static value, power-of-two width): bounded, not one per round.
    assert reports[-1]["compiles"] <= 3 * 4


def test_diverged_trials_are_recorded_never_best():
    def objective(hp, key):
        return {"loss": jnp.where(hp["x"] > 0.5, jnp.nan, hp["x"]), "aux": hp["x"]}

    space = jt.Space({"x": jt.Float(0.0, 1.0)})
    for mode in ("min", "max"):
        result = jt.tune(objective, space, "random", trials=32, rounds=2, metric="loss", mode=mode, progress=False)
        statuses = {t["status"] for t in result.trials}
        assert statuses == {"ok", "diverged"}
        assert result.best["status"] == "ok" and result.best["params"]["x"] <= 0.5
        assert result.num_diverged == sum(t["params"]["x"] > 0.5 for t in result.trials)


def test_infinite_metric_is_diverged_even_when_not_selected():
    def objective(hp, key):
        return {"score": hp["x"], "loss": jnp.where(hp["x"] > 0.5, jnp.inf, 0.0)}

    result = jt.tune(
        objective, jt.Space({"x": jt.Float(0.0, 1.0)}), "random", trials=32, metric="score", mode="max", progress=False
    )
    assert result.best["params"]["x"] <= 0.5


def test_same_seed_same_results_and_seed_matters():
    kw = dict(strategy="coarse_to_fine", trials=8, rounds=2, metric="loss", progress=False)
    a = jt.tune(quad_objective, SPACE, seed=3, **kw)
    b = jt.tune(quad_objective, SPACE, seed=3, **kw)
    c = jt.tune(quad_objective, SPACE, seed=4, **kw)
    assert [t["metrics"] for t in a.trials] == [t["metrics"] for t in b.trials]
    assert [t["params"] for t in a.trials] != [t["params"] for t in c.trials]


def test_scalar_objective_and_single_metric_default():
    result = jt.tune(
        lambda hp, key: (hp["x"] - 0.25) ** 2,
        jt.Space({"x": jt.Float(0, 1)}),
        "grid",
        trials=5,
        strategy_options={"points": 5},
        progress=False,
    )
    assert result.metric == "value" and len(result) == 5
    assert result.best["params"]["x"] == pytest.approx(0.25)


def test_grid_rounds_default_covers_the_grid_and_skips_padding():
    result = jt.tune(
        lambda hp, key: hp["x"] * hp["y"],
        jt.Space({"x": jt.Float(0, 1), "y": jt.Float(0, 1)}),
        "grid",
        trials=4,
        strategy_options={"points": 3},
        progress=False,
    )
    assert len(result) == 9 and len({(t["params"]["x"], t["params"]["y"]) for t in result.trials}) == 9


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(trials=0), r"trials must be an int in \[1, 16777216\], got 0"),
        (dict(rounds=-1), "rounds must be an int >= 1 or None, got -1"),
        (dict(mode="maximize"), "mode must be 'min' or 'max', got 'maximize'"),
        (dict(metric="accuracy"), "metric 'accuracy' is not among the objective's metrics \\['acc', 'loss'\\]"),
        (dict(metric=None), "pass metric= to choose one"),
        (dict(strategy="tpe"), "unknown strategy 'tpe'"),
        (dict(seed=-1), r"seed must be an int in \[0, 4294967295\], got -1"),
        (dict(max_batch=0), "max_batch must be an int >= 1 or None, got 0"),
        (dict(seed=2**32), r"seed must be an int in \[0, 4294967295\], got 4294967296"),
        (dict(trials=10**9), r"trials must be an int in \[1, 16777216\], got 1000000000"),
        (dict(progress=5), "progress must be True, False or a callable"),
        (dict(timeout=0), "timeout must be a positive number of seconds or None, got 0"),
        (dict(select="best"), "select must be one of 'final', 'best_step', got 'best'"),
        (dict(tie_break="loss"), r"tie_break must be another of the objective's metrics \['acc', 'loss'\]"),
        (dict(tie_break="x"), r"tie_break must be another of the objective.s metrics"),
        (dict(tie_break=("acc", "up")), r"tie_break must be a metric name or \(name, .min. \| .max.\)"),
        (
            dict(trials=0, mode="up", seed="0"),
            "3 problems in jt.tune's arguments:\n  - trials .*\n  - mode .*\n  - seed ",
        ),
    ],
)
def test_bad_arguments_fail_before_any_compute(kwargs, message):
    counter = CompileCounter()
    args = dict(trials=4, metric="loss", progress=False) | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        jt.tune(quad_objective, SPACE, **args)
    assert counter.count == 0


def test_objective_must_return_scalars():
    with pytest.raises(ValueError, match="not scalars.*'loss'"):
        jt.tune(lambda hp, key: {"loss": jnp.ones(3) * hp["x"]}, jt.Space({"x": jt.Float(0, 1)}), progress=False)


def test_what_the_objective_reads_is_checked_against_the_space(capsys):
    from jaxtune.space.hyperparameters import MissingHyperparameterError

    with pytest.raises(MissingHyperparameterError, match="reads hyperparameter 'b1', which the search space does not"):
        jt.tune(lambda hp, key: {"loss": hp["b1"]}, jt.Space({"x": jt.Float(0, 1)}), trials=2, progress=False)
    space = jt.Space({"x": jt.Float(0, 1), "typo": jt.Float(0, 1)})

    def objective(hp, key):
        return {"loss": (hp["x"] - hp.get("c", 0.5)) ** 2}

    with pytest.warns(UserWarning, match=r"never reads hyperparameter\(s\) \['typo'\]"):
        jt.tune(objective, space, trials=2, metric="loss")
    assert "at the objective's defaults: c=0.5" in capsys.readouterr().err


def test_the_compiling_line_counts_add_up_to_the_rounds_trials(capsys, no_sharing):
    def objective(hp, key):  # a masked width: a program per power-of-two bucket
        return {"loss": hp["lr"] * hp["w"].value}

    space = jt.Space({"lr": jt.Float(1e-3, 1.0, scale="log"), "w": jt.Int(3, 16, masked=True)})
    jt.tune(objective, space, trials=16, metric="loss", seed=2)
    line = capsys.readouterr().err.splitlines()[0]
    counts = [int(n) for n in re.findall(r"\((\d+) trials?, \d+ at once\)", line)]
    assert "for 16 trials:" in line and sum(counts) == 16 and len(counts) >= 2, line


def test_a_round_in_several_chunks_reports_progress_with_rate_and_time_left(capsys, monkeypatch):
    import sys

    jt.tune(quad_objective, SPACE, trials=8, metric="loss", max_batch=2)
    err = capsys.readouterr().err.splitlines()  # off a terminal: chunks report at most every 30 s
    assert len(err) == 3 and "compiling 1 program" in err[0] and err[1].startswith("[jaxtune] round 0 (1/1): 8 trials")
    assert "trial programs" in err[2]  # where the time went
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # on a terminal: a line per chunk
    jt.tune(quad_objective, SPACE, trials=8, metric="loss", max_batch=2)
    err = capsys.readouterr().err.splitlines()
    # Rounds count from 0, as in the tables; the fraction says how far the sweep is.
    assert err[0] == "[jaxtune] round 0 (1/1): compiling 1 program for 8 trials: all (8 trials, 2 at once)"
    assert err[1].startswith("[jaxtune] round 0 (1/1): 2/8 trials in ") and "compiling included" in err[1]
    assert err[2].startswith("[jaxtune] round 0 (1/1): 4/8 trials, ") and "trials/s, ~" in err[2] and "s left" in err[2]
    assert err[-2].startswith("[jaxtune] round 0 (1/1): 8 trials in ")  # the round's own line
    assert len(err) == 6


def test_import_jaxtune_loads_neither_flax_nor_optax():
    import subprocess
    import sys

    script = (
        "import sys, jaxtune as jt\n"
        "assert 'flax' not in sys.modules and 'optax' not in sys.modules, 'loaded at import'\n"
        "assert jt.train.Trainer and jt.layers.PatchConv and 'flax' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_missing_learning_curve_is_a_clear_key_error():
    result = jt.tune(quad_objective, SPACE, trials=2, metric="loss", progress=False)
    with pytest.raises(KeyError, match="the objective records none"):
        result.curves[(0, 1)]
    assert result.curves.get((0, 1)) is None and (0, 1) not in result.curves


def test_a_study_reports_where_its_wall_time_went(capsys):
    result = jt.tune(quad_objective, SPACE, trials=8, rounds=2, metric="loss")
    t = result.timing
    assert set(t) == {"wall_s", "trials_s", "compile_s", "host_s", "host_share", "programs", "cached"}
    assert t["trials_s"] > 0 and t["compile_s"] > 0 and t["host_s"] >= 0
    assert abs(t["trials_s"] + t["compile_s"] + t["host_s"] - t["wall_s"]) < 1e-6 and 0 <= t["host_share"] <= 1
    assert "trial programs" in capsys.readouterr().err.splitlines()[-1]  # the run's last line says it
    task = jt.tasks.get("pbt_toy", steps=8)
    pbt = jt.tune(task.objective, task.space, "pbt", trials=4, metric="Q", mode="max", progress=False,
                  strategy_options={"segment": 4})  # fmt: skip
    assert pbt.timing["trials_s"] > 0 and capsys.readouterr().err == ""  # progress=False: silent
    assert jt.Result(pbt.trials, "Q", "max").timing is None  # a study not run by this call


def test_a_counted_jit_counts_a_call_as_compiling_only_when_it_compiles():
    from jaxtune.execute.timing import CLOCK, jit_counted

    calls = []
    f = jit_counted(lambda x, n: (calls.append(n), x * n)[1], static_argnums=1)  # traced once per signature
    before = CLOCK.compile_s
    f(jnp.ones(3), 2)
    first = CLOCK.compile_s
    f(jnp.ones(3), 2)
    assert first > before and CLOCK.compile_s == first and calls == [2]  # the second call: no compile, not counted
    f(jnp.ones(4), 2)
    f(jnp.ones(3), 5)
    assert CLOCK.compile_s > first and calls == [2, 2, 5]  # a new shape, a new static value: counted


def test_a_strategys_programs_are_reused_by_a_later_call_with_the_same_strategy():
    from jaxtune.strategies import programs as rounds  # the strategy's compiled programs, by what built it

    rounds._PROGRAMS.clear()
    first = jt.tune(quad_objective, SPACE, "coarse_to_fine", trials=8, rounds=2, metric="loss", progress=False)
    assert len(rounds._PROGRAMS) == 1
    again = jt.tune(quad_objective, SPACE, "coarse_to_fine", trials=8, rounds=2, metric="loss", progress=False,
                    seed=0)  # fmt: skip
    assert len(rounds._PROGRAMS) == 1 and again.trials == first.trials  # reused: the same program, the same trials
    jt.tune(quad_objective, SPACE, "coarse_to_fine", trials=8, rounds=2, metric="loss", progress=False,
            strategy_options={"top_fraction": 0.5})  # fmt: skip
    jt.tune(quad_objective, SPACE, "coarse_to_fine", trials=4, rounds=2, metric="loss", progress=False)
    assert len(rounds._PROGRAMS) == 3  # other options, other trial counts: programs of their own
