"""Grokking's phase diagram on this CPU: modular addition over a weight decay x learning rate grid, one sweep.

A one-layer transformer (the ``modular_arithmetic`` task at p = 31, half the pairs to train on,
d_model 64, 4 heads, d_mlp 256, full-batch AdamW with β = (0.9, 0.98), 3000 steps) trained at
every point of a 6 x 4 grid -- weight decay in {0, 0.1, 0.3, 1, 3, 10}, learning rate in
{3e-4, 1e-3, 3e-3, 1e-2} -- as one vmapped program. Recorded per trial: final train and
validation accuracy, the first step each reached 95% (``steps_to_memorise``,
``steps_to_generalise``; 3001 = never within the budget), and the sweep's compile and run time.

Predicted before the run (the direction of Power et al. 2022, Nanda et al. 2023, reduced): every
trial memorises its training pairs within a few hundred steps; with weight decay 0 none
generalises within the budget at any learning rate; a band of weight decay (about 0.3-3 at
learning rates 1e-3-3e-3) generalises, later than it memorised, and sooner the larger the weight
decay; the smallest learning rate is too slow to generalise in 3000 steps.

    python benchmarks/grokking.py     # writes results/grokking_<backend>.json and two figures
    python benchmarks/grokking.py --p 113 --d-model 128 --d-mlp 512 --train-fraction 0.3 --steps 10000
                                      # the papers' size (benchmarks/gpu_check.sh runs it on a device)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402

WEIGHT_DECAYS = [0.0, 0.1, 0.3, 1.0, 3.0, 10.0]
LEARNING_RATES = [3e-4, 1e-3, 3e-3, 1e-2]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=31)
    ap.add_argument("--train-fraction", type=float, default=0.5)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--d-mlp", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    ap.add_argument("--tag", default="", help="suffix of the result files' names")
    args = ap.parse_args(argv)
    task = jt.tasks.get("modular_arithmetic", p=args.p, train_fraction=args.train_fraction, d_model=args.d_model,
                        heads=4, d_mlp=args.d_mlp, steps=args.steps, eval_every=args.eval_every)  # fmt: skip
    space = jt.Space({"wd": jt.Choice(WEIGHT_DECAYS), "lr": jt.Choice(LEARNING_RATES)})
    start = time.perf_counter()
    result = jt.tune(task.objective, space, "grid", trials=len(WEIGHT_DECAYS) * len(LEARNING_RATES),
                     metric="val_accuracy", mode="max", progress=False)  # fmt: skip
    wall = time.perf_counter() - start
    keys = ("train_accuracy", "val_accuracy", "steps_to_memorise", "steps_to_generalise")
    trials = [{**t["params"], **{k: t["metrics"][k] for k in keys}} for t in result.trials]
    never = args.steps + 1
    summary = {
        "generalised_at_wd0": sum(t["steps_to_generalise"] < never for t in trials if t["wd"] == 0.0),
        "generalised_with_wd": sum(t["steps_to_generalise"] < never for t in trials if t["wd"] > 0.0),
        "memorised": sum(t["steps_to_memorise"] < never for t in trials),
        "generalised_after_memorising": sum(t["steps_to_memorise"] < t["steps_to_generalise"] < never for t in trials),
    }
    tag = f"{jax.default_backend()}{args.tag}"
    payload = {
        "task": {k: getattr(args, k) for k in ("p", "train_fraction", "d_model", "d_mlp", "steps", "eval_every")},
        "grid": {"wd": WEIGHT_DECAYS, "lr": LEARNING_RATES},
        "never": never,
        "wall_s": round(wall, 1),
        "summary": summary,
        "trials": trials,
    }
    folder = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    common.write(f"grokking_{tag}", payload, os.path.join(folder, f"grokking_{tag}.json"))
    for metric, name, mode in (("steps_to_generalise", "steps", "min"), ("val_accuracy", "val", "max")):
        fig = jt.figures.plot_landscape(result, "wd", "lr", metric, mode=mode, unreached=never)
        fig.savefig(os.path.join(folder, f"grokking_{tag}_{name}.png"), dpi=110)
    print(f"{len(trials)} transformers in {wall:.0f} s; {summary}")
    for t in sorted(trials, key=lambda t: (t["lr"], t["wd"])):
        print(f"  lr {t['lr']:<7g} wd {t['wd']:<5g} train {t['train_accuracy']:.3f} val {t['val_accuracy']:.3f} "
              f"memorised {t['steps_to_memorise']:>5.0f} generalised {t['steps_to_generalise']:>5.0f}")  # fmt: skip
    return payload


if __name__ == "__main__":
    main()
