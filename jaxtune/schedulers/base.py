"""The scheduler interface: pure, per-lane decisions between segments of a population.

A *strategy* (:mod:`jaxtune.strategies`) says where to sample next, a round at a time. A
*scheduler* says what each lane of a live population does next, a segment at a time:

* ``init(key) -> state``; ``first(key, state) -> (u[N, d], state)``: the lanes' first configurations;
* ``decide(key, state, lanes: Lanes) -> (Decision, state)``: after each segment.

Both are pure and jittable (state is a pytree of fixed-shape arrays), so a decision for a
thousand lanes is one small compiled program. Schedulers see unit-cube coordinates only; a
space-aware ``explore`` function (built from the :class:`~jaxtune.Space`) perturbs them on each
parameter's own scale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from jaxtune.errors import InputError, InputTypeError
from jaxtune.space import Space

__all__ = [
    "MAX_CONFIGS",
    "check_segment",
    "Decision",
    "Lanes",
    "Scheduler",
    "SchedulerSpec",
    "SCHEDULERS",
    "is_scheduler",
    "register_scheduler",
    "make_scheduler",
]


class Lanes(NamedTuple):
    """What a scheduler sees of the lanes after a segment."""

    score: jax.Array  # f32[N]: the selection metric, minimised; +inf for a diverged lane
    steps: jax.Array  # i32[N]: steps the lane's current trial has trained
    u: jax.Array  # f32[N, d]: the lane's configuration on the unit cube
    active: jax.Array  # bool[N]: lanes that trained in this segment (not idle)
    # f32[N, m] with several objectives (each minimised; +inf diverged, 1e30 infeasible), else None:
    # a scheduler then ranks lanes by non-dominated rank, ties by hypervolume contribution.
    objectives: jax.Array | None = None


class Decision(NamedTuple):
    """What every lane does next (one entry per lane)."""

    source: jax.Array  # i32[N]: the lane whose state it continues (itself, or a donor: exploit)
    restart: jax.Array  # bool[N]: start afresh with configuration ``u`` (refill)
    end: jax.Array  # bool[N]: its current trial ends here (finished, stopped, or replaced)
    finished: jax.Array  # bool[N]: ... having trained its full budget (a complete trial)
    idle: jax.Array  # bool[N]: it runs nothing from here (nothing left to start)
    u: jax.Array  # f32[N, d]: its configuration from here on


class Scheduler(NamedTuple):
    """A built scheduler for ``num_lanes`` lanes in ``dim`` dimensions."""

    init: Callable[[jax.Array], Any]
    first: Callable[[jax.Array, Any], tuple[jax.Array, Any]]
    decide: Callable[[jax.Array, Any, Lanes], tuple[Decision, Any]]
    segment: int  # steps per segment
    max_segments: int  # the run ends after this many segments, or once every lane is idle
    num_lanes: int
    dim: int
    rungs: tuple[int, ...] = ()  # the step counts at which lanes are compared (ASHA)


class SchedulerSpec(Protocol):
    """Static options of a scheduler; ``build`` binds it to a space, a lane count and a step budget."""

    def build(self, space: Space, num_lanes: int, steps: int) -> Scheduler:
        """The scheduler for ``num_lanes`` lanes of ``space`` with a budget of ``steps`` steps."""
        ...


SCHEDULERS: dict[str, type] = {}


def register_scheduler(name: str):
    """Class decorator that adds a scheduler spec to :data:`SCHEDULERS` under ``name``."""
    from jaxtune.strategies.base import add_to_registry

    return add_to_registry(SCHEDULERS, name)


def is_scheduler(strategy: Any) -> bool:
    """Whether ``strategy`` names or is a population scheduler (rather than a round-based strategy)."""
    if isinstance(strategy, str):
        return strategy in SCHEDULERS
    return isinstance(strategy, tuple(SCHEDULERS.values()))


def make_spec(name: str, **options) -> SchedulerSpec:
    """The scheduler spec registered as ``name``, with ``options`` (checked: names, then values)."""
    from jaxtune.strategies.base import spec_from_registry

    return spec_from_registry(SCHEDULERS, "scheduler", name, options)


def make_scheduler(spec: Any, space: Space, num_lanes: int, steps: int, **options) -> Scheduler:
    """A built :class:`Scheduler` from a registry name (with ``options``) or a spec."""
    if isinstance(spec, str):
        spec = make_spec(spec, **options)
    elif options:
        raise InputTypeError(f"scheduler options {sorted(options)} can only go with a scheduler name")
    if not hasattr(spec, "build"):
        raise InputTypeError(f"scheduler must be a name or a spec with .build(space, lanes, steps), got {spec!r}")
    check_space(space)
    return spec.build(space, num_lanes, steps)


# Configurations a population scheduler may start in one run: their unit coordinates are held at
# once (configs x dim floats), so past this the scheduler's state would not fit in memory.
MAX_CONFIGS = 2**24


def check_segment(name: str, segment: int, steps: int) -> None:
    """A segment must divide the objective's step budget: every lane trains exactly its budget."""
    if segment > steps or steps % segment:
        raise InputError(
            f"{name}: segment={segment} must divide the objective's budget of {steps} steps (a lane trains whole "
            "segments, so any other length would train past the budget): pick a divisor of it"
        )


def check_space(space: Space) -> None:
    """A population keeps every lane in one program: every hyperparameter must be traced."""
    if space.static_names or space.masked_names:
        raise InputError(
            f"a population scheduler keeps every lane in one compiled program, so every hyperparameter must be "
            f"traced; {space.static_names + space.masked_names} change shapes (static=True or masked=True): fix them "
            "in the model, or tune them with a round-based strategy"
        )


def explorer(space: Space) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``explore(u, factor)``: each coordinate's *value* multiplied by ``factor`` on its own scale
    (``x * f`` for linear and log parameters, ``1 - (1 - x) * f`` for reverse_log ones, the next
    choice up or down for choices), clipped to the bounds; back on the unit cube."""
    from jaxtune.space import Choice, Int

    def explore(u, factor):
        cols = []
        for j, p in enumerate(space.params.values()):
            col, f = u[:, j], factor[:, j]
            if isinstance(p, Choice):
                step = jnp.where(f > 1, 1.0, jnp.where(f < 1, -1.0, 0.0)) / len(p.values)
                cols.append(jnp.clip(col + step, 0.5 / len(p.values), 1 - 0.5 / len(p.values)))
                continue
            x = p.from_unit(col).astype(jnp.float32)
            x = 1 - (1 - x) * f if getattr(p, "scale", "linear") == "reverse_log" else x * f
            x = jnp.clip(jnp.round(x) if isinstance(p, Int) else x, p.low, p.high)
            cols.append(p.to_unit(x))
        return jnp.stack(cols, axis=-1)

    return explore


def initial_unit(space: Space, initial: Any, num_lanes: int, name: str) -> jax.Array | None:
    """Given first configurations (``[{param: value}, ...]``) on the unit cube, checked against the space."""
    from jaxtune.space.params import check_value

    if initial is None or (isinstance(initial, (list, tuple)) and not initial):
        return None
    rows = list(initial) if isinstance(initial, (list, tuple)) else []
    if not rows or len(rows) > num_lanes or not all(isinstance(r, dict) and set(r) == set(space.names) for r in rows):
        raise InputError(
            f"{name}: initial must be a list of at most {num_lanes} configurations, each a dict of every "
            f"hyperparameter {space.names}, got {initial!r}"
        )
    # Each value within its parameter's range (never clipped without a word).
    rows = [{n: check_value(f"{name}: initial[{i}] {n}", space.params[n], r[n]) for n in space.names}
            for i, r in enumerate(rows)]  # fmt: skip
    return space.to_unit({n: jnp.asarray([r[n] for r in rows], jnp.float32) for n in space.names})


def fresh(key: jax.Array, n: int, dim: int) -> jax.Array:
    """``n`` uniform configurations on the unit cube."""
    return jax.random.uniform(key, (n, dim))
