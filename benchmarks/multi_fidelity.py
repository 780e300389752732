"""Successive halving and Hyperband against full-budget random search at equal training budget.

On the shipped MNIST-1D MLP table as a multi-fidelity problem (budgets 125, 250 and 500 steps,
a point scored at its budget, only 500-step evaluations count as found), each strategy spends a
budget in training steps; random search gets as many full 500-step trials as that budget buys.
1,000 seeds each, on the device.

    python benchmarks/multi_fidelity.py      # writes results/multi_fidelity_<backend>.json
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from jaxtune.bench import get_problem, sweep_curves  # noqa: E402
from jaxtune.strategies.base import make_strategy  # noqa: E402

CASES = {  # name: (strategy, options, configurations in the widest rung)
    "successive_halving": ("successive_halving", {"eta": 2}, 64),
    "hyperband": ("hyperband", {"eta": 2}, 64),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=1000)
    p.add_argument("--out")
    a = p.parse_args()
    mf, full = get_problem("mnist1d_mlp_table_mf"), get_problem("mnist1d_mlp_table")
    top = mf.space.params[mf.fidelity].high
    rows = {}
    for name, (strategy, options, trials) in CASES.items():
        rounds = make_strategy(strategy, mf.space, trials, **options).num_rounds
        curves, spent = sweep_curves(mf, strategy, a.seeds, trials * rounds, trials, options, cost=True)
        budget = float(spent[0, -1])
        n = int(budget // top)  # full-budget random trials the same steps buy
        random = sweep_curves(full, "random", a.seeds, n, n)
        acc, racc = -curves[:, -1], -random[:, -1]
        rows[name] = {"rounds": rounds, "steps": budget, "random_trials": n,
                      "median": float(np.median(acc)), "q25": float(np.quantile(acc, 0.25)),
                      "q75": float(np.quantile(acc, 0.75)), "random_median": float(np.median(racc)),
                      "random_q25": float(np.quantile(racc, 0.25)), "random_q75": float(np.quantile(racc, 0.75)),
                      "wins": float(np.mean(acc > racc)), "ties": float(np.mean(acc == racc))}  # fmt: skip
    predicted = "halving and Hyperband select better than full-budget random search at equal steps"
    payload = {"problem": mf.name, "seeds": a.seeds, "rows": rows, "predicted": predicted}
    path = common.write(f"multi_fidelity_{jax.default_backend()}", payload, a.out)
    for name, r in rows.items():
        print(f"{name:<20} {r['steps']:>8.0f} steps: {r['median']:.4f} [{r['q25']:.4f}, {r['q75']:.4f}]  vs random "
              f"({r['random_trials']} x {top}): {r['random_median']:.4f}; better in {r['wins']:.0%} of seeds, "
              f"equal in {r['ties']:.0%}")  # fmt: skip
    print(path)


if __name__ == "__main__":
    main()
