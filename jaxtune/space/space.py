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
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune._checks import check_int
from jaxtune.errors import InputError, InputTypeError, UnknownNameError
from jaxtune.space.params import Choice, Float, Int, Param, check_when, matches, position

__all__ = ["Space"]


class Space:
    """An ordered set of named hyperparameters.

    Args:
      params: ``{name: Float | Int | Choice}``; the order of the mapping is the order of the
        unit-cube coordinates.

    Examples:
      >>> space = Space({"lr": Float(1e-4, 1.0, scale="log"), "b1": Float(0.9, 0.999, scale="reverse_log")})
      >>> hp = space.sample(jax.random.key(0), 8)      # {"lr": Array[8], "b1": Array[8]}
      >>> u = space.to_unit(hp)                          # Array[8, 2]
    """

    def __init__(self, params: Mapping[str, Param]):
        if not isinstance(params, Mapping):
            raise InputTypeError(f"Space takes a dict of name -> Float/Int/Choice, got {type(params).__name__}")
        if not params:
            raise InputError("Space needs at least one hyperparameter, got an empty dict")
        for name, p in params.items():
            if not isinstance(name, str) or not name:
                raise InputTypeError(f"hyperparameter names must be non-empty strings, got {name!r}")
            if not isinstance(p, Param):
                raise InputTypeError(f"{name}: expected jt.Float, jt.Int or jt.Choice, got {p!r}")
            p.validate(name)
        self.params: dict[str, Param] = dict(params)
        for name, p in self.params.items():
            check_when(name, p, self.params)

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
            out[n] = all(out[a] and matches(values.get(a), allowed) for a, allowed in (p.when or ()))
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
                    hit = jnp.isin(parent.index(x), jnp.asarray([position(parent.values, v) for v in allowed]))
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
        """Draws ``n`` independent points, uniform on each parameter's scale, as a batch of trials
        receives them: arrays, a non-static ``Choice`` as the index of its value, and every
        parameter present (a trial reads only the active ones). ``space.to_python(points)`` gives
        them readable: choices as values, inactive parameters left out.

        Examples:
          >>> space = Space({"opt": Choice(["sgd", "adam"], static=True), "act": Choice(["relu", "tanh"]),
          ...                "mom": Float(0.5, 0.99, when={"opt": "sgd"})})
          >>> [sorted(p) for p in space.to_python(space.sample(jax.random.key(0), 2))]
          [['act', 'opt'], ['act', 'mom', 'opt']]
        """
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
