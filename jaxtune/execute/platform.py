"""What the executor knows about the machine: CPU devices, memory, compiler options, compile threads.

Every number here was measured (the benchmark that chose it is named beside it); change one only
with a new measurement.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import math
import os
import threading
import warnings
from typing import Any

import jax

from jaxtune._checks import check_int
from jaxtune.execute.timing import CLOCK

__all__ = [
    "COMPILER_OPTIONS",
    "MEMORY_HEADROOM",
    "SEQUENTIAL_FLOPS",
    "VMAP_WIDTH",
    "compile_async",
    "cpu_cores_per_device",
    "default_compiler_options",
    "default_vmap_width",
    "matmul_flops",
    "memory_budget",
    "use_cpu_cores",
]

# Trials vmapped together inside one program, per platform, measured with benchmarks/throughput.py
# (--vmap-widths): on accelerators the whole chunk; on a 2-core CPU groups of 8 in sequence ran
# 1.2x (N=64) to 1.34x (N=128) faster than one wide vmap, and the same below N=8.
VMAP_WIDTH = {"cpu": 8}

# ... unless a trial's matrix products are large and each device has a core to itself (one device
# per core, jt.use_cpu_cores, as the CLI runs): then its trials run one after another inside the
# program (width 1; no batched matmuls). Measured on the built-in tasks with benchmarks/vmap_width.py
# on the 2-core CPU: trials whose matmuls (and convolutions) average at least this many flops ran as
# fast or faster one at a time (the MNIST-1D MLP and CNN, the digits CNN), and compiled faster (a
# program without batched matmuls); smaller ones ran 15% faster in groups of 8 (linear, digits MLP).
# On one device spanning both cores the reference MLP ran 10-30% slower one at a time
# (throughput_cpu_one_device_sequential.json): XLA:CPU spreads a vmapped group's wider products
# over the cores, one trial's products it does not.
SEQUENTIAL_FLOPS = {"cpu": 1e6}

# XLA options the programs are compiled with, per platform, measured with benchmarks/compile.py.
# On XLA:CPU, LLVM's -O3 (the default) takes 30-70% of a training program's compile time and buys
# nothing measurable at run time (the matmuls are library calls); level 2 keeps the loop
# vectorizer, which level 1 drops (1-4% slower runs), and level 0 changes results.
COMPILER_OPTIONS: dict[str, dict[str, Any]] = {"cpu": {"xla_backend_optimization_level": 2}}

# Share of the memory budget a program may use, per platform. XLA's GPU autotuner allocates its own
# scratch copies of a program's operands while compiling (on the H200 100,000-trial run, programs
# sized to 80% of free memory made it fail 13 allocations of 47.7 GiB, each with an HLO dump):
# a GPU program is sized to half the budget, so the first compile of a chunk fits.
MEMORY_HEADROOM = {"gpu": 0.5, "cuda": 0.5, "rocm": 0.5}


def default_vmap_width(device: jax.Device, jaxpr: Any = None, cores_per_device: float | None = None) -> int | None:
    """How many trials to vmap together inside a program on ``device`` (None: all of them).

    With the single trial's ``jaxpr``, a platform with a :data:`SEQUENTIAL_FLOPS` threshold runs
    trials whose matmuls average at least that many flops one at a time (width 1), when each
    device has at most one core (``cores_per_device``, default :func:`cpu_cores_per_device`).
    """
    width = VMAP_WIDTH.get(device.platform)
    threshold = SEQUENTIAL_FLOPS.get(device.platform)
    if width is None or threshold is None or jaxpr is None:
        return width
    if (cpu_cores_per_device() if cores_per_device is None else cores_per_device) > 1:
        return width
    flops, count = matmul_flops(jaxpr)
    return 1 if count and flops / count >= threshold else width


def cpu_cores_per_device() -> float:
    """Cores this process may use per local JAX CPU device (1 after :func:`use_cpu_cores`)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores / max(1, jax.local_device_count("cpu"))


def matmul_flops(jaxpr: Any) -> tuple[float, int]:
    """Flops of the matrix products and convolutions one run of ``jaxpr`` executes, and how many.

    Loops count once per iteration (``scan``'s length; a ``while`` loop's unknown count as one).
    """
    from jax.extend.core import jaxprs_in_params

    flops, count = 0.0, 0
    for eqn in getattr(jaxpr, "jaxpr", jaxpr).eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            k = math.prod(eqn.invars[0].aval.shape[i] for i in contract)
            flops, count = flops + 2.0 * math.prod(eqn.outvars[0].aval.shape) * k, count + 1
        elif name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape  # per output element: kernel window x input features
            per_out = math.prod(rhs) / rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
            flops, count = flops + 2.0 * math.prod(eqn.outvars[0].aval.shape) * per_out, count + 1
        trips = eqn.params.get("length", 1) if name == "scan" else 1
        for sub in jaxprs_in_params(eqn.params):
            f, c = matmul_flops(sub)
            flops, count = flops + trips * f, count + trips * c
    return flops, count


def default_compiler_options(device: jax.Device) -> dict[str, Any]:
    """XLA compiler options for programs on ``device`` (see :data:`COMPILER_OPTIONS`)."""
    return dict(COMPILER_OPTIONS.get(device.platform, {}))


def memory_budget(device: jax.Device, fraction: float = 0.8) -> int | None:
    """Bytes one program may use on ``device``: a fraction of its free memory, or of host RAM on CPU."""
    try:
        stats = device.memory_stats()
    except Exception:
        stats = None
    if stats and "bytes_limit" in stats:
        return int(fraction * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
    try:  # host memory: MemAvailable counts reclaimable page cache, unlike the free pages
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(fraction * int(info["MemAvailable"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        pass
    try:
        return int(fraction * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def program_budget(devices: list[jax.Device]) -> int | None:
    """Bytes one program on ``devices`` may use: the device's budget, shared on a CPU, with headroom."""
    budget = memory_budget(devices[0])
    if budget is None:
        return None
    if devices[0].platform == "cpu":
        budget //= len(devices)  # CPU devices share the host's memory
    return int(budget * MEMORY_HEADROOM.get(devices[0].platform, 1.0))


def use_cpu_cores(n: int | None = None) -> bool:
    """Gives JAX one CPU device per core, so that the executor shards trials over the cores.

    Inside one XLA:CPU program a trial's small matmuls barely use a second core; programs side
    by side on separate devices do (1.7x the trials/s on 2 cores, ``benchmarks/throughput.py``).
    The ``jaxtune`` CLI calls this; in your own script call it right after ``import jax``. GPUs
    and TPUs are unaffected.

    Args:
      n: CPU devices to make (default: the cores this process may run on).

    Returns:
      True if set; False (nothing changed) when the count was chosen already
      (``jax_num_cpu_devices`` or ``--xla_force_host_platform_device_count``), or once JAX has
      run anything (with a warning on a CPU: too late to change).
    """
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = check_int("n (CPU devices)", n)
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") or jax.config.jax_num_cpu_devices > 0:
        return False
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # JAX's backends are initialised already
        if jax.default_backend() == "cpu":
            warnings.warn(
                "jt.use_cpu_cores() was called after JAX started, so JAX keeps one CPU device and trials run on "
                "one core; call it right after `import jax`, before anything runs",
                stacklevel=2,
            )
        return False
    return True


_POOLS: dict[bool, concurrent.futures.ThreadPoolExecutor] = {}


def _compile_pool(program: bool = True) -> concurrent.futures.ThreadPoolExecutor:
    """Worker threads for XLA compilations, shared by all executors and shut down at exit.

    Trial programs compile on up to four threads, whatever the core count (a round's buckets at
    once); a strategy's or scheduler's small programs on one more thread of their own, one at a
    time, so they never wait behind a trial program and take at most one core from it (on 2 cores,
    three compiles at once made a one-trial sweep's trial program compile 1.5x slower).
    """
    if program not in _POOLS:
        name, workers = ("jaxtune-compile", 4) if program else ("jaxtune-compile-small", 1)
        _POOLS[program] = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        atexit.register(_POOLS[program].shutdown, wait=False, cancel_futures=True)
    return _POOLS[program]


_COMPILING = threading.local()  # set on a worker thread while it compiles a trial program


def _on_jax_event(event: str, **kwargs: Any) -> None:
    if event == "/jax/compilation_cache/cache_hits" and getattr(_COMPILING, "program", False):
        CLOCK.cached += 1


def _compile(lowered: jax.stages.Lowered, compiler_options: dict[str, Any], program: bool):
    _COMPILING.program = program
    try:
        return lowered.compile(compiler_options=compiler_options or None)
    finally:
        _COMPILING.program = False


def compile_async(
    lowered: jax.stages.Lowered, compiler_options: dict[str, Any], program: bool = False
) -> concurrent.futures.Future:
    """Compiles ``lowered`` on a worker thread (XLA releases the GIL); a future of the executable.
    A trial ``program`` (trials, or a population's init, segment or mix) is counted in
    :data:`~jaxtune.execute.timing.CLOCK`: ``programs``, and ``cached`` when JAX's persistent
    cache had it (a strategy's or scheduler's small programs are not)."""
    global _LISTENING
    if not _LISTENING:
        jax.monitoring.register_event_listener(_on_jax_event)
        _LISTENING = True
    CLOCK.programs += program
    return _compile_pool(program).submit(_compile, lowered, compiler_options, program)


_LISTENING = False
