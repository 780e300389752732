"""A study as TensorBoard event files, read back record by record."""

import math
import os
import struct

import pytest
from conftest import SPACE, make_trainer

import jaxtune as jt

pytest.importorskip("tensorboardX")
from tensorboardX.proto import event_pb2, plugin_hparams_pb2  # noqa: E402


def events(run: str) -> list:
    """Every Event of a run's event files (TFRecord framing: length, its CRC, data, its CRC)."""
    out = []
    for name in sorted(os.listdir(run)):
        with open(os.path.join(run, name), "rb") as f:
            data = f.read()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            out.append(event_pb2.Event.FromString(data[at + 12 : at + 12 + length]))
            at += 12 + length + 4
    return out


def test_every_curve_point_and_every_trials_hparams_read_back(tmp_path, capsys):
    space = jt.Space({"lr": SPACE.params["lr"], "b1": SPACE.params["b1"]})
    db = str(tmp_path / "s.db")
    result = jt.tune(make_trainer(steps=12, eval_every=4), space, trials=3, metric="val_loss", storage=db,
                     progress=False)  # fmt: skip
    folder = tmp_path / "tb"
    assert result.to_tensorboard(folder) == str(folder)
    assert sorted(os.listdir(folder)) == ["round-000-slot-0000", "round-000-slot-0001", "round-000-slot-0002"]
    for t in result.trials:
        got = events(str(folder / f"round-000-slot-{t['slot']:04d}"))
        scalars = {(v.tag, e.step): v.simple_value for e in got for v in e.summary.value if v.HasField("simple_value")}
        for step, metrics in result.curves[(0, t["slot"])]:  # every curve point of every metric
            for name, value in metrics.items():
                assert scalars[(name, step)] == pytest.approx(value, rel=1e-6)
        assert scalars[("final/val_loss", 12)] == pytest.approx(t["metrics"]["val_loss"], rel=1e-6)
        start = [plugin_hparams_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content).session_start_info
                 for e in got for v in e.summary.value if v.tag == "_hparams_/session_start_info"]  # fmt: skip
        (info,) = start
        assert info.hparams["lr"].number_value == pytest.approx(t["params"]["lr"], rel=1e-6)
        assert info.hparams["b1"].number_value == pytest.approx(t["params"]["b1"], rel=1e-6)
        assert info.hparams["status"].string_value == "ok"
    from jaxtune import cli

    assert cli.main(["report", db, "--no-html", "--tensorboard", str(tmp_path / "tb2")]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out and len(os.listdir(tmp_path / "tb2")) == 3
    (tmp_path / "file").write_text("")
    assert cli.main(["report", db, "--no-html", "--tensorboard", str(tmp_path / "file" / "tb")]) != 0
    err = capsys.readouterr().err
    assert "cannot make the folder" in err and "Traceback" not in err
    assert not math.isnan(result.best["value"])
