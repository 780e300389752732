"""The roofline helper (benchmarks/roofline.py) counts a program's work through its loops."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import roofline  # noqa: E402


def test_a_scan_costs_its_length_times_its_body_as_the_unrolled_program_does():
    w = jnp.ones((32, 32))

    def step(c):
        return jnp.tanh(c @ w)

    def scanned(x):
        def outer(c, _):
            return jax.lax.scan(lambda d, _: (step(d), None), c, None, length=4)[0], None

        return jax.lax.scan(outer, x, None, length=3)[0]

    def unrolled(x):
        for _ in range(12):
            x = step(x)
        return x

    x = jnp.ones((8, 32))
    looped, flat = roofline.program_cost(scanned, x), roofline.program_cost(unrolled, x)
    assert flat.flops >= 12 * 2 * 8 * 32 * 32  # XLA counts the matmuls: 2·m·n·k each
    np.testing.assert_allclose(looped.flops, flat.flops, rtol=0.02)
    assert looped.uncounted_loops == 0
    assert roofline._xla(scanned, [x])[0] < flat.flops / 5  # what XLA alone says: each body once


def test_a_trainers_work_grows_with_its_steps():
    import jaxtune as jt

    costs = []
    for steps in (10, 20):
        task = jt.tasks.get("digits_mlp", steps=steps)
        hp = task.space.sample(jax.random.key(0), 2)
        costs.append(roofline.program_cost(jax.vmap(task.objective), hp, jax.random.split(jax.random.key(0), 2)))
    step = costs[1].flops - costs[0].flops  # ten steps of two trials
    assert step > 0 and costs[0].flops > step  # ten steps, plus initialisation and evaluation
    peak = {"flops_per_s": 1e9, "bytes_per_s": 1e9}
    cols = roofline.columns("x", costs[0], 2.0, peak)
    assert cols["x_flops_frac"] == costs[0].flops / 2.0 / 1e9 and cols["x_gbytes"] == costs[0].bytes / 2.0 / 1e9
