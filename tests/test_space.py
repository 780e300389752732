import jax
import numpy as np
import pytest
from tolerances import F32

import jaxtune as jt


def test_log_scale_spreads_evenly_over_decades(key):
    x = np.asarray(jt.Space({"lr": jt.Float(1e-4, 1.0, scale="log")}).sample(key, 40_000)["lr"])
    counts = np.histogram(np.log10(x), bins=4, range=(-4, 0))[0] / x.size
    np.testing.assert_allclose(counts, 0.25, atol=0.015)
    assert x.min() >= 1e-4 and x.max() <= 1.0


def test_reverse_log_is_the_true_log_of_one_minus_beta(key):
    b = np.asarray(jt.Space({"b": jt.Float(0.9, 0.999, scale="reverse_log")}).sample(key, 40_000)["b"])
    # [0.9, 0.99] and [0.99, 0.999] each get half of the mass.
    assert abs(np.mean(b < 0.99) - 0.5) < 0.015
    np.testing.assert_allclose(np.histogram(np.log10(1 - b), bins=4, range=(-3, -1))[0] / b.size, 0.25, atol=0.015)
    assert b.min() >= 0.9 and b.max() <= 0.999


def test_linear_scale_is_uniform(key):
    x = np.asarray(jt.Space({"x": jt.Float(-2.0, 6.0)}).sample(key, 40_000)["x"])
    np.testing.assert_allclose(np.histogram(x, bins=4, range=(-2, 6))[0] / x.size, 0.25, atol=0.015)


def test_int_linear_and_log(key):
    space = jt.Space({"n": jt.Int(1, 4), "h": jt.Int(16, 511, scale="log")})
    hp = space.sample(key, 40_000)
    n, h = np.asarray(hp["n"]), np.asarray(hp["h"])
    assert n.dtype == np.int32 and set(np.unique(n)) == {1, 2, 3, 4}
    np.testing.assert_allclose(np.bincount(n)[1:] / n.size, 0.25, atol=0.015)
    # log scale: 16..31 gets as much mass as 256..511
    assert abs(np.mean(h < 32) - np.mean(h >= 256)) < 0.02
    assert h.min() >= 16 and h.max() <= 511


def test_choice_uniform_and_static_for_strings(key):
    space = jt.Space({"bs": jt.Choice([32, 64, 128]), "act": jt.Choice(["relu", "tanh"])})
    assert space.static_names == ["act"]
    hp = space.sample(key, 30_000)
    vals, counts = np.unique(np.asarray(hp["bs"]), return_counts=True)
    assert list(vals) == [32, 64, 128]
    np.testing.assert_allclose(counts / counts.sum(), 1 / 3, atol=0.015)
    rows = space.to_python(hp)
    assert {r["act"] for r in rows} == {"relu", "tanh"}
    assert isinstance(rows[0]["bs"], int)


def test_round_trip_unit_to_values_and_back(key):
    space = jt.Space(
        {
            "lr": jt.Float(1e-4, 1.0, scale="log"),
            "b1": jt.Float(0.9, 0.999, scale="reverse_log"),
            "x": jt.Float(-1, 1),
            "n": jt.Int(1, 9),
            "h": jt.Int(16, 512, scale="log"),
            "c": jt.Choice([0.1, 0.5, 2.0]),
        }
    )
    hp = space.sample(key, 256)
    back = space.from_unit(space.to_unit(hp))
    for name in ("lr", "b1", "x"):
        np.testing.assert_allclose(back[name], hp[name], rtol=2e-4, atol=1e-6)
    for name in ("n", "h", "c"):
        np.testing.assert_array_equal(back[name], hp[name])


def test_from_unit_is_jittable_and_vmappable(key):
    space = jt.Space({"lr": jt.Float(1e-4, 1.0, scale="log"), "n": jt.Int(1, 5), "c": jt.Choice([1, 2])})
    u = jax.random.uniform(key, (8, 3))
    eager = space.from_unit(u)
    jitted = jax.jit(space.from_unit)(u)
    vmapped = jax.vmap(space.from_unit)(u)
    for n in space.names:
        np.testing.assert_allclose(jitted[n], eager[n], **F32)
        np.testing.assert_allclose(vmapped[n], eager[n], **F32)
    np.testing.assert_allclose(jax.jit(space.to_unit)(eager), space.to_unit(eager), **F32)


def test_grid_points():
    space = jt.Space({"lr": jt.Float(1e-3, 1e-1, scale="log"), "n": jt.Int(1, 3), "c": jt.Choice(["a", "b"])})
    g = space.grid({"lr": 3, "n": 5})
    assert len(g["lr"]) == 3 * 3 * 2  # ints get their distinct values, choices every value
    np.testing.assert_allclose(sorted(set(np.round(np.asarray(g["lr"]), 6))), [1e-3, 1e-2, 1e-1], rtol=1e-4)
    assert sorted(set(np.asarray(g["n"]).tolist())) == [1, 2, 3]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: jt.Float(0.0, 1.0, scale="log"), "scale='log' needs low > 0"),
        (lambda: jt.Float(0.9, 1.0, scale="reverse_log"), "needs high < 1"),
        (lambda: jt.Float(1.0, 1.0), "low must be < high"),
        (lambda: jt.Float(2.0, 1.0), "low must be < high"),
        (lambda: jt.Float(1e-3, 1.0, scale="logarithmic"), "allowed scales are 'linear', 'log', 'reverse_log'"),
        (lambda: jt.Int(5, 1), "low must be <= high"),
        (lambda: jt.Int(0, 8, scale="log"), "needs low >= 1"),
        (lambda: jt.Int(1, 8, scale="reverse_log"), "allowed scales are 'linear', 'log'"),
        (lambda: jt.Int(1.5, 8), "must be an int"),
        (lambda: jt.Choice([]), "at least one value"),
        (lambda: jt.Choice([1, 1]), "distinct"),
        (lambda: jt.Float(float("nan"), 1.0), "finite"),
    ],
)
def test_validation_errors_name_the_value(make, message):
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)")):
        jt.Space({"p": make()})


def test_space_errors():
    with pytest.raises(ValueError, match="empty"):
        jt.Space({})
    with pytest.raises(TypeError, match="expected jt.Float"):
        jt.Space({"x": (0, 1)})
    with pytest.raises(KeyError, match="missing"):
        jt.Space({"x": jt.Float(0, 1)}).to_unit({})


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: jt.Int(0, 2**31), ValueError, "high must fit in int32"),
        (lambda: jt.Int(-(2**40), 3), ValueError, "low must fit in int32"),
        (lambda: jt.Float(-1e300, 1.0), ValueError, "low must fit in float32"),
        (lambda: jt.Float(0.0, 1e39), ValueError, "high must fit in float32"),
        (lambda: jt.Choice([1.0, float("nan")]), ValueError, "every Choice value must be finite"),
        (lambda: jt.Choice([1, 2**40]), ValueError, "Choice values must fit in int32"),
        (lambda: jt.Float(0.0, 1.0, static="no"), TypeError, "static must be True or False, got 'no'"),
        (lambda: jt.Int(1, 8, masked=1), TypeError, "masked must be True or False, got 1"),
        (lambda: jt.Choice([1, 2], static="yes"), TypeError, "static must be True or False, got 'yes'"),
    ],
)
def test_values_that_float32_int32_or_flags_cannot_hold_are_refused(make, error, message):
    with pytest.raises(error, match=message):
        jt.Space({"p": make()})


def test_float_bounds_given_as_ints_past_int32_sample_as_floats():
    # Found by Hypothesis: Float(0, 2**31) overflowed in clip, the bound taken for an int32.
    space = jt.Space({"x": jt.Float(0, 2**31)})
    x = np.asarray(space.sample(jax.random.key(0), 64)["x"])
    assert x.dtype == np.float32 and (0 <= x).all() and (x <= 2**31).all()
