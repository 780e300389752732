"""The CPU plan per model: trials vmapped in groups of 8 vs one trial after another, per built-in task.

On XLA:CPU a vmap over trials turns every matmul into a batched one. For small models that pays
(one dispatch does the work of 8 trials); for large ones the batched products run slower than 8 plain
ones and the program compiles slower. ``jaxtune.execute.platform.SEQUENTIAL_FLOPS`` chooses between
them from the trial's average matmul size (:func:`jaxtune.execute.matmul_flops`); this script
measures both plans on every built-in training task and records which the rule picks.

Each task: N trials on every device (one per core, as the CLI runs), compile time of each plan's
program (tracing and lowering included) and run time per trial, the fastest of --repeats runs,
the two plans alternating so that both see the same machine load.

    python benchmarks/vmap_width.py                 # writes results/vmap_width_<backend>.json
    python benchmarks/vmap_width.py --tasks digits_mlp --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402
from jaxtune.execute import Executor, matmul_flops  # noqa: E402

# (task, steps, trials): steps cut so that each task takes about a minute on the 2-core CPU.
TASKS = [
    ("mnist1d_linear", 500, 32),
    ("digits_mlp", 500, 32),
    ("mnist1d_mlp", 500, 32),
    ("mnist1d_gru", 200, 16),
    ("mnist1d_cnn", 300, 32),
    ("digits_cnn", 500, 16),
]
WIDTHS = (8, 1)


def measure(name: str, steps: int, n: int, repeats: int) -> dict:
    """Both plans on one task: compile seconds, run seconds per trial, and the rule's choice."""
    task = jt.tasks.get(name, steps=steps)
    hp = task.space.sample(jax.random.key(1), n)
    keys = jax.random.split(jax.random.key(0), n)
    row = {"task": name, "steps": steps, "trials": n}
    executors = {}
    for width in WIDTHS:
        ex = Executor(task.objective, task.space, vmap_width=width)
        ndev = ex.placement.devices_for(n)
        t = time.perf_counter()
        ex.programs.get((), ex.programs.width((), n, n, ndev), ndev)  # trace, lower, compile
        row[f"w{width}_compile_s"] = time.perf_counter() - t
        row[f"w{width}_run_s"] = []
        executors[width] = ex
    outs = {}
    for _ in range(repeats + 1):  # the first round warms up
        for width, ex in executors.items():
            t = time.perf_counter()
            outs[width] = np.concatenate([m[task.metric] for _, m, _ in ex.run(hp, keys)])
            row[f"w{width}_run_s"].append((time.perf_counter() - t) / n)
    for width in WIDTHS:
        row[f"w{width}_run_s"] = min(row[f"w{width}_run_s"][1:])
    flops, count = matmul_flops(executors[1].trial_fn.jaxpr(()))
    row["mean_matmul_flops"] = flops / max(count, 1)
    row["auto_width"] = Executor(task.objective, task.space).vmap_width_of(())
    row["w1_over_w8_run"] = row["w1_run_s"] / row["w8_run_s"]
    row["max_abs_metric_diff"] = float(np.max(np.abs(outs[1] - outs[8])))
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default=",".join(t for t, _, _ in TASKS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--one-device", action="store_true")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if not a.one_device:
        jt.use_cpu_cores()
    chosen = set(a.tasks.split(","))
    rows = []
    print(f"{'task':>15} {'matmul flops':>13} {'auto':>5} {'w8 s/trial':>11} {'w1 s/trial':>11} {'w1/w8':>6} "
          f"{'w8 compile':>11} {'w1 compile':>11}")  # fmt: skip
    for name, steps, n in TASKS:
        if name not in chosen:
            continue
        r = measure(name, steps, n, a.repeats)
        rows.append(r)
        print(
            f"{name:>15} {r['mean_matmul_flops']:>13.3g} {r['auto_width']:>5} {r['w8_run_s']:>11.4f} "
            f"{r['w1_run_s']:>11.4f} {r['w1_over_w8_run']:>6.2f} {r['w8_compile_s']:>11.2f} {r['w1_compile_s']:>11.2f}",
            flush=True,
        )
    payload = {"devices": jax.device_count(), "repeats": a.repeats, "rows": rows}
    print(json.dumps(payload)[:200])
    common.write(f"vmap_width_{jax.default_backend()}", payload, a.out)


if __name__ == "__main__":
    main()
