"""Masking vs separate buckets for shape-changing hyperparameters (width, batch size).

A width sweep can run as one program per distinct width (``static=True``) or as one program per
power-of-two bucket with the unused units masked (``masked=True``: up to 2x the FLOPs, far fewer
compiles). A batch-size sweep can run one program per size (``static=True``) or draw the largest
batch and weigh a prefix (traced: every trial pays for the largest batch). This measures both
ways end to end (compile included, as a sweep pays it) and run-only (programs already compiled).

    python benchmarks/masking.py                       # writes results/masking_<backend>.json
    python benchmarks/masking.py --trials 8 --steps 50  # quick
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
from jaxtune.execute import Executor  # noqa: E402


def measure(space: jt.Space, steps: int, trials: int, max_batch: int) -> dict:
    task = jt.tasks.get("mnist1d_mlp", steps=steps, batch_size=max_batch, space=space)
    key = jax.random.key(0)
    hp = space.sample(key, trials)
    keys = jax.random.split(key, trials)
    ex = Executor(task.objective, space)

    def run():
        return [m for _, m, _ in ex.run(hp, keys)]

    t = time.perf_counter()
    run()
    first = time.perf_counter() - t
    t = time.perf_counter()
    run()
    again = time.perf_counter() - t
    rows = space.to_python(hp)
    return {
        "total_s": first,
        "run_s": again,
        "compile_s": first - again,
        "programs": ex.compiles,
        "distinct_values": {n: len({r[n] for r in rows}) for n in space.names if n != "lr"},
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=32)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    lr = jt.Float(1e-3, 1e-1, scale="log")
    cases = {
        "width_static": jt.Space({"lr": lr, "hidden": jt.Int(16, 256, scale="log", static=True)}),
        "width_masked": jt.Space({"lr": lr, "hidden": jt.Int(16, 256, scale="log", masked=True)}),
        "batch_static": jt.Space({"lr": lr, "batch_size": jt.Choice([32, 64, 128, 256], static=True)}),
        "batch_masked": jt.Space({"lr": lr, "batch_size": jt.Choice([32, 64, 128, 256])}),
    }
    out = {}
    for name, space in cases.items():
        out[name] = measure(space, a.steps, a.trials, max_batch=256)
        r = out[name]
        print(
            f"{name:>13}: {r['programs']:3d} programs, total {r['total_s']:7.2f} s "
            f"(compile {r['compile_s']:6.2f} s, run {r['run_s']:6.2f} s)",
            flush=True,
        )
    verdict = {}
    for what in ("width", "batch"):
        s, m = out[f"{what}_static"], out[f"{what}_masked"]
        verdict[what] = {
            "masked_vs_static_total": m["total_s"] / s["total_s"],
            "masked_vs_static_run": m["run_s"] / s["run_s"],
            "faster_end_to_end": "masked" if m["total_s"] < s["total_s"] else "static",
        }
        print(
            f"{what}: masked/static end to end {verdict[what]['masked_vs_static_total']:.2f}x, "
            f"run only {verdict[what]['masked_vs_static_run']:.2f}x -> {verdict[what]['faster_end_to_end']}"
        )
    common.write(
        f"masking_{jax.default_backend()}",
        {"trials": a.trials, "steps": a.steps, "cases": out, "verdict": verdict},
        a.out,
    )


if __name__ == "__main__":
    main()
