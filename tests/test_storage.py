import math

import jax.numpy as jnp
import pytest
from conftest import SPACE, quad_objective

import jaxtune as jt
from jaxtune.execute import Executor

KW = dict(strategy="coarse_to_fine", trials=8, metric="loss", seed=1, study="s")


def test_stored_study_loads_back(tmp_path):
    db = str(tmp_path / "sweep.db")
    result = jt.tune(quad_objective, SPACE, rounds=2, storage=db, progress=False, **KW)
    loaded = jt.Result.load(db)
    assert len(loaded) == 16 and loaded.metric == "loss" and loaded.mode == "min"
    assert loaded.best["params"] == pytest.approx(result.best["params"])
    assert loaded.best["metrics"] == pytest.approx(result.best["metrics"])
    with pytest.raises(KeyError, match="no study 'other'.*\\['s'\\]"):
        jt.Result.load(db, study="other")
    with pytest.raises(FileNotFoundError, match="no storage file"):
        jt.Result.load(str(tmp_path / "missing.db"))


def test_rerun_resumes_and_extends_without_running_trials_twice(tmp_path):
    db = str(tmp_path / "sweep.db")
    reports = []
    jt.tune(quad_objective, SPACE, rounds=2, storage=db, progress=reports.append, **KW)
    assert [r["ran"] for r in reports] == [8, 8]
    reports.clear()
    again = jt.tune(quad_objective, SPACE, rounds=2, storage=db, progress=reports.append, **KW)
    assert reports == [] and len(again) == 16  # everything was stored: nothing ran
    extended = jt.tune(quad_objective, SPACE, rounds=3, storage=db, progress=reports.append, **KW)
    assert [r["ran"] for r in reports] == [8] and len(extended) == 24
    # Replaying the stored rounds leads the strategy to the same place as one uninterrupted run.
    straight = jt.tune(quad_objective, SPACE, rounds=3, progress=False, **KW)
    assert [t["params"] for t in extended.trials] == [t["params"] for t in straight.trials]


def test_crash_mid_round_keeps_finished_chunks_and_resumes(tmp_path, monkeypatch):
    db = str(tmp_path / "sweep.db")
    original = Executor.run

    def crashing(self, *args, **kwargs):
        for i, chunk in enumerate(original(self, *args, **kwargs)):
            yield chunk
            if i == 0:
                raise KeyboardInterrupt  # Ctrl-C after the first chunk of the first round

    monkeypatch.setattr(Executor, "run", crashing)
    with pytest.raises(KeyboardInterrupt):
        jt.tune(quad_objective, SPACE, rounds=2, storage=db, max_batch=2, progress=False, **KW)
    assert len(jt.Result.load(db)) == 2  # the finished chunk was committed
    monkeypatch.setattr(Executor, "run", original)
    reports = []
    resumed = jt.tune(quad_objective, SPACE, rounds=2, storage=db, max_batch=2, progress=reports.append, **KW)
    assert [r["ran"] for r in reports] == [6, 8]
    straight = jt.tune(quad_objective, SPACE, rounds=2, progress=False, **KW)
    assert [t["params"] for t in resumed.trials] == [t["params"] for t in straight.trials]
    losses = [t["metrics"]["loss"] for t in resumed.trials]
    assert losses == pytest.approx([t["metrics"]["loss"] for t in straight.trials], rel=1e-5)


def test_a_changed_study_is_refused(tmp_path):
    db = str(tmp_path / "sweep.db")
    jt.tune(quad_objective, SPACE, rounds=1, storage=db, progress=False, **KW)
    with pytest.raises(jt.StudyMismatchError, match="different trials"):
        jt.tune(quad_objective, SPACE, rounds=1, storage=db, progress=False, **(KW | {"trials": 16}))
    other_space = jt.Space({"lr": jt.Float(1e-4, 1.0, scale="log"), "b1": jt.Float(0.5, 0.99), "n": jt.Int(1, 3)})
    with pytest.raises(jt.StudyMismatchError, match="different space"):
        jt.tune(quad_objective, other_space, rounds=1, storage=db, progress=False, **KW)
    # Another study name in the same file starts afresh.
    assert len(jt.tune(quad_objective, SPACE, rounds=1, storage=db, progress=False, **(KW | {"study": "t"}))) == 8


def test_diverged_values_survive_storage(tmp_path):
    db = str(tmp_path / "sweep.db")
    jt.tune(
        lambda hp, key: {"loss": jnp.where(hp["x"] > 0.5, jnp.nan, hp["x"])},
        jt.Space({"x": jt.Float(0, 1)}),
        "random",
        trials=16,
        storage=db,
        progress=False,
    )
    loaded = jt.Result.load(db)
    bad = [t for t in loaded.trials if t["status"] == "diverged"]
    assert bad and all(math.isnan(t["metrics"]["loss"]) for t in bad)
    assert loaded.best["status"] == "ok"


def test_exports(tmp_path):
    result = jt.tune(quad_objective, SPACE, rounds=1, progress=False, **KW)
    df = result.to_pandas()
    assert len(df) == 8 and {"lr", "b1", "n", "loss", "acc", "status", "round"} <= set(df.columns)
    path = tmp_path / "trials.csv"
    result.to_csv(path)
    assert path.read_text().splitlines()[0].startswith("round,slot,status,lr,b1,n")
    assert len(path.read_text().splitlines()) == 9


def test_rows_never_overwrite_a_column_when_names_clash(tmp_path):
    from jaxtune.result import Result

    trials = [
        {
            "round": 0,
            "slot": i,
            "params": {"lr": 0.1 * (i + 1), "status": "a", "wd": 1e-4},
            "unit": [0.5],
            "metrics": {"lr": 2.0 + i, "loss": float(i)},
            "status": "ok",
            "value": float(i),
        }
        for i in range(2)
    ]
    rows = Result(trials, "loss").rows()
    assert rows[1] == {
        "round": 0,
        "slot": 1,
        "status": "ok",
        "param:lr": 0.2,
        "param:status": "a",
        "wd": 1e-4,
        "metric:lr": 3.0,
        "loss": 1.0,
    }
    Result(trials, "loss").to_csv(tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text().splitlines()[
        0
    ] == "round,slot,status,param:lr,param:status,wd,metric:lr,loss"


def test_unusable_storage_is_refused_before_any_compute_and_nothing_is_written(tmp_path):
    import sqlite3

    from jaxtune.study.storage import StorageError

    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    text = tmp_path / "notes.db"
    text.write_text("just some text, not SQLite\n" * 10)
    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    before = foreign.read_bytes()
    cases = [
        (tmp_path, "is a directory"),
        (afile / "s.db", "is a file, not a directory"),
        (tmp_path / "missing" / "s.db", "does not exist"),
        (text, "not a SQLite database"),
        (foreign, "not a jaxtune database"),
    ]
    for path, message in cases:
        with pytest.raises(StorageError, match=message):
            jt.tune(quad_objective, SPACE, trials=2, metric="loss", progress=False, storage=str(path))
    assert foreign.read_bytes() == before  # another application's database is left as it was
    assert not (tmp_path / "app.db-wal").exists()  # and not switched to WAL mode
    assert text.read_text().startswith("just some text")
    with pytest.raises(StorageError, match="not a jaxtune database"):
        jt.Result.load(foreign)
    assert foreign.read_bytes() == before


def test_reading_a_study_writes_nothing(tmp_path):
    db = tmp_path / "s.db"
    jt.tune(quad_objective, SPACE, trials=2, metric="loss", progress=False, storage=str(db))
    before = db.read_bytes()
    assert len(jt.Result.load(db)) == 2
    # (SQLite's own -wal/-shm files may appear beside a WAL database while it is read.)
    assert db.read_bytes() == before


def test_a_study_run_twice_at_once_is_refused_and_freed_after(tmp_path):
    from jaxtune.study.storage import Storage, StudyBusyError

    db = str(tmp_path / "s.db")
    holder = Storage(db)
    holder.lock_study("default")  # as a run in progress holds it
    with pytest.raises(StudyBusyError, match=f"study 'default' in {db} is being run by process"):
        jt.tune(quad_objective, SPACE, trials=2, metric="loss", progress=False, storage=db)
    # Another study in the same file runs meanwhile; the first one runs once the holder is done.
    jt.tune(quad_objective, SPACE, trials=2, metric="loss", progress=False, storage=db, study="other")
    holder.close()
    assert len(jt.tune(quad_objective, SPACE, trials=2, metric="loss", progress=False, storage=db)) == 2


def test_a_killed_run_leaves_no_lock(tmp_path):
    import subprocess
    import sys
    import textwrap

    db = str(tmp_path / "s.db")
    script = textwrap.dedent(f"""
        import os
        from jaxtune.study.storage import Storage
        s = Storage({db!r})
        s.lock_study("default")
        os.kill(os.getpid(), 9)
    """)
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == -9
    assert len(jt.tune(quad_objective, SPACE, trials=2, metric="loss", progress=False, storage=db)) == 2


def test_the_lock_follows_the_database_not_the_path(tmp_path, monkeypatch):
    """A symlink, a hard link and a relative path to one database take one lock; a symlink planted
    at the lock's name is never followed (nor the file it points to touched); no lock file is left
    beside the database."""
    import os

    from jaxtune.study.storage import Storage, StudyBusyError, lock_dir

    monkeypatch.setenv("JAXTUNE_LOCK_DIR", str(tmp_path / "locks"))
    db = tmp_path / "s.db"
    holder = Storage(db)
    holder.lock_study("default")
    (tmp_path / "via_symlink.db").symlink_to(db)
    (tmp_path / "sub").mkdir()
    os.link(db, tmp_path / "sub" / "via_hardlink.db")
    monkeypatch.chdir(tmp_path / "sub")
    for other in (tmp_path / "via_symlink.db", tmp_path / "sub" / "via_hardlink.db", "../s.db"):
        with pytest.raises(StudyBusyError, match="is being run by process"):
            jt.tune(quad_objective, SPACE, trials=2, metric="loss", progress=False, storage=str(other))
    holder.close()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".lock")]
    # A symlink planted where a lock would go: refused, its target untouched.
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    st = os.stat(db)
    import hashlib

    name = f"{st.st_dev}-{st.st_ino}-{hashlib.sha1(b'planted').hexdigest()[:12]}.lock"
    os.symlink(victim, os.path.join(lock_dir(), name))
    with pytest.raises(jt.StorageError, match="cannot be opened"):
        Storage(db).lock_study("planted")
    assert victim.read_text() == "precious"
    # A lock directory another user could write is refused.
    os.chmod(lock_dir(), 0o777)
    with pytest.raises(jt.StorageError, match="only it can write"):
        lock_dir()


def test_storage_faults_are_named_for_what_they_are(tmp_path):
    """A file with SQLite's header is never called damaged for an error of the disk; a full disk
    says what is stored and that a rerun resumes; a file that is not SQLite says so."""
    import sqlite3

    from jaxtune.study.storage import Storage, storage_error

    db = tmp_path / "s.db"
    Storage(db).close()
    io_error = storage_error(str(db), sqlite3.OperationalError("disk I/O error"))
    assert "damaged" not in str(io_error) and "probably fine" in str(io_error)
    full = storage_error(str(db), sqlite3.OperationalError("database or disk is full"))
    assert isinstance(full, jt.errors.StorageFullError) and "rerun the same command to resume" in str(full)
    other = tmp_path / "notes.db"
    other.write_text("not a database at all, just text that is long enough")
    assert "not a SQLite database" in str(storage_error(str(other), sqlite3.DatabaseError("file is not a database")))
    with pytest.raises(jt.StorageError, match="not a SQLite database"):
        Storage.check(other)


def test_a_full_disk_is_one_line_exit_1_and_a_new_database_leaves_no_empty_file(tmp_path, monkeypatch, capsys):
    import sqlite3

    from jaxtune import cli
    from jaxtune.study.storage import Storage

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    db = tmp_path / "f.db"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[task]\nname = 'branin'\n[tune]\ntrials = 4\nstorage = '{db}'\n")
    monkeypatch.setattr(Storage, "_write_trials", full)
    assert cli.main(["run", str(cfg), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"jaxtune: error: {str(db)!r}: the disk is full")
    assert "(0 trials of this study are stored)" in err
    assert "Traceback" not in err
    monkeypatch.undo()

    def make_then_fail(self, read_only):
        open(self.path, "wb").close()  # SQLite made the file, then the disk was full
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Storage, "_connect", make_then_fail)
    with pytest.raises(jt.errors.StorageFullError):
        Storage(tmp_path / "new.db")
    assert not (tmp_path / "new.db").exists()


def test_reading_a_study_writes_nothing_beside_it(tmp_path, monkeypatch):
    """Result.load and `jaxtune report --no-html` of a study no run holds leave no -wal/-shm files."""
    from jaxtune import cli

    monkeypatch.setenv("JAXTUNE_LOCK_DIR", str(tmp_path / "locks"))
    folder = tmp_path / "db"
    folder.mkdir()
    db = str(folder / "s.db")
    jt.tune(quad_objective, SPACE, trials=4, metric="loss", storage=db, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["s.db"]
    assert len(jt.Result.load(db)) == 4
    assert cli.main(["report", db, "--no-html"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["s.db"]


def test_a_full_disk_while_writing_a_report_or_an_export_is_one_line_and_leaves_no_partial_file(
    tmp_path, monkeypatch, capsys
):
    """The study is healthy, the disk is full: `report` and `export` say so in one line (exit 1,
    no traceback, the study file unharmed) and an export leaves no half-written .npz."""
    import errno

    import matplotlib.figure
    import numpy as np

    from jaxtune import cli

    db = str(tmp_path / "s.db")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[task]\nname = 'pbt_toy'\nsteps = 20\n[tune]\nstrategy = 'random'\ntrials = 2\n"
                   f"storage = '{db}'\n")  # fmt: skip
    assert cli.main(["run", str(cfg), "--quiet"]) == 0
    capsys.readouterr()

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", no_space)
    assert cli.main(["report", db]) == 1
    err = capsys.readouterr().err
    assert err.startswith("jaxtune: error: cannot write a file: No space left on device; the study file is unharmed")
    assert "Traceback" not in err
    savez = np.savez

    def half_then_full(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", half_then_full)
    out = tmp_path / "best.npz"
    assert cli.main(["export", db, str(cfg), "--out", str(out)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "best.npz.part").exists()
    monkeypatch.setattr(np, "savez", savez)
    assert cli.main(["export", db, str(cfg), "--out", str(out)]) == 0 and out.exists()
    assert len(jt.Result.load(db).trials) == 2
