"""XLA compiler options on this backend: compile time and run time of jaxtune's programs.

Each built-in task is compiled as jaxtune compiles it (one program per width) with XLA's
defaults and with lower LLVM optimisation levels; the run time is the fastest of --repeats runs
of the compiled program. ``jaxtune.execute.COMPILER_OPTIONS`` is chosen from these numbers, and
``max_abs_diff`` checks that an option does not change the results.

    python benchmarks/compile.py                        # writes results/compile_<backend>.json
    python benchmarks/compile.py --tasks mnist1d_mlp --ns 8 --steps 100   # quick
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
from jaxtune.execute import Executor  # noqa: E402

OPTIONS = {
    "default": {},
    "O2": {"xla_backend_optimization_level": 2},
    "O1": {"xla_backend_optimization_level": 1},
    "O0": {"xla_backend_optimization_level": 0},
}


def measure(task_name: str, n: int, steps: int, options: dict, repeats: int) -> tuple[dict, np.ndarray]:
    task = jt.tasks.get(task_name, steps=steps)
    key = jax.random.key(0)
    hp = task.space.sample(key, n)
    keys = jax.random.split(key, n)
    ex = Executor(task.objective, task.space, compiler_options=options)
    ex.output_shapes(())  # tracing for shapes is not what is measured

    def run():
        return np.concatenate([m[task.metric] for _, m, _ in ex.run(hp, keys)])

    t = time.perf_counter()
    ndev = ex.placement.devices_for(n)
    ex.programs.get((), ex.programs.width((), n, n, ndev), ndev)
    compile_s = time.perf_counter() - t
    times, out = [], None
    for _ in range(repeats + 1):  # the first run warms up
        t = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t)
    return {"compile_s": compile_s, "run_s": min(times[1:])}, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="mnist1d_mlp,mnist1d_cnn,mnist1d_gru")
    p.add_argument("--ns", default="1,8,64")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--options", default=",".join(OPTIONS))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    rows = []
    for task in a.tasks.split(","):
        for n in [int(v) for v in a.ns.split(",")]:
            base = None
            for name in a.options.split(","):
                row, out = measure(task, n, a.steps, OPTIONS[name], a.repeats)
                if base is None:
                    base = out
                row = {"task": task, "N": n, "options": name, **row, "max_abs_diff": float(np.max(np.abs(out - base)))}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{'task':<14} {'N':>4} {'options':>8} {'compile s':>10} {'run s':>8} {'vs default':>18} {'max diff':>9}")
    for r in rows:
        d = next(b for b in rows if b["task"] == r["task"] and b["N"] == r["N"] and b["options"] == "default")
        rel = f"{r['compile_s'] / d['compile_s']:.2f}x / {r['run_s'] / d['run_s']:.2f}x"
        print(
            f"{r['task']:<14} {r['N']:>4} {r['options']:>8} {r['compile_s']:10.2f} {r['run_s']:8.3f} {rel:>18} "
            f"{r['max_abs_diff']:9.2g}"
        )
    common.write(f"compile_{jax.default_backend()}", {"steps": a.steps, "rows": rows}, a.out)


if __name__ == "__main__":
    main()
