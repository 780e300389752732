"""Seeds in the batch: every configuration trained under K keys in the same program; its value
is the seeds' aggregate, which selection and strategies use; every seed is stored."""

import jax
import numpy as np
import pytest
from conftest import SPACE, make_trainer
from tolerances import F32

import jaxtune as jt
from jaxtune import cli
from jaxtune.analysis import report
from jaxtune.keys import seed_keys

LR_B1 = jt.Space({"lr": SPACE.params["lr"], "b1": SPACE.params["b1"]})
X = jt.Space({"x": jt.Float(0.0, 1.0)})


def risky(hp, key):
    """Lower mean loss the larger x, but noisier: the mean picks x near 1, a pessimistic bound does not."""
    return {"loss": 1.0 - 0.1 * hp["x"] + 2.0 * hp["x"] * jax.random.normal(key)}


def test_seed_keys_keep_each_trials_own_key_as_seed_0():
    keys = jax.random.split(jax.random.key(0), 3)
    lanes = seed_keys(keys, 4)
    data = jax.random.key_data
    assert lanes.shape == (12,)
    np.testing.assert_array_equal(data(lanes[::4]), data(keys))
    np.testing.assert_array_equal(data(lanes[5]), data(jax.random.fold_in(keys[1], 1)))
    assert len({tuple(np.asarray(data(k))) for k in lanes}) == 12
    assert seed_keys(keys, 1) is keys


def test_a_configuration_trains_under_k_seeds_in_one_program(tmp_path, capfd):
    db = str(tmp_path / "s.db")
    trainer = make_trainer(steps=12, eval_every=6)
    one = jt.tune(trainer, LR_B1, trials=4, metric="val_loss", progress=False)
    four = jt.tune(trainer, LR_B1, trials=4, metric="val_loss", seeds=4, storage=db)
    err = capfd.readouterr().err
    assert "compiling 1 program for 16 trials: all (16 trials, 16 at once)" in err  # 4 configurations x 4 seeds
    for a, b in zip(one.trials, four.trials):
        assert a["params"] == b["params"] and len(b["seeds"]) == 4
        np.testing.assert_allclose(b["seeds"][0]["val_loss"], a["metrics"]["val_loss"], **F32)  # seed 0: its own key
        assert len({s["val_loss"] for s in b["seeds"]}) == 4  # the other seeds differ
        np.testing.assert_allclose(b["metrics"]["val_loss"], np.mean([s["val_loss"] for s in b["seeds"]]), rtol=1e-12)
        assert b["value"] == b["metrics"]["val_loss"]  # "mean", the default
    loaded = jt.Result.load(db)
    assert [t["seeds"] for t in loaded.trials] == [t["seeds"] for t in four.trials]
    assert loaded.config["seeds"] == 4 and loaded.config["aggregate"] == "mean"
    curve = loaded.curves[(0, 0)]
    assert [s for s, _ in curve] == [6, 12]  # the seeds' mean curve
    np.testing.assert_allclose(curve[-1][1]["val_loss"], loaded.trials[0]["metrics"]["val_loss"], rtol=1e-6)
    stats = loaded.seed_stats(loaded.best)
    assert stats["values"] == [s["val_loss"] for s in loaded.best["seeds"]] and stats["stderr"] > 0
    text = report.summary(loaded)
    assert "±" in text and "over 4 seeds" in text
    state, again = loaded.replay(trainer, loaded.best, seed=2, return_metrics=True)
    np.testing.assert_allclose(again["val_loss"], loaded.best["seeds"][2]["val_loss"], **F32)
    with pytest.raises(jt.InputError, match=r"seed must be an int in \[0, 3\]"):
        loaded.replay(trainer, seed=4)


@pytest.mark.parametrize("how", ["mean", "median", "lcb"])
def test_the_aggregate_is_the_value_selection_and_strategies_use(how):
    result = jt.tune(risky, X, trials=16, metric="loss", progress=False, seeds=8, aggregate=how, seed=1)
    for t in result.trials:
        v = np.asarray([s["loss"] for s in t["seeds"]])
        expected = {"mean": v.mean(), "median": np.median(v), "lcb": v.mean() + v.std(ddof=1) / np.sqrt(8)}[how]
        np.testing.assert_allclose(t["value"], expected, rtol=1e-6)
    assert result.best["value"] == min(t["value"] for t in result.trials)


def test_a_pessimistic_aggregate_prefers_the_configuration_good_on_every_seed():
    mean = jt.tune(risky, X, trials=16, metric="loss", progress=False, seeds=8, seed=1)
    lcb = jt.tune(risky, X, trials=16, metric="loss", progress=False, seeds=8, seed=1, aggregate="lcb")
    assert lcb.best["params"]["x"] < 0.2 < mean.best["params"]["x"]


def test_a_timeout_with_seeds_resumes_to_the_uninterrupted_study(tmp_path):
    trainer = make_trainer(steps=12)
    kw = dict(trials=4, rounds=2, metric="val_loss", progress=False, seeds=3, max_batch=4)
    straight = jt.tune(trainer, LR_B1, "coarse_to_fine", **kw)
    db = str(tmp_path / "s.db")
    stopped = jt.tune(trainer, LR_B1, "coarse_to_fine", storage=db, timeout=1e-6, **kw)
    assert stopped.stopped == "timeout" and len(stopped.trials) < 8
    resumed = jt.tune(trainer, LR_B1, "coarse_to_fine", storage=db, **kw)
    assert [(t["params"], t["seeds"]) for t in resumed.trials] == [(t["params"], t["seeds"]) for t in straight.trials]


def test_more_seeds_than_a_chunk_holds_split_a_configuration_across_chunks():
    a = jt.tune(risky, X, trials=3, metric="loss", progress=False, seeds=4, max_batch=2)  # found by the fuzz test
    b = jt.tune(risky, X, trials=3, metric="loss", progress=False, seeds=4)
    assert [len(t["seeds"]) for t in a.trials] == [4, 4, 4]
    for s, t in zip(a.trials, b.trials):
        np.testing.assert_allclose([x["loss"] for x in s["seeds"]], [x["loss"] for x in t["seeds"]], rtol=1e-5)


def test_seeds_are_checked():
    with pytest.raises(jt.InputError, match=r"seeds must be an int in \[1, 1024\], got 0"):
        jt.tune(risky, X, trials=2, seeds=0, progress=False)
    with pytest.raises(jt.InputError, match="aggregate must be one of"):
        jt.tune(risky, X, trials=2, seeds=2, aggregate="max", progress=False)
    with pytest.raises(jt.InputError, match="trials \\* seeds"):
        jt.tune(risky, X, trials=2**20, seeds=1024, progress=False)


def test_seeds_from_the_config(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[task]\nname = "branin"\n[tune]\nstrategy = "random"\ntrials = 8\nseeds = 2\naggregate = "lcb"\n')
    assert cli.main(["run", str(path), "--quiet"]) == 0
    assert "over 2 seeds" in capsys.readouterr().out
    path.write_text('[task]\nname = "branin"\n[tune]\nseeds = "two"\n')
    assert cli.main(["run", str(path)]) == 2
    assert "[tune] seeds must be an int" in capsys.readouterr().err


def noisy(hp, key):
    return {"loss": (hp["x"] - 0.3) ** 2 + 0.1 * jax.random.normal(key)}


def test_reseed_trains_the_best_configurations_on_keys_no_tuning_run_used():
    study = jt.tune(noisy, X, trials=32, metric="loss", progress=False, seeds=2)
    rows = jt.reseed(study, noisy, seeds=64, top=3)
    assert [(r["round"], r["slot"]) for r in rows] == [(t["round"], t["slot"]) for t in study.ranked()[:3]]
    tuning = {s["loss"] for t in study.trials for s in t["seeds"]}
    assert not tuning & {v for r in rows for v in r["values"]}  # fresh keys: no tuning draw comes back
    for r in rows:
        expected = (r["params"]["x"] - 0.3) ** 2  # the configuration's true mean loss
        assert abs(r["fresh"] - expected) < 4 * 0.1 / np.sqrt(64)
        np.testing.assert_allclose(r["gap"], r["fresh"] - r["tuned"], rtol=1e-6)  # "min": fresh higher = luck
    assert rows[0]["gap"] > 0  # the winner's tuning draws were lucky: the winner's curse
    with pytest.raises(jt.InputError, match="seeds must be an int"):
        jt.reseed(study, noisy, seeds=0)


def test_reseed_from_the_command_line(tmp_path, capsys):
    db, path = str(tmp_path / "s.db"), tmp_path / "c.toml"
    path.write_text(f'[task]\nname = "branin"\n[tune]\nstrategy = "random"\ntrials = 8\nstorage = "{db}"\n')
    assert cli.main(["run", str(path), "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["reseed", db, str(path), "--seeds", "2", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 best configurations on 2 fresh seeds" in out and len(out.splitlines()) == 5  # title, header, 3 rows
    with pytest.raises(SystemExit) as e:  # argparse's own refusal: usage and exit 2
        cli.main(["reseed", db, str(path), "--seeds", "0"])
    assert e.value.code == 2


BUDGET = jt.Space({"steps": jt.Int(4, 36, scale="log", static=True), **LR_B1.params})


def test_continued_halving_decides_a_configurations_seeds_together_by_their_aggregate(tmp_path):
    """Hyperband that continues survivors with seeds=3: a configuration's three seeds are three
    lanes promoted or stopped together on their aggregate; seed 0 is the one-seed sweep's trial
    (the same key); a timeout mid-bracket resumes to the uninterrupted study."""
    trainer = make_trainer(steps=36)
    kw = dict(trials=9, rounds=4, metric="val_loss", progress=False, seed=3)
    one = jt.tune(trainer, BUDGET, "hyperband", **kw)
    three = jt.tune(trainer, BUDGET, "hyperband", seeds=3, **kw)
    assert all(len(t["seeds"]) == 3 for t in three.trials) and len(three.trials) == len(one.trials)
    for t in three.trials:
        mean = float(np.mean([s["val_loss"] for s in t["seeds"]]))
        assert t["value"] == pytest.approx(mean, rel=1e-6) and t["metrics"]["val_loss"] == pytest.approx(mean, rel=1e-6)
    # Seed 0 of each configuration at the first rung is the one-seed sweep's configuration there.
    rung0 = {slot: c[0][1]["val_loss"] for (r, slot), c in three.curves.items() if r == 0}  # the seeds' means
    for (r, slot), c in one.curves.items():
        if r == 0:
            stopped = [t for t in three.trials if (t["round"], t["slot"]) == (0, slot) and t["params"]["steps"] == 4]
            if stopped:
                np.testing.assert_allclose(stopped[0]["seeds"][0]["val_loss"], c[0][1]["val_loss"], **F32)
    # The first bracket's rung 0 keeps the three best by the seeds' aggregate (here their mean).
    went_on = {slot for (r, slot), c in three.curves.items() if r == 0 and len(c) > 1}
    assert went_on == set(sorted(rung0, key=rung0.get)[:3])
    median = jt.tune(trainer, BUDGET, "hyperband", seeds=3, aggregate="median", **kw)
    for t in median.trials:
        assert t["value"] == pytest.approx(float(np.median([s["val_loss"] for s in t["seeds"]])), rel=1e-6)
    db = str(tmp_path / "s.db")
    assert jt.tune(trainer, BUDGET, "hyperband", seeds=3, storage=db, timeout=1e-9, **kw).stopped == "timeout"
    resumed = jt.tune(trainer, BUDGET, "hyperband", seeds=3, storage=db, **kw)
    assert [(t["slot"], t["params"], t["seeds"]) for t in resumed.trials] == [
        (t["slot"], t["params"], t["seeds"]) for t in three.trials
    ]
    stored = jt.Result.load(db)  # any seed of a configuration replays to its stored metrics
    _, again = stored.replay(trainer, stored.best, seed=2, return_metrics=True)
    np.testing.assert_allclose(again["val_loss"], stored.best["seeds"][2]["val_loss"], **F32)


@pytest.mark.parametrize(
    "strategy, options", [("pbt", {"segment": 6}), ("asha", {"min_steps": 4, "eta": 3, "configs": 8})]
)
def test_a_population_decides_a_configurations_seeds_together(tmp_path, strategy, options):
    """PBT and ASHA with seeds=3: a configuration's seeds are three lanes exploited, promoted or
    stopped together on their aggregate (the curve point's value); every trial stores its seeds;
    a timeout resumes to the uninterrupted study and any seed replays bit for bit."""
    trainer = make_trainer(steps=24)
    kw = dict(trials=4, metric="val_loss", progress=False, seed=3, seeds=3, strategy_options=options)
    straight = jt.tune(trainer, LR_B1, strategy, **kw)
    assert straight.trials and all(len(t["seeds"]) == 3 for t in straight.trials)
    for t in straight.trials:
        assert t["value"] == pytest.approx(float(np.mean([s["val_loss"] for s in t["seeds"]])), rel=1e-6)
    if strategy == "pbt":  # the first exploit replaces the configuration worst by its seeds' mean at step 6
        at6 = {slot: c[0][1]["val_loss"] for (r, slot), c in straight.curves.items() if r == 0}
        assert {child for (r, child, *_) in straight.lineage if r == 1} == {max(at6, key=at6.get)}
    db = str(tmp_path / "s.db")
    assert jt.tune(trainer, LR_B1, strategy, storage=db, timeout=1e-9, **kw).stopped == "timeout"
    resumed = jt.tune(trainer, LR_B1, strategy, storage=db, **kw)
    assert [(t["round"], t["slot"], t["seeds"]) for t in resumed.trials] == [
        (t["round"], t["slot"], t["seeds"]) for t in straight.trials
    ]
    stored = jt.Result.load(db)
    _, again = stored.replay(trainer, stored.best, seed=2, return_metrics=True)
    assert again["val_loss"] == stored.best["seeds"][2]["val_loss"]
