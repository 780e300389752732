"""Population-based training (Jaderberg et al., 2017): exploit the best lanes' weights, explore their hyperparameters.

Every ``ready`` segments after ``burn_in`` steps, lanes are ranked by score. Each lane in the
bottom ``quantile`` copies the state (parameters and optimizer state) of a lane drawn uniformly
from the top ``quantile`` and *explores*: with probability ``resample`` each hyperparameter is
drawn afresh, otherwise its value is multiplied by 0.8 or 1.2 (one coin per hyperparameter) on
its own scale (for a ``reverse_log`` parameter such as a momentum, ``1 - b1`` is), clipped to the
space's bounds. A lane whose score is not finite (diverged) always counts as the bottom. The
copy gets its own data order (reseeded), so clones do not train identically. Every lane trains
the full budget of steps; a copy continues its donor's step count.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxtune._checks import check_int
from jaxtune.errors import InputError
from jaxtune.pareto import promotion_positions
from jaxtune.schedulers.base import (
    Decision,
    Lanes,
    Scheduler,
    check_segment,
    explorer,
    fresh,
    initial_unit,
    register_scheduler,
)
from jaxtune.space import Space


class PBTState(NamedTuple):
    """PBT's state: segments run so far."""

    segment: jax.Array  # i32[]


@register_scheduler("pbt")
@dataclasses.dataclass(frozen=True)
class PBT:
    """Population-based training (see the module docstring for the exact rule).

    Args:
      segment: steps between evaluations (a segment).
      ready: exploit/explore every this many segments.
      burn_in: steps before the first exploit.
      quantile: the bottom and top fractions, in (0, 0.5].
      resample: probability that an explored hyperparameter is drawn afresh, in [0, 1].
      factors: the multipliers of a perturbation (down, up).
      initial: configurations (``{name: value}``) for the first lanes; the other lanes draw theirs
        uniformly.
    """

    segment: int = 100
    ready: int = 1
    burn_in: int = 0
    quantile: float = 0.25
    resample: float = 0.25
    factors: tuple[float, float] = (0.8, 1.2)
    initial: tuple = ()

    def __post_init__(self):
        name = self.registry_name
        check_int(f"{name}: segment", self.segment)
        check_int(f"{name}: ready", self.ready)
        check_int(f"{name}: burn_in", self.burn_in, 0)
        if not 0 < self.quantile <= 0.5:
            raise InputError(f"{name}: quantile must be in (0, 0.5], got {self.quantile!r}")
        if not 0 <= self.resample <= 1:
            raise InputError(f"{name}: resample must be in [0, 1], got {self.resample!r}")
        numbers = isinstance(self.factors, (list, tuple)) and all(
            isinstance(f, (int, float)) and not isinstance(f, bool) for f in self.factors
        )
        if not numbers or len(self.factors) != 2 or not 0 < self.factors[0] < 1 < self.factors[1]:
            raise InputError(f"{name}: factors must be (down < 1, up > 1), got {self.factors!r}")

    def build(self, space: Space, num_lanes: int, steps: int) -> Scheduler:
        """Binds PBT to ``space``, ``num_lanes`` lanes and ``steps`` training steps per lane."""
        name = self.registry_name
        if num_lanes < 2:
            raise InputError(f"{name} needs at least 2 lanes (trials), got {num_lanes}")
        check_segment(name, self.segment, steps)
        dim = space.dim
        k = max(1, math.floor(self.quantile * num_lanes))
        segments = -(-steps // self.segment)
        given = initial_unit(space, self.initial, num_lanes, name)
        explore = self.explorer(space, num_lanes, steps, k)

        def init(key):
            return self.initial_state(space, num_lanes)

        def first(key, state):
            u = fresh(key, num_lanes, dim)
            return u if given is None else u.at[: given.shape[0]].set(given), state

        def decide(key, state, lanes: Lanes):
            seg = state.segment + 1
            k_donor, *k_explore = jax.random.split(key, 4)
            if lanes.objectives is None:
                order = jnp.argsort(lanes.score)  # best first; non-finite (+inf) last; ties by lane
            else:  # several objectives: non-dominated rank, ties by hypervolume contribution (MO-PBT)
                order = jnp.argsort(promotion_positions(lanes.objectives, jnp.ones((num_lanes,), bool)))
            rank = jnp.argsort(order)
            bottom = rank >= num_lanes - k
            donors = order[jax.random.randint(k_donor, (num_lanes,), 0, k)]
            at = seg * self.segment
            due = (seg % self.ready == 0) & (at >= self.burn_in) & (at < steps)
            exploit = due & bottom & lanes.active
            done = lanes.steps >= steps
            lane = jnp.arange(num_lanes, dtype=jnp.int32)
            source = jnp.where(exploit, donors, lane).astype(jnp.int32)
            explored, state = explore(k_explore, state, lanes, donors, exploit, source, done)
            decision = Decision(
                source=source,
                restart=jnp.zeros((num_lanes,), bool),
                end=exploit | done,
                finished=done,
                idle=done,
                u=jnp.where(exploit[:, None], explored, lanes.u),
            )
            return decision, state._replace(segment=seg)

        return Scheduler(init, first, decide, self.segment, segments, num_lanes, dim)

    def initial_state(self, space: Space, num_lanes: int) -> PBTState:
        """The scheduler's state before the first segment."""
        return PBTState(segment=jnp.zeros((), jnp.int32))

    def explorer(self, space: Space, num_lanes: int, steps: int, k: int):
        """``explore(keys, state, lanes, donors, exploit, source, done) -> (u[N, d], state)``: the
        configurations the exploiting lanes take (their donors' perturbed: PBT's explore)."""
        perturb = explorer(space)
        down, up = self.factors
        dim = space.dim

        def explore(keys, state, lanes, donors, exploit, source, done):
            k_coin, k_resample, k_new = keys
            coin = jax.random.bernoulli(k_coin, 0.5, (num_lanes, dim))
            explored = perturb(lanes.u[donors], jnp.where(coin, up, down))
            redraw = jax.random.bernoulli(k_resample, self.resample, (num_lanes, dim))
            return jnp.where(redraw, fresh(k_new, num_lanes, dim), explored), state

        return explore
