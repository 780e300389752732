"""Quickstart: tune your own Flax NNX model with jaxtune.

Bring a model factory, an Optax optimizer factory and arrays; jaxtune builds the single-trial
training function, trains every trial of a round at once, and zooms in coarse-to-fine.

    python examples/quickstart.py                # scikit-learn digits, 4 rounds of 32 trials
    python examples/quickstart.py --steps 50 --trials 4 --rounds 1   # a smoke run
"""

from __future__ import annotations

import argparse

import jax
import optax
from flax import nnx

import jaxtune as jt
from jaxtune.tasks import data


class Net(nnx.Module):
    """A small MLP with dropout: 64 -> hidden -> 10."""

    def __init__(self, hidden: int, dropout: float, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, hidden, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(hidden, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(jax.nn.relu(self.hidden(x))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--trials", type=int, default=32)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--storage", default=None, help="SQLite file to store (and resume) the sweep")
    a = p.parse_args(argv)
    jt.use_cpu_cores()  # on a CPU, one JAX device per core (no effect once JAX has run, or on GPUs)

    splits = data.digits()  # 1797 real 8x8 digits shipped with scikit-learn
    trainer = jt.train.Trainer(
        model=lambda hp, rngs: Net(hidden=hp["hidden"], dropout=0.1, rngs=rngs),
        # Traced hyperparameters: new values never recompile.
        optimizer=lambda hp: optax.adamw(hp["lr"], b1=hp["b1"], weight_decay=hp["wd"]),
        data=splits.train,
        eval_data={"val": splits.val, "test": splits.test},
        steps=a.steps,
        batch_size=64,
    )
    space = jt.Space(
        {
            "lr": jt.Float(1e-4, 1e-1, scale="log"),
            "b1": jt.Float(0.8, 0.999, scale="reverse_log"),
            "wd": jt.Float(1e-5, 1e-1, scale="log"),
            "hidden": jt.Choice([32, 64, 128], static=True),  # changes shapes: one program per value
        }
    )
    result = jt.tune(
        trainer,
        space,
        strategy="coarse_to_fine",
        trials=a.trials,
        rounds=a.rounds,
        metric="val_accuracy",
        mode="max",
        seed=0,
        storage=a.storage,
    )
    best = result.best
    print(f"best: {best['params']}")
    print(f"val accuracy {best['metrics']['val_accuracy']:.3f}, test accuracy {best['metrics']['test_accuracy']:.3f}")
    return result


if __name__ == "__main__":
    main()
