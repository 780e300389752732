"""What a :class:`~jaxtune.train.Trainer` is given, checked: its data splits as arrays, and its
milestones, metrics read from the learning curve (the first step a metric reached a threshold)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune.errors import InputError, InputTypeError

__all__ = ["as_array", "data_splits", "check_milestones", "milestones_reached"]


def as_array(x: Any, name: str) -> jax.Array:
    """``x`` as a JAX array, float64 as float32 and int64 as int32; an object array is refused."""
    if isinstance(x, jax.Array):
        return x
    arr = np.asarray(x)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    elif arr.dtype == np.int64:
        arr = arr.astype(np.int32)
    if arr.dtype == object:
        raise InputTypeError(f"{name} must be a numeric array, got dtype object")
    return jnp.asarray(arr)


def data_splits(data: Any, eval_data: Any) -> tuple[tuple[jax.Array, jax.Array], dict[str, tuple]]:
    """The training pair and ``{split: (x, y)}`` as arrays, each checked: a pair, equal lengths, not empty."""
    if not isinstance(eval_data, Mapping):
        raise InputTypeError(f"Trainer: eval_data must be a dict {{split: (x, y)}}, got {type(eval_data).__name__}")
    arrays = []
    for split, pair in [("train", data), *dict(eval_data).items()]:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InputTypeError(f"Trainer: {split} data must be a pair (x, y), got {type(pair).__name__}")
        x, y = as_array(pair[0], f"{split} x"), as_array(pair[1], f"{split} y")
        if x.shape[0] != y.shape[0]:
            raise InputError(f"Trainer: {split} x and y differ in length: {x.shape[0]} vs {y.shape[0]}")
        if x.shape[0] == 0:
            raise InputError(f"Trainer: {split} data is empty")
        arrays.append((split, (x, y)))
    return arrays[0][1], dict(arrays[1:])


def check_milestones(milestones: Any, eval_every: int | None) -> None:
    """Refuses milestones that are not ``{name: (metric, threshold)}`` or ``(metric, ">=" | "<=",
    threshold)``, or that have no learning curve to read (``eval_every`` None)."""
    if not isinstance(milestones, Mapping):
        raise InputTypeError(f"Trainer: milestones must be a dict {{name: (metric, threshold)}}, got {milestones!r}")
    if milestones and eval_every is None:
        raise InputError("Trainer: milestones are read from the learning curve: set eval_every")
    for name, spec in milestones.items():
        spec = tuple(spec) if isinstance(spec, (tuple, list)) else ()
        ok = len(spec) in (2, 3) and isinstance(spec[0], str) and isinstance(spec[-1], (int, float))
        if not ok or (len(spec) == 3 and spec[1] not in (">=", "<=")):
            raise InputError(f"Trainer: milestone {name!r} must be (metric, threshold) or (metric, '>=' or '<=', "
                             f"threshold), got {milestones[name]!r}")  # fmt: skip


def milestones_reached(milestones: Mapping, curves: Mapping[str, jax.Array], steps: int) -> dict[str, jax.Array]:
    """Each milestone's first evaluated step (``curves["step"]``) at which its metric reached the
    threshold, ``steps + 1`` where it never did (float32, traceable)."""
    out = {}
    for name, spec in milestones.items():
        metric, op, threshold = (spec[0], ">=", spec[1]) if len(spec) == 2 else tuple(spec)
        if metric not in curves:
            raise InputError(f"Trainer: milestone {name!r} reads {metric!r}, which is not a metric this trainer "
                             f"reports; its metrics are {sorted(k for k in curves if k != 'step')}")  # fmt: skip
        hit = curves[metric] >= threshold if op == ">=" else curves[metric] <= threshold
        out[name] = jnp.where(jnp.any(hit), curves["step"][jnp.argmax(hit)], steps + 1).astype(jnp.float32)
    return out
