"""Replay, model_of and export of trials whose space tunes a width (masked or static=True)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import toy_data
from tolerances import F32_ITERATED

import jaxtune as jt
from jaxtune import cli
from jaxtune.tasks.models import MLP


def width_trainer():
    x, y = toy_data()
    return jt.train.Trainer(
        model=lambda hp, rngs: MLP(6, 3, hidden=hp["hidden"], rngs=rngs),  # nnx.Linear for an int width
        optimizer=lambda hp: optax.adam(hp["lr"]),
        data=(x[:64], y[:64]),
        eval_data={"val": (x[64:], y[64:])},
        steps=12,
        batch_size=16,
    )


@pytest.mark.parametrize("kind", ["masked", "static"])
def test_a_width_trial_replays_to_its_metric_into_a_model_of_its_true_width(tmp_path, kind):
    space = jt.Space({"lr": jt.Float(1e-2, 1e-1, scale="log"), "hidden": jt.Int(5, 7, **{kind: True})})
    trainer, db = width_trainer(), str(tmp_path / "s.db")
    jt.tune(trainer, space, "random", trials=3, rounds=1, metric="val_loss", seed=1, storage=db, progress=False)
    result = jt.Result.load(db)
    for trial in result.trials:  # every trial, not only the best (5..7 units: buckets of 8 when masked)
        hidden = trial["params"]["hidden"]
        state, again = result.replay(trainer, trial, return_metrics=True)
        np.testing.assert_allclose(again["val_loss"], trial["metrics"]["val_loss"], **F32_ITERATED)
        model = trainer.model_of(trial["params"], state)
        assert [layer.kernel.shape for layer in model.layers] == [(6, hidden), (hidden, hidden)]
        assert model.out.kernel.shape == (hidden, 3)
        x, y = toy_data()
        loss = optax.softmax_cross_entropy_with_integer_labels(model(jnp.asarray(x[64:])), y[64:]).mean()
        np.testing.assert_allclose(loss, trial["metrics"]["val_loss"], **F32_ITERATED)
        adam = trainer.unpadded(trial["params"], state)["opt_state"]
        assert {leaf.shape for leaf in jax.tree.leaves(adam)} >= {(6, hidden), (hidden, hidden), (hidden, 3)}


def test_a_padded_state_that_is_not_the_models_is_refused():
    trainer = width_trainer()
    hp = {"lr": 0.1, "hidden": 9}
    small = trainer.init({"lr": jnp.float32(0.1), "hidden": 4}, jax.random.key(0))
    with pytest.raises(ValueError, match=r"has shape \(4,\), smaller than the model's \(9,\)"):
        trainer.model_of(hp, small)


CONFIG = """
[task]
name = "digits_mlp"
steps = 20
batch_size = 16

[tune]
strategy = "random"
trials = 3
rounds = 1
seed = 0
storage = "{db}"

[space.lr]
type = "float"
low = 1e-2
high = 1e-1
scale = "log"

[space.hidden]
type = "int"
low = 9
high = 12
masked = true
"""


def test_export_of_a_masked_width_trial_writes_its_true_shapes(tmp_path, capsys):
    db, out = tmp_path / "s.db", tmp_path / "best.npz"
    (tmp_path / "c.toml").write_text(CONFIG.format(db=db))
    assert cli.main(["run", str(tmp_path / "c.toml")]) == 0
    best = jt.Result.load(str(db)).best
    assert cli.main(["export", str(db), str(tmp_path / "c.toml"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"(stored {best['value']:.6g})" in printed
    hidden = best["params"]["hidden"]
    arrays = dict(np.load(out))
    kernels = {k: v.shape for k, v in arrays.items() if k.startswith("['params']") and "kernel" in k}
    assert sorted(kernels.values()) == sorted([(64, hidden), (hidden, hidden), (hidden, 10)])
