"""Coarse-to-fine search: sample a box, shrink it around the best trials, sample again.

The rule, each round after the first (``k = ceil(top_fraction * num_trials)``):

1. Keep the ``k`` best trials seen so far (an archive, so one bad round cannot undo progress;
   ``k`` is at least ``dim + 1``, enough points to have a spread along every axis).
2. ``best`` is the best of them; ``spread_j = max_i |top_ij - best_j|`` over the finite ones.
3. The new half-width per coordinate is ``(1 + margin) * spread_j``, clipped to
   ``[min_shrink, max_shrink] * old half-width`` after a round that did not improve the best, and
   to ``[min_shrink, max_grow] * old half-width`` after one that did (and to the cube). With the
   defaults the box zooms by 2-4x after a round without progress and by 1.33-4x while it keeps
   finding better points, so a box on a ridge follows it for longer instead of locking on; a
   ``max_grow`` above 1 lets an improving box grow. Coordinates where the good trials agree zoom
   faster than those that do not matter.
4. The box is centred on ``best`` and shifted, not cut, to lie inside the unit cube.

A conditional hyperparameter (``when=``) is zoomed on only by the archived trials in which it is
active: its centre is the best of those, its spread theirs; with none, its range stays as it was.

The inner sampler draws ``num_trials`` points in the box (all but the last ``round(explore *
num_trials)``, which sample the whole cube): uniform (``inner="random"``) or a
Cartesian grid with ``floor(num_trials ** (1/d))`` points a side plus uniform points for the
remaining lanes (``inner="grid"``). After a round in which every trial diverged the box stays put.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune.errors import InputError
from jaxtune.space import Space
from jaxtune.strategies.base import Strategy, all_valid, register, sanitize_scores

INNER = ("random", "grid")


class CoarseToFineState(NamedTuple):
    """Coarse-to-fine's state: the box to sample next and the archive of the best trials so far."""

    lo: jax.Array  # f32[dim]: the box's lower corner in the unit cube
    hi: jax.Array  # f32[dim]: its upper corner
    top_u: jax.Array  # f32[k, dim]: the k best points seen so far
    top_s: jax.Array  # f32[k]: their scores (lower is better; +inf: none yet or diverged)
    round: jax.Array  # i32[]: rounds told


@register("coarse_to_fine")
@dataclasses.dataclass(frozen=True)
class CoarseToFine:
    """Coarse-to-fine zooming search (see the module docstring for the exact rule).

    Args:
      top_fraction: fraction of a round's trials whose spread sets the next box, in (0, 1].
      margin: how far the box reaches past the spread of the top trials, >= 0.
      min_shrink: smallest factor the half-width is multiplied by in a round, in (0, 1].
      max_shrink: largest factor after a round that did not improve the best, in [min_shrink, 1].
      max_grow: largest factor after a round that improved the best, >= max_shrink (a box that
        finds better points zooms more slowly, or with 1 or more may stay as wide or grow;
        equal to ``max_shrink``: every round zooms alike, the rule before 0.75 was measured best).
      explore: fraction of each round's trials sampled in the whole cube instead of the box, in
        [0, 1): a share of global samples, so a box that zoomed onto the wrong region can be left.
      inner: ``"random"`` or ``"grid"`` sampling inside the box.
    """

    # Analysis reads these (jaxtune.strategies.traits): later rounds sample a box, and the state holds it.
    zooms: ClassVar[bool] = True
    has_box: ClassVar[bool] = True

    top_fraction: float = 0.1
    margin: float = 0.5
    min_shrink: float = 0.25
    max_shrink: float = 0.5
    # Options added after studies were stored: described only when set (old studies still match).
    max_grow: float = dataclasses.field(default=0.75, metadata={"describe": "if_changed"})
    explore: float = dataclasses.field(default=0.0, metadata={"describe": "if_changed"})
    inner: str = "random"

    def __post_init__(self):
        if not 0 < self.top_fraction <= 1:
            raise InputError(f"coarse_to_fine: top_fraction must be in (0, 1], got {self.top_fraction!r}")
        if not self.margin >= 0:
            raise InputError(f"coarse_to_fine: margin must be >= 0, got {self.margin!r}")
        if not 0 < self.min_shrink <= self.max_shrink <= 1:
            raise InputError(
                "coarse_to_fine: need 0 < min_shrink <= max_shrink <= 1, "
                f"got min_shrink={self.min_shrink!r}, max_shrink={self.max_shrink!r}"
            )
        if not self.max_grow >= self.max_shrink:
            raise InputError(
                f"coarse_to_fine: max_grow must be >= max_shrink={self.max_shrink!r}, got {self.max_grow!r}"
            )
        if not 0 <= self.explore < 1:
            raise InputError(f"coarse_to_fine: explore must be in [0, 1), got {self.explore!r}")
        if self.inner not in INNER:
            raise InputError(
                f"coarse_to_fine: unknown inner sampler {self.inner!r}; allowed are {', '.join(map(repr, INNER))}"
            )

    def build(self, space: Space, num_trials: int) -> Strategy:
        """Binds the search to ``space`` and ``num_trials`` trials a round."""
        dim = space.dim
        # At least dim + 1 archived points: the spread of one or two points says nothing of a
        # direction, and a box shrunk around a single point locks onto it (rounds of 8 did).
        k = max(math.ceil(self.top_fraction * num_trials), dim + 1)
        side = max(1, int(math.floor(num_trials ** (1 / dim) + 1e-9)))
        if self.inner == "grid":
            axis = (np.arange(side) + 0.5) / side
            lattice = np.stack(np.meshgrid(*[axis] * dim, indexing="ij"), -1).reshape(-1, dim)
            lattice = jnp.asarray(lattice, jnp.float32)

        wide = int(round(self.explore * num_trials))  # the last `wide` lanes sample the whole cube

        def sample(key, lo, hi):
            u = jax.random.uniform(key, (num_trials, dim))
            if self.inner == "grid":
                u = u.at[: lattice.shape[0]].set(lattice)
            box = lo[None] + u * (hi - lo)[None]
            return box if not wide else box.at[num_trials - wide :].set(u[num_trials - wide :])

        def init(key):
            return CoarseToFineState(
                lo=jnp.zeros((dim,)),
                hi=jnp.ones((dim,)),
                top_u=jnp.full((k, dim), 0.5),
                top_s=jnp.full((k,), jnp.inf),
                round=jnp.zeros((), jnp.int32),
            )

        def ask(key, state):
            return sample(key, state.lo, state.hi), state

        def tell(state, u, scores):
            all_u = jnp.concatenate([state.top_u, u])
            scores = sanitize_scores(scores)
            all_s = jnp.concatenate([state.top_s, scores])
            order = jnp.argsort(all_s)[:k]  # stable: ties keep archive first
            top_u, top_s = all_u[order], all_s[order]
            # Per coordinate, the archived points that say something about it: finite, and (for a
            # conditional hyperparameter) active. Unconditional coordinates: row 0 is the best.
            seen = jnp.isfinite(top_s)[:, None] & space.active_unit(top_u)
            best = jnp.take_along_axis(top_u, jnp.argmax(seen, axis=0)[None], axis=0)[0]
            spread = jnp.max(jnp.where(seen, jnp.abs(top_u - best[None]), 0.0), axis=0)
            half = (state.hi - state.lo) / 2
            improved = top_s[0] < state.top_s[0]
            top = jnp.where(improved, self.max_grow, self.max_shrink) * half
            new_half = jnp.minimum(jnp.clip((1 + self.margin) * spread, self.min_shrink * half, top), 0.5)
            lo = jnp.clip(best - new_half, 0.0, 1.0 - 2 * new_half)
            # A round with no finite score brings no evidence: the box stays where it was; so does
            # a coordinate no archived point has active.
            moved = jnp.isfinite(scores).any() & seen.any(axis=0)
            return CoarseToFineState(
                lo=jnp.where(moved, lo, state.lo),
                hi=jnp.where(moved, lo + 2 * new_half, state.hi),
                top_u=top_u,
                top_s=top_s,
                round=state.round + 1,
            )

        return Strategy(init, ask, tell, all_valid(num_trials), num_trials, dim)
