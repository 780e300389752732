"""Coarse-to-fine against random search on every built-in training task, at equal trials.

Each classification task (digits MLP and CNN; MNIST-1D linear, MLP, CNN and GRU) with its default
space (AdamW's lr, b1, wd), 48 trials in 3 rounds of 16, ``--steps`` steps each, five seeds per
strategy, the same seeds for both. Reported: the validation accuracy of the trial each sweep
selects (median over seeds, and every seed), and its test accuracy. The synthetic tasks are the
``jaxtune bench`` problems (``bench_strategies.py``); ``pbt_toy`` is a population task.

    python benchmarks/tasks_strategies.py     # writes results/tasks_strategies_<backend>.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402

TASKS = ["digits_mlp", "mnist1d_linear", "mnist1d_mlp", "mnist1d_gru", "digits_cnn", "mnist1d_cnn"]  # cheap first
STRATEGIES = ["random", "coarse_to_fine"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out")
    a = p.parse_args()
    rows = {}
    out_name = f"tasks_strategies_{jax.default_backend()}"
    settings = {
        "trials": a.trials,
        "rounds": a.rounds,
        "steps": a.steps,
        "seeds": a.seeds,
        "predicted": "coarse-to-fine's median selected validation accuracy at least random's on every task",
    }
    for name in a.tasks.split(","):
        task = jt.tasks.get(name, steps=a.steps)
        for strategy in STRATEGIES:
            t = time.perf_counter()
            val, test = [], []
            for seed in range(a.seeds):
                res = jt.tune(task.objective, task.space, strategy, trials=a.trials, rounds=a.rounds, seed=seed,
                              metric=task.metric, mode=task.mode, progress=False)  # fmt: skip
                val.append(res.best["metrics"][task.metric])
                test.append(res.best["metrics"].get("test_accuracy", float("nan")))
            rows[f"{name}/{strategy}"] = {
                "task": name, "strategy": strategy, "val_accuracy": val, "test_accuracy": test,
                "median_val": float(np.median(val)), "median_test": float(np.median(test)),
                "seconds": time.perf_counter() - t,
            }  # fmt: skip
            # Written after every (task, strategy): a long run stopped early keeps what finished.
            path = common.write(out_name, {**settings, "rows": rows}, a.out)
            print(f"{name:<16} {strategy:<16} val {np.median(val):.4f} {np.round(val, 4).tolist()}  "
                  f"test {np.median(test):.4f}  ({time.perf_counter() - t:.0f} s)", flush=True)  # fmt: skip
    print(path)


if __name__ == "__main__":
    main()
