"""Several objectives: hypervolume at equal trials, jaxtune's strategies vs Optuna's samplers.

Three parts, each the median over ``--seeds`` sweeps of the same number of trials:

* ``bench``: the bench's problems of two objectives (``jt.bench``: ZDT1, ZDT2 in 6 variables and
  the MNIST-1D width table: validation error vs parameter count), every strategy proposing
  ``--trials`` a round, Optuna's samplers (TPE, its default; NSGA-II) through the ``optuna``
  host strategy, told every objective. Hypervolume regret: the front's hypervolume minus the
  trials'.
* ``sequential``: Optuna as its users run it, one trial at a time (ask/tell: the most adaptive
  it can be), on ZDT1 and ZDT2, for the same number of trials.
* ``mnist1d``: real training, the MNIST-1D MLP (learning rate, b1, weight decay and a masked
  width 16–512), ``metric=["val_accuracy", "n_params"]``: jaxtune's ``gp`` and random search vs
  Optuna's TPE through the same compiled batches (``"optuna"``), hypervolume of (validation
  error, thousands of parameters) to (1, 1.1 x the widest's count).

    python benchmarks/pareto.py                  # writes results/pareto_<backend>.json
    python benchmarks/pareto.py --only mnist1d   # one part (the JSON keeps the others')
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402

jt.use_cpu_cores()  # before jaxtune.bench, whose tables start JAX as they load
from jaxtune.bench.tables import TABLE_SPACE, mlp_params  # noqa: E402
from jaxtune.pareto import hypervolume  # noqa: E402

BENCH_STRATEGIES = ["random", "halton", "coarse_to_fine", "gp", "optuna", "optuna:sampler=nsga2"]
WIDTH_REFERENCE = (1.0, 1.1 * mlp_params(512) / 1e3)


def bench_part(a) -> list[dict]:
    res = jt.bench.run(["zdt1", "zdt2", "mnist1d_width_table"], BENCH_STRATEGIES, seeds=a.seeds,
                       evals=a.trials * a.rounds, trials=a.trials, progress=True)  # fmt: skip
    print(res.table())
    rows = []
    for p in res.problems:
        optimum = jt.bench.get_problem(p).optimum
        for s in res.strategies:
            regret = res.final(p, s)
            rows.append({"problem": p, "method": s, "trials": res.evals, "median_regret": float(np.median(regret)),
                         "median_hv": float(np.median(optimum - regret)), "regret": regret.tolist(),
                         "seconds": res.seconds[(p, s)]})  # fmt: skip
    return rows


def optuna_sequential(kind: str, sampler: str, n: int, seed: int) -> float:
    """The hypervolume Optuna reaches on ``kind`` (a bench problem) in ``n`` trials one at a time."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    problem = jt.bench.get_problem(kind)
    make = {"tpe (default)": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler}[sampler]
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=make(seed=seed))
    fn = jax.jit(problem.fn)
    names = list(problem.space.params)

    def objective(trial):
        hp = {n: np.float32(trial.suggest_float(n, 0.0, 1.0)) for n in names}
        return tuple(float(v) for v in fn(hp))

    study.optimize(objective, n_trials=n)
    return hypervolume(np.asarray([t.values for t in study.trials]), problem.reference)


def sequential_part(a) -> list[dict]:
    rows, n = [], a.trials * a.rounds
    for kind in ("zdt1", "zdt2"):
        optimum = jt.bench.get_problem(kind).optimum
        for sampler in ("tpe (default)", "nsga2"):
            t0 = time.perf_counter()
            hv = [optuna_sequential(kind, sampler, n, seed) for seed in range(a.seeds)]
            rows.append({"problem": kind, "method": f"optuna {sampler}, one at a time", "trials": n,
                         "median_regret": float(np.median(optimum - np.asarray(hv))), "median_hv": float(np.median(hv)),
                         "hv": hv, "seconds": time.perf_counter() - t0})  # fmt: skip
            print(f"{kind}  {rows[-1]['method']:>36}  median regret {rows[-1]['median_regret']:.4f}")
    return rows


def mnist1d_part(a) -> list[dict]:
    task = jt.tasks.get("mnist1d_mlp", steps=a.mnist1d_steps)
    rows = []
    for method, strategy in (("jaxtune gp", "gp"), ("jaxtune random", "random"), ("optuna tpe (default)", "optuna")):
        hv, t0 = [], time.perf_counter()
        for seed in range(a.seeds):
            r = jt.tune(task.objective, TABLE_SPACE, strategy, trials=a.trials, rounds=a.mnist1d_rounds, seed=seed,
                        metric=["val_accuracy", "n_params"], mode=["max", "min"], progress=False)  # fmt: skip
            points = [[1.0 - t["metrics"]["val_accuracy"], t["metrics"]["n_params"] / 1e3] for t in r.trials]
            hv.append(hypervolume(np.asarray(points, np.float64), WIDTH_REFERENCE))
            print(f"mnist1d  {method:>22}  seed {seed}  hypervolume {hv[-1]:.3f}", flush=True)
        rows.append({"problem": "mnist1d_mlp width (trained)", "method": method, "trials": a.trials * a.mnist1d_rounds,
                     "median_hv": float(np.median(hv)), "hv": hv, "steps": a.mnist1d_steps,
                     "seconds": time.perf_counter() - t0})  # fmt: skip
        print(f"mnist1d  {method:>22}  median hypervolume {rows[-1]['median_hv']:.3f}")
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--mnist1d-steps", type=int, default=150, help="training steps of a trial in the mnist1d part")
    p.add_argument("--mnist1d-rounds", type=int, default=4, help="rounds of --trials in the mnist1d part")
    p.add_argument("--only", choices=["bench", "sequential", "mnist1d"])
    p.add_argument("--out")
    a = p.parse_args()
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser("~/.cache/jaxtune/xla"))
    path = a.out or os.path.join(common.RESULTS, f"pareto_{jax.default_backend()}.json")
    out = {"trials": a.trials, "rounds": a.rounds, "seeds": a.seeds, "reference_zdt": (1.1, 11.0),
           "reference_mnist1d": WIDTH_REFERENCE, "bench": [], "sequential": [], "mnist1d": []}  # fmt: skip
    if os.path.exists(path):  # parts not run this time keep their stored rows
        with open(path) as f:
            out.update({k: v for k, v in json.load(f).items() if k in ("bench", "sequential", "mnist1d")})
    for part, fn in (("bench", bench_part), ("sequential", sequential_part), ("mnist1d", mnist1d_part)):
        if a.only in (None, part):
            out[part] = fn(a)
            common.write(f"pareto_{jax.default_backend()}", out, a.out)  # each part kept as soon as it is done


if __name__ == "__main__":
    main()
