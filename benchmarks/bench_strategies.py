"""Search strategies on problems with known optima: 1,000 seeds each, every sweep on the device.

Five strategies (random, grid, Halton, coarse-to-fine and CMA-ES through evosax) on Branin,
Hartmann-3, Hartmann-6, Rosenbrock-4 and Branin hidden in 10 dimensions
(8 that do not matter), 1,000 evaluations each (20 rounds of 50), 1,000 seeds, each (problem,
strategy) one vmapped program. The Gaussian process (``"gp"``: a model fitted every round, about
half a second a round on this CPU) runs ``--gp-seeds`` seeds of the same sweeps, in the same
table. Writes the summary, curves and timing as JSON, the rank table as markdown and the anytime
regret curves as PNG.

    python benchmarks/bench_strategies.py     # writes results/bench_strategies_<backend>.{json,md,png}
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

PROBLEMS = ["branin", "hartmann3", "hartmann6", "rosenbrock4", "branin_in_10d"]
STRATEGIES = ["random", "grid", "halton", "coarse_to_fine", "cma_es"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=1000)
    p.add_argument("--evals", type=int, default=1000)
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--gp-seeds", type=int, default=20)
    p.add_argument("--out")
    a = p.parse_args()
    t = time.perf_counter()
    res = jt.bench.run(PROBLEMS, STRATEGIES, seeds=a.seeds, evals=a.evals, trials=a.trials, progress=True)
    total = time.perf_counter() - t
    synthetic4 = sum(v for (prob, _), v in res.seconds.items() if prob != "branin_in_10d")
    t = time.perf_counter()
    gp = jt.bench.run(PROBLEMS, ["gp"], seeds=a.gp_seeds, evals=a.evals, trials=a.trials, progress=True)
    gp_seconds = time.perf_counter() - t
    res = res.merge(gp)
    table = res.table()
    name = f"bench_strategies_{jax.default_backend()}"
    path = common.write(name, {}, a.out)  # machine, device and versions; the payload follows
    predicted = (
        "random beats grid on branin_in_10d; coarse-to-fine beats random on the smooth low-dimensional "
        "problems; all of 1,000 seeds x 5 strategies x 4 problems in under a minute"
    )
    res.to_json(path, seconds_total=total, seconds_4_synthetic_x_5_strategies=synthetic4, gp_seeds=a.gp_seeds,
                gp_seconds=gp_seconds, machine=common.machine(), predicted=predicted)  # fmt: skip
    with open(path.replace(".json", ".md"), "w") as f:
        f.write(table + "\n")
    res.plot(path.replace(".json", ".png"))
    print(table)
    print(f"{a.seeds} seeds x {len(STRATEGIES)} strategies x {a.evals} evaluations: 4 synthetic problems in "
          f"{synthetic4:.1f} s, all {len(PROBLEMS)} in {total:.1f} s (compiles included); "
          f"gp, {a.gp_seeds} seeds: {gp_seconds:.1f} s")  # fmt: skip
    print(path)


if __name__ == "__main__":
    main()
