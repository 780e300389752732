"""MNIST-1D paper check: default hyperparameters reproduce the paper's ordering, and a jaxtune
sweep improves on the defaults.

Part 1 (defaults): Adam lr 1e-2, batch 100, 6000 steps, trained on all 4000 training sequences,
test accuracy over 3 seeds (the seeds are vmapped as 3 trials of one program). Paper (Greydanus &
Kobak 2024, Table 1): linear 32%, MLP 68%, CNN 94%, GRU 91% (+-2).

Part 2 (sweeps): for the MLP and the CNN, the defaults vs a coarse-to-fine sweep of lr, b1 and
weight decay, both trained on 3200 sequences and selected on the 800 held out; test accuracy of
the selected trial is reported, never used to select.

    python benchmarks/mnist1d_paper.py                 # writes results/mnist1d_paper.json
    python benchmarks/mnist1d_paper.py --steps 600 --models mlp --sweep-trials 8 --sweep-rounds 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402
from jaxtune.execute import Executor  # noqa: E402
from jaxtune.tasks import classify, data  # noqa: E402
from jaxtune.train import Trainer  # noqa: E402

PAPER = {"linear": 0.32, "mlp": 0.68, "cnn": 0.94, "gru": 0.91}
DEFAULTS = {"lr": 1e-2, "b1": 0.9, "wd": 0.0}


def defaults(model: str, steps: int, seeds: int) -> dict:
    s = data.mnist1d()
    x = np.concatenate([s.train[0], s.val[0]])
    y = np.concatenate([s.train[1], s.val[1]])
    trainer = Trainer(
        model=classify._make_model(model, 100, 40, 40),
        optimizer=classify.adamw,
        data=(x, y),
        eval_data={"test": s.test},
        steps=steps,
        batch_size=100,
    )
    space = jt.Space({k: jt.Float(v * 0.5 + 1e-9, v * 2 + 2e-9) for k, v in DEFAULTS.items()})
    hp = {k: jnp.full((seeds,), v, jnp.float32) for k, v in DEFAULTS.items()}
    t = time.perf_counter()
    ((_, metrics, _),) = list(Executor(trainer, space).run(hp, jax.random.split(jax.random.key(0), seeds)))
    acc = metrics["test_accuracy"]
    return {
        "model": model,
        "test_accuracy": acc.tolist(),
        "mean": float(acc.mean()),
        "std": float(acc.std()),
        "paper": PAPER[model],
        "seconds": time.perf_counter() - t,
    }


def sweep(model: str, steps: int, trials: int, rounds: int) -> dict:
    task = jt.tasks.get(f"mnist1d_{model}", steps=steps, batch_size=100)
    t = time.perf_counter()
    default = next(
        iter(
            Executor(task.objective, task.space).run(
                {k: jnp.full((1,), v, jnp.float32) for k, v in DEFAULTS.items()}, jax.random.split(jax.random.key(0), 1)
            )
        )
    )[1]
    result = jt.tune(
        task.objective,
        task.space,
        "coarse_to_fine",
        trials=trials,
        rounds=rounds,
        metric=task.metric,
        mode=task.mode,
        seed=0,
    )
    best = result.best
    return {
        "model": model,
        "trials": trials,
        "rounds": rounds,
        "steps": steps,
        "default": {k: float(v[0]) for k, v in default.items()},
        "tuned": {"params": best["params"], "metrics": best["metrics"]},
        "improved_val": best["metrics"]["val_accuracy"] > float(default["val_accuracy"][0]),
        "improved_test": best["metrics"]["test_accuracy"] > float(default["test_accuracy"][0]),
        "seconds": time.perf_counter() - t,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--models", default="linear,mlp,cnn,gru")
    p.add_argument("--sweep-models", default="mlp,cnn")
    p.add_argument("--sweep-steps", type=int, default=None, help="steps per sweep trial (default: --steps)")
    p.add_argument("--sweep-trials", type=int, default=16)
    p.add_argument("--sweep-rounds", type=int, default=3)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    rows = []
    for m in a.models.split(","):
        rows.append(defaults(m, a.steps, a.seeds))
        r = rows[-1]
        print(
            f"{m:>7}: test {r['mean']:.3f} +- {r['std']:.3f} (paper {r['paper']:.2f}) in {r['seconds']:.0f} s",
            flush=True,
        )
    sweeps = []
    for m in filter(None, a.sweep_models.split(",")):
        sweeps.append(sweep(m, a.sweep_steps or a.steps, a.sweep_trials, a.sweep_rounds))
        s = sweeps[-1]
        print(
            f"{m:>7} sweep: default val/test {s['default']['val_accuracy']:.3f}/{s['default']['test_accuracy']:.3f}"
            f" -> tuned {s['tuned']['metrics']['val_accuracy']:.3f}/{s['tuned']['metrics']['test_accuracy']:.3f}"
            f" ({s['tuned']['params']}) in {s['seconds']:.0f} s",
            flush=True,
        )
    order = [r["model"] for r in sorted(rows, key=lambda r: r["mean"])]
    print("ordering (worst to best):", " < ".join(order))
    common.write("mnist1d_paper", {"steps": a.steps, "defaults": rows, "ordering": order, "sweeps": sweeps}, a.out)


if __name__ == "__main__":
    main()
