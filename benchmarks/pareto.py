"""Several objectives: hypervolume at equal trials, jaxtune's strategies vs Optuna's samplers, on ZDT1/ZDT2.

ZDT1 and ZDT2 (Zitzler, Deb & Thiele 2000) in ``--dim`` variables, both objectives minimised;
hypervolume of the trials' front against the reference point (1.1, 11) (every point of the
problems lies under it), the median over ``--seeds`` sweeps of ``--trials`` x ``--rounds``
trials. jaxtune runs ``jt.tune(metric=["f1", "f2"])`` with a random Chebyshev scalarisation per
round (batches of ``--trials``); Optuna runs its default multi-objective sampler (TPE) and
NSGA-II one trial at a time (ask/tell: the most adaptive it can be) for the same number of trials.

    python benchmarks/pareto.py                  # writes results/pareto_<backend>.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402
from jaxtune.pareto import hypervolume  # noqa: E402

REFERENCE = (1.1, 11.0)


def zdt(kind: str):
    """ZDT1 (convex front) or ZDT2 (concave front) as an objective of ``hp["x0"], ...``."""

    def objective(hp, key):
        xs = [hp[f"x{i}"] for i in range(len(hp))]
        f1 = xs[0]
        g = 1.0 + 9.0 * sum(xs[1:]) / (len(xs) - 1)
        h = 1.0 - jnp.sqrt(f1 / g) if kind == "zdt1" else 1.0 - (f1 / g) ** 2
        return {"f1": f1, "f2": g * h}

    return objective


def ours(kind, dim, strategy, trials, rounds, seed) -> float:
    space = jt.Space({f"x{i}": jt.Float(0.0, 1.0) for i in range(dim)})
    r = jt.tune(zdt(kind), space, strategy, trials=trials, rounds=rounds, metric=["f1", "f2"], mode=["min", "min"],
                seed=seed, progress=False)  # fmt: skip
    return hypervolume(np.asarray([[t["metrics"]["f1"], t["metrics"]["f2"]] for t in r.trials]), REFERENCE)


def optuna_hv(kind, dim, sampler, n, seed) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    make = {"tpe (default)": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler}[sampler]
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=make(seed=seed))
    f = zdt(kind)

    def objective(trial):
        hp = {f"x{i}": trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(dim)}
        out = f(hp, None)
        return float(out["f1"]), float(out["f2"])

    study.optimize(objective, n_trials=n)
    return hypervolume(np.asarray([t.values for t in study.trials]), REFERENCE)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=6)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--strategies", nargs="+", default=["random", "coarse_to_fine", "gp"])
    p.add_argument("--out")
    a = p.parse_args()
    n = a.trials * a.rounds
    rows = []
    for kind in ("zdt1", "zdt2"):
        methods = [(f"jaxtune {s}", lambda seed, s=s, k=kind: ours(k, a.dim, s, a.trials, a.rounds, seed))
                   for s in a.strategies]  # fmt: skip
        methods += [(f"optuna {s}", lambda seed, s=s, k=kind: optuna_hv(k, a.dim, s, n, seed))
                    for s in ("tpe (default)", "nsga2")]  # fmt: skip
        for name, fn in methods:
            t0 = time.perf_counter()
            hvs = [fn(seed) for seed in range(a.seeds)]
            rows.append({"problem": kind, "method": name, "trials": n, "median_hv": float(np.median(hvs)),
                         "hv": hvs, "seconds": time.perf_counter() - t0})  # fmt: skip
            r = rows[-1]
            print(f"{kind:>5}  {name:>24}  median hypervolume {r['median_hv']:.4f}  ({r['seconds']:.0f} s)")
    common.write(f"pareto_{jax.default_backend()}", {"dim": a.dim, "reference": REFERENCE, "rows": rows}, a.out)


if __name__ == "__main__":
    main()
