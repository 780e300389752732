"""Batched, compiled execution of single-trial objectives, one idea per module.

* :mod:`.trial_function` — one trial of a bucket: the objective with static values bound, traced once, checked;
* :mod:`.programs` — a bucket's trials batched and compiled per (bucket, width, devices), sized to memory;
* :mod:`.placement` — the devices and the trial axis over them;
* :mod:`.platform` — machine facts: CPU devices, memory, compiler options, compile threads;
* :mod:`.executor` — :class:`Executor`, which runs a batch through them chunk by chunk.
"""

from jaxtune.execute.executor import Executor
from jaxtune.execute.placement import Placement
from jaxtune.execute.platform import (
    COMPILER_OPTIONS,
    MEMORY_HEADROOM,
    SEQUENTIAL_FLOPS,
    VMAP_WIDTH,
    default_compiler_options,
    default_vmap_width,
    matmul_flops,
    memory_budget,
    use_cpu_cores,
)
from jaxtune.execute.programs import PROBE_WIDTH, Programs
from jaxtune.execute.trial_function import CURVES, UNROLLED_OPS, TrialFunction, as_metrics

__all__ = [
    "COMPILER_OPTIONS",
    "CURVES",
    "MEMORY_HEADROOM",
    "PROBE_WIDTH",
    "SEQUENTIAL_FLOPS",
    "UNROLLED_OPS",
    "VMAP_WIDTH",
    "Executor",
    "Placement",
    "Programs",
    "TrialFunction",
    "as_metrics",
    "default_compiler_options",
    "default_vmap_width",
    "matmul_flops",
    "memory_budget",
    "use_cpu_cores",
]
