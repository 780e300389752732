"""Several objectives: the Pareto front, its hypervolume, and the scalarisation strategies are told.

With ``jt.tune(metric=["val_accuracy", "n_params"], mode=["max", "min"])`` every objective is a
metric of the trial. A trial is *dominated* when another feasible finished trial is at least as
good on every objective and better on one; the *front* is the trials no other dominates
(:attr:`jaxtune.Result.pareto`). The first objective stays the primary one (``value``,
``Result.best``), so every single-objective tool keeps working.

Strategies minimise one score per trial, so each round tells them a *random Chebyshev
scalarisation* (ParEGO, Knowles 2006): weights drawn from the round's own stream of the sweep's
seed, objectives normalised to [0, 1] by the range of the finished trials of that round and the
earlier ones (so a resume tells the very same scores), score ``max_i w_i f_i + 0.05 sum_i w_i f_i``.
A model-based strategy then chases a different part of the front each round; coarse-to-fine
zooms on the round's best under its weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["non_dominated", "hypervolume", "front_ranks", "promotion_order", "promotion_positions", "scalarised",
           "round_weights", "finite_range", "RHO"]

RHO = 0.05  # the augmentation of the Chebyshev scalarisation (ParEGO's value)


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Which rows of ``points`` (``[n, m]``, every objective minimised, +inf for a trial that does
    not count) no other row dominates; rows with a non-finite objective are never on the front.

    Examples:
      >>> non_dominated(np.array([[1.0, 4.0], [2.0, 2.0], [3.0, 3.0], [4.0, 1.0]])).tolist()
      [True, True, False, True]
    """
    p = np.asarray(points, np.float64)
    ok = np.all(np.isfinite(p), axis=1)
    front = ok.copy()
    for i in np.flatnonzero(ok):
        others = p[ok]
        dominates = np.all(others <= p[i], axis=1) & np.any(others < p[i], axis=1)
        front[i] = not dominates.any()
    return front


def hypervolume(points: np.ndarray, reference: Sequence[float]) -> float:
    """The area (2 objectives, both minimised) that ``points`` dominate up to ``reference``.

    Examples:
      >>> hypervolume(np.array([[1.0, 3.0], [2.0, 1.0]]), [4.0, 4.0])
      7.0
    """
    p = np.asarray(points, np.float64)
    ref = np.asarray(reference, np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or ref.shape != (2,):
        raise ValueError("hypervolume is computed for two objectives")
    p = p[np.all(np.isfinite(p), axis=1) & np.all(p < ref, axis=1)]
    if not len(p):
        return 0.0
    p = p[non_dominated(p)]
    p = p[np.argsort(p[:, 0])]
    xs = np.append(p[1:, 0], ref[0])
    return float(np.sum((xs - p[:, 0]) * (ref[1] - p[:, 1])))


def front_ranks(points: np.ndarray) -> np.ndarray:
    """Each row's non-dominated rank (0: on the front; 1: on the front once those are removed; ...);
    rows with a non-finite objective rank after every finite one.

    Examples:
      >>> front_ranks(np.array([[1.0, 4.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0], [np.inf, 0.0]])).tolist()
      [0, 0, 1, 2, 3]
    """
    p = np.asarray(points, np.float64)
    ranks = np.full(len(p), -1)
    left, rank = np.all(np.isfinite(p), axis=1), 0
    while left.any():
        front = np.flatnonzero(left)[non_dominated(p[left])]
        ranks[front], left[front], rank = rank, False, rank + 1
    ranks[ranks < 0] = rank
    return ranks


def promotion_order(points: np.ndarray) -> np.ndarray:
    """Rows best first for a rung's promotion with several objectives (MO-ASHA's rule, Schmucker et
    al. 2021): by non-dominated rank, ties within a front by hypervolume contribution (two
    objectives; the reference 10% past the worst finite value of each), larger first; with more
    objectives, ties by the sum of the row's ranks on each objective. Non-finite rows last."""
    p = np.asarray(points, np.float64)
    ranks = front_ranks(p)
    tie = np.zeros(len(p))
    finite = np.all(np.isfinite(p), axis=1)
    if p.shape[1] == 2 and finite.any():
        low, high = p[finite].min(axis=0), p[finite].max(axis=0)
        ref = high + 0.1 * np.maximum(high - low, 1e-12)
        for r in np.unique(ranks[finite]):
            members = np.flatnonzero(ranks == r)
            whole = hypervolume(p[members], ref)
            for i in members:
                tie[i] = -(whole - hypervolume(p[members[members != i]], ref))
    else:
        ranked = np.argsort(np.where(np.isfinite(p), p, np.inf), axis=0, kind="stable")
        tie = np.argsort(ranked, axis=0, kind="stable").sum(axis=1)
    return np.lexsort((np.arange(len(p)), tie, ranks))


def promotion_positions(points, valid):
    """:func:`promotion_order` on the device, as each row's place in it: ``i32[n]``, 0 for the
    best of the ``valid`` rows (the others ``n``). Jittable with fixed shapes: a scheduler's
    decision with several objectives (MO-ASHA's and MO-PBT's rule) runs inside its program.

    Args:
      points: ``[n, m]`` objectives, each minimised (a non-finite row ranks after every finite one).
      valid: ``bool[n]``: the rows that take part.
    """
    import jax
    import jax.numpy as jnp

    n, m = points.shape
    p = jnp.where(valid[:, None], points, jnp.inf)
    ok = valid & jnp.all(jnp.isfinite(p), axis=1)
    dominates = jnp.all(p[:, None, :] <= p[None, :, :], axis=-1) & jnp.any(p[:, None, :] < p[None, :, :], axis=-1)
    dominates = dominates & ok[:, None] & ok[None, :]  # [i, j]: i dominates j

    def peel(carry):
        rank, left, r = carry
        front = left & ~jnp.any(dominates & left[:, None], axis=0)
        return jnp.where(front, r, rank), left & ~front, r + 1

    rank, _, fronts = jax.lax.while_loop(lambda c: c[1].any(), peel, (jnp.full((n,), n), ok, jnp.int32(0)))
    rank = jnp.where(ok, rank, jnp.where(valid, fronts, n + 1))
    if m == 2:  # ties within a front by exclusive hypervolume contribution, larger first
        low = jnp.min(jnp.where(ok[:, None], p, jnp.inf), axis=0)
        high = jnp.max(jnp.where(ok[:, None], p, -jnp.inf), axis=0)
        ref = high + 0.1 * jnp.maximum(high - low, 1e-12)
        order = jnp.lexsort((p[:, 0], rank))  # each front by its first objective (the second descends)
        f, same = p[order], rank[order][1:] == rank[order][:-1]
        following = jnp.where(jnp.concatenate([same, jnp.zeros((1,), bool)]), jnp.roll(f[:, 0], -1), ref[0])
        before = jnp.where(jnp.concatenate([jnp.zeros((1,), bool), same]), jnp.roll(f[:, 1], 1), ref[1])
        share = jnp.zeros((n,)).at[order].set((following - f[:, 0]) * (before - f[:, 1]))
        tie = -jnp.where(ok, share, 0.0)
    else:  # ties by the sum of the row's ranks on each objective
        tie = jnp.argsort(jnp.argsort(p, axis=0, stable=True), axis=0, stable=True).sum(axis=1).astype(jnp.float32)
    place = jnp.argsort(jnp.lexsort((jnp.arange(n), tie, rank)))
    return jnp.where(valid, place, n).astype(jnp.int32)


def round_weights(seed: int, r: int, count: int) -> np.ndarray:
    """Round ``r``'s scalarisation weights for a sweep of ``seed``: uniform on the simplex
    (Dirichlet(1, ..., 1)) over ``count`` objectives, from the round's own generator.

    Examples:
      >>> w = round_weights(0, 3, 2)
      >>> bool(np.isclose(w.sum(), 1.0)), (w == round_weights(0, 3, 2)).all()
      (True, np.True_)
    """
    return np.random.default_rng([seed, r]).dirichlet(np.ones(count))


def finite_range(points, xp=np):
    """The per-objective ``(low, high)`` over the rows of ``points`` whose objectives are all
    finite (``(0, 1)`` where there are none): the box :func:`scalarised` normalises by."""
    p = xp.asarray(points)
    ok = xp.all(xp.isfinite(p), axis=1)[:, None]
    low = xp.min(xp.where(ok, p, xp.inf), axis=0, initial=xp.inf)
    high = xp.max(xp.where(ok, p, -xp.inf), axis=0, initial=-xp.inf)
    empty = ~xp.any(ok)
    return xp.where(empty, 0.0, low), xp.where(empty, 1.0, high)


def scalarised(points, weights, low, high, xp=np):
    """Each row's augmented Chebyshev score under ``weights`` (objectives minimised and scaled by
    ``low``/``high`` to [0, 1]); +inf for a row with a non-finite objective. ``xp`` is ``numpy``
    or ``jax.numpy`` (the benchmark runner scalarises inside its compiled sweep).

    Examples:
      >>> scalarised(np.array([[0.0, 1.0], [1.0, 0.0], [np.inf, 0.0]]), np.array([0.5, 0.5]), 0.0, 1.0).tolist()
      [0.525, 0.525, inf]
    """
    p = xp.asarray(points)
    low, high, w = (xp.reshape(xp.asarray(v, p.dtype), (1, -1)) for v in (low, high, weights))
    ok = xp.all(xp.isfinite(p), axis=1)
    f = xp.where(ok[:, None], (p - low) / xp.where(high > low, high - low, 1.0), 0.0)
    out = xp.max(w * f, axis=1) + RHO * xp.sum(w * f, axis=1)
    return xp.where(ok, out, xp.inf)
