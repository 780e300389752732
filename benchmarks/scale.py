"""Scale: many trials of the reference task in one sweep round without running out of memory.

The executor sizes its chunks from the compiled program's memory analysis and the device's free
memory (halving on out-of-memory), so N is limited by time, not memory. Reports peak host
memory (RSS) and, on accelerators, peak device memory.

    python benchmarks/scale.py --trials 10000 --steps 100      # the 24 GB CPU machine
    python benchmarks/scale.py --trials 100000 --steps 1000    # one GPU
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import throughput  # noqa: E402

import jaxtune as jt  # noqa: E402
from jaxtune.tasks import data  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--data", default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--one-device", action="store_true", help="do not give JAX one CPU device per core")
    a = p.parse_args(argv)
    if not a.one_device:
        jt.use_cpu_cores()  # as the CLI runs (no effect on accelerators)
    s = data.mnist1d(path=a.data)
    arrays = (np.concatenate([s.train[0], s.val[0]]), np.concatenate([s.train[1], s.val[1]]), *s.test)
    trainer = throughput.trainer(128, 128, a.steps, *arrays)
    chunks = []
    t = time.perf_counter()
    result = jt.tune(
        trainer,
        throughput.SPACE,
        "random",
        trials=a.trials,
        metric="test_accuracy",
        mode="max",
        progress=lambda r: chunks.append(r),
    )
    seconds = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    dev = jax.devices()[0]
    try:
        peak_dev = (dev.memory_stats() or {}).get("peak_bytes_in_use")
    except Exception:
        peak_dev = None
    out = {
        "trials": a.trials,
        "steps": a.steps,
        "finished": len(result),
        "diverged": result.num_diverged,
        "seconds": seconds,
        "trials_per_s": a.trials / seconds,
        "peak_rss_bytes": rss,
        "peak_device_bytes": peak_dev,
        "best_test_accuracy": result.best["value"],
    }
    print(
        f"{len(result)} trials x {a.steps} steps in {seconds:.0f} s ({out['trials_per_s']:.1f} trials/s), "
        f"peak RSS {rss / 2**30:.2f} GiB" + (f", peak device {peak_dev / 2**30:.2f} GiB" if peak_dev else "")
    )
    common.write(f"scale_{jax.default_backend()}", out, a.out)


if __name__ == "__main__":
    main()
