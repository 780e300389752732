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

With several objectives (``jt.tune(metric=[...])`` builds it with ``objectives=m``; the sweep
tells it every objective, not a scalarisation) it fits one Gaussian process per objective, each
to its objective's ranks as normal quantiles (a Gaussian copula, so a cost over decades and an
error in [0, 1] are modelled alike; chosen by measurement: it lowered the median hypervolume
regret on the MNIST-1D width table from 5.1 to 3.3 and on ZDT2 from 0.31 to 0.08, 3 seeds), and
each lane draws a Thompson sample of every objective. ``multi="hvi"`` (the default, two
objectives): lane by lane, each takes the candidate whose *sampled* objectives add the most
hypervolume to the front of the points seen and of the earlier lanes' sampled picks (a lane
where no candidate adds any takes its random Chebyshev scalarisation's best). ``multi="chebyshev"``
(any number): each lane minimises its own random Chebyshev scalarisation of its samples (weights
uniform on the simplex), ParEGO's rule per lane. The archive then keeps the points fewest others
dominate; local candidates move around those.

The first round (nothing to fit yet) is a randomly shifted Halton batch. Everything has fixed
shapes (unused archive rows are masked out of the likelihood as independent unit-variance
dummies with zero targets, which add nothing to it), so ``ask`` and ``tell`` jit and vmap over
seeds like every other strategy. Cost per round: a ``capacity``² kernel and its factorisation per
Adam step, then ``candidates x features`` for the samples.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune._checks import check_int
from jaxtune.errors import InputError
from jaxtune.space import Space
from jaxtune.strategies.base import Strategy, all_valid, register
from jaxtune.strategies.quasirandom import PRIMES, radical_inverse

LOG_LS = (math.log(0.01), math.log(10.0))
LOG_NOISE = (math.log(1e-3), math.log(0.5))
JITTER = 1e-5
MULTI = ("hvi", "chebyshev")


class GPState(NamedTuple):
    """The Gaussian process strategy's state: the archive and the kernel's log hyperparameters."""

    x: jax.Array  # f32[capacity, dim]: evaluated points
    y: jax.Array  # f32[capacity] (or [capacity, objectives]): their scores (lower is better; +inf diverged)
    used: jax.Array  # bool[capacity]: which rows hold a point
    theta: jax.Array  # f32[dim + 2] (or [objectives, dim + 2]): log length scales, signal, noise variances
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
      multi: with several objectives, how a lane picks from its samples: ``"hvi"`` (hypervolume
        improvement, two objectives) or ``"chebyshev"`` (a random scalarisation per lane).
      objectives: how many objectives it is told (set by ``jt.tune`` from ``metric``).
    """

    capacity: int = 256
    candidates: int = 1024
    fit_steps: int = 50
    features: int = 1024
    multi: str = dataclasses.field(default="hvi", metadata={"describe": "if_changed"})
    objectives: int = dataclasses.field(default=1, metadata={"describe": "if_changed"})

    def __post_init__(self):
        for name in ("capacity", "candidates", "fit_steps", "features", "objectives"):
            check_int(f"gp: {name}", getattr(self, name))
        if self.capacity < 2:
            raise InputError(f"gp: capacity must be >= 2, got {self.capacity!r}")
        if self.multi not in MULTI:
            raise InputError(f"gp: unknown multi {self.multi!r}; allowed are {', '.join(map(repr, MULTI))}")
        if self.multi == "hvi" and self.objectives > 2:
            raise InputError(f"gp: multi='hvi' computes a 2-D hypervolume, and the sweep has {self.objectives} "
                             "objectives; use multi='chebyshev'")  # fmt: skip

    def build(self, space: Space, num_trials: int) -> Strategy:
        """Binds the model to ``space`` and ``num_trials`` points a round."""
        dim, cap, cand = space.dim, self.capacity, self.candidates
        if cand < 2 * num_trials:
            raise InputError(f"gp: candidates must be >= 2 x trials a round ({2 * num_trials}), got {cand!r}")
        if dim > len(PRIMES):
            raise InputError(f"gp: at most {len(PRIMES)} hyperparameters, the space has {dim}")
        bases = jnp.asarray(np.asarray(PRIMES[:dim], np.uint32))
        m, multi = self.objectives, self.multi
        extra = (m,) if m > 1 else ()

        def init(key):
            theta = jnp.concatenate([jnp.full((dim,), math.log(0.5)), jnp.asarray([0.0, math.log(1e-2)])])
            return GPState(
                x=jnp.zeros((cap, dim)),
                y=jnp.full((cap, *extra), jnp.inf),
                used=jnp.zeros((cap,), bool),
                theta=jnp.tile(theta, (m, 1)) if m > 1 else theta,
                shift=jax.random.uniform(key, (dim,)),
                round=jnp.zeros((), jnp.int32),
            )

        def thompson(key, state):
            keys = jax.random.split(key, 6)  # candidates, then the samples' five keys
            c = _candidates(keys[0], state, cand, dim)
            fit = functools.partial(_fit, dim=dim, steps=self.fit_steps)
            sample = functools.partial(_samples, num_trials=num_trials, features=self.features)
            if m == 1:
                y = _standardised(state.y, state.used)
                theta = fit(state.x, state.used, state.theta, y)
                return c[_distinct_argmin(sample(keys[1:], state.x, state.used, y, theta, c))], theta
            y = jax.vmap(_gaussian_ranks, in_axes=(1, None), out_axes=1)(state.y, state.used)
            theta = jax.vmap(fit, in_axes=(None, None, 0, 1))(state.x, state.used, state.theta, y)
            per_objective = jax.vmap(lambda k: jax.random.split(k, 5))(jax.random.split(keys[1], m))
            samples = jax.vmap(sample, in_axes=(0, None, None, 1, 0, None), out_axes=2)(
                per_objective, state.x, state.used, y, theta, c
            )  # [candidates, trials, objectives]
            k_pick = keys[2]
            seen = jnp.where((state.used & jnp.all(jnp.isfinite(state.y), axis=1))[:, None], y, jnp.inf)
            return c[_front_picks(k_pick, seen, samples, multi)], theta

        def ask(key, state):
            i = state.round.astype(jnp.uint32) * num_trials + 1 + jnp.arange(num_trials, dtype=jnp.uint32)
            first = jnp.mod(radical_inverse(i[:, None], bases[None, :]) + state.shift[None], 1.0)
            model, theta = thompson(key, state)
            fitted = (state.used & _finite_rows(state.y)).sum() >= 2
            return jnp.where(fitted, model, first), state._replace(theta=jnp.where(fitted, theta, state.theta))

        def tell(state, u, scores):
            scores = jnp.asarray(scores, jnp.float32)
            ok = _finite_rows(scores)
            x = jnp.concatenate([state.x, u])
            y = jnp.concatenate([state.y, jnp.where(ok.reshape(ok.shape + (1,) * len(extra)), scores, jnp.inf)])
            used = jnp.concatenate([state.used, jnp.ones((num_trials,), bool)])
            # Keep the best `capacity`: finite scores first, then diverged ones, then empty rows.
            rank = jnp.where(used, jnp.where(_finite_rows(y), 0, 1), 2)
            order = jnp.lexsort((_quality(y, used), rank))[:cap]
            return state._replace(x=x[order], y=y[order], used=used[order], round=state.round + 1)

        return Strategy(init, ask, tell, all_valid(num_trials), num_trials, dim, objectives=m)


def _finite_rows(y: jax.Array) -> jax.Array:
    """Which rows of scores ``y[n]`` or ``y[n, objectives]`` are finite throughout."""
    return jnp.isfinite(y) if y.ndim == 1 else jnp.all(jnp.isfinite(y), axis=1)


def _quality(y: jax.Array, used: jax.Array) -> jax.Array:
    """What the archive keeps and local candidates move around, lower first: the score, or with
    several objectives how many rows dominate a row (0 on the front), then its summed ranks."""
    if y.ndim == 1:
        return jnp.where(used, y, jnp.inf)
    ok = used & _finite_rows(y)
    z = jnp.where(ok[:, None], y, jnp.inf)
    dominates = jnp.all(z[:, None] <= z[None], axis=2) & jnp.any(z[:, None] < z[None], axis=2)  # [i, j]: i over j
    ranks = jnp.argsort(jnp.argsort(z, axis=0), axis=0).sum(axis=1)
    return jnp.where(ok, dominates.sum(axis=0) * y.shape[0] * y.shape[1] + ranks, jnp.inf)


def _gaussian_ranks(y: jax.Array, used: jax.Array) -> jax.Array:
    """The scores seen so far as normal quantiles of their ranks, ``Φ⁻¹((rank + ½) / n)`` (a Gaussian
    copula: the model sees a cost spread over decades as it sees an error in [0, 1]; diverged
    ones rank last; unused slots 0)."""
    n = jnp.maximum(used.sum(), 1)
    key = jnp.where(used, jnp.where(jnp.isfinite(y), y, jnp.inf), jnp.inf)
    rank = jnp.argsort(jnp.argsort(key))  # used rows first, by score
    z = jax.scipy.special.ndtri((rank + 0.5) / n)
    return jnp.where(used, z, 0.0)


def _standardised(y: jax.Array, used: jax.Array) -> jax.Array:
    """The scores seen so far, standardised (diverged ones as the worst; unused slots 0)."""
    finite = used & jnp.isfinite(y)
    worst = jnp.max(jnp.where(finite, y, -jnp.inf))
    y = jnp.where(used, jnp.where(finite, y, worst), 0.0)  # diverged: the worst
    mean = jnp.sum(jnp.where(used, y, 0.0)) / jnp.maximum(used.sum(), 1)
    var = jnp.sum(jnp.where(used, (y - mean) ** 2, 0.0)) / jnp.maximum(used.sum(), 1)
    return jnp.where(used, (y - mean) / jnp.sqrt(var + 1e-12), 0.0)


def _fit(x: jax.Array, used: jax.Array, theta: jax.Array, y: jax.Array, dim: int, steps: int) -> jax.Array:
    """The kernel's log hyperparameters, fitted by maximum marginal likelihood (:func:`fit_theta`)."""
    loss = functools.partial(neg_log_likelihood, x=x, y=y, used=used)
    return fit_theta(loss, theta, functools.partial(_clip_theta, dim=dim), steps)


def fit_theta(loss, theta: jax.Array, clip, steps: int) -> jax.Array:
    """Minimises ``loss(theta)`` (a kernel's negative log marginal likelihood): ``steps`` steps of
    Adam (optax, lr 0.05) from ``theta`` (the last fit's), non-finite gradients skipped, each
    step's result kept in bounds by ``clip``."""
    import optax  # loaded when a Gaussian process is built, not with jaxtune

    tx = optax.adam(0.05)
    grad = jax.grad(loss)

    def step(carry, _):
        theta, opt_state = carry
        g = grad(theta)
        updates, opt_state = tx.update(jnp.where(jnp.isfinite(g), g, 0.0), opt_state)
        return (clip(optax.apply_updates(theta, updates)), opt_state), None

    (theta, _), _ = jax.lax.scan(step, (theta, tx.init(theta)), None, length=steps)
    return theta


def _samples(keys, x, used, y, theta, c, num_trials: int, features: int) -> jax.Array:
    """``num_trials`` Thompson samples of the posterior at the candidates ``c``, ``f[cand, trials]``.

    Pathwise conditioning (Wilson et al., 2020): a prior function drawn with random Fourier
    features of the Matérn-5/2 kernel (frequencies: a Student-t with 5 degrees of freedom over the
    length scales), then moved onto the data by the exact posterior update. No factorisation over
    the candidates: stable in float32, linear in their number.
    """
    k_freq, k_gamma, k_phase, k_w, k_eps = keys
    dim, cap, m = x.shape[1], x.shape[0], features
    ls, sf2, sn2 = jnp.exp(theta[:dim]), jnp.exp(theta[dim]), jnp.exp(theta[dim + 1])
    # chi2 with 5 degrees of freedom as a sum of 5 squared normals: the same law as 2 * gamma(2.5),
    # without jax.random.gamma's rejection loop (~2 s of XLA compile on a CPU)
    chi2 = jnp.sum(jax.random.normal(k_gamma, (m, 5)) ** 2, axis=1, keepdims=True)
    omega = jax.random.normal(k_freq, (m, dim)) / ls[None] * jnp.sqrt(5.0 / chi2)
    phase = jax.random.uniform(k_phase, (m,), maxval=2 * math.pi)

    def feats(z):
        return jnp.sqrt(2 * sf2 / m) * jnp.cos(z @ omega.T + phase[None])

    w = jax.random.normal(k_w, (m, num_trials))
    noise = jnp.sqrt(sn2) * jax.random.normal(k_eps, (cap, num_trials))
    residual = jnp.where(used[:, None], y[:, None] - feats(x) @ w - noise, 0.0)
    chol = jnp.linalg.cholesky(_gram(x, used, theta, dim))
    ks = sf2 * jnp.where(used[:, None], matern52(x, c, theta[:dim]), 0.0)
    return feats(c) @ w + ks.T @ jax.scipy.linalg.cho_solve((chol, True), residual)


def _distinct_argmin(samples: jax.Array) -> jax.Array:
    """Lane by lane, the candidate minimising the lane's sample among those no earlier lane took."""

    def pick(taken, i):
        j = jnp.argmin(jnp.where(taken, jnp.inf, samples[:, i]))
        return taken.at[j].set(True), j

    return jax.lax.scan(pick, jnp.zeros((samples.shape[0],), bool), jnp.arange(samples.shape[1]))[1]


def hypervolume_improvement(front: jax.Array, points: jax.Array, reference: jax.Array) -> jax.Array:
    """The area each row of ``points[c, 2]`` would add to what ``front[n, 2]`` dominates up to
    ``reference`` (both objectives minimised; rows of ``front`` that are not finite or lie beyond
    the reference count nothing). Exact, in ``O(c n)``: the front's staircase is sorted once."""
    ok = jnp.all(jnp.isfinite(front), axis=1) & jnp.all(front < reference[None], axis=1)
    f = jnp.where(ok[:, None], front, reference[None])
    f = f[jnp.lexsort((f[:, 1], f[:, 0]))]
    left = jnp.concatenate([jnp.full((1,), -jnp.inf), f[:, 0]])  # the staircase's steps: [left, right)
    right = jnp.concatenate([f[:, 0], reference[:1]])  # at level: the lowest f2 of points left of it
    level = jnp.minimum(jnp.concatenate([reference[1:], jax.lax.cummin(f[:, 1])]), reference[1])
    width = jnp.clip(right[None] - jnp.maximum(left[None], points[:, :1]), 0.0)
    return jnp.sum(width * jnp.clip(level[None] - points[:, 1:], 0.0), axis=1)


def _front_picks(key: jax.Array, seen: jax.Array, samples: jax.Array, multi: str) -> jax.Array:
    """Each lane's candidate from its sampled objectives ``samples[cand, trials, m]`` (standardised,
    as ``seen[capacity, m]``, +inf where a row does not count), no candidate twice: the most
    hypervolume added to the front so far (``"hvi"``), or the lowest random Chebyshev score."""
    cand, trials, m = samples.shape
    ok = jnp.all(jnp.isfinite(seen), axis=1)
    low = jnp.min(jnp.where(ok[:, None], seen, jnp.inf), axis=0)
    high = jnp.max(jnp.where(ok[:, None], seen, -jnp.inf), axis=0)
    reference = high + 0.1 * (high - low) + 1e-6
    # Dirichlet(1, ..., 1): normalised exponentials (the same law; no gamma sampler to compile)
    exponentials = jax.random.exponential(key, (trials, m))
    weights = exponentials / jnp.sum(exponentials, axis=1, keepdims=True)

    def pick(carry, i):
        front, taken = carry
        s = samples[:, i]
        f = (s - low[None]) / jnp.maximum(high - low, 1e-6)[None]
        score = jnp.max(weights[i][None] * f, axis=1) + 0.05 * jnp.sum(weights[i][None] * f, axis=1)  # lower: better
        if multi == "hvi":
            gain = hypervolume_improvement(front, s, reference)
            score = jnp.where(jnp.max(jnp.where(taken, 0.0, gain)) > 0, -gain, score)
        j = jnp.argmin(jnp.where(taken, jnp.inf, score))
        return (front.at[seen.shape[0] + i].set(s[j]), taken.at[j].set(True)), j

    front = jnp.concatenate([seen, jnp.full((trials, m), jnp.inf)])
    return jax.lax.scan(pick, (front, jnp.zeros((cand,), bool)), jnp.arange(trials))[1]


def _candidates(key: jax.Array, state: GPState, cand: int, dim: int) -> jax.Array:
    """``cand`` candidate points: half uniform, half local moves around the best five seen."""
    k_uni, k_pick, k_step, k_scale = jax.random.split(key, 4)
    half = cand // 2
    uniform = jax.random.uniform(k_uni, (cand - half, dim))
    order = jnp.argsort(_quality(state.y, state.used))[:5]
    centres = state.x[order][jax.random.randint(k_pick, (half,), 0, jnp.minimum(5, state.used.sum()))]
    scale = jnp.exp(jax.random.uniform(k_scale, (half, 1), minval=math.log(0.005), maxval=math.log(0.3)))
    local = jnp.clip(centres + scale * jax.random.normal(k_step, (half, dim)), 0.0, 1.0)
    return jnp.concatenate([local, uniform])
