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
  :attr:`Executor.compiles` counts every compilation.

Hyperparameter values are data, never constants, so new values never cause a recompile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune.space import Masked, Space, bucket_size

__all__ = ["Executor", "as_metrics", "CURVES"]

# An objective may return learning curves under this key: {"step": i32[S], name: f32[S], ...}.
CURVES = "curves"

Metrics = dict[str, jax.Array]


def as_metrics(out: Any) -> Metrics:
    """Normalises an objective's return value to ``{name: scalar}`` (a bare scalar is ``"value"``)."""
    if isinstance(out, Mapping):
        return dict(out)
    return {"value": out}


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class Executor:
    """Batched, compiled execution of a single-trial objective over a :class:`Space`.

    Args:
      objective: ``objective(hp, key)`` for one trial; ``hp`` maps names to scalar arrays
        (static parameters: Python values).
      space: the search space the hyperparameters come from.
      max_batch: most trials one compiled program runs at once (None: no limit).

    Example:
      >>> ex = Executor(lambda hp, key: {"loss": (hp["x"] - 1) ** 2}, Space({"x": Float(-2, 2)}))
      >>> for idx, metrics in ex.run(space.sample(key, 8), jax.random.split(key, 8)): ...
    """

    def __init__(self, objective: Callable[..., Any], space: Space, *, max_batch: int | None = None):
        if not callable(objective):
            raise TypeError(f"objective must be callable as objective(hp, key), got {objective!r}")
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
            raise ValueError(f"max_batch must be a positive int or None, got {max_batch!r}")
        self.objective = objective
        self.space = space
        self.max_batch = max_batch
        self.compiles = 0
        self._programs: dict[tuple, Any] = {}
        self._shapes: dict[tuple, dict[str, jax.ShapeDtypeStruct]] = {}

    def _single(self, bucket: tuple) -> Callable[[Mapping[str, jax.Array], jax.Array], Metrics]:
        n_static = len(self.space.static_names)
        bound = dict(zip(self.space.static_names, bucket[:n_static]))
        sizes = dict(zip(self.space.masked_names, bucket[n_static:]))

        def trial(hp, key):
            masked = {n: Masked(hp[n], size) for n, size in sizes.items()}
            return as_metrics(self.objective({**hp, **bound, **masked}, key))

        return trial

    def _dynamic_example(self) -> dict[str, jax.ShapeDtypeStruct]:
        hp = jax.eval_shape(lambda: self.space.from_unit(jnp.zeros((1, self.space.dim))))
        return {n: jax.ShapeDtypeStruct((), v.dtype) for n, v in hp.items() if n not in self.space.static_names}

    def output_shapes(self, static: tuple) -> dict[str, jax.ShapeDtypeStruct]:
        """Traces (without running) one trial for a static tuple; checks it returns scalar metrics."""
        if static not in self._shapes:
            key = jax.eval_shape(lambda: jax.random.key(0))
            try:
                out = jax.eval_shape(self._single(static), self._dynamic_example(), key)
            except Exception as e:  # the user's objective failed to trace: say for which bucket
                e.add_note(f"jaxtune: raised while tracing the objective for one trial with bucket {static}")
                raise
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

    def _program(self, static: tuple, width: int):
        cache_key = (static, width)
        if cache_key not in self._programs:
            dyn = self._dynamic_example()
            hp_spec = {n: jax.ShapeDtypeStruct((width,), s.dtype) for n, s in dyn.items()}
            key_spec = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), width))
            batched = jax.jit(jax.vmap(self._single(static)))
            self._programs[cache_key] = batched.lower(hp_spec, key_spec).compile()
            self.compiles += 1
        return self._programs[cache_key]

    def buckets(self, hp: Mapping[str, Any]) -> dict[tuple, np.ndarray]:
        """Groups trial indices by bucket: static values, then masked sizes (first-seen order)."""
        static, masked = self.space.static_names, self.space.masked_names
        if not static and not masked:
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
        hp_np = {n: np.asarray(v) for n, v in hp.items()}
        total = keys.shape[0]
        dyn_names = [n for n in self.space.names if n not in self.space.static_names]
        for static, idx in self.buckets(hp_np).items():
            if only is not None:
                idx = idx[np.isin(idx, only)]
            if idx.size == 0:
                continue
            self.output_shapes(static)
            cap = self.max_batch or idx.size
            for start in range(0, idx.size, cap):
                part = idx[start : start + cap]
                # Widths come from a small fixed set (powers of two, the full batch, max_batch),
                # so later rounds reuse the programs compiled for earlier ones.
                width = min(_next_pow2(part.size), total, cap if self.max_batch else total)
                lanes = np.concatenate([part, np.full(width - part.size, part[-1])])
                program = self._program(static, width)
                out = program({n: jnp.asarray(hp_np[n][lanes]) for n in dyn_names}, keys[lanes])
                out = jax.device_get(out)
                curves = {n: np.asarray(v)[: part.size] for n, v in out.pop(CURVES, {}).items()}
                yield part, {n: np.asarray(v)[: part.size] for n, v in out.items()}, curves
