"""Shared helpers for benchmarks: machine facts, timing, JSON results."""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from importlib import metadata

import jax
import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine() -> dict:
    """What ran the benchmark: host, CPU count, JAX device, package versions."""
    dev = jax.devices()[0]
    versions = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "optuna", "hyperoptax"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "device": dev.device_kind,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "versions": versions,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def timed(fn, *args):
    """(seconds, result) with the result blocked on."""
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - t, out


def compiling() -> dict:
    """This process's jaxtune totals so far: trial programs compiled (and loaded from the persistent
    cache), seconds compiling and running trial programs (``jaxtune.execute.timing.CLOCK``; a
    benchmark whose methods run in subprocesses records each one's in its rows)."""
    from jaxtune.execute.timing import CLOCK

    return {"programs": CLOCK.programs, "cached": CLOCK.cached, "compile_s": CLOCK.compile_s,
            "trials_s": CLOCK.trials_s}  # fmt: skip


def write(name: str, payload: dict, out: str | None = None) -> str:
    """Writes ``{"machine": ..., "compiling": ..., **payload}`` to ``results/NAME.json`` (or ``out``):
    every result records the programs its process compiled and their seconds beside run seconds."""
    path = out or os.path.join(RESULTS, f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": machine(), "compiling": compiling(), **payload}, f, indent=1)
    print(f"wrote {path}")
    return path


def trial_steps(result) -> int:
    """Optimizer steps a sweep trained in all (:func:`jaxtune.analysis.report.trained_steps`)."""
    from jaxtune.analysis.report import trained_steps

    return trained_steps(result)


def split_over_devices(tree, n: int) -> list:
    """The hand-written way to use every device: one part of the trial axis committed to each.

    A jitted call on committed inputs runs on their device and returns at once (dispatch is
    asynchronous), so the parts run side by side. With fewer trials than devices, one part a trial.
    (Sharding the inputs with a NamedSharding and letting jit partition vmap(scan) also works, but
    ran ~1.8x slower on the 2-core CPU at N=2: this is the baseline's best ordinary setup.)
    """
    devs = jax.devices()[: max(1, min(jax.device_count(), n))]
    bounds = np.linspace(0, n, len(devs) + 1).astype(int)
    return [
        jax.device_put(jax.tree.map(lambda v, lo=lo, hi=hi: v[lo:hi], tree), d)
        for lo, hi, d in zip(bounds, bounds[1:], devs)
    ]
