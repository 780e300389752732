"""Wrap an existing hand-written JAX training function with jt.tune.

Research code often has a plain JAX training function already. If it is pure (takes its
hyperparameters and a key, returns metrics, trains with lax.scan or fori_loop), jaxtune can
vectorise it as it is: nothing here imports Flax or Optax.

    python examples/research_code.py
    python examples/research_code.py --steps 20 --trials 4 --rounds 1   # a smoke run
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import jaxtune as jt
from jaxtune.tasks import data


# ---- the research code, unchanged: SGD with momentum on a one-hidden-layer MLP ---------------
def init_params(key, sizes):
    keys = jax.random.split(key, len(sizes) - 1)
    return [(jax.random.normal(k, (a, b)) / jnp.sqrt(a), jnp.zeros(b)) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def forward(params, x):
    for w, b in params[:-1]:
        x = jnp.tanh(x @ w + b[None])
    w, b = params[-1]
    return x @ w + b[None]


def cross_entropy(params, x, y):
    logits = forward(params, x)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def train(lr, momentum, key, x, y, x_val, y_val, steps=500, batch=64):
    """Returns the validation loss and accuracy after ``steps`` of SGD with momentum."""
    k_init, k_data = jax.random.split(key)
    params = init_params(k_init, [x.shape[1], 64, 10])
    velocity = jax.tree.map(jnp.zeros_like, params)

    def step(carry, t):
        params, velocity = carry
        idx = jax.random.randint(jax.random.fold_in(k_data, t), (batch,), 0, x.shape[0])
        grads = jax.grad(cross_entropy)(params, x[idx], y[idx])
        velocity = jax.tree.map(lambda v, g: momentum * v + g, velocity, grads)
        params = jax.tree.map(lambda p, v: p - lr * v, params, velocity)
        return (params, velocity), None

    (params, _), _ = jax.lax.scan(step, (params, velocity), jnp.arange(steps))
    acc = jnp.mean(jnp.argmax(forward(params, x_val), -1) == y_val)
    return cross_entropy(params, x_val, y_val), acc


# ----------------------------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--trials", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    splits = data.digits()
    (x, y), (xv, yv) = [tuple(map(jnp.asarray, pair)) for pair in (splits.train, splits.val)]

    def objective(hp, key):  # the only new code: map hp to the function's arguments
        loss, acc = train(hp["lr"], hp["momentum"], key, x, y, xv, yv, steps=a.steps)
        return {"val_loss": loss, "val_accuracy": acc}

    space = jt.Space(
        {
            "lr": jt.Float(1e-3, 1.0, scale="log"),
            "momentum": jt.Float(0.5, 0.999, scale="reverse_log"),  # 1 - momentum on a log scale
        }
    )
    result = jt.tune(objective, space, "coarse_to_fine", trials=a.trials, rounds=a.rounds, metric="val_loss", seed=0)
    print(f"best: {result.best['params']}, val accuracy {result.best['metrics']['val_accuracy']:.3f}")
    return result


if __name__ == "__main__":
    main()
