"""Quasi-random search: a randomly shifted Halton sequence, jittable.

Points ``i = 0, 1, 2, ...`` (continuing across rounds) take, in coordinate ``j``, the radical
inverse of ``i + 1`` in the ``j``-th prime base, shifted by a random offset per coordinate drawn
once from the sweep's key (a Cranley-Patterson rotation: each seed its own sequence, every
point still uniform). The points fill the cube more evenly than independent draws, so a small
budget leaves fewer holes; like random search, every point tries new values of every parameter.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune.errors import InputError
from jaxtune.space import Space
from jaxtune.strategies.base import Strategy, all_valid, register

PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101,
           103, 107, 109, 113, 127, 131)  # fmt: skip


def radical_inverse(i: jax.Array, base: jax.Array, digits: int = 32) -> jax.Array:
    """The van der Corput radical inverse of integers ``i`` in ``base`` (both broadcast)."""

    def digit(carry, _):
        n, value, scale = carry
        return (n // base, value + (n % base) * scale, scale / base), None

    shape = jnp.broadcast_shapes(jnp.shape(i), jnp.shape(base))
    n = jnp.broadcast_to(jnp.asarray(i, jnp.uint32), shape)
    base = jnp.broadcast_to(jnp.asarray(base, jnp.uint32), shape)
    init = (n, jnp.zeros(shape, jnp.float32), 1.0 / base.astype(jnp.float32))
    (_, value, _), _ = jax.lax.scan(digit, init, None, length=digits)
    return value


class HaltonState(NamedTuple):
    """Quasi-random search's state: the next point's index and the sweep's random shift."""

    next: jax.Array  # u32[]
    shift: jax.Array  # f32[dim]


@register("halton")
@dataclasses.dataclass(frozen=True)
class Halton:
    """Randomly shifted Halton points (see the module docstring); up to 32 hyperparameters."""

    def build(self, space: Space, num_trials: int) -> Strategy:
        """Binds the sequence to ``space`` and ``num_trials`` points a round."""
        dim = space.dim
        if dim > len(PRIMES):
            raise InputError(f"halton: at most {len(PRIMES)} hyperparameters, the space has {dim}")
        bases = jnp.asarray(np.asarray(PRIMES[:dim], np.uint32))
        digits = 32  # enough for 2**32 points in base 2, and more in larger bases

        def init(key):
            return HaltonState(next=jnp.zeros((), jnp.uint32), shift=jax.random.uniform(key, (dim,)))

        def ask(key, state):
            i = state.next + 1 + jnp.arange(num_trials, dtype=jnp.uint32)
            u = radical_inverse(i[:, None], bases[None, :], digits)
            u = jnp.mod(u + state.shift[None], 1.0)
            return u, state._replace(next=state.next + num_trials)

        def tell(state, u, scores):
            return state

        return Strategy(init, ask, tell, all_valid(num_trials), num_trials, dim)
