"""The stateful trial protocol and the device-resident population."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CompileCounter, make_trainer
from tolerances import F32_ITERATED

import jaxtune as jt
from jaxtune.execute.population import Population

SPACE = jt.Space({"lr": jt.Float(1e-3, 1e-1, scale="log"), "b1": jt.Float(0.8, 0.99, scale="reverse_log")})


def host(x):
    """An array on the host (a PRNG key as its raw data)."""
    return np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)


def leaves_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(host(x), host(y)) for x, y in zip(la, lb))


def state_leaves(state):
    return jax.tree.leaves(state)


def test_k_segments_equal_one_run_bit_for_bit(key):
    trainer = make_trainer(steps=12)
    hp = {"lr": jnp.float32(0.03), "b1": jnp.float32(0.9)}

    @jax.jit
    def in_segments(key):
        state = trainer.init(hp, key)
        for steps in (3, 4, 5):
            state, _ = trainer.train(hp, state, steps)
        return state

    @jax.jit
    def straight(key):
        return trainer.train(hp, trainer.init(hp, key), 12)[0]

    a, b = in_segments(key), straight(key)
    assert int(a["step"]) == 12
    assert leaves_equal(state_leaves(a), state_leaves(b))
    # ... and the one-shot objective is the same training.
    one_shot = jax.jit(trainer)(hp, key)["val_loss"]
    assert one_shot == jax.jit(trainer.evaluate_state)(hp, b)["val_loss"]


def population(width=4, **kw):
    return Population(make_trainer(steps=20), SPACE, (), width, **kw)


def test_a_population_in_segments_equals_one_long_segment(key):
    hp = SPACE.sample(key, 4)
    keys = jax.random.split(key, 4)
    a, b = population(), population()
    a.start(hp, keys)
    b.start(hp, keys)
    for _ in range(2):
        ma = a.train(5)
    mb = b.train(10)
    np.testing.assert_array_equal(ma["val_loss"], mb["val_loss"])
    # and each lane is the trial trained alone
    for i in range(4):
        alone = jax.jit(make_trainer(steps=10))({n: v[i] for n, v in hp.items()}, keys[i])
        np.testing.assert_allclose(ma["val_loss"][i], alone["val_loss"], rtol=1e-5)


@pytest.mark.parametrize("group", [1, 2])
def test_lanes_in_sequence_train_as_the_vmapped_population(group, key):
    """vmap_width runs a segment's lanes in groups, one group after another (the CPU plan for
    large trials): each lane is the same training, and its state carries on between segments."""
    hp, keys = SPACE.sample(key, 4), jax.random.split(key, 4)
    a, b = population(), population(vmap_width=group)
    a.start(hp, keys)
    b.start(hp, keys)
    for _ in range(2):
        ma, mb = a.train(5), b.train(5)
    np.testing.assert_allclose(mb["val_loss"], ma["val_loss"], rtol=1e-5)
    assert b.vmap_width == group
    with pytest.raises(ValueError, match="vmap_width must be an int >= 1 or None, got 0"):
        population(vmap_width=0)


@pytest.mark.parametrize("group", [1, None])
def test_masked_lanes_keep_their_state_and_one_program_serves_any_live_lanes(group, key):
    """train(steps, live) trains only the live lanes (one lane at a time, an idle one costs
    nothing); the others keep their state bit for bit and read NaN; without evaluate only the
    training metrics come back; any set of live lanes runs the one program."""
    hp, keys = SPACE.sample(key, 4), jax.random.split(key, 4)
    a, b = population(vmap_width=group), population(vmap_width=group)
    a.start(hp, keys)
    b.start(hp, keys)
    before = b.lanes(range(4))
    live = np.array([True, False, True, False])
    first = b.train(5, live, evaluate=False)
    assert set(first) == {"train_loss"} and np.isnan(first["train_loss"][~live]).all()
    m = b.train(5, live)
    full = a.train(5)
    full = a.train(5)
    np.testing.assert_allclose(m["val_loss"][live], full["val_loss"][live], **F32_ITERATED)
    assert np.isnan(m["val_loss"][~live]).all() and np.isfinite(m["val_loss"][live]).all()
    after = b.lanes(range(4))
    assert all(leaves_equal(before[i], after[i]) for i in (1, 3))
    compiles = b.compiles
    b.train(5, ~live)
    b.train(5, np.ones(4, bool), evaluate=False)
    assert b.compiles == compiles  # the mask is data, evaluate too


def test_new_hyperparameters_between_segments_take_effect_without_recompiling(key):
    hp = SPACE.sample(key, 4)
    pop = population()
    pop.start(hp, jax.random.split(key, 4))
    pop.train(5)
    compiles = pop.compiles
    before = pop.lanes(range(4))
    frozen = {**hp, "lr": hp["lr"].at[1].set(0.0)}  # lane 1 stops moving
    pop.set_hp(frozen)
    pop.train(5)
    after = pop.lanes(range(4))
    assert pop.compiles == compiles
    assert leaves_equal(before[1]["params"], after[1]["params"])
    assert not leaves_equal(before[0]["params"], after[0]["params"])


def test_an_exploiting_lane_continues_from_its_donors_exact_state_with_its_own_data_order(key):
    hp = SPACE.sample(key, 4)
    pop = population()
    pop.start(hp, jax.random.split(key, 4))
    pop.train(5)
    donor = pop.lanes([0])[0]
    new_hp = {n: v.at[2].set(v[0]) for n, v in hp.items()}
    pop.replace(
        new_hp, source=np.array([0, 1, 0, 3]), reseed=np.array([0, 0, 1, 0], bool), keys=jax.random.split(key, 4)
    )
    copied = pop.lanes([2])[0]
    assert leaves_equal(copied["params"], donor["params"]) and leaves_equal(copied["opt_state"], donor["opt_state"])
    assert int(copied["step"]) == 5
    assert not np.array_equal(host(copied["key"]), host(donor["key"]))
    m = pop.train(5)
    assert m["val_loss"][2] != m["val_loss"][0]  # a clone with its own batches, not a twin


def test_a_refilled_lane_starts_afresh_with_its_own_key(key):
    hp = SPACE.sample(key, 4)
    pop = population()
    pop.start(hp, jax.random.split(key, 4))
    pop.train(5)
    kept = pop.lanes([0])[0]
    new_keys = jax.random.split(jax.random.key(7), 4)
    new_hp = {n: v.at[3].set(v[3] * 0.5) for n, v in hp.items()}
    pop.replace(new_hp, restart=np.array([0, 0, 0, 1], bool), keys=new_keys)
    fresh = pop.lanes([3])[0]
    expected = jax.jit(make_trainer(steps=20).init)({n: v[3] for n, v in new_hp.items()}, new_keys[3])
    assert int(fresh["step"]) == 0
    assert leaves_equal(fresh, expected)
    assert leaves_equal(pop.lanes([0])[0]["params"], kept["params"])  # the others are untouched


def test_nothing_compiles_after_the_first_cycle_of_segments_and_decisions(key):
    hp = SPACE.sample(key, 4)
    keys = jax.random.split(key, 4)
    pop = population()
    pop.start(hp, keys)
    pop.train(5)
    pop.replace(hp, source=np.array([0, 0, 2, 3]), restart=np.array([0, 0, 0, 1], bool), keys=keys,
                reseed=np.array([0, 1, 0, 0], bool))  # fmt: skip
    pop.replace(hp, source=np.array([1, 1, 2, 3]), keys=keys, reseed=np.array([1, 0, 0, 0], bool))
    counter = CompileCounter()
    for _ in range(3):
        pop.train(5)
        pop.replace(hp, source=np.array([0, 0, 2, 3]), restart=np.array([0, 0, 0, 1], bool), keys=keys,
                    reseed=np.array([0, 1, 0, 0], bool))  # fmt: skip
        pop.replace(hp, source=np.array([1, 1, 2, 3]), keys=keys, reseed=np.array([1, 0, 0, 0], bool))
        pop.set_hp(hp)
    assert counter.count == 0


def test_a_population_needs_the_protocol():
    with pytest.raises(TypeError, match="a population trains in segments: the objective must implement init"):
        Population(lambda hp, key: {"loss": hp["lr"]}, SPACE, (), 4)
