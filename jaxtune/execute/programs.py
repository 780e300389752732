"""Compiled programs: a bucket's trials batched, lowered for their devices, compiled once, sized to memory.

A program runs ``width`` trials of one bucket on ``ndev`` devices. :class:`Programs` is the
compile cache keyed by ``(bucket, width, ndev)``; widths come from a small fixed set (powers of
two, the full batch, a memory cap), so later rounds reuse earlier rounds' programs, and a call
with a new shape never silently recompiles (:attr:`Programs.compiles` counts every compilation).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxtune._checks import round_up
from jaxtune.execute.placement import Placement
from jaxtune.execute.platform import compile_async
from jaxtune.execute.timing import CLOCK
from jaxtune.settings import enable_compile_cache

__all__ = ["PROBE_WIDTH", "ProgramCache", "Programs", "TooBig", "batched"]

# A bucket that would run more trials at once than this is first compiled at this width to read
# its memory use, and its chunk is sized from that (memory grows linearly with the trials), so
# the full-width program is never compiled only to be found too big.
PROBE_WIDTH = 256


class TooBig(MemoryError):
    """A compiled program would not fit the memory budget."""


def is_out_of_memory(e: BaseException) -> bool:
    """Whether running or compiling a program failed for lack of memory."""
    return isinstance(e, TooBig) or "RESOURCE_EXHAUSTED" in str(e)


def bytes_needed(compiled) -> int | None:
    """Bytes a compiled program needs (arguments, outputs, temporaries), by XLA's memory analysis."""
    try:
        m = compiled.memory_analysis()
        return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes)
    except Exception:  # not every backend reports it
        return None


def over_leading_axis(fn: Callable, n: int, vmap_width: int | None) -> Callable:
    """``fn`` of one item made into a function of ``n`` items (each argument's leading axis): a vmap
    of all of them, or groups of ``vmap_width`` vmapped items in sequence (``lax.map``), in one program.

    On CPUs a narrow vmap (or none, ``vmap_width=1``) runs as fast as a wide one or faster, compiles
    faster and avoids per-item dispatch (see :data:`~jaxtune.execute.platform.SEQUENTIAL_FLOPS`).
    """
    if vmap_width is None or vmap_width >= n:
        return jax.vmap(fn)
    group = None if vmap_width == 1 else vmap_width  # lax.map's batch_size=1 would still vmap

    def in_sequence(*args):
        return jax.lax.map(lambda a: fn(*a), args, batch_size=group)

    return in_sequence


def over_live_lanes(fn: Callable, n: int, vmap_width: int | None, skipped: Callable | None = None) -> Callable:
    """``fn`` of one item made into ``(live[n], *args[n]) -> outputs[n]``, as :func:`over_leading_axis`
    arranges it, where a group of items (one item with ``vmap_width=1``) none of whose ``live``
    flags is set is skipped (a ``lax.cond`` inside the sequence: no compute); its outputs are
    ``skipped(output_shapes, *group_args)`` (default: zeros). So a program as wide as a round's batch runs a
    chunk of any size at the cost of its live items' groups, and one program serves every chunk.
    A single vmap of every item (``vmap_width`` None, as on GPUs) computes padded items
    alongside the live ones.
    """
    if vmap_width is None or vmap_width >= n:
        whole = jax.vmap(fn)
        return lambda live, *args: whole(*args)
    g = vmap_width
    body = fn if g == 1 else jax.vmap(fn)

    def zeros(shapes, *args):
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def group(item):
        live, args = item
        shapes = jax.eval_shape(body, *args)
        return jax.lax.cond(jnp.any(live), lambda a: body(*a), lambda a: (skipped or zeros)(shapes, *a), args)

    def in_groups(live, *args):
        m = n - n % g  # whole groups; the rest, fewer than a group, one more group after them
        lead = (m // g,) if g == 1 else (m // g, g)
        out = jax.lax.map(group, jax.tree.map(lambda a: a[:m].reshape(*lead, *a.shape[1:]), (live, args)))
        out = jax.tree.map(lambda a: a.reshape(m, *a.shape[len(lead) :]), out)
        if m == n:
            return out
        rest = jax.vmap(fn)(*jax.tree.map(lambda a: a[m:], args))
        return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, rest)

    return in_groups


def batched(single: Callable, width: int, ndev: int, vmap_width: int | None) -> Callable:
    """``single(hp, key)`` for one trial made into ``(hp[width], key_data[width], live[width]) ->
    metrics[width]``.

    Each device runs ``width // ndev`` trials: one trial alone, or all of them, groups with no
    live trial skipped (:func:`over_live_lanes`), in one program.
    """
    local = width // ndev  # trials each device runs
    if local == 1:
        # A vmap of one trial still batches every matmul, which XLA:CPU runs slower than
        # plain ones: run the trial itself and add the trial axis afterwards.
        def over_trials(live, hp, keys):
            out = single(jax.tree.map(lambda v: v[0], hp), keys[0])
            return jax.tree.map(lambda v: v[None], out)
    else:
        over_trials = over_live_lanes(single, local, vmap_width)

    def program(hp, key_data, live):  # keys travel as raw uint32 data: every host can build its shard
        return over_trials(live, hp, jax.random.wrap_key_data(key_data))

    return program


class ProgramCache:
    """Compiled programs by key, shared by the round executor (:class:`Programs`) and
    :class:`~jaxtune.execute.population.Population`: each program is lowered once (in the
    caller's thread), compiled once on a worker thread, counted, and its memory need (XLA's
    memory analysis) read once and checked against the budget.

    Args:
      compiler_options: XLA options for every program.
      budget: bytes one program may use (None: unknown, nothing is checked).
    """

    def __init__(self, compiler_options: dict[str, Any], budget: int | None):
        enable_compile_cache()  # (once per process; see jaxtune.settings)
        self.compiler_options = compiler_options
        self.memory_budget = budget
        self.compiles = 0
        self.futures: dict[Any, concurrent.futures.Future] = {}
        self._needs: dict[Any, int | None] = {}

    def prefetch(self, key: Any, lower: Callable[[], jax.stages.Lowered]) -> None:
        """Starts compiling program ``key`` (``lower()`` traces and lowers it), unless it exists."""
        if key not in self.futures:
            with CLOCK.count("compile_s"):  # tracing and lowering (XLA compiles on a worker thread)
                self.futures[key] = compile_async(lower(), self.compiler_options, program=True)
            self.compiles += 1

    def need(self, key: Any, lower: Callable[[], jax.stages.Lowered]) -> int | None:
        """Bytes program ``key`` needs, by its memory analysis (once per program)."""
        self.prefetch(key, lower)
        if key not in self._needs:  # memory_analysis() takes milliseconds: once a program
            with CLOCK.count("compile_s"):
                self._needs[key] = bytes_needed(self.futures[key].result())
        return self._needs[key]

    def fits(self, key: Any, lower: Callable[[], jax.stages.Lowered]) -> bool:
        """Whether program ``key`` fits the budget (True when either is unknown)."""
        need = self.need(key, lower)
        return need is None or self.memory_budget is None or need <= self.memory_budget

    def get(self, key: Any, lower: Callable[[], jax.stages.Lowered]):
        """The compiled program ``key`` (compiling it if needed)."""
        self.prefetch(key, lower)
        with CLOCK.count("compile_s"):  # waiting for XLA, if it has not finished
            return self.futures[key].result()


class Programs:
    """The compiled programs of one objective: built on demand, compiled on worker threads, cached.

    Args:
      single: ``bucket -> single-trial function`` (:meth:`TrialFunction.single`).
      hp_example: ``{name: ShapeDtypeStruct(())}`` of one trial's traced hyperparameters.
      placement: the devices.
      vmap_width: ``bucket -> trials vmapped together`` (None: the whole chunk).
      compiler_options: XLA options for every program.
      budget: bytes one program may use (None: unknown, no sizing by memory).
      max_batch: most trials one program runs (None: as many as fit).
    """

    def __init__(
        self,
        single: Callable[[tuple], Callable],
        hp_example: Callable[[], Mapping[str, jax.ShapeDtypeStruct]],
        placement: Placement,
        *,
        vmap_width: Callable[[tuple], int | None],
        compiler_options: dict[str, Any],
        budget: int | None,
        max_batch: int | None,
    ):
        self.single = single
        self.hp_example = hp_example
        self.placement = placement
        self.vmap_width = vmap_width
        self.compiler_options = compiler_options
        self.max_batch = max_batch
        self.cache = ProgramCache(compiler_options, budget)
        self.caps: dict[tuple, int] = {}  # per bucket: most trials at once that fit in memory

    @property
    def compiles(self) -> int:
        """Programs compiled so far."""
        return self.cache.compiles

    @property
    def memory_budget(self) -> int | None:
        """Bytes one program may use (None: unknown, no sizing by memory)."""
        return self.cache.memory_budget

    @memory_budget.setter
    def memory_budget(self, value: int | None) -> None:
        self.cache.memory_budget = value

    @property
    def futures(self) -> dict[tuple, concurrent.futures.Future]:
        """``{(bucket, width, ndev): future of the executable}``."""
        return self.cache.futures

    def lower(self, bucket: tuple, width: int, ndev: int) -> jax.stages.Lowered:
        """Traces and lowers the program running ``width`` trials of ``bucket`` on ``ndev`` devices."""
        sharding = self.placement.sharding(ndev) or self.placement.single_device(ndev)
        hp_spec = {n: jax.ShapeDtypeStruct((width,), s.dtype, sharding=sharding) for n, s in self.hp_example().items()}
        key_data = jax.eval_shape(lambda: jax.random.key_data(jax.random.split(jax.random.key(0), width)))
        key_spec = jax.ShapeDtypeStruct(key_data.shape, key_data.dtype, sharding=sharding)
        live_spec = jax.ShapeDtypeStruct((width,), bool, sharding=sharding)
        program = batched(self.single(bucket), width, ndev, self.vmap_width(bucket))
        out_sharding = sharding
        if ndev > 1:
            # Every device runs the one-device program on its own trials (shard_map: no
            # partitioner guesses, e.g. about lax.map's groups); the metrics come back
            # replicated: tiny, and readable on every host. check_vma=False: a trial has no
            # collectives, and its scans may carry values that start equal on every device.
            program = jax.shard_map(
                program, mesh=sharding.mesh, in_specs=sharding.spec, out_specs=sharding.spec, check_vma=False
            )
            out_sharding = self.placement.sharding(ndev, replicated=True)
        return jax.jit(program, out_shardings=out_sharding).lower(hp_spec, key_spec, live_spec)

    def compile_async(self, lowered: jax.stages.Lowered) -> concurrent.futures.Future:
        """Compiles ``lowered`` with these options on a worker thread; a future of the executable."""
        return compile_async(lowered, self.compiler_options)

    def prefetch(self, bucket: tuple, width: int, ndev: int) -> None:
        """Starts compiling the program for ``width`` trials of ``bucket``, unless it exists.

        Tracing and lowering run here, in the caller's thread; XLA's compilation, most of the
        time and free of the GIL, runs on a worker thread, so the programs of several buckets
        compile in parallel and the caller goes on meanwhile. :meth:`get` waits for it.
        """
        self.cache.prefetch((bucket, width, ndev), lambda: self.lower(bucket, width, ndev))

    def need(self, bucket: tuple, width: int, ndev: int) -> int | None:
        """Bytes the program for ``width`` trials needs, by its memory analysis (once per program)."""
        return self.cache.need((bucket, width, ndev), lambda: self.lower(bucket, width, ndev))

    def get(self, bucket: tuple, width: int, ndev: int):
        """The compiled program for ``width`` trials of ``bucket`` (compiling it if needed).

        Raises :class:`TooBig` if its memory analysis exceeds the budget and a narrower program
        could run (the narrowest runs anyway: the budget is an estimate, and a real
        out-of-memory error is still caught by the caller).
        """
        lower = lambda: self.lower(bucket, width, ndev)  # noqa: E731
        if width > ndev and not self.cache.fits((bucket, width, ndev), lower):
            need = self.cache.need((bucket, width, ndev), lower)
            raise TooBig(f"{need / 2**20:.0f} MiB for {width} trials, budget {self.memory_budget / 2**20:.0f} MiB")
        return self.cache.get((bucket, width, ndev), lower)

    def compiled(self, bucket: tuple, width: int, ndev: int):
        """The compiled program for ``width`` trials of ``bucket`` whatever its memory use (what
        :func:`jaxtune.plan` measures; a sweep runs :meth:`get`, which checks it)."""
        return self.cache.get((bucket, width, ndev), lambda: self.lower(bucket, width, ndev))

    def cap(self, bucket: tuple, total: int) -> int:
        """Most trials of ``bucket`` one program runs, in a batch of ``total``."""
        return self.caps.get(bucket, self.max_batch or total)

    def halve(self, bucket: tuple, width: int, ndev: int) -> int:
        """Halves ``bucket``'s cap after its ``width``-trial program ran out of memory (to the power
        of two below ``width``: 24 -> 16 -> 8); the new cap."""
        self.caps[bucket] = round_up(1 << max(0, (width - 1).bit_length() - 1), ndev)
        return self.caps[bucket]

    def width(self, bucket: tuple, n: int, total: int, ndev: int) -> int:
        """The program width for the next ``n`` trials of ``bucket`` in a batch of ``total``.

        One width per bucket and batch size, whatever ``n``: the batch (or the chunk cap, if
        smaller), so every chunk and every round of a study runs on one program, a chunk's
        padded lanes skipped where trials run in sequence (:func:`over_live_lanes`). With several
        devices the width is a multiple of their number: each holds the same share of trials.
        """
        total = round_up(total, ndev)
        cap = self.cap(bucket, total)
        return round_up(min(total, cap), ndev)

    def size_by_probe(self, bucket: tuple, n: int, total: int, ndev: int) -> None:
        """Caps a wide bucket's chunk from a narrow probe program's memory use (see :data:`PROBE_WIDTH`)."""
        probe = round_up(PROBE_WIDTH, ndev)
        if bucket in self.caps or self.memory_budget is None or self.width(bucket, n, total, ndev) <= 2 * probe:
            return
        need = self.need(bucket, probe, ndev)
        if need is None:
            return
        # Linear in the trials from zero: an overestimate (data and code are shared), so it fits.
        fits = int(self.memory_budget / (need / probe))
        if fits < self.width(bucket, n, total, ndev):
            width = max(probe, 1 << (fits.bit_length() - 1))  # a power of two: reused by later rounds
            self.caps[bucket] = round_up(width, ndev)
