"""The hyperparameters a :class:`~jaxtune.Space` is made of: ``Float``, ``Int``, ``Choice``.

Each maps one unit-cube coordinate to its values on its own scale and back (pure ``jnp``), and
checks its options when made; conditions (``when=``) are checked against the parameters defined
before it. See :mod:`jaxtune.space` for the scales.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune._checks import next_pow2
from jaxtune.errors import InputError, InputTypeError

__all__ = [
    "Param",
    "Float",
    "Int",
    "Choice",
    "Masked",
    "SCALES",
    "bucket_size",
    "check_value",
    "check_when",
    "matches",
    "position",
]

SCALES = ("linear", "log", "reverse_log")


class Masked(NamedTuple):
    """How a ``masked=True`` integer reaches the trial: a traced ``value`` and a static ``size``.

    ``size`` is the power of two at or above the value, so trials whose values share a bucket
    run as one program; layers allocate ``size`` units and mask all but the first ``value``
    (see :class:`jaxtune.layers.MaskedLinear`).
    """

    value: jax.Array
    size: int


def bucket_size(value: int) -> int:
    """The power-of-two bucket of a masked integer (smallest power of two >= value)."""
    return next_pow2(value)


def _check_scale(name: str, scale: str, allowed: Sequence[str]) -> None:
    if scale not in allowed:
        raise InputError(f"{name}: unknown scale {scale!r}; allowed scales are {', '.join(map(repr, allowed))}")


# Values travel as float32 and int32 arrays: bounds must be representable there.
_F32_MAX = float(np.finfo(np.float32).max)
_I32 = (-(2**31), 2**31 - 1)


def _check_number(name: str, what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name}: {what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{name}: {what} must be finite, got {value!r}")
    if abs(value) > _F32_MAX:
        raise InputError(f"{name}: {what} must fit in float32 (|x| <= {_F32_MAX:.4g}), got {value!r}")
    return value


def _check_flags(name: str, **flags: Any) -> None:
    for flag, v in flags.items():
        if not isinstance(v, (bool, np.bool_)):
            raise InputTypeError(f"{name}: {flag} must be True or False, got {v!r}")


def _forward(scale: str, low: float, high: float, u: jax.Array) -> jax.Array:
    """Maps ``u in [0, 1]`` to ``[low, high]`` on ``scale`` (continuous)."""
    if scale == "linear":
        return low + u * (high - low)
    if scale == "log":
        # low * exp(u * log(high / low)), written so that a narrow range (1e6..1e6 + 2) keeps
        # float32 precision: the offset from low, not log(x) near log(low), carries the signal.
        return low + low * jnp.expm1(u * math.log(high / low))
    a, b = math.log1p(-low), math.log1p(-high)  # reverse_log: log(1 - x) uniform
    return -jnp.expm1(a + u * (b - a))


def _inverse(scale: str, low: float, high: float, x: jax.Array) -> jax.Array:
    """The inverse of :func:`_forward`."""
    if scale == "linear":
        return (x - low) / (high - low)
    if scale == "log":
        return jnp.log1p((x - low) / low) / math.log(high / low)
    a, b = math.log1p(-low), math.log1p(-high)
    return (jnp.log1p(-x) - a) / (b - a)


def _normalise_when(when: Any) -> tuple[tuple[str, tuple], ...] | None:
    """``when`` as ``((parent, (value, ...)), ...)``: hashable, in the order given.

    ``{"opt": "sgd"}`` is one value; a list (or set) of values means any of them.
    """
    if when is None:
        return None
    if isinstance(when, tuple) and all(isinstance(c, tuple) and len(c) == 2 for c in when):
        when = dict(when)  # already normalised (dataclasses.replace, copies)
    if not isinstance(when, Mapping) or not when:
        raise InputTypeError(
            f'when must be a non-empty dict {{parent: value or [values]}}, e.g. {{"opt": "sgd"}}, got {when!r}'
        )
    out = []
    for parent, values in when.items():
        if not isinstance(parent, str):
            raise InputTypeError(f"when: parent names must be strings, got {parent!r}")
        values = tuple(values) if isinstance(values, (list, set, frozenset, tuple)) else (values,)
        if not values:
            raise InputError(f"when: {parent!r} needs at least one value, got []")
        out.append((parent, tuple(v.item() if isinstance(v, np.generic) else v for v in values)))
    return tuple(out)


class Param:
    """Common interface of one dimension of a space (abstract)."""

    static: bool
    when: tuple[tuple[str, tuple], ...] | None = None

    def validate(self, name: str) -> None:  # pragma: no cover - every subclass overrides
        """Raises an :class:`InputError` naming ``name`` if the options cannot define this parameter."""
        raise NotImplementedError

    def from_unit(self, u: jax.Array) -> jax.Array:  # pragma: no cover
        """Values on this parameter's scale from unit coordinates ``u`` in [0, 1] (jittable)."""
        raise NotImplementedError

    def to_unit(self, x: jax.Array) -> jax.Array:  # pragma: no cover
        """Unit coordinates of values ``x`` (the inverse of :meth:`from_unit`; jittable)."""
        raise NotImplementedError

    def grid_unit(self, points: int) -> np.ndarray:  # pragma: no cover
        """The unit coordinates of a grid of ``points`` values (fewer for a small Int or a Choice)."""
        raise NotImplementedError

    def to_python(self, x: Any) -> Any:  # pragma: no cover
        """A value as a plain Python value (an int for Int, the choice itself for Choice)."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Float(Param):
    """A real-valued hyperparameter in ``[low, high]``.

    Args:
      low: smallest value.
      high: largest value; ``low < high``.
      scale: ``"linear"``, ``"log"`` (needs ``low > 0``) or ``"reverse_log"`` (needs
        ``high < 1``; ``log(1 - x)`` is uniform).
      static: pass the value to the trial as a Python float (one compiled program per value).
      when: ``{parent: value or [values]}``: the parameter exists only in trials where each
        parent (a static parameter defined earlier) takes one of those values.

    Examples:
      >>> b1 = Float(0.9, 0.999, scale="reverse_log")
      >>> momentum = Float(0.5, 0.99, scale="reverse_log", when={"opt": "sgd"})
    """

    low: float
    high: float
    scale: str = "linear"
    static: bool = False
    when: Any = None

    def __post_init__(self):
        object.__setattr__(self, "when", _normalise_when(self.when))

    def validate(self, name: str) -> None:
        _check_scale(name, self.scale, SCALES)
        _check_flags(name, static=self.static)
        low = _check_number(name, "low", self.low)
        high = _check_number(name, "high", self.high)
        if not low < high:
            raise InputError(f"{name}: low must be < high, got low={low!r}, high={high!r}")
        if self.scale == "log" and low <= 0:
            raise InputError(f"{name}: scale='log' needs low > 0, got low={low!r}")
        if self.scale == "reverse_log" and high >= 1:
            raise InputError(f"{name}: scale='reverse_log' needs high < 1 (it samples log(1 - x)), got high={high!r}")

    def from_unit(self, u):
        x = _forward(self.scale, float(self.low), float(self.high), u)
        # As floats: an int bound past int32 (Float(0, 2**31)) would overflow as a weak int.
        return jnp.clip(x, float(self.low), float(self.high))

    def to_unit(self, x):
        return jnp.clip(_inverse(self.scale, float(self.low), float(self.high), jnp.asarray(x, jnp.float32)), 0.0, 1.0)

    def grid_unit(self, points: int) -> np.ndarray:
        return np.array([0.5]) if points == 1 else np.linspace(0.0, 1.0, points)

    def to_python(self, x):
        return float(x)


@dataclasses.dataclass(frozen=True)
class Int(Param):
    """An integer hyperparameter in ``[low, high]`` (both included).

    The unit interval is cut into ``high - low + 1`` cells, equal on the linear scale, equal
    in ``log`` on the log scale (so 16..512 gives as much mass to 16..32 as to 256..512).

    Args:
      low: smallest value.
      high: largest value; ``low <= high``.
      scale: ``"linear"`` or ``"log"`` (needs ``low >= 1``).
      static: pass the value as a Python int (for values that change array shapes); one
        compiled program per distinct value.
      masked: pass the value as :class:`Masked` ``(value, size)`` with a traced value and a
        power-of-two ``size``: one program per power of two, layers mask the unused units.
      when: ``{parent: value or [values]}``: the parameter exists only in trials where each
        parent (a static parameter defined earlier) takes one of those values.
    """

    low: int
    high: int
    scale: str = "linear"
    static: bool = False
    masked: bool = False
    when: Any = None

    def __post_init__(self):
        object.__setattr__(self, "when", _normalise_when(self.when))

    def validate(self, name: str) -> None:
        _check_scale(name, self.scale, ("linear", "log"))
        _check_flags(name, static=self.static, masked=self.masked)
        for what, v in (("low", self.low), ("high", self.high)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise InputTypeError(f"{name}: {what} must be an int, got {v!r}")
            if not _I32[0] <= v < _I32[1]:
                raise InputError(f"{name}: {what} must fit in int32 ({_I32[0]} <= x < {_I32[1]}), got {v!r}")
        if not self.low <= self.high:
            raise InputError(f"{name}: low must be <= high, got low={self.low!r}, high={self.high!r}")
        if self.scale == "log" and self.low < 1:
            raise InputError(f"{name}: scale='log' needs low >= 1, got low={self.low!r}")
        if self.masked and self.static:
            raise InputError(
                f"{name}: choose one of static=True (a program per value) and masked=True (per power of two)"
            )
        if self.masked and self.low < 1:
            raise InputError(f"{name}: masked=True needs low >= 1 (a width), got low={self.low!r}")

    # Continuous edges [low, high + 1) on the scale; a value v owns the cell [v, v + 1).
    def from_unit(self, u):
        x = _forward(self.scale, float(self.low), float(self.high + 1), u)
        return jnp.clip(jnp.floor(x), self.low, self.high).astype(jnp.int32)

    def to_unit(self, x):
        x = jnp.asarray(x, jnp.float32)
        lo = _inverse(self.scale, float(self.low), float(self.high + 1), x)
        hi = _inverse(self.scale, float(self.low), float(self.high + 1), x + 1)
        return jnp.clip((lo + hi) / 2, 0.0, 1.0)

    def grid_unit(self, points: int) -> np.ndarray:
        values = np.unique(np.asarray(self.from_unit(jnp.asarray(Float(0, 1).grid_unit(points), jnp.float32))))
        return np.asarray(self.to_unit(values))

    def to_python(self, x):
        return int(x)


@dataclasses.dataclass(frozen=True)
class Choice(Param):
    """One of a list of values, each with equal mass.

    Numeric choices arrive in the trial as traced scalars unless ``static=True``; any other
    values (strings, tuples) are always static.

    Args:
      values: a non-empty sequence of distinct values.
      static: pass the value as a Python object.
      when: ``{parent: value or [values]}``: the parameter exists only in trials where each
        parent (a static parameter defined earlier) takes one of those values.
    """

    values: tuple
    static: bool = False
    when: Any = None

    def __init__(self, values: Sequence[Any], static: bool = False, when: Any = None):
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
            raise InputTypeError(f"Choice values must be a list or tuple, got {values!r}")
        _check_flags("Choice", static=static)
        values = tuple(v.item() if isinstance(v, np.generic) else v for v in values)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "static", bool(static) or not numeric)
        object.__setattr__(self, "when", _normalise_when(when))

    def validate(self, name: str) -> None:
        if not self.values:
            raise InputError(f"{name}: Choice needs at least one value, got []")
        if self._numeric:
            for v in self.values:
                if isinstance(v, int):
                    if not _I32[0] <= v < _I32[1]:
                        raise InputError(f"{name}: Choice values must fit in int32, got {v!r}")
                else:
                    _check_number(name, "every Choice value", v)
        if len(set(map(repr, self.values))) != len(self.values):
            raise InputError(f"{name}: Choice values must be distinct, got {list(self.values)!r}")

    @property
    def _numeric(self) -> bool:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)

    def index(self, u):
        """Index of the choice that owns unit coordinate ``u``."""
        return jnp.clip(jnp.floor(u * len(self.values)), 0, len(self.values) - 1).astype(jnp.int32)

    def from_unit(self, u):
        if self._numeric:
            return jnp.asarray(self.values)[self.index(u)]
        return self.index(u)  # non-numeric choices travel as indices; see Space.to_python

    def to_unit(self, x):
        if self._numeric:
            x = jnp.asarray(x)
            table = jnp.asarray(self.values).reshape((1,) * x.ndim + (-1,))
            idx = jnp.argmin(jnp.abs(x[..., None] - table), axis=-1)
        else:
            idx = jnp.asarray(x)
        return (idx.astype(jnp.float32) + 0.5) / len(self.values)

    def grid_unit(self, points: int) -> np.ndarray:
        return (np.arange(len(self.values)) + 0.5) / len(self.values)

    def to_python(self, x):
        if not self._numeric:
            return self.values[int(x)]
        return self.values[int(np.argmin([abs(float(x) - v) for v in self.values]))]


def position(values: tuple, v: Any) -> int:
    """Index of ``v`` in a Choice's ``values`` (by repr, so ``1`` and ``True`` differ)."""
    return [repr(x) for x in values].index(repr(v))


def matches(value: Any, allowed: tuple) -> bool:
    """Whether a parent's Python value is one of a condition's ``allowed`` values (by repr, as
    :func:`check_when` checked them against the parent's values)."""
    return any(repr(value) == repr(v) for v in allowed)


def check_when(name: str, p: Param, params: Mapping[str, Param]) -> None:
    """Checks ``p.when``: parents defined earlier, static (each branch is its own program), and
    values the parent can take."""
    earlier = list(params)[: list(params).index(name)]
    for parent, allowed in p.when or ():
        if parent not in earlier:
            where = "defined after it" if parent in params else "not in the space"
            raise InputError(
                f"{name}: when={{{parent!r}: ...}} refers to {parent!r}, which is {where}; a condition's parent "
                f"must be a parameter defined before {name!r} (the space has {list(params)})"
            )
        q = params[parent]
        if not isinstance(q, (Choice, Int)) or not q.static:
            raise InputError(
                f"{name}: the parent {parent!r} of a condition must be a static Choice or Int (strings are static; "
                f"numbers need static=True): each branch runs as its own program; got {q!r}"
            )
        for v in allowed:
            ok = (
                any(repr(v) == repr(x) for x in q.values)
                if isinstance(q, Choice)
                else isinstance(v, (int, np.integer)) and not isinstance(v, bool) and q.low <= v <= q.high
            )
            if not ok:
                can = list(q.values) if isinstance(q, Choice) else f"integers in [{q.low}, {q.high}]"
                raise InputError(f"{name}: when={{{parent!r}: {v!r}}}: {parent!r} takes {can}, not {v!r}")


def check_value(name: str, param: Any, value: Any) -> Any:
    """``value`` as parameter ``name`` holds it, or an :class:`InputError` naming what is allowed."""
    if isinstance(param, Choice):
        if value not in param.values:
            raise InputError(f"{name}: {value!r} is not one of the choices {list(param.values)!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name}: expected a number, got {value!r}")
    if isinstance(param, Int):
        if int(value) != value:
            raise InputError(f"{name}: expected an integer in [{param.low}, {param.high}], got {value!r}")
        value = int(value)
    else:
        value = float(value)
    if not param.low <= value <= param.high:
        raise InputError(f"{name}: {value!r} is outside its range [{param.low}, {param.high}]")
    return value
