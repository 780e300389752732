"""Asynchronous successive halving (Li et al., 2020), stopping variant, in a synchronous batch of lanes.

Rungs sit at ``min_steps * eta**k`` steps up to ``max_steps``. After each segment, every lane
that has just reached a rung adds its score to that rung's record; then (so that the outcome
does not depend on lane order) each of them is compared with the record, this segment's
arrivals included: it goes on only if its score is within the best ``1/eta`` of the record (the
``1/eta`` quantile; a first arrival always goes on). A lane that reaches ``max_steps`` has
finished. A stopped, finished or diverged lane is refilled at once with a fresh configuration
while fewer than ``configs`` have been started, so the batch stays full; after that it idles.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxtune._checks import check_int
from jaxtune.errors import InputError
from jaxtune.schedulers.base import Decision, Lanes, Scheduler, fresh, register_scheduler
from jaxtune.space import Space

_WORST = 3e38  # a diverged score in a rung record (finite, so quantiles stay defined)


class ASHAState(NamedTuple):
    """ASHA's state: each rung's record of scores, and counts for reporting."""

    record: jax.Array  # f32[rungs, configs]: scores recorded at each rung (NaN: empty)
    count: jax.Array  # i32[rungs]: how many arrived at each rung
    passed: jax.Array  # i32[rungs]: how many of them went on
    started: jax.Array  # i32[]: configurations started so far


@register_scheduler("asha")
@dataclasses.dataclass(frozen=True)
class ASHA:
    """ASHA with refill (see the module docstring for the exact rule).

    Args:
      min_steps: the first rung, and the segment length.
      eta: keep the best ``1/eta`` at each rung (>= 2).
      configs: configurations to start in all (None: 4 per lane).
    """

    min_steps: int = 100
    eta: int = 3
    configs: int | None = None

    def __post_init__(self):
        check_int("asha: min_steps", self.min_steps)
        check_int("asha: eta", self.eta, 2)
        check_int("asha: configs", self.configs, none=True)

    def build(self, space: Space, num_lanes: int, steps: int) -> Scheduler:
        """Binds ASHA to ``space``, ``num_lanes`` lanes and ``steps`` (the largest budget)."""
        if steps < self.min_steps * self.eta:
            raise InputError(
                f"asha: the budget of {steps} steps is less than one rung above min_steps={self.min_steps} "
                f"(eta={self.eta}): train longer or lower min_steps"
            )
        dim, eta = space.dim, self.eta
        configs = self.configs or 4 * num_lanes
        if configs < num_lanes:
            raise InputError(f"asha: configs={configs} must be at least the number of lanes ({num_lanes})")
        milestones = []
        r = self.min_steps
        while r < steps:
            milestones.append(r)
            r *= eta
        rungs = jnp.asarray(milestones, jnp.int32)  # the top rung, `steps`, is the end
        n_rungs = len(milestones)
        # Every configuration trains at most `steps`: lane-steps <= configs * steps.
        max_segments = math.ceil(configs * steps / (num_lanes * self.min_steps)) + math.ceil(steps / self.min_steps)

        def init(key):
            return ASHAState(
                record=jnp.full((n_rungs, configs), jnp.nan, jnp.float32),
                count=jnp.zeros((n_rungs,), jnp.int32),
                passed=jnp.zeros((n_rungs,), jnp.int32),
                started=jnp.asarray(num_lanes, jnp.int32),
            )

        def first(key, state):
            return fresh(key, num_lanes, dim), state

        def decide(key, state, lanes: Lanes):
            score = jnp.where(jnp.isfinite(lanes.score), lanes.score, _WORST)
            arrive = lanes.active[:, None] & (lanes.steps[:, None] == rungs[None, :])  # [N, rungs]
            # Record every arrival first: the decision does not depend on lane order.
            slot = state.count[None, :] + jnp.cumsum(arrive, axis=0) - 1
            record = state.record
            for k in range(n_rungs):
                at = jnp.where(arrive[:, k], slot[:, k], configs)  # out of range: dropped
                record = record.at[k, at].set(score, mode="drop")
            count = state.count + arrive.sum(0)
            cutoff = jnp.nanquantile(record, 1.0 / eta, axis=1)  # [rungs]
            at_rung = arrive.any(1)
            rung = jnp.argmax(arrive, axis=1)
            go_on = score <= cutoff[rung]
            diverged = lanes.active & ~jnp.isfinite(lanes.score)
            finished = lanes.active & (lanes.steps >= steps) & ~diverged
            stopped = (lanes.active & at_rung & ~go_on) | diverged
            end = finished | stopped
            passed = state.passed + (arrive & go_on[:, None] & ~diverged[:, None]).sum(0)
            # Refill ended lanes, in lane order, while configurations remain.
            order = jnp.cumsum(end) - 1
            refill = end & (state.started + order < configs)
            started = state.started + refill.sum()
            u = jnp.where(refill[:, None], fresh(key, num_lanes, dim), lanes.u)
            decision = Decision(
                source=jnp.arange(num_lanes, dtype=jnp.int32),
                restart=refill,
                end=end,
                finished=finished,
                idle=(~lanes.active) | (end & ~refill),
                u=u,
            )
            return decision, ASHAState(record=record, count=count, passed=passed, started=started)

        return Scheduler(init, first, decide, self.min_steps, max_segments, num_lanes, dim, tuple(milestones))
