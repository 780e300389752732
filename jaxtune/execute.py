"""The executor: runs a single-trial objective over a batch of trials as compiled programs.

``objective(hp, key) -> {name: scalar}`` (or a scalar) is written for ONE trial. The executor

* splits the batch into *buckets* by the values of static hyperparameters (those that must be
  Python values, e.g. depth) and the power-of-two sizes of masked ones (widths); each bucket
  runs as ``jit(vmap(objective))`` with the static values bound;
* pads each bucket to a power-of-two width or the full batch, whichever is smaller (repeating
  a real trial; padded lanes are dropped),
  so the number of distinct shapes, hence of compiled programs, stays small and a program is
  reused round after round; wider buckets than ``max_batch`` run in chunks;
* compiles ahead of time (``lower().compile()``) and caches the executables by
  ``(static values, width)``: a call with a new shape can never silently recompile, and
  :attr:`Executor.compiles` counts every compilation. The objective's Python is traced once
  per bucket; XLA compiles on worker threads, every bucket of a round at once;
* compiles with the options measured best for the platform (:data:`COMPILER_OPTIONS`).

Hyperparameter values are data, never constants, so new values never cause a recompile.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune.hyperparameters import Hyperparameters, Reads
from jaxtune.space import Masked, Space, bucket_size

__all__ = ["Executor", "as_metrics", "use_cpu_cores", "CURVES"]

# An objective may return learning curves under this key: {"step": i32[S], name: f32[S], ...}.
CURVES = "curves"

Metrics = dict[str, jax.Array]

logger = logging.getLogger("jaxtune")


def as_metrics(out: Any) -> Metrics:
    """Normalises an objective's return value to ``{name: scalar}`` (a bare scalar is ``"value"``)."""
    if isinstance(out, Mapping):
        return dict(out)
    return {"value": out}


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _compile_pool() -> concurrent.futures.ThreadPoolExecutor:
    """Worker threads for XLA compilations (shared by all executors).

    Four, whatever the core count: a round's trial program should start compiling at once, not
    wait behind the driver's small programs (plan, init, tell) on a 2-core machine.
    """
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="jaxtune-compile")
    return _POOL


class _TooBig(MemoryError):
    """A compiled program would not fit the memory budget."""


def _bytes_needed(compiled) -> int | None:
    try:
        m = compiled.memory_analysis()
        return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes)
    except Exception:  # not every backend reports it
        return None


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
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (CPU devices), got {n!r}")
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


# A trial whose top-level program has more operations than this was probably written with a Python
# loop over steps: the built-in trainers trace to 57-118 (init, one lax.scan, evaluation).
UNROLLED_OPS = 5000

# Trials vmapped together inside one program, per platform, measured with benchmarks/throughput.py
# (--vmap-widths): on accelerators the whole chunk; on a 2-core CPU groups of 8 in sequence ran
# 1.2x (N=64) to 1.34x (N=128) faster than one wide vmap, and the same below N=8.
VMAP_WIDTH = {"cpu": 8}


def default_vmap_width(device: jax.Device) -> int | None:
    """How many trials to vmap together inside a program on ``device`` (None: all of them)."""
    return VMAP_WIDTH.get(device.platform)


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

# A bucket that would run more trials at once than this is first compiled at this width to read
# its memory use, and its chunk is sized from that (memory grows linearly with the trials), so
# the full-width program is never compiled only to be found too big.
PROBE_WIDTH = 256


def default_compiler_options(device: jax.Device) -> dict[str, Any]:
    """XLA compiler options for programs on ``device`` (see :data:`COMPILER_OPTIONS`)."""
    return dict(COMPILER_OPTIONS.get(device.platform, {}))


class Executor:
    """Batched, compiled execution of a single-trial objective over a :class:`Space`.

    Args:
      objective: ``objective(hp, key)`` for one trial; ``hp`` maps names to scalar arrays
        (static parameters: Python values).
      space: the search space the hyperparameters come from.
      max_batch: most trials one compiled program runs at once (None: as many as fit; a chunk
        that would not fit in memory, by the compiled program's memory analysis or an
        out-of-memory error, is halved and retried).
      vmap_width: trials vmapped together inside a program; wider chunks run those groups in
        sequence with ``lax.map``. ``"auto"`` picks the measured best for the platform, None
        vmaps the whole chunk.
      devices: devices to shard the trial axis over (default: all, ``jax.devices()``, which
        spans every host after ``jax.distributed.initialize()``).
      compiler_options: XLA options for every program (``"auto"``: the measured best for the
        platform, :data:`COMPILER_OPTIONS`; ``{}``: XLA's defaults).

    Example:
      >>> import jaxtune as jt
      >>> space = jt.Space({"x": jt.Float(-2, 2)})
      >>> ex = Executor(lambda hp, key: {"loss": (hp["x"] - 1) ** 2}, space)
      >>> key = jax.random.key(0)
      >>> for idx, metrics, curves in ex.run(space.sample(key, 8), jax.random.split(key, 8)):
      ...     print(idx.tolist(), metrics["loss"].shape)
      [0, 1, 2, 3, 4, 5, 6, 7] (8,)
    """

    def __init__(
        self,
        objective: Callable[..., Any],
        space: Space,
        *,
        max_batch: int | None = None,
        vmap_width: int | None | str = "auto",
        devices: Sequence[jax.Device] | None = None,
        compiler_options: Mapping[str, Any] | str = "auto",
    ):
        if not callable(objective):
            raise TypeError(f"objective must be callable as objective(hp, key), got {objective!r}")
        for name, v in (("max_batch", max_batch), ("vmap_width", None if vmap_width == "auto" else vmap_width)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be a positive int or None, got {v!r}")
        self.objective = objective
        self.space = space
        self.max_batch = max_batch
        self.devices = list(devices) if devices is not None else jax.devices()
        self.num_devices = len(self.devices)
        if vmap_width == "auto":
            vmap_width = default_vmap_width(self.devices[0])
        self.vmap_width = vmap_width
        if compiler_options == "auto":
            compiler_options = default_compiler_options(self.devices[0])
        if not isinstance(compiler_options, Mapping):
            raise TypeError(f"compiler_options must be a dict of XLA options or 'auto', got {compiler_options!r}")
        self.compiler_options = dict(compiler_options)
        self._memory_budget = memory_budget(self.devices[0])
        if self._memory_budget is not None:
            if self.devices[0].platform == "cpu":
                self._memory_budget //= len(self.devices)  # CPU devices share the host's memory
            self._memory_budget = int(self._memory_budget * MEMORY_HEADROOM.get(self.devices[0].platform, 1.0))
        self._cap: dict[tuple, int] = {}
        self.compiles = 0
        self._programs: dict[tuple, Any] = {}
        self._singles: dict[tuple, Callable] = {}
        self._needs: dict[tuple, int | None] = {}
        self._shapes: dict[tuple, dict[str, jax.ShapeDtypeStruct]] = {}
        self._reads: dict[tuple, Reads] = {}
        self._warned_unread = False
        # Hyperparameters the objective read with hp.get(name, default) that the space lacks.
        self.defaulted: dict[str, Any] = {}

    def layout(self) -> dict[str, Any]:
        """What decides how trials are batched into programs, hence their floating-point results.

        A trial's metrics are a deterministic function of its hyperparameters and key *and* of the
        program that ran it: the backend, how many devices share a batch, the chunk cap
        (``max_batch``), the trials vmapped together (``vmap_width``), the compiler options and the
        JAX version. With all of these equal, results are bit-for-bit reproducible; change one and
        they differ by rounding, which a chaotic trial (a learning rate near divergence) can
        amplify into a visibly different result.
        """
        return {
            "backend": self.devices[0].platform,
            "devices": self.num_devices,
            "max_batch": self.max_batch,
            "vmap_width": self.vmap_width,
            "compiler_options": self.compiler_options,
            "jax": jax.__version__,
        }

    def _single(self, bucket: tuple) -> Callable[[Mapping[str, jax.Array], jax.Array], Metrics]:
        n_static = len(self.space.static_names)
        bound = dict(zip(self.space.static_names, bucket[:n_static]))
        sizes = dict(zip(self.space.masked_names, bucket[n_static:]))

        reads = self._reads.setdefault(bucket, Reads())

        def trial(hp, key):
            masked = {n: Masked(hp[n], size) for n, size in sizes.items()}
            return as_metrics(self.objective(Hyperparameters({**hp, **bound, **masked}, reads), key))

        # Jitted so that the objective's Python is traced once per bucket: the trace made for
        # output_shapes is reused by every program of the bucket (vmapped, mapped or single).
        if bucket not in self._singles:
            self._singles[bucket] = jax.jit(trial)
        return self._singles[bucket]

    def _dynamic_example(self) -> dict[str, jax.ShapeDtypeStruct]:
        hp = jax.eval_shape(lambda: self.space.from_unit(jnp.zeros((1, self.space.dim))))
        return {n: jax.ShapeDtypeStruct((), v.dtype) for n, v in hp.items() if n not in self.space.static_names}

    @property
    def one_bucket(self) -> bool:
        """Whether every trial runs in the same bucket (no static or masked parameters)."""
        return not self.space.static_names and not self.space.masked_names

    def first_bucket(self) -> tuple:
        """The bucket of the centre of the space: a bucket to trace before any trial is sampled."""
        if self.one_bucket:
            return ()
        centre = jax.jit(self.space.from_unit)(jnp.full((1, self.space.dim), 0.5, jnp.float32))
        return next(iter(self.buckets(centre)))

    def output_shapes(self, static: tuple) -> dict[str, jax.ShapeDtypeStruct]:
        """Traces (without running) one trial for a static tuple; checks it returns scalar metrics."""
        if static not in self._shapes:
            key = jax.eval_shape(lambda: jax.random.key(0))
            try:
                out = jax.eval_shape(self._single(static), self._dynamic_example(), key)
            except Exception as e:  # the user's objective failed to trace: say for which bucket
                e.add_note(f"jaxtune: raised while tracing the objective for one trial with bucket {static}")
                raise
            self._check_reads(static)
            self._check_unrolled(static, key)
            curves = out.get(CURVES, {})
            if (
                not isinstance(curves, Mapping)
                or any(getattr(v, "ndim", None) != 1 for v in curves.values())
                or len({v.shape for v in curves.values()}) > 1
            ):
                raise ValueError(f"objective's {CURVES!r} must be a dict of 1-D arrays of one length, got {curves!r}")
            bad = {
                n: getattr(v, "shape", type(v).__name__)
                for n, v in out.items()
                if n != CURVES and getattr(v, "shape", None) != ()
            }
            if bad:
                raise ValueError(f"objective must return scalar metrics for one trial; these are not scalars: {bad}")
            if not any(n != CURVES for n in out):
                raise ValueError("objective returned no metrics (an empty dict)")
            self._shapes[static] = out
        return self._shapes[static]

    def _check_unrolled(self, static: tuple, key) -> None:
        """Warns when the trial traced to so many operations outside any loop that a Python loop over
        training steps was probably unrolled (it compiles for minutes where ``lax.scan`` takes seconds)."""
        try:  # the trace is cached by eval_shape's: this costs no second trace
            n = len(self._single(static).trace(self._dynamic_example(), key).jaxpr.eqns)
        except Exception:  # an older or newer jax without Traced.jaxpr: skip the check
            return
        if n > UNROLLED_OPS:
            warnings.warn(
                f"the objective traced to {n} operations outside any loop: a Python `for` loop over training "
                "steps is unrolled into the program and compiles very slowly (minutes for a few hundred steps). "
                "Write the loop as jax.lax.scan (README.md, 'Training loops')",
                stacklevel=4,
            )

    def _check_reads(self, static: tuple) -> None:
        """Warns (once) about space parameters the objective never reads; notes defaults it used."""
        reads = self._reads[static]
        self.defaulted.update(reads.defaulted)
        unread = [n for n in self.space.names if n not in reads.read]
        if unread and not self._warned_unread:
            self._warned_unread = True
            warnings.warn(
                f"the objective never reads hyperparameter(s) {unread} of the search space: tuning them changes "
                "nothing (a typo, or a parameter this objective does not have?)",
                stacklevel=4,
            )

    def _lower(self, static: tuple, width: int, ndev: int):
        """Traces and lowers the program running ``width`` trials of bucket ``static`` on ``ndev`` devices."""
        dyn = self._dynamic_example()
        sharding = self._sharding(ndev)
        hp_spec = {n: jax.ShapeDtypeStruct((width,), s.dtype, sharding=sharding) for n, s in dyn.items()}
        # Keys travel as raw uint32 data so that every host can build its shard of them.
        key_data = jax.eval_shape(lambda: jax.random.key_data(jax.random.split(jax.random.key(0), width)))
        key_spec = jax.ShapeDtypeStruct(key_data.shape, key_data.dtype, sharding=sharding)
        single = self._single(static)
        inner = self.vmap_width
        local = width // ndev  # trials each device runs
        if local == 1:
            # A vmap of one trial still batches every matmul, which XLA:CPU runs slower than
            # plain ones: run the trial itself and add the trial axis afterwards.
            def over_trials(hp, keys):
                out = single(jax.tree.map(lambda v: v[0], hp), keys[0])
                return jax.tree.map(lambda v: v[None], out)
        elif inner is None or inner >= local:
            over_trials = jax.vmap(single)
        else:
            # Sequential over groups of `inner` vmapped trials, in one program: on CPUs a
            # narrow vmap runs faster than a wide one and avoids per-trial dispatch.
            def over_trials(hp, keys):
                group = None if inner == 1 else inner  # lax.map's batch_size=1 would still vmap
                return jax.lax.map(lambda a: single(*a), (hp, keys), batch_size=group)

        def batched(hp, key_data):
            return over_trials(hp, jax.random.wrap_key_data(key_data))

        out_sharding = None
        if sharding is not None:
            # Every device runs the one-device program on its own trials (shard_map: no
            # partitioner guesses, e.g. about lax.map's groups); the metrics come back
            # replicated: tiny, and readable on every host. check_vma=False: a trial has no
            # collectives, and its scans may carry values that start equal on every device.
            batched = jax.shard_map(
                batched, mesh=sharding.mesh, in_specs=sharding.spec, out_specs=sharding.spec, check_vma=False
            )
            out_sharding = self._sharding(ndev, replicated=True)
        elif ndev < self.num_devices or self.devices[0] != jax.devices()[0]:
            out_sharding = jax.sharding.SingleDeviceSharding(self.devices[0])
            hp_spec = {n: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=out_sharding) for n, s in hp_spec.items()}
            key_spec = jax.ShapeDtypeStruct(key_spec.shape, key_spec.dtype, sharding=out_sharding)
        return jax.jit(batched, out_shardings=out_sharding).lower(hp_spec, key_spec)

    def devices_for(self, total: int) -> int:
        """How many devices a batch of ``total`` trials runs on: all of them, or one per trial when fewer.

        A batch smaller than the device count would otherwise pad every device with copies of
        a real trial: wasted work that, on a CPU, competes for the cores the real trials use.
        """
        return max(1, min(self.num_devices, total))

    def prefetch(self, static: tuple, width: int, ndev: int | None = None) -> None:
        """Starts compiling the program for ``width`` trials of bucket ``static``, unless it exists.

        Tracing and lowering run here, in the caller's thread; XLA's compilation, most of the
        time and free of the GIL, runs on a worker thread, so the programs of several buckets
        compile in parallel and the caller goes on meanwhile. :meth:`_program` waits for it.
        """
        ndev = self.num_devices if ndev is None else ndev
        cache_key = (static, width, ndev)
        if cache_key not in self._programs:
            self._programs[cache_key] = self.compile_async(self._lower(static, width, ndev))
            self.compiles += 1

    def prefetch_batch(self, n: int) -> None:
        """Starts compiling the first program a batch of ``n`` trials will run, when that is known
        before the trials are sampled (the space has one bucket)."""
        if self.one_bucket:
            ndev = self.devices_for(n)
            self.prefetch((), self.chunk_width((), n, n, ndev), ndev)

    def compile_async(self, lowered: jax.stages.Lowered) -> concurrent.futures.Future:
        """Compiles ``lowered`` with this executor's options on a worker thread; a future of the executable."""
        return _compile_pool().submit(lowered.compile, compiler_options=self.compiler_options or None)

    def _need(self, static: tuple, width: int, ndev: int) -> int | None:
        """Bytes the compiled program for ``width`` trials needs, by its memory analysis (once per program)."""
        cache_key = (static, width, ndev)
        self.prefetch(static, width, ndev)
        if cache_key not in self._needs:  # memory_analysis() takes milliseconds: once a program
            self._needs[cache_key] = _bytes_needed(self._programs[cache_key].result())
        return self._needs[cache_key]

    def _program(self, static: tuple, width: int, ndev: int | None = None):
        """The compiled program for ``width`` trials of bucket ``static`` (compiling it if needed)."""
        ndev = self.num_devices if ndev is None else ndev
        need = self._need(static, width, ndev)
        # The budget is an estimate: the narrowest chunk runs anyway (a real out-of-memory
        # error is still caught in run).
        too_big = need is not None and self._memory_budget is not None and need > self._memory_budget
        if too_big and width > ndev:
            raise _TooBig(f"{need / 2**20:.0f} MiB for {width} trials, budget {self._memory_budget / 2**20:.0f} MiB")
        return self._programs[(static, width, ndev)].result()

    def _size_by_probe(self, static: tuple, n: int, total: int, ndev: int) -> None:
        """Caps a wide bucket's chunk from a narrow probe program's memory use (see :data:`PROBE_WIDTH`)."""
        probe = _round_up(PROBE_WIDTH, ndev)
        if static in self._cap or self._memory_budget is None or self.chunk_width(static, n, total, ndev) <= 2 * probe:
            return
        need = self._need(static, probe, ndev)
        if need is None:
            return
        # Linear in the trials from zero: an overestimate (data and code are shared), so it fits.
        fits = int(self._memory_budget / (need / probe))
        if fits < self.chunk_width(static, n, total, ndev):
            width = max(probe, 1 << (fits.bit_length() - 1))  # a power of two: reused by later rounds
            self._cap[static] = _round_up(width, ndev)

    def chunk_width(self, static: tuple, n: int, total: int, ndev: int | None = None) -> int:
        """The program width for the next ``n`` trials of bucket ``static`` in a batch of ``total``.

        Widths come from a small fixed set (powers of two, the full batch, the chunk cap), so
        later rounds reuse the programs compiled for earlier ones. With several devices the
        width is a multiple of their number: each holds the same share of trials.
        """
        ndev = self.num_devices if ndev is None else ndev
        total = _round_up(total, ndev)
        cap = self._cap.get(static, self.max_batch or total)
        return _round_up(min(_next_pow2(min(n, cap)), total, cap), ndev)

    def _sharding(self, ndev: int, replicated: bool = False):
        """The trial axis split over the first ``ndev`` of ``self.devices`` (None on one device)."""
        if ndev == 1:
            return None
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(np.asarray(self.devices[:ndev]), ("trials",))
        return NamedSharding(mesh, PartitionSpec() if replicated else PartitionSpec("trials"))

    def _put(self, tree: Any, sharding) -> Any:
        """Puts a chunk's inputs (a pytree of host arrays) on its devices."""
        if sharding is None:
            return jax.device_put(tree, self.devices[0])
        # Each host fills only the shards its devices hold (works across hosts, too).
        return jax.tree.map(lambda x: jax.make_array_from_callback(x.shape, sharding, lambda index: x[index]), tree)

    def buckets(self, hp: Mapping[str, Any]) -> dict[tuple, np.ndarray]:
        """Groups trial indices by bucket: static values, then masked sizes (first-seen order)."""
        static, masked = self.space.static_names, self.space.masked_names
        if self.one_bucket:
            n = len(np.asarray(next(iter(hp.values()))))
            return {(): np.arange(n)}
        rows = self.space.to_python({n: hp[n] for n in self.space.params})
        groups: dict[tuple, list[int]] = {}
        for i, row in enumerate(rows):
            key = tuple(row[n] for n in static) + tuple(bucket_size(row[n]) for n in masked)
            groups.setdefault(key, []).append(i)
        return {k: np.asarray(v) for k, v in groups.items()}

    def run(
        self, hp: Mapping[str, Any], keys: jax.Array, *, only: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]]:
        """Runs the trials of a batch, yielding ``(indices, {metric: f[n]}, {curve: f[n, S]})`` per chunk.

        Args:
          hp: ``{name: Array[N]}`` as made by :meth:`Space.from_unit`.
          keys: ``N`` PRNG keys, one per trial.
          only: optional subset of trial indices to run (e.g. those missing after a crash).

        Yields each chunk as soon as it has finished, so a caller can store it before the next
        one starts.
        """
        hp_np = {n: np.asarray(v) for n, v in jax.device_get(dict(hp)).items()}
        ndev = self.devices_for(keys.shape[0])
        total = _round_up(keys.shape[0], ndev)
        dyn_names = [n for n in self.space.names if n not in self.space.static_names]
        sharding = self._sharding(ndev)
        key_data = np.asarray(jax.random.key_data(keys))
        buckets = self.buckets(hp_np)
        if only is not None:
            buckets = {k: idx[np.isin(idx, only)] for k, idx in buckets.items()}
        buckets = {k: idx for k, idx in buckets.items() if idx.size}
        for static, idx in buckets.items():  # every bucket's first program compiles at once
            self.output_shapes(static)
            self._size_by_probe(static, idx.size, total, ndev)
            self.prefetch(static, self.chunk_width(static, idx.size, total, ndev), ndev)
        for static, idx in buckets.items():
            start = 0
            while start < idx.size:
                cap = self._cap.get(static, self.max_batch or total)
                part = idx[start : start + cap]
                width = self.chunk_width(static, part.size, total, ndev)
                lanes = np.concatenate([part, np.full(width - part.size, part[-1])])
                try:
                    program = self._program(static, width, ndev)
                    inputs = self._put(({n: hp_np[n][lanes] for n in dyn_names}, key_data[lanes]), sharding)
                    out = jax.device_get(program(*inputs))
                except Exception as e:
                    if not (isinstance(e, _TooBig) or "RESOURCE_EXHAUSTED" in str(e)) or cap <= ndev:
                        raise
                    # Out of memory: halve this bucket's chunk and carry on from the same trial.
                    self._cap[static] = _round_up(max(1, min(cap, width) // 2), ndev)
                    logger.warning(
                        "jaxtune: %d trials at once do not fit in memory; running %d at a time",
                        width,
                        self._cap[static],
                    )
                    continue
                curves = {n: np.asarray(v)[: part.size] for n, v in out.pop(CURVES, {}).items()}
                yield part, {n: np.asarray(v)[: part.size] for n, v in out.items()}, curves
                start += part.size
