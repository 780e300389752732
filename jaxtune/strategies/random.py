"""Random search: every round draws fresh uniform points in the unit cube."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxtune.space import Space
from jaxtune.strategies.base import Strategy, all_valid, register


class RandomState(NamedTuple):
    """Random search's state: how many rounds it has been told."""

    round: jax.Array  # i32[]


@register("random")
@dataclasses.dataclass(frozen=True)
class RandomSearch:
    """Uniform random search on each parameter's scale.

    Random search beats a grid when only a few of many hyperparameters matter: every trial
    tries a new value of each one.
    """

    def build(self, space: Space, num_trials: int) -> Strategy:
        """Binds the search to ``space`` and ``num_trials`` trials a round."""
        dim = space.dim

        def init(key):
            return RandomState(round=jnp.zeros((), jnp.int32))

        def ask(key, state):
            u = jax.random.uniform(key, (num_trials, dim))
            return u, state

        def tell(state, u, scores):
            return RandomState(round=state.round + 1)

        return Strategy(init, ask, tell, all_valid(num_trials), num_trials, dim)
