"""Key streams (jaxtune/keys.py): a trial's key depends only on the seed, its round and its slot,
the streams are disjoint, and a configuration's seeds keep seed 0 as its own key."""

import jax
import numpy as np

from jaxtune import keys


def data(k):
    return np.asarray(jax.random.key_data(k))


def test_a_trials_key_depends_only_on_seed_round_and_slot():
    """Under partitionable threefry (JAX's default) split(k, n)[i] does not depend on n: a stored
    trial's key is recomputed from (seed, round, slot) whatever the round's size."""
    assert jax.config.jax_threefry_partitionable
    key = data(keys.trial_key(3, "rounds", 2, 5, trials=8))
    np.testing.assert_array_equal(key, data(keys.trial_key(3, "rounds", 2, 5, trials=16)))
    _, trials = keys.round_keys(jax.random.key(3), 2)
    np.testing.assert_array_equal(key, data(jax.random.split(trials, 8)[5]))
    others = [(4, "rounds", 2, 5), (3, "rounds", 1, 5), (3, "rounds", 2, 4), (3, "population", 2, 5)]
    for seed, kind, r, slot in others:
        assert not np.array_equal(key, data(keys.trial_key(seed, kind, r, slot, trials=8))), (seed, kind, r, slot)


def test_a_narrower_population_takes_the_first_lanes_keys():
    """A bracket of n configurations takes the first n of the widest bracket's keys (what lets one
    program draw every bracket), and a population trial's key is its lane's."""
    root = jax.random.key(0)
    np.testing.assert_array_equal(data(keys.lane_keys(root, 4, 5)), data(keys.lane_keys(root, 4, 9))[:5])
    np.testing.assert_array_equal(data(keys.trial_key(0, "population", 4, 3, trials=9)),
                                  data(keys.lane_keys(root, 4, 9))[3])  # fmt: skip


def test_the_streams_of_a_seed_are_disjoint():
    """A round's ask key, its trials' keys and a population's lane keys never coincide."""
    root = jax.random.key(7)
    ask, trials = keys.round_keys(root, 0)
    drawn = [data(ask), data(trials), *data(jax.random.split(trials, 4)), *data(keys.lane_keys(root, 0, 4))]
    assert len({tuple(d) for d in drawn}) == len(drawn)
    assert len({keys.INIT_STREAM, keys.ROUND_STREAM, keys.TRIAL_STREAM, keys.DECIDE_STREAM}) == 4


def test_seed_zero_of_a_configuration_is_its_own_key():
    """``seeds=K`` gives each trial K keys, trial-major: seed 0 the trial's own key (so one seed is
    the plain sweep), seed k its ``fold_in(key, k)``."""
    trial_keys = jax.random.split(jax.random.key(1), 3)
    assert keys.seed_keys(trial_keys, 1) is trial_keys
    seeded = data(keys.seed_keys(trial_keys, 4))
    assert seeded.shape[0] == 12
    for i in range(3):
        np.testing.assert_array_equal(seeded[4 * i], data(trial_keys[i]))
        for k in range(1, 4):
            np.testing.assert_array_equal(seeded[4 * i + k], data(jax.random.fold_in(trial_keys[i], k)))
