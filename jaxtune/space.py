"""Search spaces: named hyperparameters, each with a scale, mapped to and from the unit cube.

Strategies work on ``u in [0, 1]^d`` only; a :class:`Space` turns unit coordinates into
hyperparameter values (``from_unit``) and back (``to_unit``). Both directions are pure ``jnp``
so they can be jitted and vmapped; every dimension is independent.

Scales:

* ``"linear"``: ``x = low + u * (high - low)``.
* ``"log"``: ``log(x)`` is uniform, so ``1e-4 .. 1`` spreads evenly over decades.
* ``"reverse_log"``: ``log(1 - x)`` is uniform. For momentum-like values this is the true log
  scale of ``1 - beta``: on ``[0.9, 0.999]`` each of ``[0.9, 0.99]`` and ``[0.99, 0.999]`` gets
  half of the mass.

Conditional hyperparameters: ``when={"opt": "sgd"}`` makes a parameter exist only in trials whose
``opt`` (a static parameter defined earlier) takes one of the given values. Such a parameter keeps
its unit coordinate (strategies still see ``d`` dimensions), but in a trial where it is inactive it
is not in the trial's ``hp``, not stored, and not zoomed on by coarse-to-fine.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune._checks import check_int, next_pow2
from jaxtune.errors import InputError, InputTypeError, UnknownNameError

__all__ = ["Float", "Int", "Choice", "Space", "Masked", "SCALES"]

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


class _Param:
    """Common interface of one dimension of a space (abstract)."""

    static: bool
    when: tuple[tuple[str, tuple], ...] | None = None

    def validate(self, name: str) -> None:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def from_unit(self, u: jax.Array) -> jax.Array:  # pragma: no cover
        raise NotImplementedError

    def to_unit(self, x: jax.Array) -> jax.Array:  # pragma: no cover
        raise NotImplementedError

    def grid_unit(self, points: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def to_python(self, x: Any) -> Any:  # pragma: no cover
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Float(_Param):
    """A real-valued hyperparameter in ``[low, high]``.

    Args:
      low: smallest value.
      high: largest value; ``low < high``.
      scale: ``"linear"``, ``"log"`` (needs ``low > 0``) or ``"reverse_log"`` (needs
        ``high < 1``; ``log(1 - x)`` is uniform).
      static: pass the value to the trial as a Python float (one compiled program per value).
      when: ``{parent: value or [values]}``: the parameter exists only in trials where each
        parent (a static parameter defined earlier) takes one of those values.

    Example:
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
class Int(_Param):
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
class Choice(_Param):
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


def _position(values: tuple, v: Any) -> int:
    """Index of ``v`` in a Choice's ``values`` (by repr, so ``1`` and ``True`` differ)."""
    return [repr(x) for x in values].index(repr(v))


def _matches(value: Any, allowed: tuple) -> bool:
    """Whether a parent's Python value is one of a condition's ``allowed`` values (by repr, as
    :func:`_check_when` checked them against the parent's values)."""
    return any(repr(value) == repr(v) for v in allowed)


def _check_when(name: str, p: _Param, params: Mapping[str, _Param]) -> None:
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


class Space:
    """An ordered set of named hyperparameters.

    Args:
      params: ``{name: Float | Int | Choice}``; the order of the mapping is the order of the
        unit-cube coordinates.

    Example:
      >>> space = Space({"lr": Float(1e-4, 1.0, scale="log"), "b1": Float(0.9, 0.999, scale="reverse_log")})
      >>> hp = space.sample(jax.random.key(0), 8)      # {"lr": Array[8], "b1": Array[8]}
      >>> u = space.to_unit(hp)                          # Array[8, 2]
    """

    def __init__(self, params: Mapping[str, _Param]):
        if not isinstance(params, Mapping):
            raise InputTypeError(f"Space takes a dict of name -> Float/Int/Choice, got {type(params).__name__}")
        if not params:
            raise InputError("Space needs at least one hyperparameter, got an empty dict")
        for name, p in params.items():
            if not isinstance(name, str) or not name:
                raise InputTypeError(f"hyperparameter names must be non-empty strings, got {name!r}")
            if not isinstance(p, _Param):
                raise InputTypeError(f"{name}: expected jt.Float, jt.Int or jt.Choice, got {p!r}")
            p.validate(name)
        self.params: dict[str, _Param] = dict(params)
        for name, p in self.params.items():
            _check_when(name, p, self.params)

    @property
    def names(self) -> list[str]:
        """Hyperparameter names in coordinate order."""
        return list(self.params)

    @property
    def dim(self) -> int:
        """Number of unit-cube coordinates."""
        return len(self.params)

    @property
    def static_names(self) -> list[str]:
        """Names of the parameters that reach the trial as Python values."""
        return [n for n, p in self.params.items() if p.static]

    @property
    def conditional(self) -> bool:
        """Whether any parameter has a ``when`` condition."""
        return any(p.when for p in self.params.values())

    def active(self, values: Mapping[str, Any]) -> dict[str, bool]:
        """Which parameters exist in a trial with these (Python) ``values``: ``{name: bool}``.

        Only the static parents of conditions are read, so a bucket's static values suffice.
        """
        out: dict[str, bool] = {}
        for n, p in self.params.items():
            out[n] = all(out[a] and _matches(values.get(a), allowed) for a, allowed in (p.when or ()))
        return out

    def active_unit(self, u: jax.Array) -> jax.Array:
        """Which coordinates of unit points ``u[..., d]`` are active: ``bool[..., d]`` (pure jnp)."""
        u = jnp.asarray(u, jnp.float32)
        index = {n: i for i, n in enumerate(self.params)}
        cols: dict[str, jax.Array] = {}
        for n, p in self.params.items():
            on = jnp.ones(u.shape[:-1], bool)
            for a, allowed in p.when or ():
                parent, x = self.params[a], u[..., index[a]]
                if isinstance(parent, Choice):  # by index: the values may be strings
                    hit = jnp.isin(parent.index(x), jnp.asarray([_position(parent.values, v) for v in allowed]))
                else:
                    hit = jnp.isin(parent.from_unit(x), jnp.asarray(allowed, jnp.int32))
                on = on & cols[a] & hit
            cols[n] = on
        return jnp.stack([cols[n] for n in self.params], axis=-1)

    @property
    def masked_names(self) -> list[str]:
        """Names of the ``masked=True`` integers (a traced value in a power-of-two bucket)."""
        return [n for n, p in self.params.items() if getattr(p, "masked", False)]

    def from_unit(self, u: jax.Array) -> dict[str, jax.Array]:
        """Maps unit coordinates ``u[..., d]`` to ``{name: Array[...]}``."""
        u = jnp.asarray(u, jnp.float32)
        if u.shape[-1] != self.dim:
            raise InputError(
                f"from_unit: last axis of u must be {self.dim} (the space's dimension), got shape {u.shape}"
            )
        return {n: p.from_unit(u[..., i]) for i, (n, p) in enumerate(self.params.items())}

    def to_unit(self, hp: Mapping[str, jax.Array]) -> jax.Array:
        """Maps ``{name: Array[...]}`` to unit coordinates ``Array[..., d]``."""
        missing = [n for n, p in self.params.items() if n not in hp and not p.when]
        if missing:
            raise UnknownNameError(f"to_unit: missing hyperparameters {missing}; the space has {self.names}")
        shape = jnp.shape(hp[next(n for n, p in self.params.items() if not p.when)])
        # An absent conditional parameter (inactive in that trial) sits at its range's centre.
        return jnp.stack(
            [p.to_unit(hp[n]) if n in hp else jnp.full(shape, 0.5) for n, p in self.params.items()], axis=-1
        )

    def sample(self, key: jax.Array, n: int) -> dict[str, jax.Array]:
        """Draws ``n`` independent points, uniform on each parameter's scale."""
        return self.from_unit(jax.random.uniform(key, (n, self.dim)))

    def grid_unit(self, points: int | Mapping[str, int] = 5) -> np.ndarray:
        """Cartesian grid in the unit cube: ``Array[G, d]``.

        Args:
          points: points per parameter, one int for all or ``{name: int}``. Floats get evenly
            spaced points on their scale (ends included); ints the distinct values those hit;
            choices always get every value.
        """
        per = {n: points for n in self.params} if isinstance(points, int) else dict(points)
        unknown = set(per) - set(self.params)
        if unknown:
            raise UnknownNameError(
                f"grid points given for unknown hyperparameters {sorted(unknown)}; the space has {self.names}"
            )
        axes = []
        for n, p in self.params.items():
            k = per.get(n, 5)
            check_int(f"{n}: grid points", k)
            axes.append(p.grid_unit(k))
        grid = np.array(list(itertools.product(*axes)), dtype=np.float32).reshape(-1, self.dim)
        if self.conditional:  # points that differ only where a parameter is inactive are one point
            grid = np.where(np.asarray(self.active_unit(grid)), grid, np.float32(0.5))
            _, first = np.unique(grid, axis=0, return_index=True)
            grid = grid[np.sort(first)]
        return grid

    def grid(self, points: int | Mapping[str, int] = 5) -> dict[str, jax.Array]:
        """The grid of :meth:`grid_unit` as hyperparameter values."""
        return self.from_unit(self.grid_unit(points))

    def to_python(self, hp: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Converts a batch ``{name: Array[N]}`` to N dicts of plain Python values (choices resolved).

        A conditional parameter that is inactive in a trial is left out of its dict.
        """
        cols = {n: np.asarray(hp[n]).reshape(-1) for n in self.params}
        size = len(next(iter(cols.values())))
        rows = [{n: p.to_python(cols[n][i]) for n, p in self.params.items()} for i in range(size)]
        if self.conditional:
            rows = [{n: v for n, v in row.items() if on[n]} for row in rows for on in [self.active(row)]]
        return rows

    def describe(self) -> dict[str, dict[str, Any]]:
        """A JSON-friendly description (used to tell whether a stored study matches)."""
        out = {}
        for n, p in self.params.items():
            d = {"type": type(p).__name__, **dataclasses.asdict(p)}
            if isinstance(p, Choice):
                d["values"] = list(p.values)
            if p.when is None:
                del d["when"]  # unconditional spaces describe themselves as before
            else:
                d["when"] = {a: list(v) for a, v in p.when}
            out[n] = d
        return out

    @classmethod
    def from_description(cls, description: Mapping[str, Mapping[str, Any]]) -> Space:
        """The space :meth:`describe` described (as a stored study keeps it)."""
        kinds = {"Float": Float, "Int": Int, "Choice": Choice}
        params = {}
        for n, d in description.items():
            d = dict(d)
            kind = kinds.get(d.pop("type", None))
            if kind is None:
                raise InputError(f"{n}: unknown parameter type in a space description: {description[n]!r}")
            params[n] = kind(**d)
        return cls(params)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n!r}: {p!r}" for n, p in self.params.items())
        return f"Space({{{inner}}})"
