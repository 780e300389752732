"""Shared helpers for benchmarks: machine facts, timing, JSON results."""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from importlib import metadata

import jax

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


def write(name: str, payload: dict, out: str | None = None) -> str:
    """Writes ``{"machine": ..., **payload}`` to ``results/NAME.json`` (or ``out``)."""
    path = out or os.path.join(RESULTS, f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": machine(), **payload}, f, indent=1)
    print(f"wrote {path}")
    return path


def trial_steps(result) -> int:
    """Optimizer steps a sweep trained in all (:func:`jaxtune.report.trained_steps`)."""
    from jaxtune.report import trained_steps

    return trained_steps(result)
