"""A jaxtune study written as an Optuna study, and opened by Optuna's own tools."""

import math
import warnings

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import SPACE, make_trainer

import jaxtune as jt

optuna = pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def study():
    """A Trainer sweep with curves over a log, a reverse-log, an integer and a choice parameter."""
    space = jt.Space({**SPACE.params, "wd": jt.Choice([0.0, 1e-4])})  # lr, b1, n (an integer), a choice
    trainer = make_trainer(steps=20, eval_every=10, optimizer=lambda hp: optax.adamw(hp["lr"], b1=hp["b1"],
                                                                                      weight_decay=hp["wd"] * hp["n"]))
    return jt.tune(trainer, space, trials=6, metric="val_loss", progress=False)


def test_a_study_opens_in_optunas_tools_with_its_parameters_values_and_curves(study, tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study.to_optuna(url, "sweep")
    loaded = optuna.load_study(study_name="sweep", storage=url)
    assert loaded.direction == optuna.study.StudyDirection.MINIMIZE and len(loaded.trials) == 6
    dist = loaded.trials[0].distributions
    assert dist["lr"].log and not dist["b1"].log  # reverse log: Optuna's linear over the same bounds
    assert (dist["lr"].low, dist["lr"].high) == (SPACE.params["lr"].low, SPACE.params["lr"].high)
    assert isinstance(dist["wd"], optuna.distributions.CategoricalDistribution)
    assert isinstance(dist["n"], optuna.distributions.IntDistribution)
    for ours, theirs in zip(study.trials, loaded.trials):
        assert theirs.params == ours["params"] and theirs.value == pytest.approx(ours["metrics"]["val_loss"])
        curve = study.curves[(ours["round"], ours["slot"])]
        assert theirs.intermediate_values == {s: pytest.approx(m["val_loss"]) for s, m in curve}
        assert theirs.user_attrs["round"] == ours["round"] and theirs.user_attrs["slot"] == ours["slot"]
        assert theirs.user_attrs["metrics"]["val_accuracy"] == pytest.approx(ours["metrics"]["val_accuracy"])
    assert loaded.best_trial.params == study.best["params"]
    importance = optuna.importance.get_param_importances(loaded)
    assert set(importance) == {"lr", "b1", "n", "wd"} and math.isclose(sum(importance.values()), 1.0)
    pytest.importorskip("matplotlib")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # its matplotlib plots: "experimental"
        history = optuna.visualization.matplotlib.plot_optimization_history(loaded)
        curves = optuna.visualization.matplotlib.plot_intermediate_values(loaded)
    assert len(history.get_lines()) + len(history.collections) > 0 and len(curves.get_lines()) == 6
    import matplotlib.pyplot as plt

    plt.close("all")


def test_optuna_dashboard_serves_a_written_study(study, tmp_path):
    dashboard = pytest.importorskip("optuna_dashboard")
    import json
    import threading
    import urllib.request
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study.to_optuna(url, "sweep")

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, dashboard.wsgi(url), handler_class=Quiet)  # the real dashboard's app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with urllib.request.urlopen(f"{base}/api/studies", timeout=30) as r:
            (summary,) = json.load(r)["study_summaries"]
        with urllib.request.urlopen(f"{base}/api/studies/{summary['study_id']}?after=0", timeout=30) as r:
            detail = json.load(r)
        with urllib.request.urlopen(f"{base}/dashboard", timeout=30) as r:
            assert b"<html" in r.read().lower()  # its page (scripts bundled: no network)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert summary["study_name"] == "sweep" and summary["directions"] == ["minimize"]
    assert len(detail["trials"]) == len(study.trials) and detail["has_intermediate_values"]
    (best,) = detail["best_trials"]
    assert {p["name"]: p["param_internal_value"] for p in best["params"]}["lr"] == pytest.approx(
        study.best["params"]["lr"])  # fmt: skip
    assert optuna.load_study(study_name="sweep", storage=url).metric_names == ["val_loss"]  # the axes' label


def test_statuses_several_objectives_and_bad_storage(tmp_path):
    space = jt.Space({"x": jt.Float(-1.0, 1.0)})

    def objective(hp, key):  # x < -0.5 diverges; x > 0.5 is infeasible
        loss = jnp.where(hp["x"] < -0.5, jnp.nan, hp["x"] ** 2)
        return {"loss": loss, "size": 1.0 - hp["x"], "x": hp["x"]}

    result = jt.tune(objective, space, "grid", trials=9, metric=["loss", "size"], mode=["min", "min"],
                     constraints=["x <= 0.5"], progress=False)  # fmt: skip
    url = f"sqlite:///{tmp_path / 'o.db'}"
    loaded = jt.Result.to_optuna(result, url)
    assert [d.name for d in loaded.directions] == ["MINIMIZE", "MINIMIZE"]
    states = {t.params["x"]: t.state.name for t in loaded.trials}
    assert states[-1.0] == "FAIL" and states[0.0] == "COMPLETE" and states[1.0] == "COMPLETE"
    infeasible = [t for t in loaded.trials if t.params["x"] > 0.5]
    assert infeasible and all(t.user_attrs["status"] == "infeasible" for t in infeasible)
    front = {round(t.params["x"], 3) for t in loaded.best_trials}  # Optuna's front leaves infeasible trials out
    assert front and max(front) <= 0.5
    ours = {round(t["params"]["x"], 3) for t in result.pareto}
    assert front == ours
    with pytest.raises(jt.InputError, match="already has a study named 'default'"):
        result.to_optuna(url)
    with pytest.raises(jt.InputError, match="must be an Optuna storage URL.*'o.db'"):
        result.to_optuna("o.db")
    with pytest.raises(jt.InputError, match="cannot open the Optuna storage 'nosuchdb://x'"):
        result.to_optuna("nosuchdb://x")
    assert np.isfinite([t.values for t in loaded.trials if t.state.name == "COMPLETE"]).all()


def test_report_writes_the_study_for_optuna_and_refuses_a_path_that_is_no_url(tmp_path, capsys):
    from jaxtune import cli

    db = str(tmp_path / "s.db")
    space = jt.Space({"lr": SPACE.params["lr"], "b1": SPACE.params["b1"]})
    jt.tune(make_trainer(steps=8, eval_every=4), space, trials=3, metric="val_loss", storage=db, progress=False)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert cli.main(["report", db, "--no-html", "--to-optuna", url]) == 0
    assert f"optuna: study 'default' in {url} (3 trials" in capsys.readouterr().out
    assert len(optuna.load_study(study_name="default", storage=url).trials) == 3
    assert cli.main(["report", db, "--no-html", "--to-optuna", "optuna.db"]) != 0
    err = capsys.readouterr().err
    assert "--to-optuna must be an Optuna storage URL such as sqlite:///optuna.db, got 'optuna.db'" in err
    assert "Traceback" not in err


def test_an_optuna_study_reads_back_and_warm_starts_a_jaxtune_study(study, tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study.to_optuna(url, "sweep")
    back = jt.Result.from_optuna(url, study_name="sweep")  # the names to_optuna kept
    assert back.metric == "val_loss" and len(back) == len(study)
    for a, b in zip(study.trials, back.trials):
        assert a["params"] == b["params"] and a["value"] == pytest.approx(b["value"])
        assert b["metrics"]["val_accuracy"] == pytest.approx(a["metrics"]["val_accuracy"])
    assert back.curves[(0, 0)] == [(s, {"val_loss": pytest.approx(m["val_loss"])}) for s, m in study.curves[(0, 0)]]

    # A study Optuna ran itself (TPE), on the parameter names of a jaxtune space, warm-starts it.
    space = jt.Space({"x": jt.Float(-2.0, 2.0), "lr": jt.Float(1e-3, 1.0, scale="log")})
    native = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    native.optimize(lambda t: (t.suggest_float("x", -3, 3) - 1) ** 2 + abs(math.log10(t.suggest_float("lr", 1e-3, 1.0,
                    log=True)) + 1), n_trials=12)  # fmt: skip
    told = jt.Result.from_optuna(native, metric="loss")
    assert told.config["space"]["lr"]["scale"] == "log" and told.best["value"] == pytest.approx(native.best_value)

    def objective(hp, key):
        return {"loss": (hp["x"] - 1) ** 2 + jnp.abs(jnp.log10(hp["lr"]) + 1)}

    warm = jt.tune(objective, space, "coarse_to_fine", trials=8, rounds=1, metric="loss", warm_start=told,
                   progress=False)  # fmt: skip
    inside = sum(-2 <= t.params["x"] <= 2 for t in native.trials)  # the rest lie outside the new range
    assert warm.config["warm_start"]["trials"] == inside and warm.config["warm_start"]["dropped"] == 12 - inside
    with pytest.raises(jt.InputError, match=r"the study has 1 objective\(s\), metric names \['a', 'b'\]"):
        jt.Result.from_optuna(native, metric=["a", "b"])
    with pytest.raises(jt.InputError, match="cannot load study 'nope'"):
        jt.Result.from_optuna(url, study_name="nope")
