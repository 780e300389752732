"""What watching costs: a sweep's wall time alone and with the live view (``jaxtune report DB
--serve``) beside it, in another process, on the same machine.

The sweep is the README's demo at a smaller size (MNIST-1D MLP, 4 rounds of 32 trials, 1,000
steps), run from a TOML config by ``jaxtune run`` in a subprocess, each run on a fresh study file
with a warm compilation cache (one untimed run first), alone and watched, alternating, ``--repeats``
times. The live view rebuilds the whole report (every figure) after each round the sweep stores,
on the same two cores, so it competes for the CPU for as long as a rebuild takes.

    python benchmarks/live_overhead.py            # -> results/live_overhead_cpu.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from common import write

CONFIG = """
[task]
name = "mnist1d_mlp"
steps = 1000
batch_size = 128
hidden = 256
eval_every = 250

[tune]
strategy = "coarse_to_fine"
trials = 32
rounds = 4
seed = 0
storage = "sweep.db"

[space.lr]
type = "float"
low = 1e-4
high = 0.1
scale = "log"

[space.b1]
type = "float"
low = 0.8
high = 0.999
scale = "reverse_log"

[space.wd]
type = "float"
low = 1e-5
high = 1.0
scale = "log"
"""


def one_run(work: str, watched: bool, interval: float) -> dict:
    """One sweep in a fresh folder; with ``watched``, a live view serving it from the start."""
    folder = tempfile.mkdtemp(dir=work)
    with open(os.path.join(folder, "sweep.toml"), "w") as f:
        f.write(CONFIG)
    start = time.perf_counter()
    sweep = subprocess.Popen([sys.executable, "-m", "jaxtune.cli", "run", "sweep.toml"], cwd=folder,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    view = rebuilds = None
    if watched:
        while not os.path.exists(os.path.join(folder, "sweep.db")) and sweep.poll() is None:
            time.sleep(0.05)
        code = ("import sys, time, jaxtune as jt\n"
                "v = jt.serve('sweep.db', port=0, interval=float(sys.argv[1]), block=False)\n"
                "sys.stdin.readline()\nprint(v.status['version'])\nv.close()\n")  # fmt: skip
        view = subprocess.Popen([sys.executable, "-c", code, str(interval)], cwd=folder, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    if sweep.wait() != 0:
        raise RuntimeError(f"the sweep failed in {folder}")
    seconds = time.perf_counter() - start
    if view is not None:
        time.sleep(2 * interval + 1)  # its last rebuild: the finished study
        out, _ = view.communicate("\n", timeout=120)
        rebuilds = int(out.strip().splitlines()[-1])
    return {"watched": watched, "seconds": seconds, "rebuilds": rebuilds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--interval", type=float, default=2.0, help="the live view's interval (its default: 2 s)")
    p.add_argument("--out")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as work:
        one_run(work, False, args.interval)  # warm the compilation cache: both sides load the program
        runs = [one_run(work, watched, args.interval) for _ in range(args.repeats) for watched in (False, True)]
    alone = [r["seconds"] for r in runs if not r["watched"]]
    watched = [r["seconds"] for r in runs if r["watched"]]
    ratio = float(np.median(watched) / np.median(alone))
    print(f"{'':10}{'median s':>10}{'runs':>30}")
    print(f"{'alone':10}{np.median(alone):10.1f}{str([round(s, 1) for s in alone]):>30}")
    print(f"{'watched':10}{np.median(watched):10.1f}{str([round(s, 1) for s in watched]):>30}")
    print(f"watched / alone: {ratio:.3f}; rebuilds per watched run: {[r['rebuilds'] for r in runs if r['watched']]}")
    payload = {"config": CONFIG, "interval_s": args.interval, "runs": runs, "median_alone_s": float(np.median(alone)),
               "median_watched_s": float(np.median(watched)), "watched_over_alone": ratio}  # fmt: skip
    write("live_overhead_cpu", payload, args.out)


if __name__ == "__main__":
    main()
