"""Where every random key of a sweep comes from: one place, so a stored trial's key can be recomputed.

A sweep's keys all derive from its seed through disjoint streams; a trial's key depends only on
the seed, its round and its slot (under JAX's partitionable threefry, the default, ``split(k,
n)[i] == fold_in(k, i)`` for every ``n``), so :meth:`jaxtune.Result.trial_key` can hand it back
and the trial can be trained again exactly.
"""

from __future__ import annotations

import functools

import jax

__all__ = [
    "INIT_STREAM", "ROUND_STREAM", "TRIAL_STREAM", "DECIDE_STREAM", "round_keys", "lane_keys", "trial_key", "seed_keys"
]  # fmt: skip

# Streams of the seed: a strategy's init, each round's ask and trial keys (round-based sweeps),
# a population's trial keys, and its scheduler's decisions.
INIT_STREAM, ROUND_STREAM, TRIAL_STREAM, DECIDE_STREAM = 1, 2, 3, 4


def round_keys(root: jax.Array, r: int) -> tuple[jax.Array, jax.Array]:
    """``(ask_key, trials_key)`` of round ``r`` of a round-based sweep; trial ``i``'s key is
    ``jax.random.split(trials_key, trials)[i]``."""
    ask, trials = jax.random.split(jax.random.fold_in(jax.random.fold_in(root, ROUND_STREAM), r))
    return ask, trials


def lane_keys(root: jax.Array, r: int, n: int) -> jax.Array:
    """The keys of the trials a population starts at segment (or round) ``r``, one per lane."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
        jax.random.fold_in(jax.random.fold_in(root, TRIAL_STREAM), r), jax.numpy.arange(n)
    )


def trial_key(seed: int, kind: str, r: int, slot: int, trials: int) -> jax.Array:
    """The key trial ``(r, slot)`` of a sweep with ``seed`` was trained with (``kind``: ``"rounds"``
    for round-based sweeps, ``"population"`` for schedulers and continued halving)."""
    root = jax.random.key(seed)
    if kind == "population":
        return lane_keys(root, r, slot + 1)[slot]
    return jax.random.split(round_keys(root, r)[1], trials)[slot]


def seed_keys(keys: jax.Array, seeds: int) -> jax.Array:
    """The keys of each trial's ``seeds`` training seeds, trial-major (``[N * seeds]``): seed 0 is
    the trial's own key (so one seed is a plain sweep) and seed ``k > 0`` is ``fold_in(key, k)``."""
    return keys if seeds == 1 else _seeded(keys, seeds)


@functools.partial(jax.jit, static_argnums=1)
def _seeded(keys: jax.Array, seeds: int) -> jax.Array:
    ks = jax.numpy.arange(seeds, dtype=jax.numpy.uint32)
    data = jax.random.key_data(jax.vmap(lambda k: jax.vmap(lambda s: jax.random.fold_in(k, s))(ks))(keys))
    own = jax.numpy.broadcast_to(jax.random.key_data(keys)[:, None], data.shape)
    data = jax.numpy.where((ks == 0)[None, :, None], own, data)
    return jax.random.wrap_key_data(data.reshape(-1, data.shape[-1]), impl=jax.random.key_impl(keys))
