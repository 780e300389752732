"""The capability matrix: every driver keeps every promise of jt.tune, or refuses the argument.

One column per driver (docs/capabilities.md, "Every driver, every promise"): the same seed gives the same results;
a timeout stops at a stored safe point and a rerun finishes the study as an uninterrupted run
would have; progress=True reports and progress=False is silent; an argument the driver cannot
honour is refused, naming it and why, before anything is traced. Resume after kill -9 and
replay are tested per driver in test_schedulers.py and test_storage.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SPACE, make_trainer
from tolerances import F32_ITERATED

import jaxtune as jt
from jaxtune.drivers import halving, population, rounds

LR_B1 = jt.Space({"lr": SPACE.params["lr"], "b1": SPACE.params["b1"]})  # what the trainer reads
BUDGET = jt.Space({"steps": jt.Int(4, 36, scale="log", static=True), **LR_B1.params})
DRIVERS = {
    "random": (LR_B1, {}, dict(trials=4, rounds=2)),
    "coarse_to_fine": (LR_B1, {}, dict(trials=4, rounds=2)),
    "successive_halving": (BUDGET, {}, dict(trials=9)),
    "hyperband": (BUDGET, {}, dict(trials=9, rounds=4)),
    "bohb": (BUDGET, {}, dict(trials=9, rounds=4)),
    "pbt": (LR_B1, {"segment": 6}, dict(trials=4)),
    "pb2": (LR_B1, {"segment": 6, "capacity": 16}, dict(trials=4)),
    "asha": (LR_B1, {"min_steps": 4, "eta": 3, "configs": 8}, dict(trials=4)),
    "median": (LR_B1, {"segment": 6, "grace": 6, "configs": 6}, dict(trials=3)),
}
DRIVER_OF = {"random": rounds, "coarse_to_fine": rounds, "successive_halving": halving, "hyperband": halving,
             "bohb": halving,
             "pbt": population, "pb2": population, "asha": population, "median": population}  # fmt: skip


def trainer_for(name):
    return make_trainer(steps=36 if DRIVERS[name][0] is BUDGET else 24)


def sweep(name, **kw):
    space, options, sizes = DRIVERS[name]
    trainer = trainer_for(name)
    args = dict(metric="val_loss", progress=False, strategy_options=options or None, seed=3, **sizes) | kw
    return jt.tune(trainer, space, name, **args)


def rows(result):
    return [(t["round"], t["slot"], t["status"], t["params"], t["value"]) for t in result.trials]


@pytest.mark.parametrize("name", DRIVERS)
def test_same_seed_same_results_and_a_timeout_resumes_to_the_same_study(tmp_path, name):
    straight = sweep(name)
    assert rows(sweep(name)) == rows(straight)
    db = str(tmp_path / "s.db")
    stopped = sweep(name, storage=db, timeout=1e-9)
    assert stopped.stopped == "timeout" and 0 < len(stopped.trials) <= len(straight.trials)
    loaded = jt.Result.load(db)  # the file says so too (jaxtune report, the live view)
    assert loaded.stopped == "timeout"
    resumed = sweep(name, storage=db)
    assert resumed.stopped is None
    assert rows(resumed) == rows(straight)
    assert rows(jt.Result.load(db)) == rows(straight) and jt.Result.load(db).stopped is None


# BOHB and PB2 replay through their drivers' paths as Hyperband and PBT do (their models choose
# configurations, not how a trial trains).
@pytest.mark.parametrize("name", [name for name in DRIVERS if name not in ("bohb", "pb2")])
def test_the_stored_winner_replays_to_its_stored_metric(tmp_path, name):
    """Storage, then Result.replay (what `jaxtune export` runs) of the winner: its stored metric
    again: bit for bit for a population (replayed by its own programs), else to float32 tolerances
    (a trial alone is another program than the sweep's batch)."""
    db = str(tmp_path / "s.db")
    sweep(name, storage=db)
    result = jt.Result.load(db)
    best, trainer = result.best, trainer_for(name)
    state, again = result.replay(trainer, best, return_metrics=True)
    if DRIVER_OF[name] is population:
        assert again["val_loss"] == best["metrics"]["val_loss"]
    hp = {n: jnp.float32(v) for n, v in best["params"].items() if n != "steps"}
    alone = jax.jit(trainer.evaluate_state)(hp, state)
    np.testing.assert_allclose(alone["val_loss"], best["metrics"]["val_loss"], **F32_ITERATED)


@pytest.mark.parametrize("name", ["random", "hyperband", "pbt"])
def test_progress_reports_on_true_and_is_silent_on_false(capfd, name):
    sweep(name, progress=True)
    assert "[jaxtune]" in capfd.readouterr().err
    sweep(name, progress=False)
    out = capfd.readouterr()
    assert "[jaxtune]" not in out.err + out.out


VALUES = {"rounds": 2, "max_batch": 2, "vmap_width": 1, "progress": lambda report: None,
          "constraints": ["val_loss < 9"], "seeds": 2, "metric": ["val_loss", "val_accuracy"],
          "warm_start": "never-read.db"}  # fmt: skip
REFUSED = [(name, argument) for name in DRIVERS for argument in DRIVER_OF[name].REFUSES]


@pytest.mark.parametrize("name, argument", REFUSED)
def test_an_argument_a_driver_cannot_honour_is_refused_before_compute(name, argument):
    value = VALUES[argument]
    space, options, sizes = DRIVERS[name]

    def objective(*args):  # never traced: the refusal comes first
        raise AssertionError("traced")

    objective.init = objective.train = objective.evaluate_state = objective
    objective.steps = 36
    with pytest.raises(jt.InputError, match=f"strategy {name!r} cannot take {argument}="):
        modes = {"mode": ["min", "max"]} if argument == "metric" else {}  # several objectives: a mode each
        jt.tune(objective, space, name, strategy_options=options or None, **(sizes | {argument: value} | modes))


@pytest.mark.parametrize("name", ["coarse_to_fine", "hyperband", "successive_halving", "pbt", "asha"])
def test_every_driver_reports_progress_to_a_callable(name, capfd):
    """A ``progress`` callable gets one :class:`jaxtune.Progress` per round, rung or segment from
    every driver (the same keys everywhere), and nothing is printed."""
    events = []
    result = sweep(name, progress=events.append)
    unit = {"successive_halving": "rung", "hyperband": "rung", "pbt": "segment", "asha": "segment",
            "median": "segment"}.get(name, "round")  # fmt: skip
    assert events and {e["unit"] for e in events} == {unit}, events
    keys = {"unit", "round", "rounds", "ran", "seconds", "trials_per_s", "metric", "best", "diverged", "compiles"}
    assert all(keys <= set(e) and isinstance(e, jt.Progress) for e in events)
    assert [e["round"] for e in events] == sorted(e["round"] for e in events) and events[-1]["ran"] >= 0
    if unit != "segment":  # (a population's trials finish only as their lanes end)
        assert events[-1]["best"] == pytest.approx(result.best["metrics"]["val_loss"])
    out = capfd.readouterr()
    assert "[jaxtune]" not in out.err + out.out


def test_every_driver_is_a_driver():
    """One interface: each driver module has ``REFUSES``, ``check``, ``run`` and ``driven`` with the signatures
    of :class:`jaxtune.drivers.base.Driver`, and no driver imports another."""
    import inspect
    import pathlib

    from jaxtune.drivers.base import Driver

    for module in (rounds, population, halving):
        for fn in ("check", "run", "driven"):
            want = list(inspect.signature(getattr(Driver, fn)).parameters)[1:]  # without self
            assert list(inspect.signature(getattr(module, fn)).parameters) == want, (module.__name__, fn)
        source = pathlib.Path(module.__file__).read_text()
        others = {"rounds", "population", "halving"} - {module.__name__.rsplit(".", 1)[1]}
        assert not any(f"jaxtune.drivers.{o}" in source or f"drivers import {o}" in source for o in others)


def test_every_driver_declares_what_it_refuses():
    for module in (rounds, population, halving):
        assert set(module.REFUSES) <= {"rounds", "max_batch", "vmap_width", "progress", "constraints", "seeds",
                                        "metric", "warm_start"}  # fmt: skip
        assert all(isinstance(why, str) and why for why in module.REFUSES.values())
    np.testing.assert_equal(rounds.REFUSES, {})


def test_a_damaged_checkpoint_is_reported_and_the_one_before_it_used(tmp_path, monkeypatch):
    """Checkpoints carry a checksum bound to their study; the last two are kept. A damaged newest
    one is reported in one line and the run resumes from the one before, to the same study; with
    every one damaged the run stops with one clear error, and drop_checkpoints starts afresh."""
    import sqlite3

    import jaxtune.drivers.population as driver

    monkeypatch.setattr(driver._Checkpoints, "RATIO", 0)  # a checkpoint at every segment boundary
    straight = sweep("pbt")

    def stop_twice(db):
        for _ in range(2):
            assert sweep("pbt", storage=db, timeout=1e-9).stopped == "timeout"

    def damage(db, which):
        with sqlite3.connect(db) as conn:
            conn.execute(f"UPDATE checkpoint_ring SET state = zeroblob(length(state)) WHERE {which}")

    db = str(tmp_path / "one.db")
    stop_twice(db)
    damage(db, "seq = (SELECT MAX(seq) FROM checkpoint_ring)")
    with pytest.warns(jt.errors.CheckpointWarning, match="damaged; the one before it is used"):
        resumed = sweep("pbt", storage=db)
    assert rows(resumed) == rows(straight)
    db = str(tmp_path / "both.db")
    stop_twice(db)
    damage(db, "1")
    with pytest.warns(jt.errors.CheckpointWarning), pytest.raises(jt.errors.CheckpointError, match="drop_checkpoints"):
        sweep("pbt", storage=db)
    store = jt.Storage(db)
    store.drop_checkpoints("default")
    store.close()
    assert rows(sweep("pbt", storage=db)) == rows(straight)


def _rewrite_checkpoint(db, segment=None, blob=None):
    """Replaces the newest checkpoint with one signed afresh (its checksum good): what only a
    tampered or foreign row looks like."""
    import sqlite3

    from jaxtune.study import checkpoints

    with sqlite3.connect(db) as conn:
        sid, seg, state = conn.execute(
            "SELECT study_id, segment, CAST(state AS BLOB) FROM checkpoint_ring ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        conn.execute("DELETE FROM checkpoint_ring")
        checkpoints.write(conn, sid, seg if segment is None else segment, bytes(state) if blob is None else blob)
    return bytes(state)


@pytest.mark.parametrize("name, tamper", [("pbt", "segment"), *((name, tamper) for name in ("pbt", "hyperband")
                                                                   for tamper in ("not npz", "other shapes",
                                                                                  "bookkeeping"))])  # fmt: skip
def test_a_checkpoint_with_a_good_checksum_is_still_checked_before_it_is_unpacked(tmp_path, monkeypatch, name,
                                                                                  tamper):  # fmt: skip
    """A checkpoint row signed afresh but not this study's population (a segment past the run, a
    blob that is no .npz, arrays of other shapes, bookkeeping out of range) stops the run with one
    CheckpointError naming the checkpoint and how to start afresh, before anything trains."""
    import io

    monkeypatch.setattr(population._Checkpoints, "RATIO", 0)
    db = str(tmp_path / "s.db")
    assert sweep(name, storage=db, timeout=1e-9).stopped == "timeout"
    state = _rewrite_checkpoint(db)
    data = dict(np.load(io.BytesIO(state)))
    if tamper == "segment":
        _rewrite_checkpoint(db, segment=10**9)  # (halving: a bracket's checkpoint is used by its own round only)
    elif tamper == "not npz":
        _rewrite_checkpoint(db, blob=b"PK\x03\x04 not a zip")
    elif tamper == "other shapes":
        data["state0"] = np.zeros((3, 5, 7), data["state0"].dtype)
    else:
        data["book_steps" if name == "pbt" else "book_alive"] = -np.ones_like(data["book_steps" if name == "pbt"
                                                                                    else "book_alive"])  # fmt: skip
    if tamper in ("other shapes", "bookkeeping"):
        buf = io.BytesIO()
        np.savez(buf, **data)
        _rewrite_checkpoint(db, blob=buf.getvalue())
    with pytest.raises(jt.errors.CheckpointError, match="checkpoint.*drop_checkpoints|checkpoint.*past") as e:
        sweep(name, storage=db)
    assert "s.db" in str(e.value)


def test_a_halving_checkpoint_holds_only_the_survivors(tmp_path):
    """Lanes run one at a time share one population as wide as the widest bracket; the stored
    checkpoint holds only the rung's survivors' states (not every lane), and resumes to the
    uninterrupted study."""
    import io
    import sqlite3

    straight = sweep("hyperband", vmap_width=1)
    db = str(tmp_path / "s.db")
    assert sweep("hyperband", storage=db, timeout=1e-9, vmap_width=1).stopped == "timeout"
    with sqlite3.connect(db) as conn:
        (blob,) = conn.execute("SELECT CAST(state AS BLOB) FROM checkpoint_ring").fetchone()
    data = np.load(io.BytesIO(bytes(blob)))
    survivors = len(data["book_alive"])
    assert 0 < survivors < DRIVERS["hyperband"][2]["trials"]
    assert {data[k].shape[0] for k in data.files if k.startswith("state")} == {survivors}
    assert rows(sweep("hyperband", storage=db, vmap_width=1)) == rows(straight)
