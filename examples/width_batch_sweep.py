"""Hidden units x mini-batch size x learning rate, as a handful of compiled programs.

Width is a ``masked=True`` integer: it reaches the model as ``jt.Masked(value, size)`` and the
MLP allocates ``size`` (a power of two) units and masks the rest, so widths that share a power
of two share a program. Batch size is a traced value: every step draws the largest batch and
weighs the first ``batch_size`` examples. Each trial still reports its true width and batch.

    python examples/width_batch_sweep.py
    python examples/width_batch_sweep.py --steps 20 --trials 4   # a smoke run
"""

from __future__ import annotations

import argparse
from collections import Counter

import jaxtune as jt
from jaxtune.analysis import report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--trials", type=int, default=64)
    p.add_argument("--rounds", type=int, default=1)
    a = p.parse_args(argv)

    space = jt.Space(
        {
            "lr": jt.Float(1e-4, 1e-1, scale="log"),
            "hidden": jt.Int(16, 256, scale="log", masked=True),
            "batch_size": jt.Choice([32, 64, 128, 256]),
            "wd": jt.Float(1e-5, 1.0, scale="log"),
        }
    )
    task = jt.tasks.get("mnist1d_mlp", steps=a.steps, batch_size=256, space=space)
    reports = []

    def progress(r):
        reports.append(r)
        print(f"round {r['round'] + 1}: {r['ran']} trials in {r['seconds']:.1f} s, {r['compiles']} programs so far")

    result = jt.tune(
        task.objective,
        task.space,
        "random",
        trials=a.trials,
        rounds=a.rounds,
        metric=task.metric,
        mode=task.mode,
        seed=0,
        progress=progress,
    )
    widths = Counter(t["params"]["hidden"] for t in result.trials)
    print(f"{len(widths)} distinct widths and {reports[-1]['compiles']} compiled programs")
    print(report.table(result, top=8, metrics=task.report))
    return result, reports


if __name__ == "__main__":
    main()
