"""Batch Bayesian optimisation on the device: a Gaussian process, batches by Thompson sampling.

Each round after the first:

1. The archive holds up to ``capacity`` evaluated points (the best ones when it is full).
   Scores are standardised; a diverged trial counts as the worst finite score seen (it says
   "not here" without an infinite value).
2. A Gaussian process with a Matérn-5/2 kernel, one length scale per coordinate (ARD), a signal
   and a noise variance is fitted by maximising the marginal likelihood: ``fit_steps`` steps of
   Adam on the log hyperparameters, warm-started from the last round's, with length scales kept
   in ``[0.01, 10]`` and noise in ``[1e-4, 0.5]`` (standardised units).
3. ``candidates`` points are drawn: half uniform in the cube, half Gaussian steps around the
   five best points (each step's scale log-uniform in ``[0.005, 0.3]``).
4. The batch is ``num_trials`` Thompson samples of the posterior, each a whole function drawn by
   pathwise conditioning (a prior sample from ``features`` random Fourier features of the kernel,
   moved onto the data by the exact posterior update), each lane taking the minimiser of its
   sample among the candidates no earlier lane took: exploitation and exploration in the
   posterior's own proportions, and a batch without duplicates.

The first round (nothing to fit yet) is a randomly shifted Halton batch. Everything has fixed
shapes (unused archive rows are masked out of the likelihood as independent unit-variance
dummies with zero targets, which add nothing to it), so ``ask`` and ``tell`` jit and vmap over
seeds like every other strategy. Cost per round: a ``capacity``² kernel and its factorisation per
Adam step, then ``candidates x features`` for the samples.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune._checks import check_int
from jaxtune.errors import InputError
from jaxtune.space import Space
from jaxtune.strategies.base import Strategy, all_valid, register, sanitize_scores
from jaxtune.strategies.quasirandom import _PRIMES, radical_inverse

LOG_LS = (math.log(0.01), math.log(10.0))
LOG_NOISE = (math.log(1e-3), math.log(0.5))
JITTER = 1e-5


class GPState(NamedTuple):
    """The Gaussian process strategy's state: the archive and the kernel's log hyperparameters."""

    x: jax.Array  # f32[capacity, dim]: evaluated points
    y: jax.Array  # f32[capacity]: their scores (lower is better; +inf diverged)
    used: jax.Array  # bool[capacity]: which rows hold a point
    theta: jax.Array  # f32[dim + 2]: log length scales, log signal variance, log noise variance
    shift: jax.Array  # f32[dim]: the first round's Halton shift
    round: jax.Array  # i32[]: rounds told


def matern52(a: jax.Array, b: jax.Array, log_ls: jax.Array) -> jax.Array:
    """Matérn-5/2 correlations between rows of ``a[n, d]`` and ``b[m, d]`` (unit variance)."""
    d = (a[:, None, :] - b[None, :, :]) / jnp.exp(log_ls)[None, None, :]
    r = jnp.sqrt(jnp.sum(d * d, axis=-1) + 1e-12)
    s5 = math.sqrt(5.0) * r
    return (1.0 + s5 + s5 * s5 / 3.0) * jnp.exp(-s5)


def _clip_theta(theta: jax.Array, dim: int) -> jax.Array:
    lo = jnp.concatenate([jnp.full((dim,), LOG_LS[0]), jnp.asarray([math.log(0.05), LOG_NOISE[0]])])
    hi = jnp.concatenate([jnp.full((dim,), LOG_LS[1]), jnp.asarray([math.log(20.0), LOG_NOISE[1]])])
    return jnp.clip(theta, lo, hi)


def _gram(x: jax.Array, used: jax.Array, theta: jax.Array, dim: int) -> jax.Array:
    """The masked training covariance: unused rows are independent unit-variance dummies."""
    k = jnp.exp(theta[dim]) * matern52(x, x, theta[:dim])
    both = used[:, None] & used[None, :]
    return jnp.where(both, k, 0.0) + jnp.diag(jnp.where(used, jnp.exp(theta[dim + 1]) + JITTER, 1.0))


def neg_log_likelihood(theta: jax.Array, x: jax.Array, y: jax.Array, used: jax.Array) -> jax.Array:
    """The negative log marginal likelihood of the used rows of ``(x, y)`` (``y`` standardised,
    zero on unused rows), with a weak log-normal prior on the length scales around 0.5."""
    dim = x.shape[1]
    chol = jnp.linalg.cholesky(_gram(x, used, theta, dim))
    alpha = jax.scipy.linalg.cho_solve((chol, True), y)
    fit = 0.5 * y @ alpha + jnp.sum(jnp.log(jnp.diagonal(chol)))
    prior = 0.5 * jnp.sum((theta[:dim] - math.log(0.5)) ** 2) / 1.5**2
    return fit + prior


@register("gp")
@dataclasses.dataclass(frozen=True)
class GaussianProcess:
    """Batch Bayesian optimisation with a Gaussian process and Thompson sampling (see the module
    docstring for the exact rule).

    Args:
      capacity: most evaluated points the model keeps (the best ones once full), >= 2.
      candidates: points each round's Thompson samples choose among, >= 2 x trials a round.
      fit_steps: Adam steps fitting the kernel's hyperparameters each round.
      features: random Fourier features of each Thompson sample's prior function.
    """

    capacity: int = 256
    candidates: int = 1024
    fit_steps: int = 50
    features: int = 1024

    def __post_init__(self):
        for name in ("capacity", "candidates", "fit_steps", "features"):
            check_int(f"gp: {name}", getattr(self, name))
        if self.capacity < 2:
            raise InputError(f"gp: capacity must be >= 2, got {self.capacity!r}")

    def build(self, space: Space, num_trials: int) -> Strategy:
        """Binds the model to ``space`` and ``num_trials`` points a round."""
        dim, cap, cand = space.dim, self.capacity, self.candidates
        if cand < 2 * num_trials:
            raise InputError(f"gp: candidates must be >= 2 x trials a round ({2 * num_trials}), got {cand!r}")
        if dim > len(_PRIMES):
            raise InputError(f"gp: at most {len(_PRIMES)} hyperparameters, the space has {dim}")
        bases = jnp.asarray(np.asarray(_PRIMES[:dim], np.uint32))

        def init(key):
            theta = jnp.concatenate([jnp.full((dim,), math.log(0.5)), jnp.asarray([0.0, math.log(1e-2)])])
            return GPState(
                x=jnp.zeros((cap, dim)),
                y=jnp.full((cap,), jnp.inf),
                used=jnp.zeros((cap,), bool),
                theta=theta,
                shift=jax.random.uniform(key, (dim,)),
                round=jnp.zeros((), jnp.int32),
            )

        def thompson(key, state):
            k_cand, k_freq, k_gamma, k_phase, k_w, k_eps = jax.random.split(key, 6)
            y = _standardised(state)
            theta = _fit(state, y, dim, self.fit_steps)
            ls, sf2, sn2 = jnp.exp(theta[:dim]), jnp.exp(theta[dim]), jnp.exp(theta[dim + 1])
            c = _candidates(k_cand, state, cand, dim)
            # Pathwise conditioning (Wilson et al., 2020): a prior function drawn with random Fourier
            # features of the Matérn-5/2 kernel (frequencies: a Student-t with 5 degrees of freedom
            # over the length scales), then moved onto the data by the exact posterior update. No
            # factorisation over the candidates: stable in float32, linear in their number.
            m = self.features
            omega = (
                jax.random.normal(k_freq, (m, dim)) / ls[None] * jnp.sqrt(2.5 / jax.random.gamma(k_gamma, 2.5, (m, 1)))
            )
            phase = jax.random.uniform(k_phase, (m,), maxval=2 * math.pi)

            def features(x):
                return jnp.sqrt(2 * sf2 / m) * jnp.cos(x @ omega.T + phase[None])

            w = jax.random.normal(k_w, (m, num_trials))
            noise = jnp.sqrt(sn2) * jax.random.normal(k_eps, (cap, num_trials))
            residual = jnp.where(state.used[:, None], y[:, None] - features(state.x) @ w - noise, 0.0)
            chol = jnp.linalg.cholesky(_gram(state.x, state.used, theta, dim))
            ks = sf2 * jnp.where(state.used[:, None], matern52(state.x, c, theta[:dim]), 0.0)
            samples = features(c) @ w + ks.T @ jax.scipy.linalg.cho_solve((chol, True), residual)

            def pick(taken, i):
                j = jnp.argmin(jnp.where(taken, jnp.inf, samples[:, i]))
                return taken.at[j].set(True), j

            _, idx = jax.lax.scan(pick, jnp.zeros((cand,), bool), jnp.arange(num_trials))
            return c[idx], theta

        def ask(key, state):
            i = state.round.astype(jnp.uint32) * num_trials + 1 + jnp.arange(num_trials, dtype=jnp.uint32)
            first = jnp.mod(radical_inverse(i[:, None], bases[None, :]) + state.shift[None], 1.0)
            model, theta = thompson(key, state)
            fitted = (state.used & jnp.isfinite(state.y)).sum() >= 2
            return jnp.where(fitted, model, first), state._replace(theta=jnp.where(fitted, theta, state.theta))

        def tell(state, u, scores):
            x = jnp.concatenate([state.x, u])
            y = jnp.concatenate([state.y, sanitize_scores(scores)])
            used = jnp.concatenate([state.used, jnp.ones((num_trials,), bool)])
            # Keep the best `capacity`: finite scores first, then diverged ones, then empty rows.
            rank = jnp.where(used, jnp.where(jnp.isfinite(y), 0, 1), 2)
            order = jnp.lexsort((jnp.where(jnp.isfinite(y), y, 0.0), rank))[:cap]
            return state._replace(x=x[order], y=y[order], used=used[order], round=state.round + 1)

        return Strategy(init, ask, tell, all_valid(num_trials), num_trials, dim)


def _standardised(state: GPState) -> jax.Array:
    """The scores seen so far, standardised (diverged ones as the worst; unused slots 0)."""
    finite = state.used & jnp.isfinite(state.y)
    worst = jnp.max(jnp.where(finite, state.y, -jnp.inf))
    y = jnp.where(state.used, jnp.where(finite, state.y, worst), 0.0)  # diverged: the worst
    mean = jnp.sum(jnp.where(state.used, y, 0.0)) / jnp.maximum(state.used.sum(), 1)
    var = jnp.sum(jnp.where(state.used, (y - mean) ** 2, 0.0)) / jnp.maximum(state.used.sum(), 1)
    return jnp.where(state.used, (y - mean) / jnp.sqrt(var + 1e-12), 0.0)


def _fit(state: GPState, y: jax.Array, dim: int, steps: int) -> jax.Array:
    """The kernel's log hyperparameters, fitted by maximum marginal likelihood: ``steps`` steps of
    Adam (optax, lr 0.05) from the last round's, non-finite gradients skipped, kept in bounds."""
    import optax  # loaded when a Gaussian process is built, not with jaxtune

    tx = optax.adam(0.05)
    grad = jax.grad(neg_log_likelihood)

    def step(carry, _):
        theta, opt_state = carry
        g = grad(theta, state.x, y, state.used)
        updates, opt_state = tx.update(jnp.where(jnp.isfinite(g), g, 0.0), opt_state)
        return (_clip_theta(optax.apply_updates(theta, updates), dim), opt_state), None

    (theta, _), _ = jax.lax.scan(step, (state.theta, tx.init(state.theta)), None, length=steps)
    return theta


def _candidates(key: jax.Array, state: GPState, cand: int, dim: int) -> jax.Array:
    """``cand`` candidate points: half uniform, half local moves around the best five seen."""
    k_uni, k_pick, k_step, k_scale = jax.random.split(key, 4)
    half = cand // 2
    uniform = jax.random.uniform(k_uni, (cand - half, dim))
    order = jnp.argsort(jnp.where(state.used, state.y, jnp.inf))[:5]
    centres = state.x[order][jax.random.randint(k_pick, (half,), 0, jnp.minimum(5, state.used.sum()))]
    scale = jnp.exp(jax.random.uniform(k_scale, (half, 1), minval=math.log(0.005), maxval=math.log(0.3)))
    local = jnp.clip(centres + scale * jax.random.normal(k_step, (half, dim)), 0.0, 1.0)
    return jnp.concatenate([local, uniform])
