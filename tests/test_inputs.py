"""Inputs that used to end in a traceback, a hang or a silent change: each is now a clear error
before any compute (exit 2 on the command line), or works as written."""

import jax.numpy as jnp
import pytest
from conftest import SPACE, make_trainer, quad_objective

import jaxtune as jt
from jaxtune import cli

LR_B1 = jt.Space({"lr": SPACE.params["lr"], "b1": SPACE.params["b1"]})


def write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "strategy, options, message",
    [
        ("pbt", {"segment": 400}, "segment=400 must divide the objective's budget of 40 steps"),
        ("pbt", {"segment": 15}, "segment=15 must divide the objective's budget of 40 steps"),
        ("median", {"segment": 30, "grace": 30}, "segment=30 must divide"),
        ("pbt", {"segment": 10, "initial": [{"lr": 5.0, "b1": 0.9}]}, "initial[0] lr: 5.0 is outside its range"),
        ("pbt", {"segment": 10, "initial": 3}, "initial must be a list of at most 4 configurations"),
        ("asha", {"configs": 2**40}, "configs must be an int in [1, 16777216]"),
    ],
)
def test_population_options_that_would_overtrain_clip_or_overflow_are_refused(strategy, options, message):
    with pytest.raises(jt.InputError, match=message.replace("[", r"\[").replace("(", r"\(")):
        jt.tune(make_trainer(steps=40), LR_B1, strategy, trials=4, metric="val_loss", strategy_options=options)


def test_replay_refuses_a_negative_step_and_a_cyclic_lineage():
    trials = [
        {"round": 0, "slot": 0, "params": {"lr": 0.1}, "unit": [0.5], "metrics": {"loss": 1.0}, "value": 1.0,
         "status": "ok"},
        {"round": 1, "slot": 0, "params": {"lr": 0.1}, "unit": [0.5], "metrics": {"loss": 0.5}, "value": 0.5,
         "status": "ok"},
    ]  # fmt: skip
    result = jt.Result(trials, "loss", lineage={(1, 0): (0, 0, 10), (0, 0): (1, 0, 5)}, config={"seed": 0})
    with pytest.raises(jt.InputError, match="step must be an int >= 0"):
        result.replay(make_trainer(), step=-1)
    with pytest.raises(jt.InputError, match="lineage of trial 1:0 is broken"):
        result.replay(make_trainer())


def test_cli_inputs_that_used_to_fail_late(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[task]\nname = '\xe9'\n")
    assert cli.main(["run", str(bad)]) == 2
    assert "a config must be UTF-8 text" in capsys.readouterr().err
    monkeypatch.setenv("JAXTUNE_CPU_DEVICES", "100000")
    assert cli.main(["run", write(tmp_path, "[task]\nname = 'branin'\n")]) == 2
    assert "JAXTUNE_CPU_DEVICES must be 'auto' or an integer in [1, " in capsys.readouterr().err
    monkeypatch.delenv("JAXTUNE_CPU_DEVICES")
    db = str(tmp_path / "s.db")
    jt.tune(quad_objective, SPACE, trials=8, metric="loss", storage=db, progress=False)
    (tmp_path / "a_file").write_text("")
    assert cli.main(["report", db, "--no-html", "--csv", str(tmp_path / "a_file" / "t.csv")]) == 2
    assert "is a file, so the directory" in capsys.readouterr().err
    assert cli.main(["report", db, "--no-html", "--csv", str(tmp_path / "new" / "t.csv")]) == 0  # made
    assert (tmp_path / "new" / "t.csv").exists()
    with pytest.raises(SystemExit) as e:
        cli.main(["report", db, "--top", "-1"])
    assert e.value.code == 2 and "must be an integer >= 1, got '-1'" in capsys.readouterr().err


def test_names_with_dollar_signs_are_drawn_as_typed(tmp_path):
    pytest.importorskip("matplotlib")
    from jaxtune.analysis import report

    space = jt.Space({"$lr": jt.Float(1e-3, 1.0, scale="log"), "opt": jt.Choice(["$a", "b$"])})

    def objective(hp, key):
        return {"loss": (jnp.log10(hp["$lr"]) + 2) ** 2 + (hp["opt"] == "$a")}

    result = jt.tune(objective, space, "random", trials=16, metric="loss", progress=False)
    assert (tmp_path / "r" / "index.html") == __import__("pathlib").Path(report.html(result, str(tmp_path / "r")))


def test_bench_refuses_a_file_as_its_folder_and_an_oversized_run(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    assert cli.main(["bench", "--problems", "branin", "--out", str(tmp_path / "a_file"), "--seeds", "2"]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err
    assert cli.main(["bench", "--problems", "branin", "--seeds", "10000000", "--out", str(tmp_path / "b")]) == 2
    assert "held in memory at once" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_replay_reseed_and_seed_stats_refuse_what_they_cannot_use(tmp_path):
    db = str(tmp_path / "s.db")
    jt.tune(quad_objective, SPACE, trials=4, metric="loss", storage=db, progress=False)
    result = jt.Result.load(db)
    with pytest.raises(jt.InputError, match="replay trains a trial again and returns its state"):
        result.replay(quad_objective)  # a plain function has no state to return
    with pytest.raises(jt.InputError, match=r"seed_stats: metric must be one of the trial's metrics \['acc', 'loss'\]"):
        result.seed_stats(result.best, "nope")
    with pytest.raises(jt.InputError, match="seed_stats: trial must be one of the study's trials"):
        result.seed_stats("best")
    with pytest.raises(jt.InputError, match="reseed: result must be a jt.Result"):
        jt.reseed(db, quad_objective)
    with pytest.raises(jt.InputError, match="seeds must be an int"):
        jt.reseed(result, quad_objective, seeds="8")

    def other(hp, key):  # another objective than the study's
        return {"loss": hp["lr"] * hp["b1"] * hp["n"], "acc": hp["lr"]}

    with pytest.raises(jt.StudyMismatchError, match="reseed: objective is not the one the study was run with"):
        jt.reseed(result, other)


def test_reseed_of_a_pbt_schedule_is_refused():
    from jaxtune.tasks import get

    task = get("pbt_toy", steps=40)
    result = jt.tune(task.objective, task.space, "pbt", trials=4, metric="Q", mode="max",
                     strategy_options={"segment": 4, "quantile": 0.5}, progress=False)  # fmt: skip
    assert (result.best["round"], result.best["slot"]) in result.lineage
    with pytest.raises(jt.InputError, match=r"continued another trial's state with new hyperparameters \(PBT\)"):
        jt.reseed(result, task.objective, top=1)


def test_bench_refuses_an_unknown_strategy_before_making_its_out_folder(tmp_path, capsys):
    out = tmp_path / "results" / "x"
    assert cli.main(["bench", "--problems", "branin", "--strategies", "nope", "--out", str(out)]) == 2
    assert "unknown strategy 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
    assert jt.bench.check_strategies("random")[0][1] == "random"  # one name, as meant (not its letters)
