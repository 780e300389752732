"""CMA-ES on the unit cube, through evosax (optional: ``pip install evosax``).

Covariance-matrix adaptation (Hansen et al.) proposes a whole batch a round from a Gaussian whose
mean, step size and covariance adapt to the ranks of the batch's scores: a model-based search
that runs natively on the device, jittable, so ``jaxtune bench`` runs a thousand seeds of it at
once and ``jt.tune`` uses it like any strategy. Points outside the unit cube are projected onto
it (clipped) and CMA-ES is told the projected points, so it learns the box's walls; diverged
trials rank last.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxtune.errors import InputError, MissingDependencyError
from jaxtune.space import Space
from jaxtune.strategies.base import Strategy, all_valid, register, sanitize_scores


class CMAState(NamedTuple):
    """CMA-ES's state (evosax's, a pytree) and the key its updates draw from."""

    es: Any
    key: jax.Array  # u32[2]: raw key data (states hold plain arrays)


def _evosax():
    try:
        from evosax.algorithms import CMA_ES
    except ImportError as e:
        raise MissingDependencyError("strategy 'cma_es' needs evosax: pip install evosax") from e
    return CMA_ES


@register("cma_es")
@dataclasses.dataclass(frozen=True)
class CMAES:
    """CMA-ES (see the module docstring), started at the centre of the cube.

    Args:
      sigma: initial step size, in unit-cube coordinates (0.3: a third of each axis).
    """

    sigma: float = 0.3

    def __post_init__(self):
        if not (isinstance(self.sigma, (int, float)) and 0 < self.sigma <= 1):
            raise InputError(f"cma_es: sigma must be in (0, 1], got {self.sigma!r}")

    def build(self, space: Space, num_trials: int) -> Strategy:
        """Binds CMA-ES to ``space`` with a population of ``num_trials`` points a round."""
        if num_trials < 4:
            raise InputError(f"cma_es needs at least 4 trials a round (its population), got {num_trials}")
        dim = space.dim
        es = _evosax()(population_size=num_trials, solution=jnp.zeros((dim,)))
        params = es.default_params.replace(std_init=jnp.float32(self.sigma))

        # evosax broadcasts ranks implicitly; allow it inside its calls even where a user (or
        # jaxtune's tests) set jax_numpy_rank_promotion="raise".
        allow = lambda: jax.numpy_rank_promotion("allow")  # noqa: E731

        def init(key):
            start, key = jax.random.split(key)
            with allow():
                return CMAState(es.init(start, jnp.full((dim,), 0.5), params), jax.random.key_data(key))

        def ask(key, state):
            with allow():
                x, es_state = es.ask(key, state.es, params)
            return jnp.clip(x, 0.0, 1.0), state._replace(es=es_state)

        def tell(state, u, scores):
            scores = sanitize_scores(scores)
            worst = jnp.max(jnp.where(jnp.isfinite(scores), scores, -jnp.inf))
            fitness = jnp.where(jnp.isfinite(scores), scores, jnp.where(jnp.isfinite(worst), worst + 1.0, 0.0))
            tell_key, key = jax.random.split(jax.random.wrap_key_data(state.key))
            with allow():
                es_state, _ = es.tell(tell_key, u, fitness, state.es, params)
            return CMAState(es_state, jax.random.key_data(key))

        return Strategy(init, ask, tell, all_valid(num_trials), num_trials, dim)
