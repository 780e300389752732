"""Model hyperparameters that a population changes reach the model, and replay is exact.

A dropout rate (or any value the model reads from ``hp``) held in ``jt.layers.Hyper`` is set
from the lane's current ``hp`` at every segment, so PBT's explore and babysit's ``set`` reach
the model; a model that keeps a traced hyperparameter in its state any other way is refused
before compute (it would keep training with its first value). A population's winner replays
through the programs the population ran, so its stored metric comes back bit for bit.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import SPACE, Net, make_trainer, toy_data
from flax import nnx

import jaxtune as jt

DROP = jt.Space({"lr": SPACE.params["lr"], "dropout": jt.Float(0.0, 0.6)})


class HyperNet(nnx.Module):
    """The toy MLP with a tuned dropout rate."""

    def __init__(self, hp, rngs):
        self.l1 = nnx.Linear(6, 8, rngs=rngs)
        self.drop = jt.layers.Dropout(hp["dropout"], rngs=rngs)
        self.l2 = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.l2(self.drop(jax.nn.relu(self.l1(x))))


def hyper_trainer(model=HyperNet, steps=24):
    return make_trainer(model=model, optimizer=lambda hp: optax.adam(hp["lr"]), steps=steps)


def test_jt_layers_dropout_takes_a_traced_rate_and_matches_nnx_dropout():
    x = jnp.ones((64, 32))
    keep = jax.jit(lambda r: jt.layers.Dropout(r, rngs=nnx.Rngs(0))(x))(jnp.float32(0.25))
    assert 0.6 < float(jnp.mean(keep > 0)) < 0.9  # about 3/4 kept
    np.testing.assert_allclose(keep[keep > 0], 1 / 0.75, rtol=1e-6)  # kept values rescaled
    assert jnp.all(jax.jit(lambda r: jt.layers.Dropout(r, rngs=nnx.Rngs(0))(x))(jnp.float32(1.0)) == 0)
    drop = jt.layers.Dropout(0.5, rngs=nnx.Rngs(0))
    assert jnp.array_equal(nnx.view(drop, deterministic=True)(x), x)  # eval mode: the identity
    grad = jax.grad(lambda v: jnp.sum(jt.layers.Dropout(1.0, rngs=nnx.Rngs(0))(v)))(x)
    assert jnp.all(jnp.isfinite(grad))  # rate 1: zeros, and no NaN gradient


def test_a_hyper_value_is_read_from_hp_at_every_segment_not_kept_from_init():
    """A state initialised with dropout 0.9 then trained with hp dropout 0.0 trains exactly as a
    state initialised with 0.0 (same program: the rate is an input, not part of the state)."""
    trainer = hyper_trainer()
    hp = {"lr": jnp.float32(0.05), "b1": jnp.float32(0.9)}
    key = jax.random.key(1)
    train = jax.jit(trainer.train, static_argnums=2)
    started_high = trainer.init({**hp, "dropout": jnp.float32(0.9)}, key)
    started_zero = trainer.init({**hp, "dropout": jnp.float32(0.0)}, key)
    a, _ = train({**hp, "dropout": jnp.float32(0.0)}, started_high, 6)
    b, _ = train({**hp, "dropout": jnp.float32(0.0)}, started_zero, 6)
    c, _ = train({**hp, "dropout": jnp.float32(0.9)}, started_zero, 6)
    assert all(jax.tree.leaves(jax.tree.map(jnp.array_equal, a["params"], b["params"])))
    assert not all(jax.tree.leaves(jax.tree.map(jnp.array_equal, b["params"], c["params"])))
    model = trainer.model_of({"lr": 0.05, "dropout": 0.3}, a)  # Python floats, as result.best holds
    assert float(model.drop.rate[...]) == pytest.approx(0.3)


def test_pbt_explores_dropout_and_its_winner_replays_exactly(tmp_path):
    db = str(tmp_path / "pbt.db")
    trainer = hyper_trainer()
    result = jt.tune(trainer, DROP, "pbt", trials=4, metric="val_loss", storage=db, progress=False, seed=2,
                     strategy_options={"segment": 6})  # fmt: skip
    copied = [t for t in result.trials if (t["round"], t["slot"]) in result.lineage]
    assert copied, "PBT copied no trial: the test explores nothing"
    changed = [t for t in copied if len({p["dropout"] for _, p in result.history(t)}) > 1]
    assert changed, "no copied trial trained with a new dropout rate"
    loaded = jt.Result.load(db)
    for trial in [loaded.best, changed[0]]:
        state, metrics = loaded.replay(trainer, trial, return_metrics=True)
        assert metrics["val_loss"] == trial["metrics"]["val_loss"]  # the same programs: bit for bit
        model = trainer.model_of(trial["params"], state)  # as the README writes it
        x, y = toy_data()
        loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(model(x[64:]), y[64:]))
        np.testing.assert_allclose(loss, trial["metrics"]["val_loss"], rtol=1e-5)


@pytest.mark.parametrize("name, options", [("asha", {"min_steps": 6, "eta": 2, "configs": 8}),
                                           ("median", {"segment": 6, "grace": 6, "configs": 6})])  # fmt: skip
def test_a_population_winner_with_dropout_replays_to_its_stored_metric_bit_for_bit(tmp_path, name, options):
    db = str(tmp_path / "s.db")
    trainer = make_trainer(dropout=0.3, steps=48)
    space = jt.Space({"lr": SPACE.params["lr"], "b1": SPACE.params["b1"]})
    jt.tune(trainer, space, name, trials=4, metric="val_loss", storage=db, progress=False, strategy_options=options)
    result = jt.Result.load(db)
    _, metrics = result.replay(trainer, return_metrics=True)
    assert metrics["val_loss"] == result.best["metrics"]["val_loss"]
    _, alone = result.replay(trainer, exact=False, return_metrics=True)  # one trial alone: float32 rounding
    np.testing.assert_allclose(alone["val_loss"], result.best["metrics"]["val_loss"], rtol=1e-4)


class KeepsRate(nnx.Module):
    """A model that keeps the rate it was built with in its state (the pattern the Trainer refuses)."""

    def __init__(self, hp, rngs):
        self.l1 = nnx.Linear(6, 3, rngs=rngs)
        self.rate = nnx.Variable(jnp.asarray(hp["dropout"], jnp.float32))
        self.rngs = rngs.dropout.fork()

    def __call__(self, x):
        keep = 1.0 - self.rate[...]
        return self.l1(jnp.where(jax.random.bernoulli(self.rngs(), keep, x.shape), x / keep, 0.0))


def test_a_model_keeping_a_traced_hyperparameter_in_its_state_is_refused_before_compute():
    with pytest.raises(jt.InputError, match=r"dropout.*jt\.layers\.Hyper"):
        jt.tune(hyper_trainer(KeepsRate), DROP, "pbt", trials=4, metric="val_loss", progress=False,
                strategy_options={"segment": 6})  # fmt: skip
    # A round sweep trains each trial with one value throughout: the same model is fine there.
    jt.tune(hyper_trainer(KeepsRate), DROP, trials=2, metric="val_loss", progress=False)


def test_nnx_dropout_given_a_traced_rate_is_answered_with_the_way_to_tune_it():
    trainer = hyper_trainer(lambda hp, rngs: Net(8, hp["dropout"], rngs))
    with pytest.raises(jt.InputError, match=r"jt\.layers\.Dropout"):
        jt.tune(trainer, DROP, trials=2, metric="val_loss", progress=False)
