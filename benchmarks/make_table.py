"""Builds the tabular benchmark jaxtune ships: 2,048 Halton configurations of the MNIST-1D MLP.

Learning rate, AdamW's b1, weight decay and width (masked), 500 steps evaluated every 125, on
one JAX device per core; stored as it runs (``runs/table.db``: a killed build resumes), then
written to ``jaxtune/bench/data/mnist1d_mlp.npz``.

    python benchmarks/make_table.py [--configs 2048] [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import jaxtune as jt
from jaxtune.bench.tables import DATA, build_table


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", type=int, default=2048)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--storage", default="runs/table.db")
    p.add_argument("--out", default=os.path.join(DATA, "mnist1d_mlp.npz"))
    a = p.parse_args()
    jt.use_cpu_cores()
    os.makedirs(os.path.dirname(a.storage) or ".", exist_ok=True)
    t = time.perf_counter()
    arrays = build_table(a.out, configs=a.configs, steps=a.steps, eval_every=a.steps // 4, storage=a.storage)
    val = arrays["val_accuracy"][:, -1]
    print(f"{a.configs} configurations in {time.perf_counter() - t:.0f} s; best val accuracy {np.nanmax(val):.4f}, "
          f"median {np.nanmedian(val):.4f}; written to {a.out} ({os.path.getsize(a.out) / 1024:.0f} KiB)")  # fmt: skip


if __name__ == "__main__":
    main()
