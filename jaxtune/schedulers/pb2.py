"""Population-based bandits (PB2; Parker-Holder et al., NeurIPS 2020): PBT whose explore is a GP bandit.

Exploitation is PBT's (:mod:`jaxtune.schedulers.pbt`): every ``ready`` segments after
``burn_in`` steps, each lane in the bottom ``quantile`` copies the state of a lane drawn from
the top ``quantile``. *Exploration* is where PB2 differs: instead of perturbing the donor's
hyperparameters at random, it picks them by GP-UCB on a model of how much a segment improves
the score, all on the device inside the scheduler's compiled ``decide``:

1. After every segment each lane that trained it on one configuration adds a row to the model's
   data: the segment's index ``t``, the score before the segment ``r``, its configuration ``u``
   (unit cube), and the improvement ``y = r - score`` (scores are minimised; a diverged lane's
   improvement counts as the worst). The data is a ring buffer of the last ``capacity`` rows.
2. When lanes exploit, a Gaussian process with PB2's time-varying kernel,
   ``k = s² · Matérn-5/2(ARD over (r, u)) · (1 - ε)^(|t - t'| / 2)``, is fitted to the
   standardised improvements (clipped to ±2, as Ray Tune's PB2) by maximum marginal likelihood
   (Adam on the log hyperparameters and logit ε, warm-started from the last fit).
3. The exploiting lanes choose one after another (GP-BUCB, Desautels et al. 2014, as PB2 does):
   each takes the candidate — ``candidates`` uniform in the cube and a quarter as many Gaussian
   steps around its donor — that maximises ``μ + κσ`` at the next segment and its donor's score,
   ``κ = √(0.2 + max(0, log(0.4 n)))`` for ``n`` rows of data; ``σ`` conditions on the lanes
   that keep training and on the earlier picks, so a batch spreads out instead of piling onto one
   point. Every choice stays inside the space's bounds (the unit cube).

Until the model has two rows (the first exploit when ``burn_in`` is one segment), lanes explore
as PBT's do. Shapes are fixed (``capacity`` rows, masked), so ``decide`` jits once; same seed,
same lanes; a checkpoint holds the model, so a resume is bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxtune._checks import check_int
from jaxtune.errors import InputError
from jaxtune.schedulers.base import register_scheduler
from jaxtune.schedulers.pbt import PBT
from jaxtune.space import Space
from jaxtune.strategies.bayesian import JITTER, LOG_LS, LOG_NOISE, fit_theta, matern52

__all__ = ["PB2", "PB2State", "ucb_picks"]

LOG_EPS = (math.log(1e-3), math.log(0.5))  # the kernel's forgetting rate per segment, ε


class PB2State(NamedTuple):
    """PB2's state: PBT's segment count, the model's data and its kernel's hyperparameters."""

    segment: jax.Array  # i32[]
    x: jax.Array  # f32[capacity, 2 + d]: (segment index t, score before r, configuration u)
    y: jax.Array  # f32[capacity]: the segment's improvement (r - score; -inf diverged)
    used: jax.Array  # bool[capacity]
    cursor: jax.Array  # i32[]: rows written so far (the ring buffer's next row is cursor % capacity)
    before: jax.Array  # f32[lanes]: each lane's score as its next segment starts (NaN: none yet)
    theta: jax.Array  # f32[d + 4]: log length scales (r, u...), log signal, log noise, log ε


@register_scheduler("pb2")
@dataclasses.dataclass(frozen=True)
class PB2(PBT):
    """Population-based bandits: PBT with a GP-UCB explore (see the module docstring for the rule).

    ``segment``, ``ready``, ``burn_in``, ``quantile`` and ``initial`` are
    :class:`~jaxtune.schedulers.PBT`'s; ``resample`` and ``factors`` are PBT's explore, used until
    the model has data.

    Args:
      capacity: rows of data the model keeps (the most recent), >= the lanes (None: 128, or four
        segments' rows when there are more than 32 lanes).
      candidates: uniform candidates each exploiting lane chooses among (plus a quarter as many
        around its donor).
      fit_steps: Adam steps fitting the kernel each time lanes exploit (from the last fit).
    """

    capacity: int | None = None
    candidates: int = 512
    fit_steps: int = 10

    def __post_init__(self):
        super().__post_init__()
        for name in ("capacity", "candidates", "fit_steps"):
            if getattr(self, name) is not None:
                check_int(f"pb2: {name}", getattr(self, name))

    def rows(self, num_lanes: int) -> int:
        """The model's capacity for ``num_lanes`` lanes."""
        return self.capacity if self.capacity is not None else max(128, 4 * num_lanes)

    def initial_state(self, space: Space, num_lanes: int) -> PB2State:
        """An empty model: no rows, no lane's score before a segment yet."""
        cap = self.rows(num_lanes)
        d = space.dim
        theta = jnp.concatenate([jnp.full((d + 1,), math.log(0.5)), jnp.asarray([0.0, math.log(1e-2), math.log(0.1)])])
        return PB2State(
            segment=jnp.zeros((), jnp.int32),
            x=jnp.zeros((cap, d + 2)),
            y=jnp.zeros((cap,)),
            used=jnp.zeros((cap,), bool),
            cursor=jnp.zeros((), jnp.int32),
            before=jnp.full((num_lanes,), jnp.nan),
            theta=theta,
        )

    def explorer(self, space: Space, num_lanes: int, steps: int, k: int):
        """PB2's explore: record the segment, then (when lanes exploit and the model has data)
        GP-UCB picks for the exploiting lanes; PBT's perturbation before that."""
        fallback = super().explorer(space, num_lanes, steps, k)
        cap, cand = self.rows(num_lanes), self.candidates
        if cap < num_lanes:
            raise InputError(f"pb2: capacity={cap} must be >= the lanes ({num_lanes}): a segment adds a row per lane")

        def explore(keys, state: PB2State, lanes, donors, exploit, source, done):
            state = _record(state, lanes, cap)
            perturbed, _ = fallback(keys, state, lanes, donors, exploit, source, done)
            ready = exploit.any() & (state.used.sum() >= 2)
            t_next = (state.segment + 1).astype(jnp.float32)

            def model(state):
                x, y = _inputs(state), _targets(state)
                theta = fit_theta(functools.partial(_nll, x=x, y=y, used=state.used), state.theta, _clip,
                                  self.fit_steps)  # fmt: skip
                r = _scaled_scores(lanes.score, state)
                picks = ucb_picks(keys[2], x, y, state.used, theta, t_next, r[source], lanes.u, donors, exploit,
                                  ~exploit & lanes.active & ~done, cand, k)  # fmt: skip
                return picks, theta

            u, theta = jax.lax.cond(ready, model, lambda s: (perturbed, s.theta), state)
            before = jnp.where(done, jnp.nan, lanes.score[source])
            return u, state._replace(theta=theta, before=before)

        return explore


def _record(state: PB2State, lanes, cap: int) -> PB2State:
    """Adds a row per lane that trained the last segment from a known score."""
    add = lanes.active & jnp.isfinite(state.before)
    t = jnp.full(lanes.score.shape, state.segment, jnp.float32)
    x = jnp.concatenate([t[:, None], state.before[:, None], lanes.u], axis=1)
    y = jnp.where(jnp.isfinite(lanes.score), state.before - lanes.score, -jnp.inf)
    at = jnp.where(add, (state.cursor + jnp.cumsum(add) - 1) % cap, cap)  # cap: dropped
    return state._replace(
        x=state.x.at[at].set(x, mode="drop"),
        y=state.y.at[at].set(y, mode="drop"),
        used=state.used.at[at].set(True, mode="drop"),
        cursor=state.cursor + add.sum().astype(jnp.int32),
    )


def _score_range(state: PB2State):
    r = jnp.where(state.used, state.x[:, 1], jnp.nan)
    return jnp.nanmin(r), jnp.nanmax(r)


def _scaled_scores(score: jax.Array, state: PB2State) -> jax.Array:
    """Scores on the scale the model sees them (the data's range to [0, 1])."""
    low, high = _score_range(state)
    return jnp.clip((score - low) / jnp.maximum(high - low, 1e-12), -1.0, 2.0)


def _inputs(state: PB2State) -> jax.Array:
    """The rows as the model sees them: ``t`` as is, ``r`` scaled to [0, 1], ``u``."""
    return state.x.at[:, 1].set(jnp.where(state.used, _scaled_scores(state.x[:, 1], state), 0.0))


def _targets(state: PB2State) -> jax.Array:
    """Improvements standardised and clipped to ±2 (a diverged row: -2); unused rows 0."""
    ok = state.used & jnp.isfinite(state.y)
    n = jnp.maximum(ok.sum(), 1)
    mean = jnp.sum(jnp.where(ok, state.y, 0.0)) / n
    sd = jnp.sqrt(jnp.sum(jnp.where(ok, (state.y - mean) ** 2, 0.0)) / n)
    z = jnp.clip((state.y - mean) / (sd + 1e-8), -2.0, 2.0)
    return jnp.where(state.used, jnp.where(ok, z, -2.0), 0.0)


def _kernel(a: jax.Array, b: jax.Array, theta: jax.Array) -> jax.Array:
    """PB2's time-varying kernel between rows ``(t, r, u)`` of ``a`` and ``b``."""
    d = a.shape[1] - 1
    decay = 0.5 * jnp.abs(a[:, None, 0] - b[None, :, 0]) * jnp.log1p(-jnp.exp(theta[d + 2]))
    return jnp.exp(theta[d]) * matern52(a[:, 1:], b[:, 1:], theta[:d]) * jnp.exp(decay)


def _clip(theta: jax.Array) -> jax.Array:
    d = theta.shape[0] - 3
    lo = jnp.concatenate([jnp.full((d,), LOG_LS[0]), jnp.asarray([math.log(0.05), LOG_NOISE[0], LOG_EPS[0]])])
    hi = jnp.concatenate([jnp.full((d,), LOG_LS[1]), jnp.asarray([math.log(20.0), LOG_NOISE[1], LOG_EPS[1]])])
    return jnp.clip(theta, lo, hi)


def _gram(x: jax.Array, used: jax.Array, theta: jax.Array) -> jax.Array:
    """The masked covariance of the rows: unused rows are independent unit-variance dummies."""
    d = x.shape[1] - 1
    both = used[:, None] & used[None, :]
    noise = jnp.exp(theta[d + 1]) + JITTER
    return jnp.where(both, _kernel(x, x, theta), 0.0) + jnp.diag(jnp.where(used, noise, 1.0))


def _nll(theta: jax.Array, x: jax.Array, y: jax.Array, used: jax.Array) -> jax.Array:
    """The negative log marginal likelihood of the used rows, with a weak prior on the length scales."""
    chol = jnp.linalg.cholesky(_gram(x, used, theta))
    alpha = jax.scipy.linalg.cho_solve((chol, True), y)
    d = x.shape[1] - 1
    prior = 0.5 * jnp.sum((theta[:d] - math.log(0.5)) ** 2) / 1.5**2
    return 0.5 * y @ alpha + jnp.sum(jnp.log(jnp.diagonal(chol))) + prior


def ucb_picks(key, x, y, used, theta, t_next, r, u, donors, exploit, running, candidates: int, most: int) -> jax.Array:
    """Each exploiting lane's configuration by GP-UCB, lane after lane (see the module docstring).

    Args:
      x, y, used: the model's rows (``t``, scaled ``r``, ``u``), standardised targets, mask.
      theta: the fitted kernel; ``t_next``: the segment the picks will train.
      r: the score each lane's next segment starts from (its own, or its donor's), scaled as the
        rows' ``r``; ``u``: every lane's configuration.
      donors, exploit: each lane's donor, and which lanes pick (the others keep ``u``).
      running: lanes that keep training their configuration (they lower ``σ`` near them).
      candidates: uniform candidates a pick chooses among; ``most``: at most this many lanes exploit.
    Returns:
      ``u[N, d]`` with the exploiting lanes' picks.
    """
    n, dim = u.shape
    local = max(1, candidates // 4)
    d = x.shape[1] - 1
    chol = jnp.linalg.cholesky(_gram(x, used, theta))
    alpha = jax.scipy.linalg.cho_solve((chol, True), y)
    kappa = jnp.sqrt(0.2 + jnp.maximum(0.0, jnp.log(0.4 * used.sum())))
    noise = jnp.exp(theta[d + 1]) + JITTER

    def row(ui, ri):
        return jnp.concatenate([jnp.stack([t_next, ri]), ui])

    lanes_x = jax.vmap(row)(u, r)

    def pick(carry, i):
        picked_u, pending = carry
        k_uniform, k_local = jax.random.split(jax.random.fold_in(key, i))
        around = jnp.clip(u[donors[i]][None, :] + 0.1 * jax.random.normal(k_local, (local, dim)), 0.0, 1.0)
        c_u = jnp.concatenate([jax.random.uniform(k_uniform, (candidates, dim)), around])
        c = jax.vmap(row, in_axes=(0, None))(c_u, r[i])
        mean = _kernel(c, x, theta) @ jnp.where(used, alpha, 0.0)
        # σ given the data and the pending rows (running lanes, earlier picks): GP-BUCB.
        rows = jnp.concatenate([x, jnp.where(pending[:, None], picked_u, 0.0)])
        mask = jnp.concatenate([used, pending])
        k_all = jnp.where(mask[:, None] & mask[None, :], _kernel(rows, rows, theta), 0.0)
        gram = k_all + jnp.diag(jnp.where(mask, noise, 1.0))
        l_all = jnp.linalg.cholesky(gram)
        k_c = jnp.where(mask[None, :], _kernel(c, rows, theta), 0.0)
        v = jax.scipy.linalg.solve_triangular(l_all, k_c.T, lower=True)
        sd = jnp.sqrt(jnp.maximum(jnp.exp(theta[d]) - jnp.sum(v * v, axis=0), 1e-12))
        best = jnp.argmax(mean + kappa * sd)
        take = exploit[i]
        picked_u = picked_u.at[i].set(jnp.where(take, c[best], picked_u[i]))
        return (picked_u, pending.at[i].set(pending[i] | take)), None

    order = jnp.argsort(~exploit, stable=True)  # exploiting lanes first, by lane
    (picked, _), _ = jax.lax.scan(pick, (lanes_x, running), order[:most])
    return jnp.where(exploit[:, None], picked[:, 2:], u)
