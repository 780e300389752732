"""One trial of a bucket: the user's objective with its static values bound, traced once and checked.

A *bucket* is a tuple: the values of the space's static hyperparameters, then the power-of-two
sizes of its masked ones. Every trial of a bucket has the same shapes, so one program runs them
all; :class:`TrialFunction` makes the single-trial function of a bucket and checks what it returns.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune.errors import InputError, InputTypeError, UnreadParameterWarning
from jaxtune.execute.timing import CLOCK
from jaxtune.space import Masked, Space, bucket_size
from jaxtune.space.hyperparameters import Hyperparameters, Reads

__all__ = ["CURVES", "UNROLLED_OPS", "Metrics", "TrialFunction", "as_metrics"]

# An objective may return learning curves under this key: {"step": i32[S], name: f32[S], ...}.
CURVES = "curves"

# A trial whose top-level program has more operations than this was probably written with a Python
# loop over steps: the built-in trainers trace to 57-118 (init, one lax.scan, evaluation).
UNROLLED_OPS = 5000

Metrics = dict[str, jax.Array]


def as_metrics(out: Any) -> Metrics:
    """Normalises an objective's return value to ``{name: scalar}`` (a bare scalar is ``"value"``)."""
    if isinstance(out, Mapping):
        return dict(out)
    return {"value": out}


class TrialFunction:
    """The single-trial functions of an objective over a space, one per bucket, and their checks.

    Args:
      objective: ``objective(hp, key)`` for one trial.
      space: the space its hyperparameters come from.
    """

    def __init__(self, objective: Callable[..., Any], space: Space):
        if not callable(objective):
            raise InputTypeError(f"objective must be callable as objective(hp, key), got {objective!r}")
        self.objective = objective
        self.space = space
        self._singles: dict[tuple, Callable] = {}
        self._shapes: dict[tuple, dict[str, jax.ShapeDtypeStruct]] = {}
        self._reads: dict[tuple, Reads] = {}
        # Hyperparameters the driver consumes itself (continued halving's budget): never "unread".
        self.driven: frozenset[str] = frozenset()
        self._warned_unread = False
        # Hyperparameters the objective read with hp.get(name, default) that the space lacks.
        self.defaulted: dict[str, Any] = {}

    @property
    def one_bucket(self) -> bool:
        """Whether every trial runs in the same bucket (no static or masked parameters)."""
        return not self.space.static_names and not self.space.masked_names

    def buckets(self, hp: Mapping[str, Any]) -> dict[tuple, np.ndarray]:
        """Groups trial indices by bucket: static values, then masked sizes (first-seen order)."""
        if self.one_bucket:
            n = len(np.asarray(next(iter(hp.values()))))
            return {(): np.arange(n)}
        rows = self.space.to_python({n: hp[n] for n in self.space.params})
        groups: dict[tuple, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(self.bucket_of(row), []).append(i)
        return {k: np.asarray(v) for k, v in groups.items()}

    def bucket_of(self, row: Mapping[str, Any]) -> tuple:
        """The bucket of one trial's hyperparameters (plain Python values): its static values, then
        its masked values' power-of-two sizes (an inactive conditional parameter: None)."""
        static, masked = self.space.static_names, self.space.masked_names
        return tuple(row.get(n) for n in static) + tuple(bucket_size(row[n]) if n in row else None for n in masked)

    def first_bucket(self) -> tuple:
        """The bucket of the centre of the space: a bucket to trace before any trial is sampled."""
        if self.one_bucket:
            return ()
        with CLOCK.count("compile_s"):  # a compile and one tiny call
            centre = jax.jit(self.space.from_unit)(jnp.full((1, self.space.dim), 0.5, jnp.float32))
        return next(iter(self.buckets(centre)))

    def describe(self, bucket: tuple) -> str:
        """``bucket`` in words: ``"hidden=64, depth=2"`` (masked sizes as ``"width<=64"``)."""
        names = list(self.space.static_names) + [f"{n}<=" for n in self.space.masked_names]
        on = self.active(bucket)
        return (
            ", ".join(
                f"{n}{v}" if n.endswith("<=") else f"{n}={v}" for n, v in zip(names, bucket) if on[n.removesuffix("<=")]
            )
            or "all"
        )

    def active(self, bucket: tuple) -> dict[str, bool]:
        """Which parameters exist in the trials of ``bucket`` (conditions read its static values)."""
        return self.space.active(dict(zip(self.space.static_names, bucket)))

    def single(self, bucket: tuple) -> Callable[[Mapping[str, jax.Array], jax.Array], Metrics]:
        """The jitted single-trial function of ``bucket``: ``(dynamic hp, key) -> metrics``.

        Jitted so that the objective's Python is traced once per bucket: the trace made for
        :meth:`output_shapes` is reused by every program of the bucket (vmapped, mapped or single).
        """
        if bucket not in self._singles:

            def trial(hp, key):
                return as_metrics(self.objective(self.bind(bucket, hp), key))

            self._singles[bucket] = jax.jit(trial)
        return self._singles[bucket]

    def bind(self, bucket: tuple, hp: Mapping[str, Any]) -> Hyperparameters:
        """One trial's hyperparameters as the objective sees them: the traced values ``hp``, the
        bucket's static values, and masked values as :class:`Masked` ``(value, size)``."""
        n_static = len(self.space.static_names)
        bound = dict(zip(self.space.static_names, bucket[:n_static]))
        masked = {n: Masked(hp[n], size) for n, size in zip(self.space.masked_names, bucket[n_static:])}
        values = {**hp, **bound, **masked}
        on = self.active(bucket)
        inactive = {n: self.space.params[n].when for n in values if not on[n]}
        values = {n: v for n, v in values.items() if on[n]}  # inactive conditionals are not in the trial
        return Hyperparameters(values, self._reads.setdefault(bucket, Reads()), inactive=inactive)

    def dynamic_example(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes and dtypes of one trial's traced hyperparameters."""
        hp = jax.eval_shape(lambda: self.space.from_unit(jnp.zeros((1, self.space.dim))))
        return {n: jax.ShapeDtypeStruct((), v.dtype) for n, v in hp.items() if n not in self.space.static_names}

    def output_shapes(self, bucket: tuple) -> dict[str, jax.ShapeDtypeStruct]:
        """Traces (without running) one trial of ``bucket``; checks it returns scalar metrics.

        The metric names must be the same in every bucket (a sweep compares trials by them).
        """
        if bucket not in self._shapes:
            key = jax.eval_shape(lambda: jax.random.key(0))
            try:
                with CLOCK.count("compile_s"):  # tracing
                    out = jax.eval_shape(self.single(bucket), self.dynamic_example(), key)
            except Exception as e:  # the user's objective failed to trace: say for which bucket
                e.add_note(
                    f"jaxtune: raised while tracing the objective for one trial of bucket {self.describe(bucket)}"
                )
                raise
            self._check_reads(bucket)
            self._check_unrolled(bucket)
            _check_outputs(out)
            for other, shapes in self._shapes.items():
                if set(shapes) != set(out):
                    raise InputError(
                        f"the objective returns metrics {sorted(out)} for bucket {self.describe(bucket)} but "
                        f"{sorted(shapes)} for bucket {self.describe(other)}: every trial must return the same names"
                    )
                break
            self._shapes[bucket] = out
        return self._shapes[bucket]

    def jaxpr(self, bucket: tuple):
        """The closed jaxpr of one trial of ``bucket`` (the trace :meth:`output_shapes` made: jit
        caches it, so this traces nothing again)."""
        key = jax.eval_shape(lambda: jax.random.key(0))
        return self.single(bucket).trace(self.dynamic_example(), key).jaxpr

    def fingerprint(self, bucket: tuple) -> str:
        """A hash of one trial's program (its operations, shapes and constants such as the data).

        Two objectives with the same fingerprint compute the same trials; a study resumed with a
        different one (more steps, other data, another model) would mix two experiments.
        """
        import hashlib

        closed = self.jaxpr(bucket)
        h = hashlib.sha1(str(closed.jaxpr).encode())
        for c in _constants(closed):
            a = np.asarray(c)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def _check_unrolled(self, bucket: tuple) -> None:
        """Warns when the trial traced to so many operations outside any loop that a Python loop over
        training steps was probably unrolled (it compiles for minutes where ``lax.scan`` takes seconds)."""
        try:
            n = len(self.jaxpr(bucket).eqns)
        except Exception:  # an older or newer jax without Traced.jaxpr: skip the check
            return
        if n > UNROLLED_OPS:
            warnings.warn(
                f"the objective traced to {n} operations outside any loop: a Python `for` loop over training "
                "steps is unrolled into the program and compiles very slowly (minutes for a few hundred steps). "
                "Write the loop as jax.lax.scan (README.md, 'Training loops')",
                stacklevel=5,
            )

    def _check_reads(self, bucket: tuple) -> None:
        """Warns (once) about space parameters the objective never reads; notes defaults it used."""
        reads = self._reads[bucket]
        self.defaulted.update(reads.defaulted)
        on = self.active(bucket)
        unread = [n for n in self.space.names if on[n] and n not in reads.read and n not in self.driven]
        if unread and not self._warned_unread:
            self._warned_unread = True
            message = (
                f"the objective never reads hyperparameter(s) {unread} of the search space: tuning them changes "
                "nothing (a typo, or a parameter this objective does not have?)"
            )
            warnings.warn(UnreadParameterWarning(message, unread, sorted(reads.read)), stacklevel=5)


def _check_outputs(out: Mapping[str, Any]) -> None:
    """Checks a traced trial's outputs: scalar metrics, and curves as 1-D arrays of one length."""
    curves = out.get(CURVES, {})
    if (
        not isinstance(curves, Mapping)
        or any(getattr(v, "ndim", None) != 1 for v in curves.values())
        or len({v.shape for v in curves.values()}) > 1
    ):
        raise InputError(f"objective's {CURVES!r} must be a dict of 1-D arrays of one length, got {curves!r}")
    bad = {
        n: getattr(v, "shape", type(v).__name__)
        for n, v in out.items()
        if n != CURVES and getattr(v, "shape", None) != ()
    }
    if bad:
        raise InputError(f"objective must return scalar metrics for one trial; these are not scalars: {bad}")
    if not any(n != CURVES for n in out):
        raise InputError("objective returned no metrics (an empty dict)")


def _constants(closed) -> list[Any]:
    """The constants of a closed jaxpr and of the jaxprs nested in it (the data a trial closes over)."""
    found, seen = [], set()

    def visit(c):
        if id(c) in seen:
            return
        seen.add(id(c))
        found.extend(getattr(c, "consts", ()))
        jaxpr = getattr(c, "jaxpr", c)
        for eqn in getattr(jaxpr, "eqns", ()):
            for p in eqn.params.values():
                for sub in p if isinstance(p, (tuple, list)) else (p,):
                    if hasattr(sub, "eqns") or hasattr(sub, "consts"):
                        visit(sub)

    visit(closed)
    return [c for c in found if hasattr(c, "shape") or isinstance(c, (int, float))]
