"""The attention tasks (modular arithmetic, associative recall) and the Trainer features they use:
an evaluated training split, full-batch steps, milestones read from the learning curve."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxtune as jt
from jaxtune.space import Masked
from jaxtune.tasks import attention
from jaxtune.train import Trainer

TINY = {"p": 7, "d_model": 16, "heads": 2, "d_mlp": 32, "steps": 40, "eval_every": 10}


@pytest.mark.parametrize("operation", attention.OPERATIONS)
def test_every_pair_is_in_one_split_with_its_true_answer(operation):
    p = 11
    (xt, yt), (xv, yv) = attention.modular_data(p, operation, train_fraction=0.3, seed=0)
    pairs = [tuple(r[:2]) for r in np.concatenate([xt, xv])]
    assert len(pairs) == len(set(pairs)) == p * (p - 1 if operation == "divide" else p)  # each pair once
    train = {tuple(r[:2]) for r in xt}
    assert not any(tuple(r[:2]) in train for r in xv)  # a held-out pair is never trained on
    assert len(xt) == round(0.3 * len(pairs)) and np.all(np.concatenate([xt, xv])[:, 2] == p)  # "=" token
    a, b, c = np.concatenate([xt, xv])[:, 0], np.concatenate([xt, xv])[:, 1], np.concatenate([yt, yv])
    check = {"add": (a + b) % p == c, "subtract": (a - b) % p == c, "multiply": (a * b) % p == c,
             "divide": (c * b) % p == a}[operation]  # fmt: skip
    assert check.all()
    np.testing.assert_array_equal(attention.modular_data(p, operation, 0.3, seed=0)[0][0], xt)  # same seed, same split


def test_modular_arithmetic_refuses_bad_options_before_building():
    with pytest.raises(jt.InputError, match="divide needs a prime p.*p=12"):
        jt.tasks.get("modular_arithmetic", p=12, operation="divide")
    with pytest.raises(jt.InputError, match="operation must be one of .*'power'"):
        jt.tasks.get("modular_arithmetic", operation="power")
    with pytest.raises(jt.InputError, match=r"train_fraction must be in \(0, 1\), got 1.5"):
        jt.tasks.get("modular_arithmetic", train_fraction=1.5)
    with pytest.raises(jt.InputError, match="d_model=30 must be a multiple of heads=4"):
        jt.tasks.get("modular_arithmetic", **{**TINY, "d_model": 30, "heads": 4})
    with pytest.raises(jt.InputError, match="associative_recall: layers must be an int >= 1, got 0"):
        jt.tasks.get("associative_recall", layers=0)
    with pytest.raises(jt.InputError, match=r"threshold \(an accuracy\) must be in \(0, 1\], got 95"):
        jt.tasks.get("modular_arithmetic", threshold=95)


def test_modular_arithmetic_sweep_reports_memorising_and_generalising_steps():
    """... with the MLP width tuned as a masked width: widths 17-32 share one bucket, one program."""
    task = jt.tasks.get("modular_arithmetic", **TINY)
    space = jt.Space({**task.space.params, "d_mlp": jt.Int(17, 32, masked=True)})
    reports = []
    result = jt.tune(task.objective, space, trials=3, metric=task.metric, mode=task.mode, progress=reports.append)
    assert reports[-1]["compiles"] == 1 and len({t["params"]["d_mlp"] for t in result.trials}) == 3
    assert {"train_accuracy", "train_loss", "val_accuracy", "val_loss", "steps_to_memorise",
            "steps_to_generalise"} <= set(result.best["metrics"])  # fmt: skip
    for t in result.trials:
        m, curve = t["metrics"], result.curves[(t["round"], t["slot"])]
        assert [step for step, _ in curve] == [10, 20, 30, 40]
        for name, metric in (("steps_to_memorise", "train_accuracy"), ("steps_to_generalise", "val_accuracy")):
            reached = [step for step, point in curve if point[metric] >= 0.95]
            assert m[name] == (reached[0] if reached else TINY["steps"] + 1)  # budget + 1: never


def test_milestones_read_the_curve_and_refuse_what_they_cannot_read():
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)  # learnable: the loss falls through the threshold
    common = dict(model=lambda hp, rngs: nnx.Linear(4, 2, rngs=rngs), optimizer=lambda hp: optax.sgd(hp["lr"]),
                  data=(x, y), eval_data={"val": (x, y)}, steps=30, batch_size=16)  # fmt: skip
    trainer = Trainer(**common, eval_every=5, milestones={"loss_low": ("val_loss", "<=", 0.6),
                                                             "acc_high": ("val_accuracy", 2.0)})  # fmt: skip
    out = jax.jit(trainer)({"lr": jnp.float32(0.02)}, jax.random.key(0))
    curve = out["curves"]
    first = int(curve["step"][np.argmax(np.asarray(curve["val_loss"]) <= 0.6)])
    assert curve["val_loss"][0] > 0.6 >= np.asarray(curve["val_loss"]).min() and out["loss_low"] == first > 5
    assert out["acc_high"] == 31  # accuracy never reaches 2: budget + 1
    with pytest.raises(jt.InputError, match="milestones are read from the learning curve: set eval_every"):
        Trainer(**common, milestones={"m": ("val_loss", 0.1)})
    with pytest.raises(jt.InputError, match=r"milestone 'm' must be \(metric, threshold\).*\('val_loss', '<', 1\)"):
        Trainer(**common, eval_every=5, milestones={"m": ("val_loss", "<", 1)})
    bad = Trainer(**common, eval_every=5, milestones={"m": ("val_f1", 0.5)})
    with pytest.raises(jt.InputError, match="milestone 'm' reads 'val_f1'.*'val_accuracy', 'val_loss'"):
        jax.eval_shape(bad, {"lr": jnp.float32(0.1)}, jax.random.key(0))


def test_full_batch_uses_every_training_example_every_step():
    x, y = np.random.default_rng(1).normal(size=(48, 3)).astype(np.float32), np.arange(48) % 3
    common = dict(model=lambda hp, rngs: nnx.Linear(3, 3, rngs=rngs), optimizer=lambda hp: optax.sgd(0.5),
                  data=(x, y), eval_data={"train": (x, y)}, steps=3, full_batch=True)  # fmt: skip
    a = Trainer(**common, batch_size=4)({}, jax.random.key(0))
    b = Trainer(**common, batch_size=32)({}, jax.random.key(0))
    assert a == b  # the batch size is unused: the same program's numbers

    model = nnx.Linear(3, 3, rngs=nnx.Rngs(jax.random.split(jax.random.key(0))[0]))  # the Trainer's init key
    params = nnx.state(model, nnx.Param)

    def loss(params):
        out = nnx.merge(nnx.graphdef(model), params)(jnp.asarray(x))
        return optax.softmax_cross_entropy_with_integer_labels(out, jnp.asarray(y)).mean()

    for _ in range(3):  # gradient descent on the whole training set
        params = jax.tree.map(lambda p, g: p - 0.5 * g, params, jax.grad(loss)(params))
    np.testing.assert_allclose(a["train_loss"], loss(params), rtol=1e-5)  # the "train" split, evaluated
    assert "train_accuracy" in a
    space = jt.Space({"batch_size": jt.Choice([8, 16])})
    with pytest.raises(jt.InputError, match=r"batch_size is tuned .*Trainer\(full_batch=True\)"):
        Trainer(**common).validate_space(space)


def test_recall_labels_are_the_queried_keys_values():
    tokens, labels = attention.recall_data(50, vocab=20, pairs=5, queries=3, seed=0)
    assert tokens.shape == labels.shape == (50, 13)
    for row, lab in zip(tokens, labels):
        keys, values = row[:10:2], row[1:10:2]
        assert len(set(keys)) == 5 and keys.max() < 10 <= values.min()  # distinct keys, values apart
        assert np.all(lab[:10] == -1)  # only the answers are scored
        for q, answer in zip(row[10:], lab[10:]):
            assert answer == values[list(keys).index(q)]


def test_associative_recall_sweep_scores_only_the_answers():
    task = jt.tasks.get("associative_recall", vocab=16, pairs=4, queries=2, examples=64, layers=1, d_model=16,
                        d_mlp=32, steps=20, batch_size=16, eval_every=10)  # fmt: skip
    result = jt.tune(task.objective, task.space, trials=2, metric=task.metric, mode=task.mode, progress=False)
    assert {"val_accuracy", "val_loss", "test_accuracy", "test_loss", "train_loss"} <= set(result.best["metrics"])
    logits = jnp.zeros((1, 3, 4)).at[0, 2, 1].set(5.0)  # position 2 answers 1; positions 0-1 not scored
    assert attention._scored_accuracy(logits, jnp.asarray([[-1, -1, 1]]))[0] == 1.0
    assert attention._scored_accuracy(logits, jnp.asarray([[-1, -1, 2]]))[0] == 0.0
    with pytest.raises(jt.InputError, match="queries <= pairs <= vocab / 2"):
        jt.tasks.get("associative_recall", vocab=8, pairs=5)


def test_attention_under_vmap_is_batched_matmuls():
    task = jt.tasks.get("modular_arithmetic", **TINY)
    hp = {"lr": jnp.float32(1e-3), "wd": jnp.float32(1.0), "b2": jnp.float32(0.98), "warmup": jnp.float32(0.0)}
    one = jax.jit(task.objective).lower(hp, jax.random.key(0)).as_text()
    many = jax.jit(jax.vmap(task.objective)).lower(
        jax.tree.map(lambda v: jnp.full((5,), v), hp), jax.random.split(jax.random.key(0), 5)
    ).as_text()
    dots = [line for line in many.splitlines() if "stablehlo.dot_general" in line]
    # The same matmuls as one trial (no loop or copy per trial), each batched over the trials.
    assert len(dots) == one.count("stablehlo.dot_general") > 0
    assert all("batching_dims" in line for line in dots)
    # A masked MLP width counts the parameters it trains.
    model = attention.Transformer(8, 3, 7, d_model=16, heads=2, d_mlp=Masked(jnp.asarray(20), 32), rngs=nnx.Rngs(0))
    assert int(jt.layers.live_params(model)) < int(
        jt.layers.live_params(attention.Transformer(8, 3, 7, d_model=16, heads=2, d_mlp=32, rngs=nnx.Rngs(0)))
    )
