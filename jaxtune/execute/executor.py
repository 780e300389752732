"""The executor: runs a single-trial objective over a batch of trials as compiled programs.

``objective(hp, key) -> {name: scalar}`` (or a scalar) is written for ONE trial. The executor

* splits the batch into *buckets* by the values of static hyperparameters (those that must be
  Python values, e.g. depth) and the power-of-two sizes of masked ones (widths); each bucket
  runs as ``jit(vmap(objective))`` with the static values bound (:mod:`.trial_function`);
* pads each bucket to a power-of-two width or the full batch, whichever is smaller (repeating
  a real trial; padded lanes are dropped), so the number of distinct shapes, hence of compiled
  programs, stays small and a program is reused round after round; wider buckets than
  ``max_batch`` or than fit in memory run in chunks (:mod:`.programs`);
* shards the trial axis over the devices (:mod:`.placement`);
* compiles ahead of time on worker threads, every bucket of a round at once, with the options
  measured best for the platform (:mod:`.platform`).

Hyperparameter values are data, never constants, so new values never cause a recompile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxtune._checks import check_int, round_up
from jaxtune.errors import InputError, InputTypeError
from jaxtune.execute import sharing
from jaxtune.execute.placement import Placement, spread
from jaxtune.execute.platform import default_compiler_options, default_vmap_width, matmul_flops, program_budget
from jaxtune.execute.programs import Programs, is_out_of_memory
from jaxtune.execute.timing import CLOCK
from jaxtune.execute.trial_function import CURVES, TrialFunction
from jaxtune.settings import settings
from jaxtune.space import Space

__all__ = ["Executor"]

logger = logging.getLogger("jaxtune")

Chunk = tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]


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
        sequence with ``lax.map``. ``"auto"`` picks the measured best for the platform and the
        trial's size (:meth:`vmap_width_of`), None vmaps the whole chunk.
      devices: devices to shard the trial axis over (default: all, ``jax.devices()``, which
        spans every host after ``jax.distributed.initialize()``).
      compiler_options: XLA options for every program (``"auto"``: the measured best for the
        platform, :data:`~jaxtune.execute.platform.COMPILER_OPTIONS`; ``{}``: XLA's defaults).

    Examples:
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
        self.trial_fn = TrialFunction(objective, space)
        self.space = space
        self.max_batch = check_int("max_batch", max_batch, none=True)
        self.placement = Placement(devices)
        if isinstance(vmap_width, str) and vmap_width != "auto":
            raise InputError(f"vmap_width must be an int >= 1, None or 'auto', got {vmap_width!r}")
        self.vmap_width = vmap_width if vmap_width == "auto" else check_int("vmap_width", vmap_width, none=True)
        self._widths: dict[tuple, int | None] = {}
        self._flop_counts: dict[tuple, float] = {}
        self._hosts: list[tuple] = []  # buckets with a program, in the order batches chose them (sharing.hosts)
        self._host_of: dict[tuple, tuple] = {}  # each bucket's program, as the latest batch chose it
        if compiler_options == "auto":
            compiler_options = default_compiler_options(self.placement.devices[0])
        if not isinstance(compiler_options, Mapping):
            raise InputTypeError(f"compiler_options must be a dict of XLA options or 'auto', got {compiler_options!r}")
        self.compiler_options = dict(compiler_options)
        self.programs = Programs(
            self.trial_fn.single,
            self.trial_fn.dynamic_example,
            self.placement,
            vmap_width=self.vmap_width_of,
            compiler_options=self.compiler_options,
            budget=program_budget(self.placement.devices),
            max_batch=self.max_batch,
        )

    # What the driver reads.
    @property
    def compiles(self) -> int:
        """Programs compiled so far (each a distinct (bucket, width, devices) shape)."""
        return self.programs.compiles

    @property
    def defaulted(self) -> dict[str, Any]:
        """Hyperparameters the objective read with ``hp.get(name, default)`` that the space lacks."""
        return self.trial_fn.defaulted

    @property
    def devices(self) -> list[jax.Device]:
        """The devices trials are sharded over."""
        return self.placement.devices

    @property
    def num_devices(self) -> int:
        """How many devices trials are sharded over."""
        return self.placement.num_devices

    def vmap_width_of(self, bucket: tuple) -> int | None:
        """Trials vmapped together in ``bucket``'s programs: ``vmap_width``, or with ``"auto"`` the
        platform's choice for this trial's size (:func:`~jaxtune.execute.platform.default_vmap_width`)."""
        if self.vmap_width != "auto":
            return self.vmap_width
        if bucket not in self._widths:
            self.output_shapes(bucket)  # traced and checked first: a bad objective fails with its own error
            self._widths[bucket] = default_vmap_width(self.placement.devices[0], self.trial_fn.jaxpr(bucket))
        return self._widths[bucket]

    def output_shapes(self, bucket: tuple) -> dict[str, jax.ShapeDtypeStruct]:
        """Traces (without running) one trial of ``bucket``; checks it returns scalar metrics."""
        return self.trial_fn.output_shapes(bucket)

    def first_bucket(self) -> tuple:
        """The bucket of the centre of the space: a bucket to trace before any trial is sampled."""
        return self.trial_fn.first_bucket()

    def compile_async(self, lowered: jax.stages.Lowered):
        """Compiles ``lowered`` with this executor's options on a worker thread; a future of the executable."""
        return self.programs.compile_async(lowered)

    def layout(self) -> dict[str, Any]:
        """What decides how trials are batched into programs, hence their floating-point results.

        A trial's metrics are a deterministic function of its hyperparameters and key *and* of the
        program that ran it: the backend, how many devices share a batch, the chunk cap
        (``max_batch``), the trials vmapped together (``vmap_width``), the compiler options, whether
        masked buckets share programs (``jt.configure(share_programs=...)``) and the JAX version.
        With all of these equal, results are bit-for-bit reproducible; change one and they differ
        by rounding, which a chaotic trial (a learning rate near divergence) can amplify into a
        visibly different result.
        """
        return {
            "backend": self.placement.platform,
            "devices": self.num_devices,
            "max_batch": self.max_batch,
            "vmap_width": self.vmap_width,
            "compiler_options": self.compiler_options,
            "share_programs": settings().share_programs,
            "jax": jax.__version__,
        }

    def prefetch_batch(self, n: int) -> None:
        """Starts compiling the first program a batch of ``n`` trials will run, when that is known
        before the trials are sampled (the space has one bucket)."""
        if self.trial_fn.one_bucket:
            ndev = self.placement.devices_for(n)
            self.programs.prefetch((), self.programs.width((), n, n, ndev), ndev)

    def programs_for(self, hp: Mapping[str, Any], only: np.ndarray | None = None) -> list[tuple[tuple, int, int, int]]:
        """The programs a batch will start with: ``(bucket, width, devices, trials)`` per bucket, in
        run order (``trials``: how many of the batch's trials the bucket holds)."""
        n = len(np.asarray(next(iter(hp.values()))))
        ndev = self.placement.devices_for(n)
        out = []
        for bucket, idx in self._buckets(jax.device_get(dict(hp)), only).items():
            out.append((bucket, self.programs.width(bucket, idx.size, round_up(n, ndev), ndev), ndev, idx.size))
        return out

    def _buckets(self, hp_np: Mapping[str, np.ndarray], only: np.ndarray | None) -> dict[tuple, np.ndarray]:
        """The batch's trials by the bucket whose program runs them (after :func:`sharing.hosts`,
        chosen from the whole batch: ``only`` a part of it runs as it would in the whole)."""
        buckets = self.trial_fn.buckets(hp_np)
        if self.space.masked_names and settings().share_programs:
            to = sharing.hosts({b: idx.size for b, idx in buckets.items()}, self.flops, self.placement.platform,
                               len(self.space.static_names), self._hosts)  # fmt: skip
            self._hosts.extend(h for h in dict.fromkeys(to.values()) if h not in self._hosts)
            self._host_of.update(to)
            merged: dict[tuple, list[np.ndarray]] = {}
            for b, idx in buckets.items():
                merged.setdefault(to[b], []).append(idx)
            buckets = {h: np.sort(np.concatenate(parts)) for h, parts in merged.items()}
        if only is not None:
            buckets = {k: idx[np.isin(idx, only)] for k, idx in buckets.items()}
        return {k: idx for k, idx in buckets.items() if idx.size}

    def share(self, hp: Mapping[str, Any]) -> None:
        """Records which programs a batch runs on (:func:`sharing.hosts`) without running it: a
        driver tells the executor every batch of a study in order, a stored one too, so a
        resumed study's later batches share programs as the uninterrupted study's did."""
        self._buckets({n: np.asarray(v) for n, v in jax.device_get(dict(hp)).items()}, None)

    def program_sizes(self, params: Mapping[str, Any]) -> dict[str, int]:
        """The masked sizes of the program that ran (in the last batch) the trial with these
        hyperparameters (plain Python values), where they are larger than its own bucket's: what
        :attr:`~jaxtune.study.records.TrialRecord.program` stores so a replay binds the same ones."""
        own = self.trial_fn.bucket_of(params)
        host = self._host_of.get(own, own)
        n_static = len(self.space.static_names)
        return {n: int(h) for n, h, b in zip(self.space.masked_names, host[n_static:], own[n_static:]) if h != b}

    def flops(self, bucket: tuple) -> float:
        """Matrix-product flops of one trial of ``bucket`` (traced once)."""
        if bucket not in self._flop_counts:
            self.output_shapes(bucket)  # traced and checked first: a bad objective fails with its own error
            self._flop_counts[bucket] = matmul_flops(self.trial_fn.jaxpr(bucket))[0]
        return self._flop_counts[bucket]

    def run(
        self, hp: Mapping[str, Any], keys: jax.Array, *, only: np.ndarray | None = None, group: int = 1
    ) -> Iterator[Chunk]:
        """Runs the trials of a batch, yielding ``(indices, {metric: f[n]}, {curve: f[n, S]})`` per chunk.

        Args:
          hp: ``{name: Array[N]}`` as made by :meth:`Space.from_unit`.
          keys: ``N`` PRNG keys, one per trial.
          only: optional subset of trial indices to run (e.g. those missing after a crash).
          group: chunks hold whole groups of this many consecutive trials (a configuration's
            seeds), so a rerun of the groups not stored chunks them as the first run did (unless
            one group is more than a chunk can hold: then chunks split it).

        Yields each chunk as soon as it has finished, so a caller can store it before the next
        one starts.
        """
        hp_np = {n: np.asarray(v) for n, v in jax.device_get(dict(hp)).items()}
        ndev = self.placement.devices_for(keys.shape[0])
        total = round_up(keys.shape[0], ndev)
        key_data = np.asarray(jax.random.key_data(keys))
        buckets = self._buckets(hp_np, only)
        for bucket, idx in buckets.items():  # every bucket's first program compiles at once
            self.trial_fn.output_shapes(bucket)
            self.programs.size_by_probe(bucket, idx.size, total, ndev)
            self.programs.prefetch(bucket, self.programs.width(bucket, idx.size, total, ndev), ndev)
        for bucket, idx in buckets.items():
            yield from self._run_bucket(bucket, idx, hp_np, key_data, total, ndev, group)

    def _run_bucket(self, bucket, idx, hp_np, key_data, total, ndev, group=1) -> Iterator[Chunk]:
        """Runs one bucket's trials chunk by chunk, halving the chunk when it runs out of memory."""
        dyn_names = [n for n in self.space.names if n not in self.space.static_names]
        start = 0
        while start < idx.size:
            cap = self.programs.cap(bucket, total)
            cap = cap - cap % group if cap >= group else cap  # whole groups when a group fits a chunk
            part = idx[start : start + cap]
            width = self.programs.width(bucket, part.size, total, ndev)
            at = spread(part.size, width, ndev)
            lanes = np.full(width, part[-1])  # padded with a real trial
            lanes[at] = part
            try:
                program = self.programs.get(bucket, width, ndev)
                live = np.zeros(width, bool)  # padded lanes: skipped where trials run in sequence
                live[at] = True
                inputs = self.placement.put(({n: hp_np[n][lanes] for n in dyn_names}, key_data[lanes], live), ndev)
                with CLOCK.count("trials_s"):  # to the results on the host
                    out = jax.device_get(program(*inputs))
            except Exception as e:
                if not is_out_of_memory(e) or cap <= ndev:
                    raise
                # Out of memory: halve this bucket's chunk and carry on from the same trial.
                logger.warning(
                    "jaxtune: %d trials at once do not fit in memory; running %d at a time",
                    width,
                    self.programs.halve(bucket, width, ndev),
                )
                continue
            curves = {n: np.asarray(v)[at] for n, v in out.pop(CURVES, {}).items()}
            yield part, {n: np.asarray(v)[at] for n, v in out.items()}, curves
            start += part.size
