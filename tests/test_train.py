import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import Net, make_trainer, toy_data
from flax import nnx
from tolerances import F32

import jaxtune as jt
from jaxtune.execute import Executor
from jaxtune.train import Trainer

SPACE = jt.Space({"lr": jt.Float(1e-3, 1e-1, scale="log"), "b1": jt.Float(0.8, 0.99, scale="reverse_log")})


def run(trainer, space, hp, keys):
    chunks = list(Executor(trainer, space).run(hp, keys))
    assert len(chunks) == 1
    return chunks[0][1]


def test_vmapped_trainer_trials_equal_each_trial_alone(key):
    trainer = make_trainer(dropout=0.2)
    hp = SPACE.sample(key, 4)
    keys = jax.random.split(key, 4)
    batched = run(trainer, SPACE, hp, keys)
    alone = jax.jit(trainer)
    for i in range(4):
        one = alone({n: v[i] for n, v in hp.items()}, keys[i])
        for name in ("val_loss", "val_accuracy", "train_loss"):
            np.testing.assert_allclose(batched[name][i], one[name], rtol=2e-5, atol=1e-6)


def test_each_trial_has_its_own_dropout_and_init_randomness(key):
    trainer = make_trainer(dropout=0.5)
    hp = {"lr": jnp.full((3,), 0.01), "b1": jnp.full((3,), 0.9)}
    k1, k2 = jax.random.split(key)
    out = run(trainer, SPACE, hp, jnp.stack([k1, k1, k2]))
    assert out["train_loss"][0] == out["train_loss"][1]  # same key, same trial
    assert out["train_loss"][0] != out["train_loss"][2]  # another key: other init, data order, masks


def test_masked_batch_gives_the_same_loss_and_gradients_as_the_small_batch(key):
    trainer = make_trainer(batch_size=16)
    model = Net(8, 0.0, nnx.Rngs(key))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x, y = toy_data()
    xb, yb = jnp.asarray(x[:16]), jnp.asarray(y[:16])
    grad = jax.grad(trainer.batch_loss, argnums=1, has_aux=True)
    _, _, w_masked = trainer._batch({"batch_size": jnp.asarray(5)})
    _, _, w_small = trainer._batch({"batch_size": 5})
    loss_m, _ = trainer.batch_loss(graphdef, params, rest, xb, yb, w_masked)
    loss_s, _ = trainer.batch_loss(graphdef, params, rest, xb[:5], yb[:5], w_small)
    # Equal up to float32 summation order (16 weighted terms against 5), on every backend.
    np.testing.assert_allclose(loss_m, loss_s, rtol=1e-5)
    np.testing.assert_allclose(
        loss_s, optax.softmax_cross_entropy_with_integer_labels(model(xb[:5]), yb[:5]).mean(), rtol=1e-5
    )
    g_m, _ = grad(graphdef, params, rest, xb, yb, w_masked)
    g_s, _ = grad(graphdef, params, rest, xb[:5], yb[:5], w_small)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **F32), g_m, g_s)


def test_traced_batch_size_trial_equals_static_batch_size_trial(key):
    trainer = make_trainer(batch_size=16)
    traced = jt.Space({**SPACE.params, "batch_size": jt.Choice([4, 8, 16])})
    static = jt.Space({**SPACE.params, "batch_size": jt.Choice([4, 8, 16], static=True)})
    hp = traced.sample(key, 6)
    keys = jax.random.split(key, 6)
    masked = run(trainer, traced, hp, keys)
    ex = Executor(trainer, static)
    out = {}
    for idx, metrics, _ in ex.run(hp, keys):
        for j, i in enumerate(idx):
            out[int(i)] = metrics["val_loss"][j]
    np.testing.assert_allclose(masked["val_loss"], [out[i] for i in range(6)], rtol=1e-4, atol=1e-6)


def test_a_batch_size_sweep_is_one_program_and_reports_true_values():
    trainer = make_trainer(batch_size=16)
    space = jt.Space({**SPACE.params, "batch_size": jt.Choice([4, 8, 16])})
    reports = []
    result = jt.tune(trainer, space, "random", trials=8, rounds=2, metric="val_loss", progress=reports.append)
    assert reports[-1]["compiles"] == 1
    assert {t["params"]["batch_size"] for t in result.trials} <= {4, 8, 16}
    assert all(isinstance(t["params"]["batch_size"], int) for t in result.trials)


def test_learning_curves_are_stored(tmp_path):
    trainer = make_trainer(steps=20, eval_every=5)
    db = str(tmp_path / "c.db")
    jt.tune(trainer, SPACE, "random", trials=4, metric="val_loss", storage=db, progress=False)
    result = jt.Result.load(db)
    assert len(result.curves) == 4
    curve = result.curves[(0, 0)]
    assert [s for s, _ in curve] == [5, 10, 15, 20]
    assert {"val_loss", "val_accuracy", "train_loss"} <= set(curve[-1][1])
    final = next(t for t in result.trials if t["slot"] == 0)["metrics"]["val_loss"]
    assert curve[-1][1]["val_loss"] == pytest.approx(final)
    rows = result.curve_rows()
    assert len(rows) == 16 and rows[1]["step"] == 10 and rows[1]["slot"] == 0
    assert rows[3]["val_loss"] == pytest.approx(final)
    from jaxtune import cli

    assert cli.main(["report", db, "--curves-csv", str(tmp_path / "curves.csv")]) == 0
    lines = (tmp_path / "curves.csv").read_text().splitlines()
    assert len(lines) == 17 and lines[0].startswith("round,slot,step,")


def test_trainer_errors():
    x, y = toy_data()
    with pytest.raises(ValueError, match="Trainer: eval_every must divide steps=10, got 3"):
        Trainer(model=None or (lambda hp, r: None), optimizer=lambda hp: None, data=(x, y), steps=10, eval_every=3)
    with pytest.raises(ValueError, match="train x and y differ in length: 96 vs 10"):
        Trainer(model=lambda hp, r: None, optimizer=lambda hp: None, data=(x, y[:10]))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        Trainer(model=lambda hp, r: None, optimizer=lambda hp: None, data=(x, y), batch_size=0)
    trainer = make_trainer(batch_size=16)
    space = jt.Space({**SPACE.params, "batch_size": jt.Choice([8, 32])})
    with pytest.raises(ValueError, match="batch_size goes up to 32 but Trainer\\(batch_size=16\\)"):
        jt.tune(trainer, space, trials=2, metric="val_loss", progress=False)


def masked_mlp_trainer():
    from jaxtune.tasks.models import MLP

    x, y = toy_data()
    return Trainer(
        model=lambda hp, rngs: MLP(6, 3, hidden=hp["hidden"], rngs=rngs),
        optimizer=lambda hp: optax.adam(hp["lr"]),
        data=(x[:64], y[:64]),
        eval_data={"val": (x[64:], y[64:])},
        steps=10,
        batch_size=16,
    )


WIDTH_SPACE = jt.Space(
    {
        "lr": jt.Float(1e-3, 1e-1, scale="log"),
        "hidden": jt.Int(3, 12, masked=True),  # buckets of 4, 8 and 16 units
        "batch_size": jt.Choice([4, 8, 16]),
    }
)


def test_masked_width_trials_vmapped_equal_alone(key):
    from jaxtune.space import Masked, bucket_size

    trainer = masked_mlp_trainer()
    hp = WIDTH_SPACE.sample(key, 6)
    keys = jax.random.split(key, 6)
    ex = Executor(trainer, WIDTH_SPACE)
    alone = {}
    for idx, metrics, _ in ex.run(hp, keys):
        for j, i in enumerate(idx):
            alone[int(i)] = metrics["val_loss"][j]
    programs = {}
    assert len({bucket_size(int(h)) for h in hp["hidden"]}) >= 2  # several buckets
    for i in range(6):
        size = bucket_size(int(hp["hidden"][i]))
        if size not in programs:
            programs[size] = jax.jit(lambda hp, k, size=size: trainer({**hp, "hidden": Masked(hp["hidden"], size)}, k))
        one = programs[size]({n: v[i] for n, v in hp.items()}, keys[i])
        np.testing.assert_allclose(alone[i], one["val_loss"], rtol=2e-5, atol=1e-6)


def test_width_batch_lr_sweep_runs_as_few_programs_with_true_values():
    reports = []
    result = jt.tune(
        masked_mlp_trainer(), WIDTH_SPACE, "random", trials=16, rounds=1, metric="val_loss", progress=reports.append
    )
    widths = {t["params"]["hidden"] for t in result.trials}
    assert len(widths) > 5 and all(isinstance(w, int) and 3 <= w <= 12 for w in widths)
    # One program per power-of-two bucket (4, 8, 16), not one per distinct width.
    assert reports[-1]["compiles"] <= 3 < len(widths)


class BNNet(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(6, 8, rngs=rngs)
        self.bn = nnx.BatchNorm(8, momentum=0.5, rngs=rngs)
        self.l2 = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.l2(jax.nn.relu(self.bn(self.l1(x))))


def test_batchnorm_statistics_are_per_trial_state(key):
    x, y = toy_data()
    trainer = Trainer(
        model=lambda hp, rngs: BNNet(rngs),
        optimizer=lambda hp: optax.sgd(hp["lr"]),
        data=(x[:64], y[:64]),
        eval_data={"val": (x[64:], y[64:])},
        steps=6,
        batch_size=8,
    )
    space = jt.Space({"lr": jt.Float(1e-3, 1e-1, scale="log")})
    hp = {"lr": jnp.asarray([0.05, 0.05, 0.01])}
    keys = jax.random.split(key, 3)
    batched = run(trainer, space, hp, keys)
    for i in range(3):
        one = jax.jit(trainer)({"lr": hp["lr"][i]}, keys[i])
        np.testing.assert_allclose(batched["val_loss"][i], one["val_loss"], rtol=2e-5, atol=1e-6)


def test_evaluation_turns_dropout_off_and_batchnorm_to_running_averages(key):
    x, y = toy_data()
    xv, yv = x[64:], y[64:]
    trainer = make_trainer(dropout=0.5)
    graphdef, params, rest, _ = trainer._init({"lr": 0.01, "b1": 0.9}, key)
    model = nnx.merge(graphdef, params, rest)
    # Dropout off: evaluation is the plain forward pass, and it does not change from call to call.
    plain = optax.softmax_cross_entropy_with_integer_labels(model.l2(jax.nn.relu(model.l1(xv))), yv).mean()
    first, second = trainer.evaluate(graphdef, params, rest), trainer.evaluate(graphdef, params, rest)
    np.testing.assert_allclose(first["val_loss"], plain, **F32)
    assert first["val_loss"] == second["val_loss"]
    weights = jnp.full((xv.shape[0],), 1.0 / xv.shape[0])
    train_loss, _ = trainer.batch_loss(graphdef, params, rest, xv, yv, weights, jax.random.key(3))
    assert abs(train_loss - plain) > 1e-3  # train mode drops units
    # BatchNorm: evaluation normalises with the running averages, not the eval batch's statistics.
    bn = Trainer(
        model=lambda hp, rngs: BNNet(rngs), optimizer=lambda hp: optax.sgd(0.1), data=(x[:64], y[:64]),
        eval_data={"val": (xv, yv)},
    )  # fmt: skip
    graphdef, params, rest, _ = bn._init({}, key)
    net = nnx.merge(graphdef, params, rest)
    net.bn.mean[...] = jnp.full((8,), 0.3)
    net.bn.var[...] = jnp.full((8,), 2.0)
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    h = net.l1(xv)
    normed = (h - 0.3) / jnp.sqrt(2.0 + net.bn.epsilon) * net.bn.scale[...][None] + net.bn.bias[...][None]
    expected = optax.softmax_cross_entropy_with_integer_labels(net.l2(jax.nn.relu(normed)), yv).mean()
    np.testing.assert_allclose(bn.evaluate(graphdef, params, rest)["val_loss"], expected, rtol=1e-5)


def test_a_steps_hyperparameter_sets_the_budget_per_trial(key):
    space = jt.Space({**SPACE.params, "steps": jt.Int(5, 12, static=True)})
    hp = SPACE.sample(key, 1)
    one = {n: v[0] for n, v in hp.items()}
    budget = make_trainer(steps=50, eval_every=5)({**one, "steps": 12}, key)
    fixed = make_trainer(steps=12)(one, key)
    assert float(budget["val_loss"]) == pytest.approx(float(fixed["val_loss"]), rel=1e-5)
    assert np.asarray(budget["curves"]["step"]).tolist() == [5, 10, 12]  # a shorter last segment
    make_trainer().validate_space(space)
    with pytest.raises(ValueError, match="steps .* must be an integer with static=True"):
        make_trainer().validate_space(jt.Space({**SPACE.params, "steps": jt.Int(5, 12)}))


def test_reproducibility_rule_on_a_training_task(tmp_path):
    """Same layout: bit-for-bit. Another layout: equal up to rounding, and a resume that changes it warns."""
    from jaxtune.study.storage import LayoutWarning

    trainer = make_trainer(steps=30)
    space = jt.Space({"lr": jt.Float(1e-3, 1e-2, scale="log"), "b1": jt.Float(0.8, 0.99, scale="reverse_log")})

    def metrics(**kwargs):
        result = jt.tune(trainer, space, "random", trials=8, rounds=2, metric="val_loss", progress=False, **kwargs)
        return np.asarray([[t["metrics"]["val_loss"], t["metrics"]["train_loss"]] for t in result.trials])

    first = metrics()
    np.testing.assert_array_equal(metrics(), first)  # same layout: the same bits
    # Chunks of 1 (programs of another width): the same trials up to float rounding at these
    # stable learning rates, not necessarily the same bits.
    np.testing.assert_allclose(metrics(max_batch=1), first, rtol=1e-4)

    db = str(tmp_path / "s.db")
    jt.tune(trainer, space, "random", trials=8, rounds=1, metric="val_loss", progress=False, storage=db)
    with pytest.warns(LayoutWarning, match="max_batch: stored None, now 4"):
        jt.tune(
            trainer, space, "random", trials=8, rounds=2, metric="val_loss", progress=False, storage=db, max_batch=4
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same layout resumes silently
        jt.tune(
            trainer, space, "random", trials=8, rounds=2, metric="val_loss", progress=False, storage=db, max_batch=4
        )


class CallTimeRngsNet(nnx.Module):
    """Dropout's keys passed at call time, as in the Flax NNX MNIST tutorial."""

    def __init__(self, rngs):
        self.l1 = nnx.Linear(6, 16, rngs=rngs)
        self.drop = nnx.Dropout(0.5)
        self.l2 = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x, rngs=None):
        return self.l2(self.drop(jax.nn.relu(self.l1(x)), rngs=rngs))


def test_a_model_that_takes_dropout_rngs_at_call_time_trains(key):
    trainer = make_trainer(model=lambda hp, rngs: CallTimeRngsNet(rngs))
    hp = {"lr": jnp.float32(1e-2), "b1": jnp.float32(0.9)}
    k1, k2 = jax.random.split(key)
    a, b, c = (jax.jit(trainer)(hp, k) for k in (k1, k1, k2))
    assert np.isfinite(a["train_loss"]) and a["train_loss"] == b["train_loss"]
    assert a["train_loss"] != c["train_loss"]  # another key: other init, data order and dropout masks
    # Evaluation runs without dropout, so it needs no keys: two evaluations agree.
    model = CallTimeRngsNet(nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    e1, e2 = trainer.evaluate(graphdef, params, rest), trainer.evaluate(graphdef, params, rest)
    assert e1["val_loss"] == e2["val_loss"]
