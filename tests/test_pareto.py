"""Several objectives: the Pareto front is kept, reported and drawn; strategies are told a
random scalarisation per round (jaxtune.pareto)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SPACE, make_trainer

import jaxtune as jt
from jaxtune import cli
from jaxtune.analysis import report
from jaxtune.pareto import hypervolume, non_dominated, scalarised

XY = jt.Space({"x": jt.Float(0.0, 1.0), "y": jt.Float(0.0, 1.0)})


def zdt1(hp, key):
    """ZDT1 in two variables: the front is f2 = 1 - sqrt(f1) at y = 0."""
    f1, g = hp["x"], 1.0 + 9.0 * hp["y"]
    return {"f1": f1, "f2": g * (1.0 - jnp.sqrt(f1 / g))}


def test_the_front_is_what_no_point_dominates():
    rng = np.random.default_rng(0)
    points = rng.random((60, 3))
    points[5] = np.inf  # a diverged trial is never on the front
    front = non_dominated(points)
    for i in range(60):
        dominated = any(np.all(points[j] <= points[i]) and np.any(points[j] < points[i]) for j in range(60) if j != i)
        assert front[i] == (np.all(np.isfinite(points[i])) and not dominated)


def test_hypervolume_and_scalarisation():
    assert hypervolume(np.array([[1.0, 3.0], [2.0, 1.0], [3.0, 3.0]]), [4.0, 4.0]) == 7.0  # (3,3) adds nothing
    assert hypervolume(np.array([[5.0, 5.0]]), [4.0, 4.0]) == 0.0
    s = scalarised(np.array([[0.0, 1.0], [1.0, 0.0], [np.nan, 0.0]]), np.array([0.9, 0.1]), np.zeros(2), np.ones(2))
    assert s[0] < s[1] and s[2] == np.inf  # weight on the second objective: the first point wins


def test_a_study_of_two_objectives_keeps_reports_and_draws_its_front(tmp_path):
    db = str(tmp_path / "mo.db")
    result = jt.tune(zdt1, XY, "coarse_to_fine", trials=16, rounds=3, metric=["f1", "f2"], mode=["min", "min"],
                     storage=db, progress=False)  # fmt: skip
    loaded = jt.Result.load(db)
    assert loaded.objectives == [("f1", "min"), ("f2", "min")] and loaded.metric == "f1"
    front = loaded.pareto
    assert [(t["round"], t["slot"]) for t in front] == [(t["round"], t["slot"]) for t in result.pareto]
    points = {(t["round"], t["slot"]): (t["metrics"]["f1"], t["metrics"]["f2"]) for t in loaded.trials}
    on = {(t["round"], t["slot"]) for t in front}
    for key, (a, b) in points.items():  # every trial off the front is dominated by (or equal to) one on it
        if key not in on:
            assert any(points[k][0] <= a and points[k][1] <= b for k in on)
    assert [t["metrics"]["f1"] for t in front] == sorted(t["metrics"]["f1"] for t in front)
    assert loaded.best["metrics"]["f1"] == front[0]["metrics"]["f1"]  # the first objective is the primary one
    text = report.summary(loaded)
    assert f"Pareto front over f1 (min), f2 (min): {len(front)} of {len(loaded.trials)} finished trials" in text
    page = report.html(loaded, str(tmp_path / "html"))
    assert (tmp_path / "html" / "pareto.png").exists()
    with open(page, encoding="utf-8") as f:
        assert 'alt="pareto"' in f.read()


def test_the_scalarised_tells_replay_on_resume(tmp_path):
    kw = dict(trials=8, rounds=3, metric=["f1", "f2"], mode=["min", "min"], progress=False)
    straight = jt.tune(zdt1, XY, "coarse_to_fine", **kw)
    db = str(tmp_path / "s.db")
    jt.tune(zdt1, XY, "coarse_to_fine", storage=db, **{**kw, "rounds": 1})
    resumed = jt.tune(zdt1, XY, "coarse_to_fine", storage=db, **kw)
    assert [t["params"] for t in resumed.trials] == [t["params"] for t in straight.trials]
    one = jt.tune(zdt1, XY, "coarse_to_fine", trials=8, rounds=3, metric="f1", progress=False)
    assert [t["params"] for t in one.trials[8:]] != [t["params"] for t in straight.trials[8:]]  # it zooms elsewhere


def test_several_objectives_are_checked_before_compute():
    with pytest.raises(jt.InputError, match="one per metric"):
        jt.tune(zdt1, XY, metric=["f1", "f2"], mode="min", progress=False)
    with pytest.raises(jt.InputError, match="two or more distinct names"):
        jt.tune(zdt1, XY, metric=["f1", "f1"], mode=["min", "min"], progress=False)
    with pytest.raises(jt.InputError, match="metric 'f3' is not among the objective's metrics"):
        jt.tune(zdt1, XY, metric=["f1", "f3"], mode=["min", "min"], progress=False)


def test_two_objectives_from_the_config(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[task]\nname = "branin"\n[space.x1]\ntype = "float"\nlow = -5.0\nhigh = 10.0\n'
                    '[space.x2]\ntype = "float"\nlow = 0.0\nhigh = 15.0\n'
                    '[tune]\nstrategy = "random"\ntrials = 8\nmetric = ["value", "value"]\n')  # fmt: skip
    assert cli.main(["run", str(path)]) == 2
    assert "two or more distinct names" in capsys.readouterr().err


def test_hypervolume_improvement_is_the_hypervolume_a_point_adds():
    from jaxtune.bench.problems import hypervolume_2d
    from jaxtune.strategies.bayesian import hypervolume_improvement

    rng = np.random.default_rng(1)
    ref = np.array([4.0, 4.0])
    front = rng.uniform(0, 5, (12, 2))
    front[3] = np.inf  # a row that does not count
    points = rng.uniform(0, 5, (40, 2))
    gain = np.asarray(hypervolume_improvement(jnp.asarray(front, jnp.float32), jnp.asarray(points, jnp.float32),
                                              jnp.asarray(ref, jnp.float32)))  # fmt: skip
    base = hypervolume(front, ref)
    want = [hypervolume(np.concatenate([front, p[None]]), ref) - base for p in points]
    np.testing.assert_allclose(gain, want, rtol=1e-4, atol=1e-4)
    got = hypervolume_2d(jnp.asarray(front, jnp.float32), jnp.asarray(ref, jnp.float32))
    np.testing.assert_allclose(float(got), base, rtol=1e-5)


def test_gp_and_optuna_are_told_every_objective(monkeypatch):
    from jaxtune.strategies import optuna_sampler

    gp = jt.strategies.make_strategy("gp", XY, 8, objectives=2)
    assert gp.objectives == 2 and jt.strategies.make_strategy("random", XY, 8, objectives=2).objectives == 1
    with pytest.raises(jt.InputError, match="multi='chebyshev'"):
        jt.strategies.make_strategy("gp", XY, 8, objectives=3)
    with pytest.raises(jt.InputError, match="unknown multi 'x'"):
        jt.strategies.make_strategy("gp", XY, 8, multi="x")
    told = []
    tell = optuna_sampler._OptunaStrategy.tell
    monkeypatch.setattr(optuna_sampler._OptunaStrategy, "tell", lambda self, u, s: told.append(s) or tell(self, u, s))
    kw = dict(trials=8, rounds=2, metric=["f1", "f2"], mode=["min", "max"], progress=False)
    result = jt.tune(zdt1, XY, "optuna", strategy_options={"sampler": "nsga2"}, **kw)
    assert [np.shape(s) for s in told] == [(8, 2), (8, 2)]
    first = sorted((t for t in result.trials if t["round"] == 0), key=lambda t: t["slot"])
    np.testing.assert_allclose(told[0][:, 1], [-t["metrics"]["f2"] for t in first], rtol=1e-6)  # max: negated
    assert len(result.pareto) >= 1
    with pytest.raises(jt.InputError, match="sampler 'cmaes' optimises one objective"):
        jt.tune(zdt1, XY, "optuna", strategy_options={"sampler": "cmaes"}, **kw)


def test_the_multi_objective_gp_resumes_and_beats_random_on_zdt1(tmp_path):
    from jaxtune.bench import run

    options = {"capacity": 48, "candidates": 128, "fit_steps": 10, "features": 128}
    res = run(["zdt1"], ["random", ("gp", options)], seeds=4, evals=48, trials=16)
    assert np.max(res.final("zdt1", res.strategies[1])) < np.median(res.final("zdt1", "random"))
    kw = dict(trials=8, rounds=2, metric=["f1", "f2"], mode=["min", "min"], strategy_options=options, progress=False)
    straight = jt.tune(zdt1, XY, "gp", **kw)  # the second round is the model's
    db = str(tmp_path / "gp.db")
    jt.tune(zdt1, XY, "gp", storage=db, **{**kw, "rounds": 1})
    resumed = jt.tune(zdt1, XY, "gp", storage=db, **kw)
    assert [t["unit"] for t in resumed.trials] == [t["unit"] for t in straight.trials]


def test_continued_halving_promotes_by_non_dominated_rank_then_hypervolume_contribution(tmp_path):
    """With several objectives a rung keeps the configurations MO-ASHA's rule ranks first (its
    non-dominated fronts, ties by hypervolume contribution), read back from the stored curves."""
    from jaxtune.pareto import promotion_order

    space = jt.Space({"steps": jt.Int(4, 36, scale="log", static=True), "lr": SPACE.params["lr"],
                      "b1": SPACE.params["b1"]})  # fmt: skip
    result = jt.tune(make_trainer(steps=36), space, "successive_halving", trials=9, progress=False, seed=4,
                     metric=["val_loss", "val_accuracy"], mode=["min", "max"])  # fmt: skip
    curves = {slot: result.curves[(0, slot)] for slot in range(9)}
    first = np.array([[c[0][1]["val_loss"], -c[0][1]["val_accuracy"]] for c in curves.values()])
    went_on = {slot for slot, c in curves.items() if len(c) > 1}
    assert went_on == set(promotion_order(first)[:3].tolist()), (went_on, first)
    # here the primary metric alone would have kept others
    assert went_on != set(np.argsort(first[:, 0], kind="stable")[:3].tolist())
    assert result.pareto and all(t["status"] != "diverged" for t in result.pareto)
    db, kw = str(tmp_path / "s.db"), dict(metric=["val_loss", "val_accuracy"], mode=["min", "max"], seed=4)
    stopped = jt.tune(make_trainer(steps=36), space, "successive_halving", trials=9, progress=False, storage=db,
                      timeout=1e-9, **kw)  # fmt: skip
    assert stopped.stopped == "timeout"
    resumed = jt.tune(make_trainer(steps=36), space, "successive_halving", trials=9, progress=False, storage=db, **kw)
    assert [(t["slot"], t["value"], t["metrics"]["val_accuracy"]) for t in resumed.trials] == [
        (t["slot"], t["value"], t["metrics"]["val_accuracy"]) for t in result.trials
    ]


def test_the_device_promotion_order_is_the_hosts():
    """:func:`promotion_positions` (inside a scheduler's program) orders rows as
    :func:`promotion_order` does, with padding rows left out, for two and three objectives."""
    from jaxtune.pareto import promotion_order, promotion_positions

    rng = np.random.default_rng(0)
    positions = jax.jit(promotion_positions)  # one program per objective count: rows padded to 32
    for m in (2, 3):
        for trial in range(12):
            n = int(rng.integers(2, 30))
            p = rng.random((n, m)).astype(np.float32)
            p[int(rng.integers(0, n))] = np.inf if trial % 3 == 0 else p[0]  # a diverged row, or a duplicate
            host = promotion_order(p)
            padded = np.concatenate([p, np.zeros((32 - n, m), np.float32)])
            places = np.asarray(positions(jnp.asarray(padded), jnp.arange(32) < n))
            np.testing.assert_array_equal(np.argsort(places[:n]), host)
            assert (places[n:] == 32).all()


def test_asha_with_two_objectives_promotes_by_front_then_hypervolume_contribution():
    """Three arrivals at a rung with eta=3: only the first in MO-ASHA's order goes on. A = (1, 1)
    and C = (0, 3) share the front and A adds more hypervolume; on the first objective alone C
    would have gone on."""
    from jaxtune.schedulers import ASHA, Lanes

    sched = ASHA(min_steps=4, eta=3, configs=6, objectives=2).build(XY, 3, 12)
    state = sched.init(jax.random.key(0))
    points = jnp.asarray([[1.0, 1.0], [2.0, 2.0], [0.0, 3.0]])
    lanes = Lanes(points[:, 0], jnp.full((3,), 4, jnp.int32), jnp.full((3, 2), 0.5), jnp.ones(3, bool), points)
    d, _ = sched.decide(jax.random.key(1), state, lanes)
    assert np.asarray(d.end).tolist() == [False, True, True]
    single = ASHA(min_steps=4, eta=3, configs=6).build(XY, 3, 12)
    d1, _ = single.decide(jax.random.key(1), single.init(jax.random.key(0)), lanes._replace(objectives=None))
    assert np.asarray(d1.end).tolist() == [True, True, False]


@pytest.mark.parametrize(
    "strategy, options, trials",
    [
        ("pbt", {"segment": 6}, 4),
        ("asha", {"min_steps": 4, "eta": 3, "configs": 8}, 4),
        ("median", {"segment": 6, "grace": 6, "configs": 6}, 3),
    ],
)
def test_populations_take_several_objectives_and_resume_to_the_same_front(tmp_path, strategy, options, trials):
    """PBT exploits, ASHA and median stopping stop by non-dominated rank then hypervolume
    contribution (on the device); a timeout resumes to the uninterrupted study; Result.pareto."""
    from jaxtune.pareto import promotion_order

    lr_b1 = jt.Space({"lr": SPACE.params["lr"], "b1": SPACE.params["b1"]})
    kw = dict(trials=trials, metric=["val_loss", "val_accuracy"], mode=["min", "max"], progress=False, seed=3,
              strategy_options=options)  # fmt: skip
    straight = jt.tune(make_trainer(steps=24), lr_b1, strategy, **kw)
    assert straight.pareto
    if strategy == "pbt":  # the first exploit replaces the lane last in the promotion order at step 6
        at6 = {slot: c[0][1] for (r, slot), c in straight.curves.items() if r == 0}
        points = np.asarray([[at6[i]["val_loss"], -at6[i]["val_accuracy"]] for i in range(trials)])
        assert {child for (r, child) in straight.lineage if r == 1} == {int(promotion_order(points)[-1])}
    db = str(tmp_path / "s.db")
    assert jt.tune(make_trainer(steps=24), lr_b1, strategy, storage=db, timeout=1e-9, **kw).stopped == "timeout"
    resumed = jt.tune(make_trainer(steps=24), lr_b1, strategy, storage=db, **kw)
    assert [(t["round"], t["slot"], t["metrics"]) for t in resumed.trials] == [
        (t["round"], t["slot"], t["metrics"]) for t in straight.trials
    ]
