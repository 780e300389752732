"""Seeds in the batch: does selecting on K > 1 seeds pick configurations that hold up on fresh seeds?

For each task and tuning run (its own sweep seed), random search with a fixed budget of lanes
(``trials x seeds``) selects a configuration with K = 1 (32 configurations, one seed each) and with
K = 4 (8 configurations, 4 seeds each, valued by their mean); the chosen configuration is then
trained on 8 fresh seeds (``jt.reseed``: keys no tuning run used). Recorded per run: the tuning
value, the fresh-seed validation and test accuracy, and the gap (tuning - fresh validation).
Also the throughput of a K = 4 batch against K = 1 at the same number of lanes (same program width).

    python benchmarks/seeds.py                   # writes results/seeds_<backend>.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402


def one_run(task, k: int, lanes: int, fresh: int, seed: int) -> dict:
    """One tuning run with ``k`` seeds per configuration, and its choice on ``fresh`` new seeds."""
    t0 = time.perf_counter()
    study = jt.tune(task.objective, task.space, "random", trials=lanes // k, seeds=k, metric="val_accuracy",
                    mode="max", seed=seed, progress=False)  # fmt: skip
    seconds = time.perf_counter() - t0
    row = jt.reseed(study, task.objective, seeds=fresh, top=1)[0]
    return {"k": k, "seed": seed, "seconds": seconds, "tuned_val": row["tuned"], "fresh_val": row["fresh"],
            "fresh_val_se": row["stderr"], "fresh_test": row["fresh_metrics"]["test_accuracy"],
            "gap": row["tuned"] - row["fresh"], "params": row["params"]}  # fmt: skip


def throughput(task, lanes: int, repeats: int) -> dict:
    """Wall time of a whole ``jt.tune`` call of one round of ``lanes`` lanes: ``lanes`` configurations
    x 1 seed vs ``lanes / 4`` x 4 (the same trial program, loaded from the compilation cache after
    a warm-up; the strategy's small programs compile each call), alternated, medians."""
    # A space where no trial diverges: a CPU's run time depends on the values (NaN and denormal
    # arithmetic is slow), and K = 1 and K = 4 sample different configurations.
    space = jt.Space({"lr": jt.Float(1e-4, 1e-2, scale="log"), "b1": jt.Float(0.8, 0.99, scale="reverse_log"),
                      "wd": jt.Float(1e-5, 1e-3, scale="log")})  # fmt: skip
    times = {1: [], 4: []}
    for i in range(repeats + 1):
        for k in (1, 4):
            t0 = time.perf_counter()
            jt.tune(task.objective, space, "random", trials=lanes // k, seeds=k, metric="val_accuracy",
                    mode="max", seed=i, progress=False)  # fmt: skip
            if i:  # the first of each is the warm-up (its compile)
                times[k].append(time.perf_counter() - t0)
    one, four = float(np.median(times[1])), float(np.median(times[4]))
    return {"task": task.name, "lanes": lanes, "k1_seconds": one, "k4_seconds": four, "k4_over_k1": four / one,
            "repeats": repeats}  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["mnist1d_mlp", "digits_mlp"])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--lanes", type=int, default=32)
    p.add_argument("--fresh", type=int, default=8)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds of each K for the throughput")
    p.add_argument("--throughput-steps", type=int, default=3000, help="steps a trial in the throughput runs")
    p.add_argument("--only", choices=["selection", "throughput"], help="run one part (the JSON keeps the other's)")
    p.add_argument("--out")
    a = p.parse_args()
    jt.use_cpu_cores()
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser("~/.cache/jaxtune/xla"))
    out = {"lanes": a.lanes, "fresh": a.fresh, "steps": a.steps, "runs": [], "summary": [], "throughput": []}
    path = a.out or os.path.join(common.RESULTS, f"seeds_{jax.default_backend()}.json")
    if a.only and os.path.exists(path):
        with open(path) as f:
            out.update({k: v for k, v in __import__("json").load(f).items() if k != "machine"})
    if a.only in (None, "throughput"):
        out["throughput"] = [throughput(jt.tasks.get(n, steps=steps), a.lanes, a.repeats) | {"steps": steps}
                             for n in a.tasks for steps in (a.steps, a.throughput_steps)]  # fmt: skip
        for r in out["throughput"]:
            print(f"{r['task']} ({r['steps']} steps): {a.lanes} lanes, K=1 {r['k1_seconds']:.2f} s, "
                  f"K=4 {r['k4_seconds']:.2f} s (x{r['k4_over_k1']:.3f})")  # fmt: skip
    for name in a.tasks if a.only in (None, "selection") else ():
        task = jt.tasks.get(name, steps=a.steps)
        for k in (1, 4):  # a warm-up run of each (its compile), then the measured runs
            one_run(task, k, a.lanes, a.fresh, seed=10_000)
        rows = [dict(task=name, **one_run(task, k, a.lanes, a.fresh, seed)) for seed in range(a.runs) for k in (1, 4)]
        out["runs"] += rows
        for k in (1, 4):
            mine = [r for r in rows if r["k"] == k]
            out["summary"].append({
                "task": name, "k": k, "configurations": a.lanes // k,
                "median_fresh_test": float(np.median([r["fresh_test"] for r in mine])),
                "median_fresh_val": float(np.median([r["fresh_val"] for r in mine])),
                "median_gap": float(np.median([r["gap"] for r in mine])),
                "mean_gap": float(np.mean([r["gap"] for r in mine])),
                "median_seconds": float(np.median([r["seconds"] for r in mine])),
            })  # fmt: skip
    common.write(f"seeds_{jax.default_backend()}", out, a.out)
    cols = ["task", "k", "configurations", "median_fresh_test", "median_fresh_val", "median_gap", "mean_gap",
            "median_seconds"]  # fmt: skip
    print("  ".join(f"{c:>18}" for c in cols))
    for r in out["summary"]:
        print("  ".join(f"{r[c]:>18.4g}" if isinstance(r[c], float) else f"{r[c]!s:>18}" for c in cols))


if __name__ == "__main__":
    main()
