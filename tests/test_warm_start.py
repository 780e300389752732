"""Warm start (jaxtune/study/warm.py and the rounds driver): a new study's strategy is told a
stored study's trials that fit its space before its first round."""

import numpy as np
import pytest

import jaxtune as jt

SPACE = jt.Space({"x": jt.Float(-1.0, 1.0), "y": jt.Float(-1.0, 1.0)})


def bowl(hp, key):
    """Lowest at (0.6, -0.4): a stored study that found the corner tells a new one where to look."""
    return {"loss": (hp["x"] - 0.6) ** 2 + (hp["y"] + 0.4) ** 2}


def store(tmp_path_factory, objective, space, name: str) -> str:
    """A stored study to warm-start from: 64 random trials of ``objective`` over ``space``."""
    db = str(tmp_path_factory.mktemp("warm") / name)
    jt.tune(objective, space, "random", trials=32, rounds=2, metric="loss", storage=db, progress=False)
    return db


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    return store(tmp_path_factory, bowl, SPACE, "first.db")


def round0(result):
    return np.asarray([t["unit"] for t in result.trials if t["round"] == 0])


def test_coarse_to_fine_starts_from_the_stored_best_box(stored, tmp_path):
    """Told the stored trials first, coarse-to-fine's first round is drawn around their best, not
    over the whole space; the study stores where it started from; the same seed gives the same."""
    cold = jt.tune(bowl, SPACE, "coarse_to_fine", trials=16, rounds=1, metric="loss", progress=False)
    warm = jt.tune(bowl, SPACE, "coarse_to_fine", trials=16, rounds=1, metric="loss", progress=False,
                   warm_start=stored, storage=str(tmp_path / "warm.db"))  # fmt: skip
    best = np.asarray(jt.Result.load(stored).best["unit"])
    near = lambda r: np.abs(round0(r) - best).max(axis=1).mean()  # noqa: E731
    assert near(warm) < 0.5 * near(cold), (near(warm), near(cold))
    assert warm.best["value"] <= cold.best["value"]
    started = jt.Result.load(str(tmp_path / "warm.db")).config["warm_start"]
    assert started["from"] == stored and started["trials"] == 64 and started["dropped"] == 0
    again = jt.tune(bowl, SPACE, "coarse_to_fine", trials=16, rounds=1, metric="loss", progress=False,
                    warm_start=stored)  # fmt: skip
    assert [t["params"] for t in again.trials] == [t["params"] for t in warm.trials]


def test_gp_fits_the_stored_trials_before_its_first_round(stored):
    """gp's first round is random without data; warm-started it is a model's proposal."""
    cold = jt.tune(bowl, SPACE, "gp", trials=8, rounds=1, metric="loss", progress=False)
    warm = jt.tune(bowl, SPACE, "gp", trials=8, rounds=1, metric="loss", progress=False, warm_start=stored)
    assert np.median([t["value"] for t in warm.trials]) < np.median([t["value"] for t in cold.trials])


def test_a_narrower_space_drops_the_trials_outside_it_and_counts_them(stored, capsys):
    narrow = jt.Space({"x": jt.Float(0.0, 1.0), "y": jt.Float(-1.0, 1.0)})
    r = jt.tune(bowl, narrow, "coarse_to_fine", trials=8, rounds=1, metric="loss", warm_start=stored)
    kept = sum(1 for t in jt.Result.load(stored).trials if t["params"]["x"] >= 0.0)
    assert r.config["warm_start"]["trials"] == kept and r.config["warm_start"]["dropped"] == 64 - kept
    assert f"told the strategy {kept} trials" in capsys.readouterr().err


def test_a_resumed_warm_study_needs_the_same_warm_start(stored, tmp_path):
    db = str(tmp_path / "w.db")
    first = jt.tune(bowl, SPACE, "coarse_to_fine", trials=8, rounds=1, metric="loss", progress=False,
                    warm_start=stored, storage=db)  # fmt: skip
    more = jt.tune(bowl, SPACE, "coarse_to_fine", trials=8, rounds=2, metric="loss", progress=False,
                   warm_start=stored, storage=db)  # fmt: skip
    assert more.trials[:8] == first.trials
    with pytest.raises(jt.StudyMismatchError, match="warm_start"):
        jt.tune(bowl, SPACE, "coarse_to_fine", trials=8, rounds=2, metric="loss", progress=False, storage=db)


def test_a_warm_start_that_cannot_be_used_is_refused_before_compute(stored, tmp_path):
    def objective(hp, key):
        raise AssertionError("traced")

    other = jt.Space({"lr": jt.Float(1e-3, 1.0, scale="log")})
    with pytest.raises(jt.InputError, match=r"has parameters \['x', 'y'\], the space has \['lr'\]"):
        jt.tune(objective, other, "random", trials=4, metric="loss", warm_start=stored)
    with pytest.raises(jt.InputError, match="no study file"):
        jt.tune(objective, SPACE, "random", trials=4, metric="loss", warm_start=str(tmp_path / "none.db"))
    with pytest.raises(jt.InputError, match="warm_start must be"):
        jt.tune(objective, SPACE, "random", trials=4, metric="loss", warm_start=3)
    far = jt.Space({"x": jt.Float(5.0, 6.0), "y": jt.Float(-1.0, 1.0)})
    with pytest.raises(jt.InputError, match="none of the 64 trials"):
        jt.tune(objective, far, "random", trials=4, metric="loss", warm_start=stored)


def test_optuna_is_given_the_stored_trials(stored):
    """The Optuna strategy's study gets them as finished trials (its samplers then model them)."""
    pytest.importorskip("optuna")
    warm = jt.tune(bowl, SPACE, "optuna", trials=8, rounds=1, metric="loss", progress=False, warm_start=stored,
                   strategy_options={"sampler": "tpe"})  # fmt: skip
    assert warm.config["warm_start"]["trials"] == 64 and len(warm.trials) == 8


def test_a_config_warm_starts_from_a_study_file(tmp_path, capsys):
    """``[tune] warm_start = "db"`` in a config; a file that is not there is a config error (exit 2)."""
    from jaxtune import cli

    first = tmp_path / "first.toml"
    first.write_text('[task]\nname = "branin"\n[tune]\nstrategy = "random"\ntrials = 16\nrounds = 1\n'
                     f'storage = "{tmp_path / "a.db"}"\n')  # fmt: skip
    assert cli.main(["run", str(first)]) == 0
    warm = tmp_path / "warm.toml"
    warm.write_text('[task]\nname = "branin"\n[tune]\ntrials = 8\nrounds = 1\n'
                    f'storage = "{tmp_path / "b.db"}"\nwarm_start = "{tmp_path / "a.db"}"\n')  # fmt: skip
    capsys.readouterr()
    assert cli.main(["run", str(warm)]) == 0
    assert "warm start: told the strategy 16 trials" in capsys.readouterr().err
    assert jt.Result.load(str(tmp_path / "b.db")).config["warm_start"]["trials"] == 16
    warm.write_text('[task]\nname = "branin"\n[tune]\nwarm_start = "nowhere.db"\n')
    assert cli.main(["run", str(warm)]) == 2
    assert "[tune] warm_start must name a study file, got 'nowhere.db'" in capsys.readouterr().err


BUDGET = jt.Space({"x": jt.Float(-1.0, 1.0), "y": jt.Float(-1.0, 1.0), "steps": jt.Int(3, 27, static=True)})


def budgeted(hp, key):
    return {"loss": (hp["x"] - 0.6) ** 2 + (hp["y"] + 0.4) ** 2 + 1.0 / hp["steps"]}


@pytest.fixture(scope="module")
def stored_with_budgets(tmp_path_factory):
    return store(tmp_path_factory, budgeted, BUDGET, "budgets.db")


def test_halving_starts_its_first_bracket_from_the_stored_best(stored_with_budgets):
    """Successive halving and Hyperband (retraining here) start the first half of their first
    bracket from the stored study's best configurations; the next bracket draws afresh."""
    best = sorted(jt.Result.load(stored_with_budgets).trials, key=lambda t: t["value"])
    for name in ("successive_halving", "hyperband"):
        r = jt.tune(budgeted, BUDGET, name, trials=9, rounds=5, metric="loss", progress=False,
                    warm_start=stored_with_budgets)  # fmt: skip
        first = [t["params"] for t in r.trials if t["round"] == 0]
        assert [(p["x"], p["y"]) for p in first[:5]] == [(t["params"]["x"], t["params"]["y"]) for t in best[:5]]
        assert r.config["warm_start"]["trials"] == 64


def test_bohb_models_the_stored_trials_before_its_first_bracket(stored_with_budgets):
    """BOHB's first bracket comes from its kernel density model of the stored trials (at the
    budgets they trained), near the stored optimum, where Hyperband's would be uniform."""
    kw = dict(trials=9, rounds=3, metric="loss", progress=False, seed=1)
    bohb = jt.tune(budgeted, BUDGET, "bohb", warm_start=stored_with_budgets,
                   strategy_options={"random_fraction": 0.0}, **kw)  # fmt: skip
    cold = jt.tune(budgeted, BUDGET, "hyperband", **kw)

    def distance(r):
        first = [t["params"] for t in r.trials if t["round"] == 0]
        return np.median([np.hypot(p["x"] - 0.6, p["y"] + 0.4) for p in first])

    assert distance(bohb) < 0.5 * distance(cold)


def test_a_population_starts_half_its_lanes_from_the_stored_best(tmp_path):
    """PBT (and every population) starts up to half its lanes from the stored study's best."""
    from conftest import SPACE as TRAINER_SPACE
    from conftest import make_trainer

    lr_b1 = jt.Space({"lr": TRAINER_SPACE.params["lr"], "b1": TRAINER_SPACE.params["b1"]})
    db = str(tmp_path / "first.db")
    first = jt.tune(make_trainer(steps=12), lr_b1, "random", trials=6, metric="val_loss", storage=db, progress=False)
    best = [t["params"] for t in sorted(first.trials, key=lambda t: t["value"])[:2]]
    for name, options in (("pbt", {"segment": 6}), ("asha", {"min_steps": 4, "eta": 3, "configs": 6})):
        r = jt.tune(make_trainer(steps=12), lr_b1, name, trials=4, metric="val_loss", warm_start=db, progress=False,
                    strategy_options=options)  # fmt: skip
        lanes = {t["slot"]: t["params"] for t in r.trials if t["round"] == 0}
        assert [lanes[0], lanes[1]] == best and lanes[2] not in best
    # A timeout, then a rerun with the same warm start: the uninterrupted study.
    kw = dict(trials=4, metric="val_loss", warm_start=db, progress=False, strategy_options={"segment": 6})
    straight = jt.tune(make_trainer(steps=12), lr_b1, "pbt", **kw)
    resumable = str(tmp_path / "resumed.db")
    assert jt.tune(make_trainer(steps=12), lr_b1, "pbt", storage=resumable, timeout=1e-9, **kw).stopped == "timeout"
    resumed = jt.tune(make_trainer(steps=12), lr_b1, "pbt", storage=resumable, **kw)
    assert [(t["round"], t["slot"], t["metrics"]) for t in resumed.trials] == [
        (t["round"], t["slot"], t["metrics"]) for t in straight.trials
    ]


def two_bowls(hp, key):
    return {"f1": (hp["x"] - 0.6) ** 2 + 0.1 * hp["y"] ** 2, "f2": (hp["y"] + 0.4) ** 2 + 0.1 * hp["x"] ** 2}


def test_several_objectives_warm_start_from_every_objective(tmp_path):
    """With several objectives the stored trials are ordered by non-dominated rank (ties by
    hypervolume contribution); ``gp`` and Optuna are told every objective, others that place."""
    db = str(tmp_path / "mo.db")
    kw = dict(metric=["f1", "f2"], mode=["min", "min"], progress=False)
    jt.tune(two_bowls, SPACE, "random", trials=16, rounds=2, storage=db, **kw)
    from jaxtune.pareto import promotion_order
    from jaxtune.study.warm import load_warm_start

    warm = load_warm_start(db, SPACE).scored("f1", "min", (("f1", "min"), ("f2", "min")))
    assert warm.points.shape == (32, 2) and np.array_equal(promotion_order(warm.points), np.arange(32))
    small = {"capacity": 64, "candidates": 64, "features": 64, "fit_steps": 5}
    gp = jt.tune(two_bowls, SPACE, "gp", trials=8, rounds=1, warm_start=db, strategy_options=small, **kw)
    halton = jt.tune(two_bowls, SPACE, "gp", trials=8, rounds=1, strategy_options=small, **kw)
    assert round0(gp).tolist() != round0(halton).tolist()  # a model's proposal, not the Halton batch
    c2f = jt.tune(two_bowls, SPACE, "coarse_to_fine", trials=8, rounds=1, warm_start=db, **kw)
    assert c2f.config["warm_start"]["trials"] == 32
    pytest.importorskip("optuna")
    tpe = jt.tune(two_bowls, SPACE, "optuna", trials=4, rounds=1, warm_start=db, **kw)
    assert len(tpe.trials) == 4
