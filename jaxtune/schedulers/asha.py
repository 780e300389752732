"""Asynchronous successive halving (Li et al., 2020), stopping variant, in a synchronous batch of
lanes; and median stopping, the same machinery with a comparison at every segment.

Rungs sit at ``min_steps * eta**k`` steps up to ``max_steps``. After each segment, every lane
that has just reached a rung adds its score to that rung's record; then (so that the outcome
does not depend on lane order) each of them is compared with the record, this segment's
arrivals included: it goes on only if its score is within the best ``1/eta`` of the record (the
``1/eta`` quantile; a first arrival always goes on). A lane that reaches ``max_steps`` has
finished. A stopped, finished or diverged lane is refilled at once with a fresh configuration
while fewer than ``configs`` have been started, so the batch stays full; after that it idles.

With a budget in training steps (``budget_steps``, instead of a count of configurations), a lane
is refilled only while the steps trained so far, plus what the running trials are expected to
train still, plus a fresh configuration's expected steps, fit in the budget. Expected steps
follow the rungs' pass rates so far (``1/eta`` before a rung has a record): a trial at step ``s``
trains to the next rung, and on to each later one with the product of the pass rates up to it.
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
from jaxtune.schedulers.base import MAX_CONFIGS, Decision, Lanes, Scheduler, check_segment, fresh, register_scheduler
from jaxtune.space import Space

_WORST = 3e38  # a diverged score in a rung record (finite, so quantiles stay defined)


class ASHAState(NamedTuple):
    """ASHA's state: each rung's record of scores, and counts for reporting."""

    record: jax.Array  # f32[rungs, configs] ([rungs, configs, objectives]): scores recorded at each rung (NaN: empty)
    count: jax.Array  # i32[rungs]: how many arrived at each rung
    passed: jax.Array  # i32[rungs]: how many of them went on
    started: jax.Array  # i32[]: configurations started so far
    retired: jax.Array  # f32[]: steps trained by trials that have ended


@register_scheduler("asha")
@dataclasses.dataclass(frozen=True)
class ASHA:
    """ASHA with refill (see the module docstring for the exact rule).

    Args:
      min_steps: the first rung, and the segment length.
      eta: keep the best ``1/eta`` at each rung (>= 2).
      configs: configurations to start in all (None: 4 per lane, or as many as ``budget_steps`` takes).
      budget_steps: training steps to spend in all, summed over lanes (instead of ``configs``):
        refilling stops once the next configuration is not expected to fit (module docstring).
      objectives: how many objectives a rung compares (set by ``jt.tune`` from ``metric``; see
        :func:`rung_scheduler`).
    """

    min_steps: int = 100
    eta: int = 3
    configs: int | None = None
    budget_steps: int | None = dataclasses.field(default=None, metadata={"describe": "if_changed"})
    objectives: int = dataclasses.field(default=1, metadata={"describe": "if_changed"})

    def __post_init__(self):
        check_int("asha: min_steps", self.min_steps)
        check_int("asha: eta", self.eta, 2)
        check_int("asha: configs", self.configs, high=MAX_CONFIGS, none=True)
        check_int("asha: budget_steps", self.budget_steps, none=True)
        if self.configs is not None and self.budget_steps is not None:
            raise InputError("asha: give configs or budget_steps, not both (a count of configurations, or of steps)")

    def build(self, space: Space, num_lanes: int, steps: int) -> Scheduler:
        """Binds ASHA to ``space``, ``num_lanes`` lanes and ``steps`` (the largest budget)."""
        if steps < self.min_steps * self.eta:
            raise InputError(
                f"asha: the budget of {steps} steps is less than one rung above min_steps={self.min_steps} "
                f"(eta={self.eta}): train longer or lower min_steps"
            )
        eta, budget = self.eta, self.budget_steps
        if budget is not None and budget < num_lanes * self.min_steps:
            raise InputError(f"asha: budget_steps={budget} is less than one rung for every lane ({num_lanes} lanes x "
                             f"min_steps={self.min_steps} = {num_lanes * self.min_steps})")  # fmt: skip
        configs = self.configs or (min(MAX_CONFIGS, budget // self.min_steps) if budget else 4 * num_lanes)
        if configs < num_lanes:
            raise InputError(f"asha: configs={configs} must be at least the number of lanes ({num_lanes})")
        milestones = []
        r = self.min_steps
        while r < steps:
            milestones.append(r)
            r *= eta
        return rung_scheduler(space, num_lanes, steps, self.min_steps, milestones, 1.0 / eta, configs, min_count=1,
                              budget=budget, objectives=self.objectives)  # fmt: skip


def expected_left(at: jax.Array, ends: jax.Array, rate: jax.Array) -> jax.Array:
    """Steps trials at steps ``at`` are expected to train still: to the next of ``ends`` (the rungs,
    then the budget), and past each rung ``k`` with probability ``rate[k]`` (products along the way).

    Examples:
      >>> float(expected_left(jnp.zeros((1,)), jnp.asarray([10.0, 30.0, 90.0]), jnp.asarray([0.5, 0.5]))[0])
      35.0
    """
    reach, left = jnp.ones_like(at), jnp.zeros_like(at)
    start = jnp.concatenate([jnp.zeros((1,)), ends[:-1]])
    for k in range(ends.shape[0]):  # segment k: from the previous rung (or 0) to ends[k]
        ahead = ends[k] > at
        left = left + jnp.where(ahead, reach * (ends[k] - jnp.maximum(start[k], at)), 0.0)
        if k < rate.shape[0]:  # going past rung k takes passing it
            reach = jnp.where(ahead, reach * rate[k], reach)
    return left


def _within_front_quantile(record, arrive, slot, count, quantile: float) -> jax.Array:
    """Which arriving lanes' place in their rung's promotion order (non-dominated rank, ties by
    hypervolume contribution) is within the best ``quantile`` of the rung's record; computed only
    for rungs with arrivals."""
    num_lanes, n_rungs = arrive.shape
    configs = record.shape[1]
    within = jnp.zeros((num_lanes,), bool)
    for k in range(n_rungs):

        def place(record_k, k=k):
            at = promotion_positions(record_k, ~jnp.isnan(record_k[:, 0]))[jnp.clip(slot[:, k], 0, configs - 1)]
            return at <= quantile * (count[k] - 1)

        def nobody(record_k):
            return jnp.zeros((num_lanes,), bool)

        within = jnp.where(arrive[:, k], jax.lax.cond(arrive[:, k].any(), place, nobody, record[k]), within)
    return within


def rung_scheduler(
    space: Space,
    num_lanes: int,
    steps: int,
    segment: int,
    milestones: list[int],
    quantile: float,
    configs: int,
    min_count: int,
    budget: int | None = None,
    objectives: int = 1,
) -> Scheduler:
    """Lanes compared at ``milestones`` (step counts): a lane arriving at one goes on only if its
    score is within the best ``quantile`` of that milestone's record (this segment's arrivals
    included; a record of fewer than ``min_count`` lets every arrival go on); ended lanes are
    refilled while fewer than ``configs`` configurations have started. ASHA and median stopping.

    With several ``objectives`` (MO-ASHA's rule, Schmucker et al. 2021) the record holds every
    objective, and an arrival goes on if its place in the record's promotion order (non-dominated
    rank, ties by hypervolume contribution: :func:`jaxtune.pareto.promotion_positions`) is within
    the best ``quantile`` of it."""
    dim = space.dim
    rungs = jnp.asarray(milestones, jnp.int32)  # the end, `steps`, is not a rung
    n_rungs = len(milestones)
    # Every configuration trains at most `steps`: lane-steps <= configs * steps.
    max_segments = math.ceil(configs * steps / (num_lanes * segment)) + math.ceil(steps / segment)
    if budget is not None:  # lane-steps <= budget + what the lanes running at the last refill may train
        max_segments = min(max_segments, math.ceil(budget / (num_lanes * segment)) + 2 * math.ceil(steps / segment))
    ends = jnp.asarray([*milestones, steps], jnp.float32)  # where a trial is compared, then its end
    extra = (objectives,) if objectives > 1 else ()

    def init(key):
        return ASHAState(
            record=jnp.full((n_rungs, configs, *extra), jnp.nan, jnp.float32),
            count=jnp.zeros((n_rungs,), jnp.int32),
            passed=jnp.zeros((n_rungs,), jnp.int32),
            started=jnp.asarray(num_lanes, jnp.int32),
            retired=jnp.zeros((), jnp.float32),
        )


    def first(key, state):
        return fresh(key, num_lanes, dim), state

    def decide(key, state, lanes: Lanes):
        score = lanes.score if not extra else lanes.objectives
        score = jnp.where(jnp.isfinite(score), score, _WORST)
        arrive = lanes.active[:, None] & (lanes.steps[:, None] == rungs[None, :])  # [N, rungs]
        # Record every arrival first: the decision does not depend on lane order.
        slot = state.count[None, :] + jnp.cumsum(arrive, axis=0) - 1
        record = state.record
        for k in range(n_rungs):
            at = jnp.where(arrive[:, k], slot[:, k], configs)  # out of range: dropped
            record = record.at[k, at].set(score, mode="drop")
        count = state.count + arrive.sum(0)
        at_rung = arrive.any(1)
        rung = jnp.argmax(arrive, axis=1)
        if extra:
            go_on = _within_front_quantile(record, arrive, slot, count, quantile) | (count[rung] < min_count)
        else:
            cutoff = jnp.nanquantile(record, quantile, axis=1)  # [rungs]
            go_on = (score <= cutoff[rung]) | (count[rung] < min_count)
        diverged = lanes.active & ~jnp.isfinite(lanes.score)
        finished = lanes.active & (lanes.steps >= steps) & ~diverged
        stopped = (lanes.active & at_rung & ~go_on) | diverged
        end = finished | stopped
        passed = state.passed + (arrive & go_on[:, None] & ~diverged[:, None]).sum(0)
        # Refill ended lanes, in lane order, while configurations (and the step budget) remain.
        order = jnp.cumsum(end) - 1
        refill = end & (state.started + order < configs)
        trained = lanes.steps.astype(jnp.float32)
        retired = state.retired + jnp.sum(jnp.where(end, trained, 0.0))
        if budget is not None:
            going = lanes.active & ~end
            rate = jnp.where(count > 0, passed / jnp.maximum(count, 1), quantile)  # each rung's pass rate so far
            running = jnp.sum(jnp.where(going, trained + expected_left(trained, ends, rate), 0.0))
            fresh_cost = expected_left(jnp.zeros((1,)), ends, rate)[0]
            refill = refill & (retired + running + (order + 1) * fresh_cost <= budget)
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
        return decision, ASHAState(record=record, count=count, passed=passed, started=started, retired=retired)

    return Scheduler(init, first, decide, segment, max_segments, num_lanes, dim, tuple(milestones))


@register_scheduler("median")
@dataclasses.dataclass(frozen=True)
class MedianStopping:
    """Median stopping (Golovin et al., 2017, as a synchronous rule): after ``grace`` steps, at the
    end of every segment a trial goes on only if its score is no worse than the median of the
    scores recorded at the same step (this segment's arrivals included, once ``min_count`` are
    recorded); a diverged trial stops at once. Stopped and finished lanes are refilled with fresh
    configurations while fewer than ``configs`` have started.

    Args:
      segment: steps between comparisons.
      grace: steps before the first comparison (a multiple of ``segment``).
      min_count: scores recorded at a step before any trial is stopped there.
      configs: configurations to start in all (None: 2 per lane).
      objectives: how many objectives are compared (set by ``jt.tune`` from ``metric``): a trial
        goes on if its place in the promotion order is in the better half.
    """

    segment: int = 100
    grace: int = 100
    min_count: int = 3
    configs: int | None = None
    objectives: int = dataclasses.field(default=1, metadata={"describe": "if_changed"})

    def __post_init__(self):
        check_int("median: segment", self.segment)
        check_int("median: grace", self.grace, 0)
        check_int("median: min_count", self.min_count)
        check_int("median: configs", self.configs, high=MAX_CONFIGS, none=True)
        if self.grace % self.segment:
            raise InputError(f"median: grace must be a multiple of segment={self.segment}, got {self.grace}")

    def build(self, space: Space, num_lanes: int, steps: int) -> Scheduler:
        """Binds the rule to ``space``, ``num_lanes`` lanes and ``steps`` steps per trial."""
        check_segment("median", self.segment, steps)
        configs = self.configs or 2 * num_lanes
        if configs < num_lanes:
            raise InputError(f"median: configs={configs} must be at least the number of lanes ({num_lanes})")
        milestones = list(range(max(self.grace, self.segment), steps, self.segment))
        return rung_scheduler(space, num_lanes, steps, self.segment, milestones, 0.5, configs, self.min_count,
                              objectives=self.objectives)  # fmt: skip
