"""Constraints: infeasible trials are stored and marked, never the best, told to strategies as the
worst, refused before compute when they name nothing the sweep has (jaxtune.constraints)."""

import collections

import pytest
from conftest import SPACE, make_trainer

import jaxtune as jt
from jaxtune.analysis import report
from jaxtune.constraints import check_constraints, constraint
from jaxtune.errors import InputTypeError

XY = jt.Space({"x": jt.Float(0.0, 1.0), "y": jt.Float(0.0, 1.0)})


def objective(hp, key):
    """Best at x = 0.2 whatever y; the constraint's metric ``risk`` is y (feasible below 0.5)."""
    return {"loss": (hp["x"] - 0.2) ** 2 + 0.01 * hp["y"], "risk": hp["y"] + 0.0 * hp["x"]}


def tempting(hp, key):
    """Better the riskier: the unconstrained best breaks the constraint."""
    return {"loss": (hp["x"] - 0.2) ** 2 - 0.5 * hp["y"], "risk": hp["y"] + 0.0 * hp["x"]}


def test_a_string_or_a_callable_constraint():
    c = constraint("risk <= 0.5")
    assert c({}, {"risk": 0.5}) and not c({}, {"risk": 0.51})
    assert constraint("x > 1e-3")({"x": 0.01}, {}) and constraint("hidden < 64")({}, {})  # inactive: no limit
    assert constraint(lambda p, m: m["risk"] < p["x"])({"x": 0.3}, {"risk": 0.2})
    for bad in ["risk <> 1", "risk < high", "< 1", ""]:
        with pytest.raises(jt.InputError, match="is not 'NAME OP NUMBER'"):
            constraint(bad)
    with pytest.raises(InputTypeError, match="must be a string"):
        constraint(3)


def test_a_constraint_naming_nothing_known_is_refused_before_compute(tmp_path):
    db = str(tmp_path / "s.db")
    with pytest.raises(jt.InputError, match=r"'risky' is neither a metric of the objective \['loss', 'risk'\]"):
        jt.tune(objective, XY, trials=4, metric="loss", constraints=["risky < 1"], storage=db, progress=False)
    with pytest.raises(jt.InputError, match=r"reads 'z', which is not a hyperparameter"):
        jt.tune(objective, XY, trials=4, metric="loss", constraints=[lambda p, m: p["z"] < 1], progress=False)


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda p, m: None, r"returned None \(NoneType\); it must return a bool"),
        (lambda p, m: "no", r"returned 'no' \(str\)"),
        (lambda p, m: float("nan"), r"returned nan \(float\)"),
        (lambda p, m: jt.Space, r"it must return a bool"),
        (lambda m: True, r"failed on example values \(TypeError"),
        ("test_accuracy > 0.5", r"reads held-out metric\(s\) \['test_accuracy'\]"),
        (lambda p, m: m["test_accuracy"] > 0.5, r"reads held-out metric\(s\) \['test_accuracy'\]"),
    ],
)
def test_a_constraint_that_would_judge_wrongly_is_refused_before_compute(bad, message):
    import numpy as np

    with pytest.raises(jt.InputError, match=message):
        check_constraints([bad], {"x": 0.5}, ["loss", "test_accuracy"])
    assert constraint(lambda p, m: np.float32(m["loss"]) < 1)({}, {"loss": 0.5})  # NumPy's bool is a bool
    with pytest.raises(jt.InputError, match=message):  # jt.tune checks them before any training
        jt.tune(lambda hp, key: {"loss": hp["x"], "test_accuracy": hp["x"]}, jt.Space({"x": XY.params["x"]}), trials=2,
                metric="loss", constraints=[bad], progress=False)  # fmt: skip


def test_infeasible_trials_are_stored_marked_and_never_the_best(tmp_path):
    db = str(tmp_path / "s.db")
    result = jt.tune(tempting, XY, trials=16, rounds=2, metric="loss", constraints=["risk < 0.5"], storage=db,
                     progress=False)  # fmt: skip
    loaded = jt.Result.load(db)
    for r in (result, loaded):
        marked = [t for t in r.trials if t["status"] == "infeasible"]
        assert marked and all(t["metrics"]["risk"] >= 0.5 for t in marked)
        assert all(t["metrics"]["risk"] < 0.5 for t in r.trials if t["status"] == "ok")
        assert r.best["metrics"]["risk"] < 0.5 and r.best["status"] == "ok"
        assert min(t["value"] for t in r.trials) < r.best["value"]  # a better one was infeasible
    assert loaded.config["constraints"] == ["risk < 0.5"]
    assert f"{len(marked)} infeasible (risk < 0.5)" in report.summary(loaded)
    unconstrained = jt.tune(tempting, XY, trials=16, rounds=2, metric="loss", progress=False)
    assert [t["params"] for t in unconstrained.trials[:16]] == [t["params"] for t in result.trials[:16]]


def test_a_model_based_strategy_learns_to_avoid_infeasible_regions():
    result = jt.tune(objective, XY, "gp", trials=16, rounds=4, metric="loss", constraints=["risk < 0.5"], seed=1,
                     progress=False)  # fmt: skip
    share = collections.Counter()
    for t in result.trials:
        share[t["round"]] += (t["status"] == "infeasible") / 16
    assert share[0] > 0.25  # the first round is a random design: about half breaks the constraint
    assert share[3] < share[0] / 2


def test_continued_halving_promotes_no_infeasible_trial():
    space = jt.Space({"steps": jt.Int(4, 36, scale="log", static=True), "lr": SPACE.params["lr"],
                      "b1": SPACE.params["b1"]})  # fmt: skip
    result = jt.tune(make_trainer(), space, "successive_halving", trials=9, metric="val_loss",
                     constraints=["lr < 0.05"], progress=False, seed=1)  # fmt: skip
    assert result.config["kind"] == "population"  # the halving that continues survivors
    infeasible = [t for t in result.trials if t["status"] == "infeasible"]
    assert infeasible and all(t["params"]["lr"] >= 0.05 for t in infeasible)
    assert all(t["params"]["steps"] == 4 for t in infeasible)  # none trained past its first rung
    assert result.best["params"]["lr"] < 0.05


def test_check_constraints_takes_one_or_a_list():
    params, metrics = {"x": 0.5}, ["loss"]
    assert len(check_constraints("loss < 1", params, metrics)) == 1
    assert len(check_constraints(["loss < 1", lambda p, m: p["x"] > 0], params, metrics)) == 2
    assert check_constraints(None, params, metrics) == ()
    with pytest.raises(InputTypeError):
        check_constraints({"loss": 1}, params, metrics)


def test_a_constraint_that_raises_on_a_trial_keeps_the_rest_of_its_chunk(tmp_path):
    """A constraint that passes the example check but raises on some trial stops the sweep with one
    error naming the constraint, the trial and the exception; the chunk's other trials are stored,
    and once the constraint is fixed a rerun trains only the trials it could not judge."""
    db = str(tmp_path / "s.db")

    def judge(p, m):
        if p["x"] > 0.8:
            raise ZeroDivisionError("x past 0.8")
        return m["risk"] < 0.5

    kw = dict(trials=16, rounds=1, metric="loss", storage=db, progress=False, study="s")
    message = (r"constraint '.*judge' on trial \(round 0, slot \d+\) \(x=.*, risk=.*\): raised ZeroDivisionError: "
               r"x past 0.8; the \d+ other trials of its chunk are stored")
    with pytest.raises(jt.InputError, match=message):
        jt.tune(objective, XY, constraints=[judge], **kw)
    stored = jt.Result.load(db).trials
    assert 0 < len(stored) < 16 and all(t["params"]["x"] <= 0.8 for t in stored)

    def judge(p, m):  # noqa: F811  (fixed, under the same name: the same study)
        return m["risk"] < 0.5

    done = jt.tune(objective, XY, constraints=[judge], **kw)
    kept = {(s["round"], s["slot"]) for s in stored}
    assert len(done.trials) == 16
    assert [t["params"] for t in done.trials if (t["round"], t["slot"]) in kept] == [s["params"] for s in stored]


@pytest.mark.parametrize("name, options", [("pbt", {"segment": 6}),
                                           ("median", {"segment": 6, "grace": 6, "configs": 8}),
                                           ("asha", {"min_steps": 4, "eta": 3, "configs": 12})])  # fmt: skip
def test_a_population_ranks_an_infeasible_lane_below_every_feasible_one(name, options):
    """Populations take constraints: a lane that breaks one scores below every feasible lane (PBT
    exploits over it, ASHA does not promote it, median stopping stops it once it has peers to
    compare with), its trial is stored "infeasible", never the best."""
    space = jt.Space({"lr": SPACE.params["lr"], "b1": SPACE.params["b1"]})
    result = jt.tune(make_trainer(steps=24), space, name, trials=4, metric="val_loss", progress=False, seed=1,
                     strategy_options=options, constraints=["lr <= 0.03"])  # fmt: skip
    statuses = {(t["params"]["lr"] > 0.03, t["status"]) for t in result.trials}
    assert (True, "infeasible") in statuses and all(s == "infeasible" for high, s in statuses if high), statuses
    assert all(s != "infeasible" for high, s in statuses if not high), statuses
    assert result.best["params"]["lr"] <= 0.03
    if name == "asha":  # trained past the first rung: only configurations that respect the constraint
        went_on = [t for t in result.trials if max(step for step, _ in result.curves[(t["round"], t["slot"])]) > 4]
        assert went_on and all(t["params"]["lr"] <= 0.03 for t in went_on), [t["params"] for t in went_on]
