"""A trial's model as an Orbax checkpoint, restored into a user's own NNX model the way Flax's
checkpointing guide does it, gives the trial's metric."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxtune as jt

ocp = pytest.importorskip("orbax.checkpoint")


class Mine(nnx.Module):
    """A user's model: parameters and batch statistics."""

    def __init__(self, rngs):
        self.a = nnx.Linear(6, 16, rngs=rngs)
        self.bn = nnx.BatchNorm(16, rngs=rngs)
        self.b = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.b(jax.nn.relu(self.bn(self.a(x))))


def test_a_replayed_trial_restores_into_the_users_model_with_its_metric(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    trainer = jt.train.Trainer(model=lambda hp, rngs: Mine(rngs), optimizer=lambda hp: optax.adam(hp["lr"]),
                               data=(x[:128], y[:128]), eval_data={"val": (x[128:], y[128:])}, steps=40,
                               batch_size=32)  # fmt: skip
    space = jt.Space({"lr": jt.Float(1e-3, 1e-1, scale="log")})
    result = jt.tune(trainer, space, trials=3, metric="val_accuracy", mode="max", progress=False)
    path = tmp_path / "best"
    _, replayed = result.replay(trainer, checkpoint=path, return_metrics=True)

    # The user's side: Flax's guide, nothing of jaxtune.
    abstract = nnx.eval_shape(lambda: Mine(nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)
    model = nnx.merge(graphdef, ocp.StandardCheckpointer().restore(str(path), abstract_state))
    model = jt.train.set_mode(model, train=False)  # eval mode: BatchNorm's running statistics
    accuracy = float(jnp.mean(jnp.argmax(model(jnp.asarray(x[128:])), -1) == y[128:]))
    assert accuracy == pytest.approx(replayed["val_accuracy"], abs=1e-6)  # the exported trial's metric
    # (trained alone, it equals the vmapped sweep's trial to float32 rounding: an example or two here)
    assert accuracy == pytest.approx(result.best["metrics"]["val_accuracy"], abs=2 / 32 + 1e-6)
    assert float(jnp.sum(model.bn.mean[...] ** 2)) > 0  # the batch statistics came back too

    with pytest.raises(jt.InputError, match="exists already"):
        result.replay(trainer, checkpoint=path)
    with pytest.raises(jt.InputError, match="missing or not writable"):
        result.replay(trainer, checkpoint=tmp_path / "no" / "such")
