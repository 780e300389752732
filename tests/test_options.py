"""jt.tune's options around a sweep: selection by best step, tie-breaks, timeouts, resume checks,
one storage file for several processes."""

import importlib
import sqlite3

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SPACE, quad_objective

import jaxtune as jt
from jaxtune.errors import InputError

study_module = importlib.import_module("jaxtune.study.study")
X = jt.Space({"x": jt.Float(0, 1)})


def dipping(hp, key):
    """A 'training run' whose loss is lowest mid-way (at step 2) for every x, then rises."""
    curve = jnp.asarray([3.0, 1.0, 2.0]) + hp["x"]
    return {"loss": curve[-1], "acc": 1 - hp["x"], "curves": {"step": jnp.asarray([1, 2, 3]), "loss": curve}}


def test_select_best_step_scores_each_trial_by_the_best_point_of_its_curve():
    final = jt.tune(dipping, X, trials=4, metric="loss", progress=False)
    best = jt.tune(dipping, X, trials=4, metric="loss", progress=False, select="best_step")
    for f, b in zip(final.trials, best.trials):
        assert f["value"] == pytest.approx(2 + f["params"]["x"]) and f["value"] == f["metrics"]["loss"]
        assert b["value"] == pytest.approx(1 + b["params"]["x"])
    assert final.best_step(final.best) == 3 and best.best_step(best.best) == 2
    assert best.best["slot"] == final.best["slot"]


def test_best_step_never_takes_a_non_finite_point():
    def blows_up(hp, key):
        curve = jnp.asarray([2.0, jnp.nan, 1.5])
        return {"loss": curve[-1] + hp["x"], "curves": {"step": jnp.asarray([1, 2, 3]), "loss": curve + hp["x"]}}

    r = jt.tune(blows_up, X, trials=2, progress=False, select="best_step")
    assert all(t["value"] == pytest.approx(1.5 + t["params"]["x"]) for t in r.trials)


def test_tie_break_orders_trials_of_equal_value():
    def tied(hp, key):  # three accuracy levels, many ties; lower loss is better among them
        return {"acc": jnp.floor(hp["x"] * 3) / 3, "loss": (hp["x"] - 0.9) ** 2}

    r = jt.tune(tied, X, trials=32, metric="acc", mode="max", tie_break="loss", progress=False)
    top = [t for t in r.trials if t["value"] == max(t["value"] for t in r.trials)]
    assert len(top) > 1
    assert r.best["metrics"]["loss"] == min(t["metrics"]["loss"] for t in top)
    ranked = r.ranked()[: len(top)]
    assert [t["metrics"]["loss"] for t in ranked] == sorted(t["metrics"]["loss"] for t in top)


def test_timeout_stops_after_a_stored_chunk_and_a_rerun_completes(tmp_path):
    db = str(tmp_path / "t.db")
    kw = dict(trials=8, rounds=2, metric="loss", max_batch=2, storage=db, progress=False, seed=3)
    stopped = jt.tune(quad_objective, SPACE, "coarse_to_fine", timeout=1e-9, **kw)
    assert stopped.stopped == "timeout" and len(stopped) == 2  # one chunk, stored
    assert len(jt.Result.load(db)) == 2
    resumed = jt.tune(quad_objective, SPACE, "coarse_to_fine", **kw)
    straight = jt.tune(quad_objective, SPACE, "coarse_to_fine", **(kw | {"storage": None}))
    assert resumed.stopped is None and len(resumed) == 16
    assert [t["metrics"] for t in resumed.trials] == [t["metrics"] for t in straight.trials]


def tiny_trainer(steps=10, scale=1.0):
    import optax
    from flax import nnx

    x = np.random.default_rng(0).normal(size=(48, 4)).astype(np.float32) * scale
    y = np.arange(48) % 2
    return jt.train.Trainer(
        model=lambda hp, rngs: nnx.Linear(4, 2, rngs=rngs),
        optimizer=lambda hp: optax.sgd(hp["lr"]),
        data=(x[:32], y[:32]),
        eval_data={"val": (x[32:], y[32:])},
        steps=steps,
        batch_size=8,
    )


def test_resuming_with_another_objective_is_refused(tmp_path):
    """More steps, other data: the objective's program differs, so the stored trials would mix two experiments."""
    db = str(tmp_path / "s.db")
    space = jt.Space({"lr": jt.Float(1e-3, 1e-1, scale="log")})
    kw = dict(trials=2, metric="val_loss", storage=db, progress=False)
    jt.tune(tiny_trainer(), space, **kw)
    jt.tune(tiny_trainer(), space, **(kw | {"rounds": 2}))  # the same objective resumes
    # The refusal names what changed: a setting of the objective, or else its program (other data).
    with pytest.raises(jt.StudyMismatchError, match="objective setting steps: stored 10, now 20"):
        jt.tune(tiny_trainer(steps=20), space, **kw)
    with pytest.raises(jt.StudyMismatchError, match=r"the objective's program changed \(fingerprint stored \w+, now"):
        jt.tune(tiny_trainer(scale=2.0), space, **kw)


def test_a_stored_trial_the_strategy_no_longer_asks_for_is_refused(tmp_path):
    db = str(tmp_path / "s.db")
    kw = dict(trials=4, metric="loss", storage=db, progress=False)
    jt.tune(quad_objective, SPACE, "coarse_to_fine", **kw)
    with sqlite3.connect(db) as conn:  # as if the strategy's code had changed since
        conn.execute("UPDATE trials SET unit = '[0.5, 0.5, 0.5]' WHERE slot = 1")
    with pytest.raises(jt.StudyMismatchError, match=r"stored trial \(round 0, slot 1\).*does not match"):
        jt.tune(quad_objective, SPACE, "coarse_to_fine", **(kw | {"rounds": 2}))


def test_metric_names_must_agree_between_buckets():
    space = jt.Space({"x": jt.Float(0, 1), "depth": jt.Int(1, 2, static=True)})

    def objective(hp, key):
        return {"loss": hp["x"]} if hp["depth"] == 1 else {"loss": hp["x"], "extra": hp["x"]}

    with pytest.raises(
        InputError, match=r"for bucket depth=. but .* for bucket depth=.: every trial must return the same"
    ) as e:
        jt.tune(objective, space, trials=8, metric="loss", progress=False)
    assert "['extra', 'loss']" in str(e.value) and "['loss']" in str(e.value)


def test_a_process_other_than_0_writes_nothing_and_gets_process_0s_trials(tmp_path, monkeypatch):
    """Under jax.distributed one file holds the study: process 0 writes it, the others read what it sends."""
    db = str(tmp_path / "s.db")
    kw = dict(trials=4, metric="loss", storage=db, progress=False, seed=5)
    first = jt.tune(quad_objective, SPACE, "coarse_to_fine", **kw)
    store = jt.Storage(db, read_only=True)
    stored = store.trials(store.study_id("default"))
    store.close()
    sent = []

    def from_process_0(obj):  # what process 0 would broadcast: its stored trials, then its curves
        sent.append(obj)
        return {"error": None, "trials": stored} if len(sent) == 1 else []

    monkeypatch.setattr(jax, "process_index", lambda: 1)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(study_module, "_from_process_0", from_process_0)
    from jax.experimental import multihost_utils  # a clock decision: process 0's (here this process's)

    monkeypatch.setattr(multihost_utils, "broadcast_one_to_all", lambda x, is_source=None: np.asarray(x))

    def files():
        return {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    before = files()
    second = jt.tune(quad_objective, SPACE, "coarse_to_fine", **(kw | {"rounds": 2}))
    assert files() == before  # not one byte written (nor a lock taken) by process 1
    assert len(second) == 8 and [t["metrics"] for t in second.trials[:4]] == [t["metrics"] for t in first.trials]
