"""Grid search: the Cartesian grid of a space, a batch of points per round."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxtune.space import Space
from jaxtune.strategies.base import Strategy, register


class GridState(NamedTuple):
    """Grid search's state: the visiting order, the next grid index, and the last batch's real lanes."""

    order: jax.Array  # i32[grid size]: grid indices in visiting order
    next: jax.Array  # i32[]: position in ``order`` of the next batch's first point
    valid: jax.Array  # bool[num_trials]: lanes of the last ask that hold a real grid point


@register("grid")
@dataclasses.dataclass(frozen=True)
class GridSearch:
    """Every point of a Cartesian grid, ``num_trials`` a round.

    The last batch is padded with copies of a real point and marked invalid by ``valid``, so
    every round has the same shape (one compiled program). ``shuffle=True`` visits the grid in
    a random order, so a sweep stopped early still covers every axis evenly.

    Args:
      points: points per parameter, an int or ``{name: int}`` (see :meth:`Space.grid_unit`).
      shuffle: visit the grid in a random (seeded) order rather than row-major order.
    """

    points: int | Mapping[str, int] = 5
    shuffle: bool = True

    def build(self, space: Space, num_trials: int) -> Strategy:
        """Binds the grid to ``space`` and ``num_trials`` trials a round."""
        table = jnp.asarray(space.grid_unit(dict(self.points) if isinstance(self.points, Mapping) else self.points))
        size = table.shape[0]

        def init(key):
            order = jax.random.permutation(key, size) if self.shuffle else jnp.arange(size)
            return GridState(order.astype(jnp.int32), jnp.zeros((), jnp.int32), jnp.zeros((num_trials,), bool))

        def ask(key, state):
            idx = state.next + jnp.arange(num_trials)
            valid = idx < size
            # Padded lanes repeat a real point: their work is wasted but the shapes stay fixed.
            u = table[state.order[jnp.minimum(idx, size - 1)]]
            return u, state._replace(next=state.next + num_trials, valid=valid)

        def tell(state, u, scores):
            return state

        return Strategy(
            init,
            ask,
            tell,
            lambda state: state.valid,
            num_trials,
            space.dim,
            num_rounds=math.ceil(size / num_trials),
        )
