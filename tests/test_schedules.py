import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import make_trainer
from tolerances import F32

import jaxtune as jt
from jaxtune import schedules
from jaxtune.errors import InputError

STEPS = 100
COUNTS = jnp.arange(STEPS + 1)


@pytest.mark.parametrize("warmup", [0, 10, 30])
def test_warmup_cosine_equals_optax_for_concrete_values(warmup):
    ours = schedules.warmup_cosine(0.3, STEPS, warmup=warmup, end=0.1)(COUNTS)
    theirs = optax.warmup_cosine_decay_schedule(0.0, 0.3, warmup, STEPS, end_value=0.03)(COUNTS)
    np.testing.assert_allclose(ours, theirs, **F32)


def test_warmup_linear_and_exponential_equal_optax_after_warmup():
    lin = schedules.warmup_linear(0.2, STEPS, warmup=20, end=0.0)(COUNTS)
    ref = optax.join_schedules(
        [optax.linear_schedule(0.0, 0.2, 20), optax.linear_schedule(0.2, 0.0, STEPS - 20)], [20]
    )(COUNTS)
    np.testing.assert_allclose(lin, ref, **F32)
    exp = schedules.warmup_exponential(0.2, STEPS, warmup=0, end=0.01)(COUNTS)
    ref = optax.exponential_decay(0.2, transition_steps=STEPS, decay_rate=0.01)(COUNTS)
    np.testing.assert_allclose(exp, ref, rtol=1e-4)


def test_every_shape_parameter_may_be_traced_under_vmap():
    """optax's warmup_cosine_decay_schedule fails here (TracerBoolConversionError); these do not."""
    peaks, warmups, ends = jnp.asarray([0.1, 0.3]), jnp.asarray([0.0, 25.0]), jnp.asarray([0.0, 0.5])
    for make in (schedules.warmup_cosine, schedules.warmup_linear):
        batched = jax.jit(jax.vmap(lambda p, w, e, make=make: make(p, STEPS, w, e)(COUNTS)))(peaks, warmups, ends)
        for i in range(2):
            one = make(float(peaks[i]), STEPS, float(warmups[i]), float(ends[i]))(COUNTS)
            np.testing.assert_allclose(batched[i], one, **F32)
    with pytest.raises(InputError, match="end must be > 0"):
        schedules.warmup_exponential(0.1, STEPS, end=0.0)


def test_trainer_schedule_takes_its_shape_from_the_space():
    plain = make_trainer(steps=10)
    cosine = make_trainer(steps=10, schedule="cosine")
    space = jt.Space({"lr": jt.Float(1e-2, 1e-1, scale="log"), "b1": jt.Float(0.8, 0.95), "warmup": jt.Float(0, 0.5)})
    key = jax.random.key(1)
    hp = {"lr": jnp.float32(0.05), "b1": jnp.float32(0.9), "warmup": jnp.float32(0.25)}
    # The schedule as a multiplier equals adamw with the scheduled learning rate.
    by_hand = make_trainer(
        steps=10,
        optimizer=lambda hp: optax.adamw(
            schedules.warmup_cosine(hp["lr"], 10, warmup=hp["warmup"] * 10), b1=hp["b1"], weight_decay=1e-4
        ),
    )
    got = jax.jit(cosine)(hp, key)["val_loss"]
    np.testing.assert_allclose(got, jax.jit(by_hand)(hp, key)["val_loss"], rtol=1e-5)
    assert abs(got - jax.jit(plain)(hp, key)["val_loss"]) > 1e-4
    result = jt.tune(cosine, space, trials=4, metric="val_loss", progress=False)
    assert len({t["params"]["warmup"] for t in result.trials}) == 4  # traced: one program for all
    with pytest.raises(InputError, match="schedule must be one of"):
        make_trainer(schedule="step")
