"""Coarse-to-fine's zoom rule, measured: how far the box may shrink or grow after a round.

Variants: ``max_grow`` 0.5 (every round zooms 2-4x: the rule before), 0.75 (the default: at most
1.33x after a round that improved the best), 1.0 and 2.0 (an improving box may stay or grow), and
0.75 with an eighth of each round sampled in the whole cube (``explore``); random search for
scale. On the shipped MNIST-1D MLP table (48 and 192 evaluations, narrow and wide rounds; selected
validation accuracy) and the synthetic problems (1,000 evaluations in rounds of 50, and Branin
with 2,048 in rounds of 256; final regret). 1,000 seeds each, medians.

    python benchmarks/c2f_variants.py     # writes results/c2f_variants_<backend>.json
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402

VARIANTS = {
    "max_grow=0.5": {"max_grow": 0.5},
    "max_grow=0.75 (default)": {},
    "max_grow=1": {"max_grow": 1.0},
    "max_grow=2": {"max_grow": 2.0},
    "0.75, explore=0.125": {"explore": 0.125},
}
SYNTHETIC = [("branin", 1000, 50), ("hartmann3", 1000, 50), ("hartmann6", 1000, 50), ("rosenbrock4", 1000, 50),
             ("branin_in_10d", 1000, 50), ("branin", 2048, 256)]  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=1000)
    p.add_argument("--out")
    a = p.parse_args()
    strategies = ["random"] + [("coarse_to_fine", o) for o in VARIANTS.values()]
    labels = ["random", *VARIANTS]
    rows = {}
    table = jt.bench.get_problem("mnist1d_mlp_table")
    for evals, trials in [(48, 8), (48, 16), (192, 16), (192, 48)]:
        res = jt.bench.run([table], strategies, seeds=a.seeds, evals=evals, trials=trials)
        for label, s in zip(labels, res.strategies):
            rows[f"mnist1d_mlp_table {evals}/{trials} {label}"] = float(
                np.median(-(res.final(table.name, s) + table.optimum))
            )
    for name, evals, trials in SYNTHETIC:
        res = jt.bench.run([name], strategies, seeds=a.seeds, evals=evals, trials=trials)
        for label, s in zip(labels, res.strategies):
            rows[f"{name} {evals}/{trials} {label}"] = float(np.median(res.final(name, s)))
    path = common.write(
        f"c2f_variants_{jax.default_backend()}",
        {
            "seeds": a.seeds,
            "median": rows,
            "what": "table rows: selected validation accuracy (higher is better); others: regret",
        },
        a.out,
    )
    print(f"{'problem, evaluations/a round':<32}" + "".join(f"{lab:>24}" for lab in labels))
    for setting in dict.fromkeys(k[: k.index(" ", k.index("/"))] for k in rows):
        print(f"{setting:<32}" + "".join(f"{rows[f'{setting} {lab}']:>24.4g}" for lab in labels))
    print(path)


if __name__ == "__main__":
    main()
