"""Plan's predictions against measured sweeps on this machine (round time, trials/s).

For each case: ``jt.plan`` (its own wall time too), then the planned sweep run for real with
``jt.tune``; the measured round is the mean of the warm rounds (round 0 also compiles).

    python benchmarks/plan.py           # writes results/plan_<backend>.json
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

CASES = {
    # name: (task, task options, trials, rounds[, how the space or strategy differs from the task's])
    "mnist1d_mlp": ("mnist1d_mlp", {"steps": 2000, "batch_size": 128, "hidden": 256, "eval_every": 500}, 32, 3),
    "mnist1d_cnn": ("mnist1d_cnn", {"steps": 500, "batch_size": 128}, 16, 3),
    "digits_mlp": ("digits_mlp", {"steps": 1000, "batch_size": 64}, 64, 3),
    "masked_mlp": ("mnist1d_mlp", {"steps": 600, "batch_size": 128}, 32, 3, "masked"),
    "hyperband": ("mnist1d_mlp", {"steps": 900, "batch_size": 128, "eval_every": 900}, 27, 6, "hyperband"),
    "readme_example": (None, {}, 32, 3, "readme"),
}


def readme_example():
    """The README's first example's trainer and space (its block up to ``jt.tune``), and its tune arguments."""
    from first_example import first_block

    block = first_block()
    namespace: dict = {}
    exec(block[: block.index("result = jt.tune(")], namespace)
    return namespace["trainer"], namespace["space"], "val_accuracy", "max", "coarse_to_fine"


def setup(name: str):
    """A case's objective, space, metric, mode and strategy."""
    task_name, options, _, _, *how = CASES[name]
    if how == ["readme"]:
        return readme_example()
    task = jt.tasks.get(task_name, **options)
    space, strategy = task.space, "random"
    if how == ["masked"]:  # the width over four power-of-two buckets, as the README's first example tunes it
        space = jt.Space({**task.space.params, "hidden": jt.Int(16, 256, scale="log", masked=True)})
    if how == ["hyperband"]:  # 27 configurations, 3 brackets (budgets 100, 300, 900 steps), survivors continued
        space = jt.Space({**task.space.params, "steps": jt.Int(100, 900, scale="log", static=True)})
        strategy = "hyperband"
    return task.objective, space, task.metric, task.mode, strategy


def case(name: str) -> dict:
    task_name, options, trials, rounds, *_ = CASES[name]
    objective, space, metric, mode, strategy = setup(name)
    t = time.perf_counter()
    p = jt.plan(objective, space, trials=trials, rounds=rounds, budget=600, strategy=strategy)
    plan_s = time.perf_counter() - t
    print(p)
    reports = []
    t = time.perf_counter()
    run = jt.tune(objective, space, strategy, trials=trials, rounds=rounds, metric=metric, mode=mode, seed=0,
                  progress=reports.append if strategy != "hyperband" else False)  # fmt: skip
    sweep_s = time.perf_counter() - t
    warm = [r["seconds"] for r in reports[1:]]  # (rungs are not reported: their mean from the run's own timing)
    measured = sum(warm) / len(warm) if warm else run.timing["trials_s"] / rounds
    return {
        "task": task_name or "the README's first example",
        "strategy": strategy,
        "options": options,
        "trials": trials,
        "rounds": rounds,
        "plan_seconds": plan_s,
        "predicted_round_s": p.round_s,
        "measured_round_s": measured,
        "round_ratio": p.round_s / measured,
        "predicted_sweep_s": p.sweep_s,
        "measured_sweep_s": sweep_s,
        "sweep_ratio": p.sweep_s / sweep_s,
        "predicted_programs": p.programs,
        "measured_programs": run.timing["programs"],
        "predicted_compile_s": p.compile_s,
        "measured_compile_s": run.timing["compile_s"],
        "measurements": [m.__dict__ for m in p.measurements],
        "bytes_per_trial": p.bytes_per_trial,
        "fits": p.fits,
        "recommendation": p.recommendation,
        "advice": p.advice,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="*", default=list(CASES))
    p.add_argument("--out")
    a = p.parse_args()
    os.environ.setdefault("JAXTUNE_CACHE_DIR", "none")  # uncached: what a first run costs
    jt.use_cpu_cores()  # as `jaxtune run` and `jaxtune plan` do
    results = {name: case(name) for name in a.cases}
    payload = {"cases": results,
               "predicted": "sweep times within 1.5x of the measured (uncached) ones; the same programs"}
    path = common.write(f"plan_{jax.default_backend()}", payload, a.out)
    print(f"{'case':<14} {'predicted s':>12} {'measured s':>11} {'ratio':>6} {'sweep ratio':>12} {'plan s':>7} "
          f"{'programs':>9}")  # fmt: skip
    for name, r in results.items():
        print(f"{name:<14} {r['predicted_round_s']:>12.2f} {r['measured_round_s']:>11.2f} {r['round_ratio']:>6.2f} "
              f"{r['sweep_ratio']:>12.2f} {r['plan_seconds']:>7.1f} {r['predicted_programs']:>4}/"
              f"{r['measured_programs']:<4}")  # fmt: skip
    print(path)


if __name__ == "__main__":
    main()
