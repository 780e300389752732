"""The README's demo, timed: ``jaxtune run configs/demo.toml`` from nothing, as ``make demo`` runs it.

Each run starts afresh (a new storage file and an empty compilation cache, so nothing is resumed
or loaded from an earlier run) in a new process, and its wall time, round times and best trial
are recorded.

    python benchmarks/demo.py --runs 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUND = re.compile(r"round (\d+) \(\d+/\d+\): (\d+) trials in ([\d.]+) s")


def run_once() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "demo.db")
        env = dict(os.environ, JAXTUNE_CACHE_DIR=os.path.join(tmp, "xla"))
        cmd = [sys.executable, "-m", "jaxtune.cli", "run", "configs/demo.toml", "--storage", db]
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    out = proc.stdout + proc.stderr
    best = re.search(r"test_accuracy=([\d.]+)", proc.stdout)  # the best-trial line
    return {
        "wall_s": wall,
        "round_s": [float(m.group(3)) for m in ROUND.finditer(out)],
        "best_test_accuracy": float(best.group(1)) if best else None,
        "stdout": proc.stdout[-2000:],
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    runs = []
    for i in range(a.runs):
        runs.append(run_once())
        r = runs[-1]
        print(f"run {i + 1}: {r['wall_s']:.1f} s, rounds {r['round_s']}, best test accuracy {r['best_test_accuracy']}")
    common.write("demo_cpu", {"config": "configs/demo.toml", "runs": runs}, a.out)
    print(json.dumps({"wall_s": [r["wall_s"] for r in runs]}))


if __name__ == "__main__":
    main()
