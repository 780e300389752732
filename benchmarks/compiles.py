"""Programs compiled per study, and their seconds, for each kind of driver.

Three studies of the built-in MNIST-1D MLP, each in a fresh process with an empty compilation
cache (and again from the cache the first run filled): a coarse-to-fine sweep over a masked
width (the README's first example's shape), Hyperband (27 configurations, 3 brackets) and PBT.
Each records ``Result.timing``: programs compiled, from the cache, compile and trial seconds.

    python benchmarks/compiles.py                    # writes results/compiles_<backend>.json
    python benchmarks/compiles.py --steps 60 --trials 8    # a quick run (gpu_check.sh --cpu-smoke)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import json, sys
import jaxtune as jt
study, steps, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
task = jt.tasks.get("mnist1d_mlp", steps=steps)
base = {n: task.space.params[n] for n in ("lr", "b1", "wd")}
if study == "masked_rounds":
    space = jt.Space({**base, "hidden": jt.Int(16, 256, scale="log", masked=True)})
    r = jt.tune(task.objective, space, "coarse_to_fine", trials=trials, rounds=3, metric="val_accuracy", mode="max",
                progress=False)
elif study == "hyperband":
    space = jt.Space({"steps": jt.Int(max(steps // 9, 1), steps, scale="log", static=True), **base})
    r = jt.tune(task.objective, space, "hyperband", trials=27, rounds=6, metric="val_accuracy", mode="max",
                progress=False)
else:
    r = jt.tune(task.objective, jt.Space(base), "pbt", trials=trials, metric="val_accuracy", mode="max",
                progress=False, strategy_options={"segment": max(steps // 10, 1)})
print("TIMING", json.dumps({**r.timing, "trials": len(r.trials)}))
"""


def run(study: str, steps: int, trials: int, cache: str) -> dict:
    path = os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, JAXTUNE_CACHE_DIR=cache, PYTHONPATH=path)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, study, str(steps), str(trials)], capture_output=True,
                          text=True, env=env, cwd=ROOT)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("TIMING "))[7:])


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    import jax

    rows = []
    for study in ("masked_rounds", "hyperband", "pbt"):
        with tempfile.TemporaryDirectory() as cache:
            for when in ("uncached", "cached"):
                row = {"study": study, "when": when, **run(study, args.steps, args.trials, cache)}
                rows.append(row)
                print(f"{study:<14} {when:<9} {row['wall_s']:7.1f} s  compiling {row['compile_s']:5.1f} s  "
                      f"{row['programs']} programs ({row['cached']} cached)  trials {row['trials_s']:5.1f} s")
    backend = jax.default_backend()
    return common.write(f"compiles_{backend}", {"steps": args.steps, "trials": args.trials, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
