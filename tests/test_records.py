"""Trial records and scoring (jaxtune/study/records.py): the one place a trial's record, status and
value are made, and how a sweep compares trials."""

import math

import numpy as np
import pytest

from jaxtune.errors import InputError
from jaxtune.study.records import (
    aggregate,
    lane_scores,
    minimised,
    select_value,
    selection_curve,
    tie_break_spec,
    trial_record,
)


def record(metrics, **kw):
    return trial_record(2, 5, {"lr": 0.1}, [0.3], metrics, "acc", "max", **kw)


def test_a_record_says_what_happened_to_its_trial():
    ok = record({"acc": 0.9, "loss": 0.3})
    assert (ok.round, ok.slot, ok.status, ok.value) == (2, 5, "ok", 0.9) and ok["params"] == {"lr": 0.1}
    assert record({"acc": 0.9, "loss": math.nan}).status == "diverged"  # any non-finite metric
    assert record({"acc": math.inf, "loss": 0.3}, status="stopped").status == "diverged"  # whatever status
    assert record({"acc": 0.9, "loss": 0.3}, feasible=False).status == "infeasible"
    assert record({"acc": 0.9, "loss": 0.3}, status="stopped").status == "stopped"
    with pytest.raises(ValueError, match="status must be one of"):
        record({"acc": 0.9}, status="done")


def test_a_diverged_or_infeasible_trial_is_never_the_best():
    scores = [r.score("max") for r in (record({"acc": 0.1}), record({"acc": math.nan}),
                                        record({"acc": 0.99}, feasible=False))]  # fmt: skip
    assert scores[0] == -0.1 and scores[1] == scores[2] == math.inf
    assert minimised(0.5, "min") == 0.5 and minimised(0.5, "max") == -0.5 and minimised(None, "min") == math.inf
    s, finite = lane_scores({"acc": np.array([0.5, np.nan, 0.7]), "loss": np.array([1.0, 1.0, np.inf])}, "acc", "max")
    np.testing.assert_array_equal(s, np.array([-0.5, np.inf, np.inf], np.float32))
    np.testing.assert_array_equal(finite, [True, False, False])


def test_seeds_make_one_value_and_their_means():
    r = record({}, seeds=[{"acc": 0.8, "loss": 1.0}, {"acc": 1.0, "loss": 3.0}], how="median")
    assert r["metrics"] == {"acc": 0.9, "loss": 2.0} and r.value == pytest.approx(0.9) and len(r["seeds"]) == 2
    assert aggregate([0.8, 0.9, 1.0], "lcb", "max") == pytest.approx(0.9 - 0.1 / math.sqrt(3))
    assert aggregate([0.8, 0.9, 1.0], "lcb", "min") == pytest.approx(0.9 + 0.1 / math.sqrt(3))
    assert math.isnan(aggregate([0.8, math.nan], "mean", "max"))
    with pytest.raises(InputError, match="aggregate must be one of"):
        aggregate([1.0], "max", "max")


def test_best_step_selection_reads_the_curve():
    assert select_value(0.5, [0.2, 0.7, math.nan, 0.5], "max", "best_step") == (0.7, 1)
    assert select_value(0.5, [0.2, 0.7, 0.5], "max", "final") == (0.5, None)
    assert select_value(0.5, [math.nan, math.nan], "min", "best_step") == (0.5, None)  # no finite point
    assert record({"acc": 0.5}, select="best_step", curve=[0.6, 0.5]).value == 0.6
    stored = lambda: {(2, 5): [(10, {"acc": 0.3})]}  # noqa: E731
    points = [(2, 5, 20, {"acc": 0.4}), (2, 6, 20, {"acc": 0.9})]
    assert selection_curve(stored, (2, 5), points, "acc", "best_step") == [0.3, 0.4]
    assert selection_curve(stored, (2, 5), points, "acc", "final") is None


def test_a_tie_break_is_a_name_or_a_name_and_a_mode():
    assert tie_break_spec("val_loss") == ("val_loss", "min") and tie_break_spec(None) is None
    assert tie_break_spec(("acc", "max")) == ("acc", "max")
    with pytest.raises(InputError, match="tie_break must be"):
        tie_break_spec(("acc", "up"))
