"""The strategy interface: pure ask/tell functions on the unit cube.

A :class:`Strategy` is a ``NamedTuple`` of pure functions, in the style of optax's
``GradientTransformation`` and evosax's ask/tell:

* ``init(key) -> state``
* ``ask(key, state) -> (u, state)`` with ``u: f32[num_trials, dim]`` in ``[0, 1]``
* ``tell(state, u, scores) -> state`` with ``scores: f32[num_trials]``, *lower is better*;
  non-finite scores mean "diverged" and must never be preferred. A strategy built for several
  objectives (``objectives > 1``, e.g. ``gp``) is told ``scores: f32[num_trials, objectives]``;
  any other is told a random scalarisation of them (:mod:`jaxtune.pareto`).
* ``valid(state) -> bool[num_trials]``: which lanes of the last ``ask`` carry a real trial
  (a grid that does not divide into batches pads its last batch).

State is a pytree of arrays with fixed shapes, so one compiled ``ask``/``tell`` serves every
round and both run under ``jax.lax.scan``. Strategies never see scales or names: a
:class:`~jaxtune.Space` maps the unit cube to values.

A *strategy spec* is a frozen dataclass holding static options, with
``build(space, num_trials) -> Strategy``; :func:`make_strategy` accepts a registry name, a
spec, or an already built :class:`Strategy`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune.errors import InputError, InputTypeError
from jaxtune.space import Space

__all__ = [
    "Strategy",
    "StrategySpec",
    "REGISTRY",
    "register",
    "traits",
    "make_spec",
    "make_strategy",
    "sanitize_scores",
    "all_valid",
]


def all_valid(num_trials: int) -> Callable[[Any], jax.Array]:
    """A ``valid`` function for strategies whose every lane is a real trial."""
    return lambda state: jnp.ones((num_trials,), bool)


class Strategy(NamedTuple):
    """A built strategy: pure ``init``/``ask``/``tell`` for ``num_trials`` trials in ``dim`` dims."""

    init: Callable[[jax.Array], Any]
    ask: Callable[[jax.Array, Any], tuple[jax.Array, Any]]
    tell: Callable[[Any, jax.Array, jax.Array], Any]
    valid: Callable[[Any], jax.Array]
    num_trials: int
    dim: int
    num_rounds: int | None = None  # default rounds (grid: until covered; halving: a bracket), else None
    objectives: int = 1  # > 1: tell takes every objective, scores[num_trials, objectives] (each minimised)
    warm: Callable[[Any, jax.Array, jax.Array], Any] | None = None  # told a stored study first (None: tell)


class StrategySpec(Protocol):
    """Static options of a strategy; ``build`` binds it to a space and a batch size."""

    def build(self, space: Space, num_trials: int) -> Strategy:
        """The strategy over ``space`` asking for ``num_trials`` points a round."""
        ...


def sanitize_scores(scores: jax.Array) -> jax.Array:
    """Maps NaN and ±Inf scores to +inf, so a diverged trial is never the best."""
    scores = jnp.asarray(scores, jnp.float32)
    return jnp.where(jnp.isfinite(scores), scores, jnp.inf)


REGISTRY: dict[str, type] = {}


def add_to_registry(registry: dict[str, type], name: str):
    """Class decorator that adds a spec to ``registry`` under ``name`` (and names the class so)."""

    def wrap(cls):
        registry[name] = cls
        cls.registry_name = name
        return cls

    return wrap


def register(name: str):
    """Class decorator that adds a strategy spec to :data:`REGISTRY` under ``name``."""
    return add_to_registry(REGISTRY, name)


def spec_from_registry(registry: dict[str, type], kind: str, name: str, options: dict[str, Any]) -> Any:
    """The spec registered as ``name`` in ``registry`` (of ``kind``: "strategy", "scheduler"),
    with ``options`` checked: unknown names first, then the spec's own checks of the values."""
    if not isinstance(name, str) or name not in registry:
        known = ", ".join(map(repr, sorted(registry)))
        plural = "strategies" if kind == "strategy" else f"{kind}s"
        raise InputError(f"unknown {kind} {name!r}; registered {plural} are {known}")
    cls = registry[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    bad = set(options) - fields
    if bad:
        raise InputTypeError(f"{kind} {name!r} has no option(s) {sorted(bad)}; its options are {sorted(fields)}")
    for f in dataclasses.fields(cls):
        if f.name in options:
            _check_option_type(f"{kind} {name!r}: {f.name}", f, options[f.name])
    return cls(**options)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _check_option_type(where: str, field: dataclasses.Field, value: Any) -> None:
    """An option's value of the kind its field holds (a number, a string, a bool), or a clear
    :class:`InputTypeError`: the spec's own range checks then never compare a string with a number."""
    default = field.default if field.default is not dataclasses.MISSING else None
    annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if value is None and (default is None or "None" in annotation):
        return
    if isinstance(default, bool) or annotation == "bool":
        ok, kind = isinstance(value, bool), "true or false"
    elif _is_number(default) or annotation in ("int", "float", "int | None", "float | None"):
        ok, kind = _is_number(value), "a number"
    elif isinstance(default, str) or annotation in ("str", "str | None"):
        ok, kind = isinstance(value, str), "a string"
    else:
        return  # tuples, sequences: the spec checks them
    if not ok:
        raise InputTypeError(f"{where} must be {kind}, got {value!r}")


def make_spec(name: str, **options) -> StrategySpec:
    """The strategy spec registered as ``name``, with ``options`` (checked: names, then values)."""
    return spec_from_registry(REGISTRY, "strategy", name, options)


def make_strategy(
    strategy: str | StrategySpec | Strategy, space: Space, num_trials: int, *, objectives: int = 1, **options
) -> Strategy:
    """Builds a :class:`Strategy` from a registry name (with ``options``), a spec or a built strategy.

    With ``objectives > 1`` a spec that can be told every objective (one with an ``objectives``
    field, or a host strategy with ``set_objectives``) is built for them; any other strategy is
    built as it is and told a scalarisation."""
    if isinstance(strategy, Strategy):
        if options:
            raise InputTypeError(f"strategy options {sorted(options)} given with an already built Strategy")
        if strategy.num_trials != num_trials or strategy.dim != space.dim:
            raise InputError(
                f"the Strategy was built for {strategy.num_trials} trials in {strategy.dim} dims, "
                f"but the sweep has trials={num_trials} and a {space.dim}-dim space"
            )
        return strategy
    if isinstance(strategy, str):
        strategy = make_spec(strategy, **options)
    elif options:
        raise InputTypeError(f"strategy options {sorted(options)} can only go with a strategy name")
    if not hasattr(strategy, "build"):
        raise InputTypeError(
            f"strategy must be a name, a spec with .build(space, num_trials) or a Strategy, got {strategy!r}"
        )
    takes = dataclasses.is_dataclass(strategy) and "objectives" in {f.name for f in dataclasses.fields(strategy)}
    if objectives > 1 and takes:
        strategy = dataclasses.replace(strategy, objectives=objectives)
    built = strategy.build(space, num_trials)
    if objectives > 1 and hasattr(built, "set_objectives"):
        built.set_objectives(objectives)
    return built


def traits(name: str | None) -> dict[str, bool]:
    """What analysis needs to know of a stored study's strategy (by its registry name), as the
    spec declares it in class attributes: ``zooms`` (rounds after the first sample a region chosen
    from earlier results, or survivors of the first round: only round 0 samples the whole space)
    and ``has_box`` (its state holds each round's box as ``lo``/``hi``, which figures draw)."""
    spec = REGISTRY.get(name) if isinstance(name, str) else None
    return {"zooms": bool(getattr(spec, "zooms", False)), "has_box": bool(getattr(spec, "has_box", False))}


def describe(strategy: Any) -> dict[str, Any]:
    """A JSON-friendly description of a strategy spec (for matching stored studies)."""
    if isinstance(strategy, str):
        strategy = REGISTRY[strategy]()
    if dataclasses.is_dataclass(strategy):
        name = getattr(type(strategy), "registry_name", type(strategy).__qualname__)
        values = dataclasses.asdict(strategy)
        for f in dataclasses.fields(strategy):  # options added later: left out at their defaults
            if f.metadata.get("describe") == "if_changed" and values[f.name] == f.default:
                del values[f.name]
        return {"name": name, **values}
    return {"name": type(strategy).__qualname__}
