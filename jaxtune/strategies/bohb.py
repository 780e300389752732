"""BOHB (Falkner, Klein & Hutter, ICML 2018): Hyperband whose brackets draw from a kernel density model.

Hyperband's schedule is unchanged (:class:`~jaxtune.strategies.Hyperband`): the same brackets,
rungs, budgets and promotions. What changes is where a bracket's fresh configurations come from:

1. Of the budgets with at least ``d + 3`` observations (``d`` hyperparameters), the largest is
   modelled (no budget has that many: every configuration is random, as in Hyperband).
2. Its observations are ranked by score (a diverged or infeasible one last); the best
   ``max(d + 1, top_fraction · n)`` are *good*, the worst ``max(d + 1, n - good)`` *bad*, and each
   set gets a product-Gaussian kernel density on the unit cube, ``l(x)`` and ``g(x)``, with
   Scott's normal-reference bandwidths (at least ``min_bandwidth``).
3. Each configuration is random with probability ``random_fraction``; otherwise it is the best,
   by ``l(x) / g(x)``, of ``samples`` draws from ``l`` with its bandwidths widened
   ``bandwidth_factor`` times (truncated to the cube).

All of it is one fixed-shape program on the device (observations padded to a capacity and
masked), so it jits once, vmaps over seeds in ``jaxtune bench`` and replays exactly. With several
objectives a point's score is its place in :func:`jaxtune.pareto.promotion_order` (non-dominated
rank, then hypervolume contribution). A choice parameter is a coordinate of the cube like any
other (BOHB's Aitchison–Aitken kernel for categories is not reproduced).

``jt.tune(trainer, space, "bohb", ...)`` with a stateful trainer continues survivors as Hyperband
does (the model reads the study's stored rungs before each bracket); any other objective, or
``continue_survivors=False``, retrains each rung as HpBandSter's BOHB does, the model inside the
strategy's state.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxtune._checks import check_int
from jaxtune.errors import InputError
from jaxtune.space import Space
from jaxtune.strategies.base import Strategy, register
from jaxtune.strategies.halving import Hyperband, halving_strategy

__all__ = ["BOHB", "kde_proposals"]


@register("bohb")
@dataclasses.dataclass(frozen=True)
class BOHB(Hyperband):
    """BOHB: Hyperband whose fresh configurations come from a kernel density model of the
    largest budget with enough results (see the module docstring for the exact rule).

    ``fidelity``, ``eta`` and ``continue_survivors`` are :class:`~jaxtune.strategies.Hyperband`'s.

    Args:
      top_fraction: the fraction of a budget's observations modelled as good, in (0, 0.5].
      random_fraction: the probability that a configuration is drawn uniformly, in [0, 1].
      samples: draws from the good density a configuration chooses among, >= 1.
      bandwidth_factor: how much wider the draws are than the good density, >= 1.
      min_bandwidth: the smallest bandwidth of a density, > 0 (unit-cube units).
      capacity: observations the retraining strategy keeps (the most recent), >= trials.
    """

    top_fraction: float = 0.15
    random_fraction: float = 1 / 3
    samples: int = 64
    bandwidth_factor: float = 3.0
    min_bandwidth: float = 1e-3
    capacity: int = 512

    def __post_init__(self):
        if not 0 < self.top_fraction <= 0.5:
            raise InputError(f"bohb: top_fraction must be in (0, 0.5], got {self.top_fraction!r}")
        if not 0 <= self.random_fraction <= 1:
            raise InputError(f"bohb: random_fraction must be in [0, 1], got {self.random_fraction!r}")
        check_int("bohb: samples", self.samples)
        check_int("bohb: capacity", self.capacity)
        if not self.bandwidth_factor >= 1:
            raise InputError(f"bohb: bandwidth_factor must be >= 1, got {self.bandwidth_factor!r}")
        if not self.min_bandwidth > 0:
            raise InputError(f"bohb: min_bandwidth must be > 0, got {self.min_bandwidth!r}")

    def propose(self, key: jax.Array, random_u: jax.Array, x: jax.Array, score: jax.Array, used: jax.Array):
        """``random_u``'s rows, each replaced by a model's proposal with probability
        ``1 - random_fraction`` when ``used`` holds enough observations (see :func:`kde_proposals`)."""
        return kde_proposals(key, random_u, x, score, used, self.top_fraction, self.random_fraction, self.samples,
                             self.bandwidth_factor, self.min_bandwidth)  # fmt: skip

    def build(self, space: Space, num_trials: int) -> Strategy:
        """The retraining form: Hyperband's schedule with the model in the strategy's state."""
        if self.capacity < num_trials:
            raise InputError(f"bohb: capacity={self.capacity} must be >= trials ({num_trials})")
        return halving_strategy(self.registry_name, space, num_trials, self.fidelity, self.eta, hyperband=True,
                                model=self)  # fmt: skip


def kde_proposals(key, random_u, x, score, used, top_fraction: float, random_fraction: float, samples: int,
                  bandwidth_factor: float, min_bandwidth: float) -> jax.Array:  # fmt: skip
    """BOHB's configurations: each row of ``random_u[m, d]`` kept with probability
    ``random_fraction`` (or when ``used`` marks fewer than ``d + 3`` observations), else the best
    of ``samples`` draws from the good density by ``l(x) / g(x)``.

    Args:
      key: the proposals' key.
      random_u: ``m`` uniform configurations (the random ones, and the shape of the answer).
      x, score, used: ``[n, d]`` observations on the unit cube, their scores (minimised; +inf a
        diverged or infeasible one) and which rows hold one.
    """
    m, d = random_u.shape
    n = used.sum()
    least = d + 1
    order = jnp.lexsort((jnp.where(used, score, jnp.inf), ~used))  # used rows best first, unused last
    rank = jnp.argsort(order)
    n_good = jnp.maximum(least, jnp.floor(top_fraction * n).astype(jnp.int32))
    n_bad = jnp.maximum(least, n - n_good)
    good = used & (rank < n_good)
    bad = used & (rank >= n - n_bad)

    def bandwidth(mask):
        k = jnp.maximum(mask.sum(), 1)
        mean = jnp.sum(jnp.where(mask[:, None], x, 0.0), axis=0) / k
        sd = jnp.sqrt(jnp.sum(jnp.where(mask[:, None], (x - mean[None, :]) ** 2, 0.0), axis=0) / k)
        return jnp.maximum(1.059 * sd * k ** (-1.0 / (d + 4)), min_bandwidth)

    bw_good, bw_bad = bandwidth(good), bandwidth(bad)

    def log_density(z, mask, bw):  # z[s, d] -> [s]
        diff = (z[:, None, :] - x[None, :, :]) / bw[None, None, :]
        log_k = jnp.sum(-0.5 * diff**2 - jnp.log(bw)[None, None, :], axis=-1) - 0.5 * d * math.log(2 * math.pi)
        log_k = jnp.where(mask[None, :], log_k, -jnp.inf)
        return jax.nn.logsumexp(log_k, axis=1) - jnp.log(jnp.maximum(mask.sum(), 1))

    def best_draw(z):  # one configuration's draws [s, d]: the best by l / g
        ratio = log_density(z, good, bw_good) - jnp.maximum(log_density(z, bad, bw_bad), math.log(1e-32))
        return z[jnp.argmax(ratio)]

    k_coin, k_pick, k_draw = jax.random.split(key, 3)
    centre = jax.random.categorical(k_pick, jnp.where(good, 0.0, -jnp.inf), shape=(m, samples))  # [m, s]
    wide = (bw_good * bandwidth_factor)[None, None, :]
    lower = (0.0 - x[centre]) / wide
    upper = (1.0 - x[centre]) / wide
    z = x[centre] + wide * jax.random.truncated_normal(k_draw, lower, upper, (m, samples, d))
    z = jnp.clip(z, 0.0, 1.0)
    model = jax.lax.map(best_draw, z)  # one configuration at a time: [samples, n, d] in memory
    modelled = (n >= d + 3) & ~jax.random.bernoulli(k_coin, random_fraction, (m,))
    return jnp.where(modelled[:, None], model, random_u)
