"""The study layer (jaxtune/study/study.py): one study as a run sees it — opened or created, refused when
made otherwise, written a chunk at a time, read back whole, locked against a second run."""

import pytest

import jaxtune as jt
from jaxtune.study.records import trial_record
from jaxtune.study.study import Study

CONFIG = {"space": {"lr": "log"}, "strategy": {"name": "random"}, "trials": 4, "seed": 0, "metric": "loss",
          "mode": "min", "select": "final", "program": "p1", "layout": {"jax": "x"}}  # fmt: skip


def rows(r, n, base=1.0):
    return [trial_record(r, s, {"lr": 0.1 * (s + 1)}, [0.5], {"loss": base + s}, "loss", "min") for s in range(n)]


def test_a_study_is_written_a_chunk_at_a_time_and_read_back_whole(tmp_path):
    db = str(tmp_path / "s.db")
    with Study(db, "a", CONFIG) as study:
        assert study.done == {} and study.config["trials"] == 4
        study.write(rows(0, 2), points=[(0, 0, 10, {"loss": 3.0}), (0, 0, 20, {"loss": 1.0})])
        study.write(rows(1, 1, base=0.5))
    with Study(db, "a", CONFIG) as again:  # reopened: what is stored is done
        assert sorted(again.done) == [(0, 0), (0, 1), (1, 0)]
        assert again.curves()[(0, 0)] == [(10, {"loss": 3.0}), (20, {"loss": 1.0})]
        result = again.result("loss", "min", None, "final", None)
    assert (result.best["round"], result.best["slot"]) == (1, 0) and len(result.trials) == 3
    assert jt.Result.load(db).best["value"] == 0.5


def test_a_study_made_otherwise_is_refused_naming_what_changed(tmp_path):
    db = str(tmp_path / "s.db")
    Study(db, "a", CONFIG).close()
    with pytest.raises(jt.StudyMismatchError, match="trials"):
        Study(db, "a", {**CONFIG, "trials": 8})
    with pytest.raises(jt.StudyMismatchError):
        Study(db, "a", {**CONFIG, "program": "p2"})  # another model or data, same jax: refused
    Study(db, "b", {**CONFIG, "trials": 8}).close()  # another name in the same file: its own study


def test_a_second_run_of_a_study_at_once_is_refused(tmp_path):
    db = str(tmp_path / "s.db")
    with Study(db, "a", CONFIG):
        with pytest.raises(jt.StudyBusyError):
            Study(db, "a", CONFIG)
        Study(db, "b", CONFIG).close()  # another study of the file is free
    Study(db, "a", CONFIG).close()  # released when the first run ends
