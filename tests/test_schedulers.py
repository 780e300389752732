"""Population schedulers: PBT and ASHA, their rules on the unit cube and whole sweeps."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_trainer
from tolerances import F32_ITERATED

import jaxtune as jt
from jaxtune.errors import InputError, LayoutWarning
from jaxtune.execute.population import Population
from jaxtune.keys import trial_key
from jaxtune.schedulers import ASHA, PB2, PBT, Lanes
from jaxtune.schedulers.base import explorer
from jaxtune.schedulers.pb2 import ucb_picks

SPACE = jt.Space({"lr": jt.Float(1e-3, 1e-1, scale="log"), "b1": jt.Float(0.8, 0.99, scale="reverse_log")})


def lanes(score, steps, n=6, active=None):
    return Lanes(
        jnp.asarray(score, jnp.float32),
        jnp.asarray(steps, jnp.int32),
        jax.random.uniform(jax.random.key(2), (n, 2)),
        jnp.ones(n, bool) if active is None else jnp.asarray(active),
    )


def test_explore_multiplies_each_value_on_its_own_scale():
    explore = explorer(SPACE)
    hp = {"lr": jnp.asarray([0.01, 0.05]), "b1": jnp.asarray([0.9, 0.95])}
    u = SPACE.to_unit(hp)
    out = SPACE.from_unit(explore(u, jnp.asarray([[1.2, 0.8], [0.8, 1.2]])))
    np.testing.assert_allclose(out["lr"], [0.012, 0.04], rtol=1e-4)
    np.testing.assert_allclose(1 - out["b1"], [0.08, 0.06], rtol=1e-3)  # 1 - b1 is what scales
    clipped = SPACE.from_unit(explore(SPACE.to_unit({"lr": jnp.asarray([0.095]), "b1": jnp.asarray([0.985])}),
                                      jnp.asarray([[1.2, 0.8]])))  # fmt: skip
    np.testing.assert_allclose(clipped["lr"], [0.1], rtol=1e-5)  # clipped to the bounds
    np.testing.assert_allclose(clipped["b1"], [0.988], rtol=1e-5)


def test_pbt_bottom_lanes_copy_a_top_lane_and_explore():
    sched = PBT(segment=10, quantile=0.34, resample=0.0).build(SPACE, 6, 100)
    state = sched.init(jax.random.key(0))
    obs = lanes([0.1, 0.9, 0.2, np.nan, 0.5, 0.3], [10] * 6)
    d, _ = sched.decide(jax.random.key(1), state, obs)
    exploit = np.flatnonzero(np.asarray(d.source) != np.arange(6))
    assert sorted(exploit) == [1, 3]  # the worst two; the diverged lane is among the worst
    assert set(np.asarray(d.source)[exploit]) <= {0, 2}  # donors from the best two
    assert np.asarray(d.end)[exploit].all() and not np.asarray(d.restart).any()
    moved = np.asarray(d.u)[exploit]
    assert not np.allclose(moved, np.asarray(obs.u)[np.asarray(d.source)[exploit]])  # explored
    done, _ = sched.decide(jax.random.key(1), state, obs._replace(steps=jnp.full((6,), 100, jnp.int32)))
    assert np.asarray(done.finished).all() and np.asarray(done.idle).all()


def test_pb2_records_each_segments_improvement_and_explores_by_its_model():
    """PB2 exploits as PBT does; each segment adds a row per lane (score before, improvement) to
    its model, and once it has rows an exploiting lane's new configuration comes from GP-UCB
    (inside the cube), not from a perturbation of its donor."""
    sched = PB2(segment=10, quantile=0.34, resample=0.0).build(SPACE, 6, 100)
    state = sched.init(jax.random.key(0))
    first = lanes([0.5, 0.9, 0.2, 0.7, 0.5, 0.3], [10] * 6)
    d, state = sched.decide(jax.random.key(1), state, first)
    assert int(state.used.sum()) == 0  # no score before the first segment: nothing to learn from yet
    explored = np.flatnonzero(np.asarray(d.source) != np.arange(6))
    perturbed = explorer(SPACE)(np.asarray(first.u)[np.asarray(d.source)[explored]], jnp.full((2, 2), 0.8))
    second = first._replace(score=jnp.asarray([0.4, 0.8, 0.1, np.nan, 0.45, 0.25]), u=d.u,
                            steps=jnp.full((6,), 20, jnp.int32))  # fmt: skip
    before = np.asarray(first.score)[np.asarray(d.source)]
    d2, state = sched.decide(jax.random.key(2), state, second)
    assert int(state.used.sum()) == 6
    y = np.asarray(state.y)[:6]
    np.testing.assert_allclose(y[np.arange(6) != 3], (before - np.asarray(second.score))[np.arange(6) != 3], rtol=1e-6)
    assert y[3] == -np.inf  # a diverged lane: the worst improvement
    moved = np.flatnonzero(np.asarray(d2.source) != np.arange(6))
    assert sorted(moved) == [1, 3] and (np.asarray(d2.u) >= 0).all() and (np.asarray(d2.u) <= 1).all()
    assert len(perturbed) == 2  # (the first explore was PBT's)
    np.testing.assert_array_equal(np.asarray(d2.u)[[0, 2, 4, 5]], np.asarray(second.u)[[0, 2, 4, 5]])


def test_pb2_picks_where_the_model_expects_the_largest_improvement_and_spreads_a_batch():
    """GP-UCB on data whose improvement peaks at u = 0.8: the first pick lands near the peak; a
    second lane picking with the first pending spreads out (its σ is lowered there)."""
    key = jax.random.key(0)
    u = jax.random.uniform(key, (40, 1))
    x = jnp.concatenate([jnp.zeros((40, 1)), jnp.full((40, 1), 0.5), u], axis=1)
    y = -((u[:, 0] - 0.8) ** 2) * 30
    y = (y - y.mean()) / y.std()
    theta = jnp.asarray([np.log(0.3), np.log(0.3), 0.0, np.log(1e-3), np.log(0.1)], jnp.float32)
    used = jnp.ones(40, bool)
    lane_u = jnp.asarray([[0.1], [0.2], [0.5]])
    args = (x, y, used, theta, jnp.float32(1), jnp.full((3,), 0.5), lane_u, jnp.asarray([2, 2, 2]))
    one = ucb_picks(key, *args, jnp.asarray([True, False, False]), jnp.asarray([False, False, True]), 256, 1)
    assert abs(float(one[0, 0]) - 0.8) < 0.1, one
    np.testing.assert_array_equal(one[1:], lane_u[1:])  # a lane that does not exploit keeps its configuration
    two = ucb_picks(key, *args, jnp.asarray([True, True, False]), jnp.asarray([False, False, True]), 256, 2)
    assert float(two[0, 0]) == float(one[0, 0]) and abs(float(two[1, 0]) - float(two[0, 0])) > 1e-3


def test_bad_pb2_options_are_refused_by_name_before_compute():
    def objective(*args):  # never traced: the refusal comes first
        raise AssertionError("traced")

    objective.init = objective.train = objective.evaluate_state = objective
    objective.steps = 24
    with pytest.raises(InputError, match=r"pb2: capacity=4 must be >= the lanes \(8\)"):
        jt.tune(objective, SPACE, "pb2", trials=8, strategy_options={"segment": 6, "capacity": 4}, progress=False)
    with pytest.raises(InputError, match="pb2: candidates"):
        jt.tune(objective, SPACE, "pb2", trials=8, strategy_options={"segment": 6, "candidates": 0}, progress=False)
    with pytest.raises(InputError, match="pb2: quantile must be in"):
        jt.tune(objective, SPACE, "pb2", trials=8, strategy_options={"quantile": 0.9}, progress=False)


def test_asha_decisions_do_not_depend_on_lane_order():
    sched = ASHA(min_steps=10, eta=2, configs=12).build(SPACE, 6, 40)
    state = sched.init(jax.random.key(0))
    score = np.asarray([0.5, 0.1, 0.9, 0.3, 0.7, 0.2])
    d, state1 = sched.decide(jax.random.key(1), state, lanes(score, [10] * 6))
    perm = np.asarray([3, 0, 5, 1, 4, 2])
    dp, _ = sched.decide(jax.random.key(1), state, lanes(score[perm], [10] * 6))
    np.testing.assert_array_equal(np.asarray(d.end)[perm], np.asarray(dp.end))
    # The best half of the six arrivals goes on; the rest stop and are refilled at once.
    assert sorted(np.flatnonzero(~np.asarray(d.end))) == [1, 3, 5]
    assert np.asarray(d.restart)[np.asarray(d.end)].all() and not np.asarray(d.idle).any()
    assert int(state1.count[0]) == 6 and int(state1.passed[0]) == 3 and int(state1.started) == 9


def test_asha_idles_lanes_once_every_configuration_has_started():
    sched = ASHA(min_steps=10, eta=2, configs=7).build(SPACE, 6, 40)
    d, state = sched.decide(
        jax.random.key(1), sched.init(jax.random.key(0)), lanes([0.5, 0.1, 0.9, 0.3, 0.7, 0.2], [10] * 6)
    )
    assert int(np.asarray(d.restart).sum()) == 1 and int(np.asarray(d.idle).sum()) == 2


def test_a_pbt_sweep_records_lineage_and_every_final_member_trains_the_full_budget(tmp_path):
    trainer = make_trainer(steps=30)
    db = str(tmp_path / "pbt.db")
    result = jt.tune(trainer, SPACE, "pbt", trials=6, metric="val_loss", strategy_options={"segment": 10},
                     storage=db, progress=False)  # fmt: skip
    ok = [t for t in result.trials if t["status"] == "ok"]
    assert len(ok) == 6 and result.best in ok
    copies = [t for t in result.trials if (t["round"], t["slot"]) in result.lineage]
    assert len(copies) == len(result.lineage) > 0
    assert len(result.trials) == 6 + len(result.lineage)
    # The history of a copy starts with its ancestors' values and ends with its own.
    t = copies[-1]
    history = result.history(t)
    assert len(history) >= 2 and history[-1][1] == t["params"] and history[0][0] == 0
    assert history[-1][0] == result.lineage[(t["round"], t["slot"])][2]
    loaded = jt.Result.load(db)
    assert loaded.lineage == result.lineage and loaded.history(t) == history


def test_an_asha_survivor_equals_the_same_trial_trained_straight(tmp_path):
    trainer = make_trainer(steps=40)
    result = jt.tune(trainer, SPACE, "asha", trials=4, metric="val_loss",
                     strategy_options={"min_steps": 10, "eta": 2, "configs": 8}, progress=False)  # fmt: skip
    ok = [t for t in result.trials if t["status"] == "ok"]
    stopped = [t for t in result.trials if t["status"] == "stopped"]
    assert ok and stopped and len(result.trials) == 8
    assert [r["steps"] for r in result.rungs] == [10, 20] and result.rungs[0]["arrived"] == 8
    assert 0 < result.rungs[0]["passed"] < 8
    for t in ok:
        key = trial_key(0, "population", t["round"], t["slot"], 4)
        hp = {n: jnp.float32(v) for n, v in t["params"].items()}
        straight = jax.jit(trainer)(hp, key)
        np.testing.assert_allclose(t["metrics"]["val_loss"], straight["val_loss"], rtol=1e-4)
    steps = {t["slot"]: max(s for s, _ in result.curves[(t["round"], t["slot"])]) for t in stopped}
    assert all(s < 40 for s in steps.values())


def test_population_schedulers_refuse_what_they_cannot_run():
    shaped = jt.Space({"lr": jt.Float(1e-3, 1e-1), "b1": jt.Float(0.8, 0.9), "hidden": jt.Int(4, 8, static=True)})
    with pytest.raises(InputError, match="every hyperparameter must be traced"):
        jt.tune(make_trainer(), shaped, "pbt", trials=4, metric="val_loss", progress=False)
    with pytest.raises(InputError, match="must implement init"):
        jt.tune(lambda hp, key: {"loss": hp["lr"]}, jt.Space({"lr": jt.Float(0, 1)}), "pbt", trials=4, progress=False)
    with pytest.raises(InputError, match="pbt: quantile must be in"):
        PBT(quantile=0.7)
    with pytest.raises(InputError, match="less than one rung"):
        jt.tune(make_trainer(steps=20), SPACE, "asha", trials=4, metric="val_loss",
                strategy_options={"min_steps": 10, "eta": 3}, progress=False)  # fmt: skip


def test_pbt_solves_the_toy_problem_of_its_paper_where_fixed_hyperparameters_plateau():
    task = jt.tasks.get("pbt_toy", steps=120)
    initial = ({"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0})
    r = jt.tune(task.objective, task.space, "pbt", trials=2, metric="Q", mode="max", progress=False,
                strategy_options={"segment": 4, "initial": initial, "quantile": 0.5})  # fmt: skip
    fixed = [float(jax.jit(task.objective)({k: jnp.float32(v) for k, v in h.items()}, None)["Q"]) for h in initial]
    assert max(fixed) < 0.4 and r.best["value"] > 1.1


@pytest.mark.parametrize("vmap_width", ["auto", 1])
def test_successive_halving_continues_survivors_and_a_survivor_equals_straight_training(vmap_width):
    """Vmapped lanes narrow into narrower programs; lanes one at a time (vmap_width=1, the CPU
    rule for large trials) stay in one population, idle ones skipped, in one training program."""
    trainer = make_trainer(steps=36)
    space = jt.Space({**SPACE.params, "steps": jt.Int(4, 36, scale="log", static=True)})
    result = jt.tune(trainer, space, "successive_halving", trials=9, metric="val_loss", progress=False,
                     vmap_width=vmap_width)  # fmt: skip
    if vmap_width == 1:
        assert result.compiles == 2  # initialisation and the 4-step piece every rung is trained in
    by_status = {s: [t for t in result.trials if t["status"] == s] for s in ("ok", "stopped")}
    assert len(result.trials) == 9 and len(by_status["ok"]) == 1 and len(by_status["stopped"]) == 8
    reached = sorted(t["params"]["steps"] for t in result.trials)
    assert reached == [4] * 6 + [12] * 2 + [36]
    # 9 x 4 + 3 x 8 + 1 x 24 steps: each rung trains only the steps its budget adds (the
    # retraining version, tested in test_strategies.py, trains 9 x 4 + 3 x 12 + 1 x 36).
    assert sum(len(points) for points in result.curves.values()) == 9 + 3 + 1
    best = by_status["ok"][0]
    key = trial_key(0, "population", best["round"], best["slot"], 9)
    hp = {n: jnp.float32(v) for n, v in best["params"].items() if n != "steps"}
    straight = jax.jit(trainer)(hp, key)
    np.testing.assert_allclose(best["metrics"]["val_loss"], straight["val_loss"], rtol=1e-5)


@pytest.mark.parametrize("vmap_width", ["auto", 1])
def test_continued_hyperband_stores_whole_units_honours_timeout_and_resumes_without_retraining(
    tmp_path, monkeypatch, vmap_width
):
    """Unit coordinates of the whole space (the budget first, as configs/halving.toml has it), so
    importance reads them; a timeout stops at a stored rung; a rerun finishes the sweep equal to an
    uninterrupted one, and a rerun of a finished study trains nothing."""
    trainer = make_trainer(steps=36)
    space = jt.Space({"steps": jt.Int(4, 36, scale="log", static=True), **SPACE.params})
    kw = dict(trials=9, rounds=5, metric="val_loss", progress=False, vmap_width=vmap_width)
    straight = jt.tune(trainer, space, "hyperband", **kw)
    assert all(len(t["unit"]) == space.dim for t in straight.trials)
    for t in straight.trials:  # the stored budget's unit coordinate maps back to it
        assert space.params["steps"].to_python(space.params["steps"].from_unit(np.float32(t["unit"][0]))) == t[
            "params"
        ]["steps"]
    jt.importance(straight)  # indexes units by the whole space: no IndexError
    db = str(tmp_path / "h.db")
    trained = []  # lane-steps trained, counted at the population
    train = Population.train

    def counting(pop, steps, live=None, evaluate=True):
        trained.append((pop.width if live is None else int(np.sum(live))) * steps)
        return train(pop, steps, live, evaluate)

    monkeypatch.setattr(Population, "train", counting)
    jt.tune(trainer, space, "hyperband", **kw)
    straight_steps, trained[:] = sum(trained), []
    stopped = jt.tune(trainer, space, "hyperband", storage=db, timeout=1e-9, **kw)
    assert stopped.stopped == "timeout" and 0 < len(stopped.trials) < len(straight.trials)
    while stopped.stopped == "timeout":  # a rung at a time: each rerun resumes at the stored survivors
        stopped = jt.tune(trainer, space, "hyperband", storage=db, timeout=1e-9, **kw)
    assert sum(trained) == straight_steps  # nothing trained twice
    resumed = jt.tune(trainer, space, "hyperband", storage=db, **kw)
    assert resumed.stopped is None
    assert [(t["round"], t["slot"], t["status"], t["params"]) for t in resumed.trials] == [
        (t["round"], t["slot"], t["status"], t["params"]) for t in straight.trials
    ]
    np.testing.assert_array_equal([t["value"] for t in resumed.trials], [t["value"] for t in straight.trials])
    import sqlite3

    with sqlite3.connect(db) as conn:  # finished: no checkpoint kept (they held whole populations)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables & {"checkpoints",
                   "checkpoint_ring"}) == 0  # fmt: skip
    again = jt.tune(trainer, space, "hyperband", storage=db, **kw)
    assert again.compiles == 0 and len(again.trials) == len(straight.trials)  # nothing trained again


@pytest.mark.parametrize("before, after", [(None, 1), (1, None)])
def test_continued_halving_resumes_across_lane_layouts(tmp_path, before, after):
    """Survivors stored by vmapped lanes resume in the one population of lanes run one at a time,
    and the other way (a study moved between a GPU and a CPU): the sweep finishes as uninterrupted."""
    trainer = make_trainer(steps=36)
    space = jt.Space({"steps": jt.Int(4, 36, scale="log", static=True), **SPACE.params})
    kw = dict(trials=9, rounds=5, metric="val_loss", progress=False)
    straight = jt.tune(trainer, space, "hyperband", vmap_width=after, **kw)
    db = str(tmp_path / "h.db")
    stopped = jt.tune(trainer, space, "hyperband", storage=db, timeout=1e-9, vmap_width=before, **kw)
    assert stopped.stopped == "timeout"
    with pytest.warns(LayoutWarning, match="vmap_width"):  # said, not refused
        resumed = jt.tune(trainer, space, "hyperband", storage=db, vmap_width=after, **kw)
    assert [(t["round"], t["slot"], t["status"], t["params"]) for t in resumed.trials] == [
        (t["round"], t["slot"], t["status"], t["params"]) for t in straight.trials
    ]
    np.testing.assert_allclose([t["value"] for t in resumed.trials], [t["value"] for t in straight.trials],
                               **F32_ITERATED)  # fmt: skip


def test_continued_halving_on_two_devices_in_both_lane_layouts():
    """Runs in a subprocess (two CPU devices): survivors of a rung split over both devices move
    into a one-device program (10 lanes -> 3), and the one shared population of lanes run one at
    a time finishes the same sweep to float32 rounding."""
    script = textwrap.dedent("""
        import sys, jax, numpy as np
        sys.path.insert(0, "tests")
        assert jax.device_count() == 2
        import jaxtune as jt
        from conftest import make_trainer
        from tolerances import F32_ITERATED
        space = jt.Space({"lr": jt.Float(1e-3, 1e-1, scale="log"), "b1": jt.Float(0.8, 0.99),
                          "steps": jt.Int(4, 36, scale="log", static=True)})
        runs = [jt.tune(make_trainer(steps=36), space, "successive_halving", trials=10, metric="val_loss",
                        progress=False, vmap_width=w).trials for w in (None, 1)]
        assert [(t["slot"], t["params"]) for t in runs[0]] == [(t["slot"], t["params"]) for t in runs[1]]
        np.testing.assert_allclose(*[[t["value"] for t in r] for r in runs], **F32_ITERATED)
        print("ok")
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=root)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


@pytest.mark.parametrize("strategy, options", [("random", {}), ("pbt", {"segment": 10})])
def test_the_best_trial_replays_exactly_into_a_ready_model(tmp_path, strategy, options):
    """The best trial's weights are not lost: its key is part of the record, and a PBT winner is
    replayed along its lineage; the model reproduces the stored validation accuracy."""
    trainer = make_trainer(steps=30)
    db = str(tmp_path / "s.db")
    jt.tune(trainer, SPACE, strategy, trials=4, metric="val_accuracy", mode="max", storage=db, progress=False,
            strategy_options=options)  # fmt: skip
    result = jt.Result.load(db)
    best = result.best
    if strategy == "pbt":
        assert len(result.history(best)) >= 1
    state, again = result.replay(trainer, best, return_metrics=True)
    np.testing.assert_allclose(again["val_loss"], best["metrics"]["val_loss"], rtol=1e-5)
    model = trainer.model_of(best["params"], state)  # as the README writes it
    x, y = trainer._arrays["val"]
    accuracy = float(jnp.mean(jnp.argmax(model(x), -1) == y))
    assert accuracy == pytest.approx(best["metrics"]["val_accuracy"], abs=1e-6)


KILL_SCRIPT = """
import os, signal, sys
import jaxtune as jt
from jaxtune.execute.population import Population
import jaxtune.drivers.population as tp

tp._Checkpoints.RATIO = 0  # a checkpoint at every boundary
kill_at = int(sys.argv[2])
calls = []
original = Population.train

def train(self, steps):
    calls.append(steps)
    if len(calls) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of a segment
    return original(self, steps)

Population.train = train
task = jt.tasks.get("pbt_toy", steps=60)
options = {"segment": 5, **({"capacity": 16} if sys.argv[3] == "pb2" else {})}  # (a small model: a fast test)
r = jt.tune(task.objective, task.space, sys.argv[3], trials=4, metric="Q", mode="max", storage=sys.argv[1],
            strategy_options=options, progress=False)
print("segments run", len(calls))
"""


# (PB2's model is a part of the scheduler state a checkpoint holds: its timeout + rerun test in
# test_capabilities.py resumes from such a checkpoint; a kill ends the process the same way here.)
@pytest.mark.parametrize("strategy", ["pbt"])
def test_a_population_killed_mid_run_resumes_at_its_last_boundary(tmp_path, strategy):
    db = str(tmp_path / "k.db")
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, db, "7", strategy], capture_output=True, text=True)
    assert killed.returncode == -9
    resumed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, db, "0", strategy], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "segments run 6" in resumed.stdout  # 12 segments in all; the 6 before the kill are not run again
    task = jt.tasks.get("pbt_toy", steps=60)
    options = {"segment": 5, **({"capacity": 16} if strategy == "pb2" else {})}
    b = jt.tune(task.objective, task.space, strategy, trials=4, metric="Q", mode="max",
                storage=str(tmp_path / "s.db"), strategy_options=options, progress=False)  # fmt: skip
    a = jt.Result.load(db)
    assert [(t["round"], t["slot"], t["status"]) for t in a.trials] == [
        (t["round"], t["slot"], t["status"]) for t in b.trials
    ]
    assert [t["metrics"] for t in a.trials] == [t["metrics"] for t in b.trials]  # bit for bit
    # A finished run is marked as such: running it again trains nothing.
    from jaxtune.execute.population import Population

    calls = []
    original = Population.train
    Population.train = lambda self, steps: calls.append(steps) or original(self, steps)
    try:
        again = jt.tune(task.objective, task.space, strategy, trials=4, metric="Q", mode="max", storage=db,
                        strategy_options=options, progress=False)  # fmt: skip
    finally:
        Population.train = original
    assert calls == [] and len(again) == len(a)
    assert a.lineage == b.lineage


def test_median_stopping_stops_below_the_median_and_refills():
    sched = jt.schedulers.MedianStopping(segment=10, grace=10, min_count=3, configs=9).build(SPACE, 6, 40)
    state = sched.init(jax.random.key(0))
    score = np.asarray([0.5, 0.1, 0.9, np.nan, 0.7, 0.2])
    d, state = sched.decide(jax.random.key(1), state, lanes(score, [10] * 6))
    # Median of the 6 arrivals (the diverged one counts as the worst): lanes above it stop.
    assert sorted(np.flatnonzero(np.asarray(d.end))) == [2, 3, 4]
    assert np.asarray(d.restart).sum() == 3 and int(state.started) == 9
    assert sched.rungs == (10, 20, 30)
    result = jt.tune(make_trainer(steps=30), SPACE, "median", trials=4, metric="val_loss", progress=False,
                     strategy_options={"segment": 10, "grace": 10, "min_count": 2})  # fmt: skip
    assert len(result.trials) == 8 and {t["status"] for t in result.trials} <= {"ok", "stopped"}


class Dip:
    """A stateful 'trial' whose loss is lowest at step 20 of 40, then rises."""

    steps = 40

    def init(self, hp, key):
        return {"step": jnp.zeros((), jnp.int32), "key": key}

    def train(self, hp, state, steps):
        return {**state, "step": state["step"] + steps}, {"train_loss": jnp.float32(0)}

    def evaluate_state(self, hp, state):
        return {"loss": (state["step"].astype(jnp.float32) - 20) ** 2 / 100 + hp["x"]}

    def reseed(self, state, key):
        return {**state, "key": key}

    def __call__(self, hp, key):
        state, _ = self.train(hp, self.init(hp, key), self.steps)
        return self.evaluate_state(hp, state)


@pytest.mark.parametrize("strategy, options", [("pbt", {"segment": 10}), ("median", {"segment": 10, "grace": 10})])
def test_a_population_can_select_and_replay_each_trials_best_checkpoint(strategy, options):
    space = jt.Space({"x": jt.Float(0, 1)})
    r = jt.tune(Dip(), space, strategy, trials=4, metric="loss", select="best_step", strategy_options=options,
                progress=False)  # fmt: skip
    best = r.best
    assert best["value"] == pytest.approx(best["params"]["x"], abs=1e-6)  # the step-20 loss, not the final one
    assert best["metrics"]["loss"] > best["value"]
    assert r.best_step(best) == 20
    state = r.replay(Dip(), best)  # the best checkpoint, not the last state
    assert int(state["step"]) == 20


def test_asha_spends_a_budget_of_steps():
    from jaxtune.analysis.report import summary, trained_steps

    task = jt.tasks.get("pbt_toy", steps=81)
    for lanes, budget in ((8, 3000), (4, 2000)):
        r = jt.tune(task.objective, task.space, "asha", trials=lanes, metric="Q", mode="max", progress=False,
                    strategy_options={"min_steps": 3, "eta": 3, "budget_steps": budget})  # fmt: skip
        assert abs(trained_steps(r) - budget) <= 0.05 * budget
        assert f"of a {budget:,}-step budget" in summary(r)
    with pytest.raises(jt.InputError, match="configs or budget_steps, not both"):
        jt.tune(task.objective, task.space, "asha", trials=4, metric="Q", progress=False,
                strategy_options={"configs": 8, "budget_steps": 100})  # fmt: skip
    with pytest.raises(jt.InputError, match="less than one rung for every lane"):
        jt.tune(task.objective, task.space, "asha", trials=4, metric="Q", progress=False,
                strategy_options={"min_steps": 3, "budget_steps": 10})  # fmt: skip


def test_population_progress_gives_the_lanes_best_before_any_trial_finishes(capsys):
    task = jt.tasks.get("pbt_toy", steps=40)
    jt.tune(task.objective, task.space, "pbt", trials=2, metric="Q", mode="max", progress=True,
            strategy_options={"segment": 4, "quantile": 0.5})  # fmt: skip
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[jaxtune] segment")]
    assert lines[0].startswith("[jaxtune] segment 1 of at most 10 (4 steps each)") and "; lanes now " in lines[0]
