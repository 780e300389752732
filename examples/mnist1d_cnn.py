"""Coarse-to-fine search for the MNIST-1D paper's CNN (three Conv1d of 25 channels).

The built-in CNN runs its convolutions as patches @ kernel, which vmaps over trials as one
batched matmul instead of a grouped convolution.

    python examples/mnist1d_cnn.py                                 # 3 rounds of 16 trials, 2000 steps
    python examples/mnist1d_cnn.py --steps 20 --trials 2 --rounds 1  # a smoke run
"""

from __future__ import annotations

import argparse

import jaxtune as jt
from jaxtune.analysis import report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--storage", default=None)
    a = p.parse_args(argv)

    task = jt.tasks.get("mnist1d_cnn", steps=a.steps, batch_size=100)
    result = jt.tune(
        task.objective,
        task.space,
        strategy="coarse_to_fine",
        trials=a.trials,
        rounds=a.rounds,
        metric=task.metric,
        mode=task.mode,
        seed=0,
        storage=a.storage,
        strategy_options={"top_fraction": 0.25},
    )
    print(report.summary(result, top=5, metrics=task.report))
    return result


if __name__ == "__main__":
    main()
