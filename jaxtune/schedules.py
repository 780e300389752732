"""Learning-rate schedules whose shape parameters may be traced hyperparameters.

Optax's schedules branch in Python on their arguments (``optax.warmup_cosine_decay_schedule``
checks ``warmup_steps`` and builds a ``join_schedules`` from Python numbers), so a tuned peak
value or warmup length fails inside a vmapped trial with a ``TracerBoolConversionError``. These
compute the same curves with array arithmetic only: every argument but ``steps`` may be traced.

Each returns an ``optax.Schedule`` (``count -> value``) for any optax optimizer's learning rate::

    tx = optax.adamw(jt.schedules.warmup_cosine(hp["lr"], steps=1000, warmup=hp["warmup"] * 1000), ...)

or use the :class:`~jaxtune.train.Trainer`'s ``schedule=`` option, which applies one to the
optimizer you give it, as a multiplier of its learning rate, with its shape read from the space.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxtune._checks import check_int
from jaxtune.errors import InputError

__all__ = ["SCHEDULES", "warmup_cosine", "warmup_exponential", "warmup_linear"]

Schedule = Callable[[jax.Array], jax.Array]


def _warmup(count, warmup) -> jax.Array:
    """Linear ramp from 0 at count 0 to 1 at ``warmup`` (1 throughout when ``warmup`` is 0)."""
    warmup = jnp.asarray(warmup, jnp.float32)
    return jnp.where(warmup > 0, jnp.minimum(count / jnp.maximum(warmup, 1e-12), 1.0), 1.0)


def _progress(count, steps: int, warmup) -> jax.Array:
    """How far the decay is, 0 at the end of the warmup to 1 at ``steps``."""
    warmup = jnp.asarray(warmup, jnp.float32)
    return jnp.clip((count - warmup) / jnp.maximum(steps - warmup, 1.0), 0.0, 1.0)


def warmup_cosine(peak, steps: int, warmup=0.0, end=0.0) -> Schedule:
    """Linear warmup from 0 to ``peak`` over ``warmup`` steps, then a cosine to ``end * peak`` at ``steps``.

    Equals ``optax.warmup_cosine_decay_schedule(0, peak, warmup, steps, end * peak)`` for
    concrete values (a fraction ``end``, not an absolute end value, so it scales with ``peak``).
    """
    steps = check_int("steps", steps)

    def schedule(count):
        count = jnp.asarray(count, jnp.float32)
        cosine = end + (1 - end) * 0.5 * (1 + jnp.cos(jnp.pi * _progress(count, steps, warmup)))
        in_warmup = count < jnp.asarray(warmup, jnp.float32)
        return jnp.asarray(peak, jnp.float32) * jnp.where(in_warmup, _warmup(count, warmup), cosine)

    return schedule


def warmup_linear(peak, steps: int, warmup=0.0, end=0.0) -> Schedule:
    """Linear warmup to ``peak`` over ``warmup`` steps, then a straight line to ``end * peak`` at ``steps``."""
    steps = check_int("steps", steps)

    def schedule(count):
        count = jnp.asarray(count, jnp.float32)
        line = 1 + (end - 1) * _progress(count, steps, warmup)
        in_warmup = count < jnp.asarray(warmup, jnp.float32)
        return jnp.asarray(peak, jnp.float32) * jnp.where(in_warmup, _warmup(count, warmup), line)

    return schedule


def warmup_exponential(peak, steps: int, warmup=0.0, end=0.01) -> Schedule:
    """Linear warmup to ``peak``, then a geometric decay to ``end * peak`` at ``steps`` (``end > 0``)."""
    steps = check_int("steps", steps)
    if isinstance(end, (int, float)) and not end > 0:
        raise InputError(f"warmup_exponential: end must be > 0 (a geometric decay never reaches 0), got {end!r}")

    def schedule(count):
        count = jnp.asarray(count, jnp.float32)
        decay = jnp.asarray(end, jnp.float32) ** _progress(count, steps, warmup)
        in_warmup = count < jnp.asarray(warmup, jnp.float32)
        return jnp.asarray(peak, jnp.float32) * jnp.where(in_warmup, _warmup(count, warmup), decay)

    return schedule


# Name -> (schedule, the default of its `end`; None: `end` is fixed at 1, no decay), for
# Trainer(schedule=NAME): "constant" is a warmup to the peak, then the peak.
SCHEDULES = {
    "constant": (warmup_linear, None),
    "cosine": (warmup_cosine, 0.0),
    "linear": (warmup_linear, 0.0),
    "exponential": (warmup_exponential, 0.01),
}
