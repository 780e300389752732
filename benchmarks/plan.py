"""Plan's predictions against measured sweeps on this machine (round time, trials/s).

For each case: ``jt.plan`` (its own wall time too), then the planned sweep run for real with
``jt.tune``, each in a fresh process with no compilation cache (as ``jaxtune plan`` and then
``jaxtune run`` would run: each pays a process's first compiles); the measured round is the mean
of the warm rounds (round 0 also compiles), a Hyperband's rung the mean of its rungs.

    python benchmarks/plan.py           # writes results/plan_<backend>.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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


def planned(name: str) -> dict:
    """The case's ``jt.plan`` (run in a fresh process, as ``jaxtune plan`` runs)."""
    _, _, trials, rounds, *_ = CASES[name]
    objective, space, metric, mode, strategy = setup(name)
    t = time.perf_counter()
    p = jt.plan(objective, space, trials=trials, rounds=rounds, budget=600, strategy=strategy)
    print(p, file=sys.stderr)
    return {"plan_seconds": time.perf_counter() - t, "round_s": p.round_s, "sweep_s": p.sweep_s,
            "programs": p.programs, "strategy_programs": p.strategy_programs, "compile_s": p.compile_s,
            "measurements": [m.__dict__ for m in p.measurements], "bytes_per_trial": p.bytes_per_trial,
            "fits": p.fits, "recommendation": p.recommendation, "advice": p.advice}  # fmt: skip


def measured(name: str) -> dict:
    """The case's sweep, run for real (in another fresh process, as ``jaxtune run`` runs)."""
    _, _, trials, rounds, *_ = CASES[name]
    objective, space, metric, mode, strategy = setup(name)
    reports = []
    t = time.perf_counter()
    run = jt.tune(objective, space, strategy, trials=trials, rounds=rounds, metric=metric, mode=mode, seed=0,
                  progress=reports.append if strategy != "hyperband" else False)  # fmt: skip
    sweep_s = time.perf_counter() - t
    warm = [r["seconds"] for r in reports[1:]]  # (rungs are not reported: their mean from the run's own timing)
    return {"round_s": sum(warm) / len(warm) if warm else run.timing["trials_s"] / rounds, "sweep_s": sweep_s,
            "programs": run.timing["programs"], "compile_s": run.timing["compile_s"]}  # fmt: skip


def in_fresh_process(name: str, what: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--one", name, what], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    print(proc.stderr[-1500:] if what == "plan" else "", end="")
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])


def case(name: str) -> dict:
    task_name, options, trials, rounds, *_ = CASES[name]
    p, run = in_fresh_process(name, "plan"), in_fresh_process(name, "tune")
    return {
        "task": task_name or "the README's first example",
        "strategy": {"hyperband": "hyperband", "readme": "coarse_to_fine"}.get((CASES[name][4:] or [""])[0], "random"),
        "options": options,
        "trials": trials,
        "rounds": rounds,
        "plan_seconds": p["plan_seconds"],
        "predicted_round_s": p["round_s"],
        "measured_round_s": run["round_s"],
        "round_ratio": p["round_s"] / run["round_s"],
        "predicted_sweep_s": p["sweep_s"],
        "measured_sweep_s": run["sweep_s"],
        "sweep_ratio": p["sweep_s"] / run["sweep_s"],
        "predicted_programs": p["programs"],
        "predicted_strategy_programs": p["strategy_programs"],
        "measured_programs": run["programs"],
        "predicted_compile_s": p["compile_s"],
        "measured_compile_s": run["compile_s"],
        **{k: p[k] for k in ("measurements", "bytes_per_trial", "fits", "recommendation", "advice")},
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="*", default=list(CASES))
    p.add_argument("--out")
    p.add_argument("--one", nargs=2, metavar=("CASE", "plan|tune"), help=argparse.SUPPRESS)
    a = p.parse_args()
    os.environ.setdefault("JAXTUNE_CACHE_DIR", "none")  # uncached: what a first run costs
    if a.one:  # one side of one case, in this fresh process
        jt.use_cpu_cores()  # as `jaxtune run` and `jaxtune plan` do
        print("RESULT", json.dumps((planned if a.one[1] == "plan" else measured)(a.one[0])))
        return
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
