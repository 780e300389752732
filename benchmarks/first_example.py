"""The README's first example, timed from nothing and from the compilation cache.

Each run is a new process in a new folder running the README's first Python block as written
(so it measures what a new user waits for). Three settings, ``--runs`` times each:

* ``uncached``: an empty compilation cache (what a first run costs);
* ``cached``: a second process on the cache the first one filled (a rerun, or the same model in
  another study);
* ``no_sharing``: an empty cache and ``JAXTUNE_SHARE_PROGRAMS=0`` (each masked bucket its own
  program);
* ``before``: with ``--before COMMIT``, the same script on that commit's jaxtune (a git worktree
  first on ``PYTHONPATH``), an empty cache: the version before programs were shared.

For each: the process's wall time, ``jt.tune``'s own time and its split (``Result.timing``:
programs compiled, from the cache, compile and trial seconds) and the best trial.

    python benchmarks/first_example.py --runs 2      # writes results/first_example_cpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRINT = "\nimport json\nprint('TIMING', json.dumps({**result.timing, 'best': best['metrics']['val_accuracy']}))\n"


def first_block() -> str:
    """The README's first ```python block."""
    with open(os.path.join(ROOT, "README.md")) as f:
        return re.search(r"```python\n(.*?)```", f.read(), re.S).group(1)


def run_once(folder: str, cache: str, root: str = ROOT, **env: str) -> dict:
    script = os.path.join(folder, "first.py")
    with open(script, "w") as f:
        f.write(first_block() + PRINT)
    for name in os.listdir(folder):  # a new study each time
        if name.startswith("sweep.db"):
            os.remove(os.path.join(folder, name))
    environ = dict(os.environ, JAXTUNE_CACHE_DIR=cache, PYTHONPATH=root, **env)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, script], cwd=folder, env=environ, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    timing = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("TIMING "))[7:])
    return {"process_s": wall, **timing}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument("--before", default=None, help="a commit to measure too (uncached)")
    args = parser.parse_args(argv)
    rows = {"uncached": [], "cached": [], "no_sharing": []}
    worktree = None
    if args.before:
        rows["before"] = []
        worktree = tempfile.mkdtemp(prefix="jaxtune-before-")
        subprocess.run(["git", "worktree", "add", "--detach", worktree, args.before], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as folder:
            cache = os.path.join(folder, "xla")
            rows["uncached"].append(run_once(folder, cache))
            rows["cached"].append(run_once(folder, cache))
            rows["no_sharing"].append(run_once(folder, os.path.join(folder, "xla2"), JAXTUNE_SHARE_PROGRAMS="0"))
            if worktree:
                rows["before"].append(run_once(folder, os.path.join(folder, "xla3"), worktree))
    if worktree:
        subprocess.run(["git", "worktree", "remove", "--force", worktree], cwd=ROOT, check=True)
    summary = {k: {m: statistics.median(r.get(m, math.nan) for r in v) for m in ("process_s", "wall_s", "compile_s",
                   "trials_s", "programs", "cached")} for k, v in rows.items()}  # fmt: skip
    targets = {"uncached_tune_s": 12, "programs": 2, "cached_tune_s": 6}
    path = common.write("first_example_cpu", {"runs": rows, "median": summary, "targets": targets,
                                              "before_commit": args.before}, args.out)  # fmt: skip
    print(f"{'setting':<12} {'jt.tune s':>9} {'process s':>9} {'compile s':>9} {'trials s':>8} {'programs':>8} "
          f"{'cached':>6}")  # fmt: skip
    for k, s in summary.items():
        print(f"{k:<12} {s['wall_s']:9.1f} {s['process_s']:9.1f} {s['compile_s']:9.1f} {s['trials_s']:8.1f} "
              f"{s['programs']:8.0f} {s['cached']:6.0f}")  # fmt: skip
    return path


if __name__ == "__main__":
    main()
