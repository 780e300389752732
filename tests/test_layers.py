import jax
import numpy as np
import pytest
from flax import nnx

from jaxtune.layers import PatchConv, PatchConv1d


@pytest.mark.parametrize("k, stride, padding, cin, cout", [(5, 2, 1, 1, 25), (3, 2, 1, 25, 25), (3, 1, 0, 4, 2)])
def test_patch_conv_equals_nnx_conv(k, stride, padding, cin, cout, key):
    conv = nnx.Conv(cin, cout, (k,), strides=(stride,), padding=[(padding, padding)], rngs=nnx.Rngs(0))
    conv.bias[...] = jax.random.normal(key, (cout,))
    patch = PatchConv1d(cin, cout, k, stride=stride, padding=padding, rngs=nnx.Rngs(1))
    patch.kernel[...] = conv.kernel[...]
    patch.bias[...] = conv.bias[...]
    x = jax.random.normal(jax.random.key(3), (6, 40, cin))
    np.testing.assert_allclose(patch(x), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kernel, strides, padding, shape",
    [
        ((3, 3), 1, "SAME", (2, 8, 8, 3)),  # the Flax tutorial's conv
        ((3, 3), (2, 1), "SAME", (2, 9, 7, 3)),  # SAME with a stride: uneven padding
        ((2, 3), 1, "VALID", (2, 6, 7, 3)),
        ((3, 3), 2, [(1, 0), (2, 1)], (2, 8, 8, 3)),
        ((2, 2, 2), 1, "SAME", (2, 4, 5, 3, 3)),  # 3-D
    ],
)
def test_nd_patch_conv_equals_nnx_conv_from_the_same_init(kernel, strides, padding, shape):
    conv = nnx.Conv(3, 5, kernel, strides=strides, padding=padding, rngs=nnx.Rngs(0))
    patch = PatchConv(3, 5, kernel, strides, padding=padding, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(patch.kernel[...], conv.kernel[...])  # the same draws, not copies
    conv.bias[...] = patch.bias[...] = jax.random.normal(jax.random.key(1), (5,))
    x = jax.random.normal(jax.random.key(3), shape)
    np.testing.assert_allclose(patch(x), conv(x), rtol=1e-5, atol=1e-5)


def test_patch_conv_rejects_bad_arguments_at_construction():
    with pytest.raises(ValueError, match="kernel_size"):
        PatchConv(1, 2, (3, 0), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="padding"):
        PatchConv(1, 2, (3, 3), padding="FULL", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="one \\(low, high\\) pair per spatial axis"):
        PatchConv(1, 2, (3, 3), padding=[(1, 1)], rngs=nnx.Rngs(0))


def test_patch_conv_vmapped_over_trials_equals_per_trial(key):
    def make(k):
        return nnx.split(PatchConv1d(3, 4, 3, stride=2, padding=1, rngs=nnx.Rngs(k)))

    graphdef, _ = make(key)
    states = jax.vmap(lambda k: make(k)[1])(jax.random.split(key, 5))
    x = jax.random.normal(key, (5, 7, 20, 3))
    batched = jax.vmap(lambda s, x: nnx.merge(graphdef, s)(x))(states, x)
    for i in range(5):
        one = nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], states))(x[i])
        np.testing.assert_allclose(batched[i], one, rtol=1e-5, atol=1e-6)


def narrow_and_masked(key, live, size):
    from jaxtune.layers import MaskedLinear
    from jaxtune.space import Masked

    k1, k2 = jax.random.split(key)
    narrow = [nnx.Linear(6, live, rngs=nnx.Rngs(k1)), nnx.Linear(live, 3, rngs=nnx.Rngs(k2))]
    hidden = Masked(jax.numpy.asarray(live), size)
    wide = [MaskedLinear(6, hidden, rngs=nnx.Rngs(k1)), MaskedLinear(hidden, 3, rngs=nnx.Rngs(k2))]
    # Same live weights; the dead ones keep their random values and must not matter.
    wide[0].kernel[...] = wide[0].kernel[...].at[:, :live].set(narrow[0].kernel[...])
    wide[0].bias[...] = wide[0].bias[...].at[:live].set(jax.random.normal(key, (live,)))
    narrow[0].bias[...] = wide[0].bias[...][:live]
    wide[1].kernel[...] = wide[1].kernel[...].at[:live].set(narrow[1].kernel[...])
    return narrow, wide


@pytest.mark.parametrize("activation", [jax.nn.relu, jax.nn.sigmoid])
def test_masked_width_computes_the_narrow_model(activation, key):
    narrow, wide = narrow_and_masked(key, live=5, size=8)
    x = jax.random.normal(jax.random.key(7), (4, 6))

    def apply(layers, x):
        return layers[1](activation(layers[0](x)))

    np.testing.assert_allclose(apply(wide, x), apply(narrow, x), rtol=1e-5, atol=1e-6)

    def loss(params, graphdef, rest):
        return jax.numpy.sum(apply(nnx.merge(graphdef, params, rest), x) ** 2)

    gw, pw, rw = nnx.split(nnx.List(wide) if hasattr(nnx, "List") else wide, nnx.Param, ...)
    gn, pn, rn = nnx.split(nnx.List(narrow) if hasattr(nnx, "List") else narrow, nnx.Param, ...)
    grad_w = jax.grad(loss)(pw, gw, rw)
    grad_n = jax.grad(loss)(pn, gn, rn)
    np.testing.assert_allclose(grad_w[0]["kernel"][...][:, :5], grad_n[0]["kernel"][...], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_w[1]["kernel"][...][:5], grad_n[1]["kernel"][...], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_w[0]["bias"][...][:5], grad_n[0]["bias"][...], rtol=1e-5, atol=1e-6)
    # Dead units get exactly zero gradient, so an optimizer never moves them into play.
    assert float(abs(grad_w[0]["kernel"][...][:, 5:]).max()) == 0.0
    assert float(abs(grad_w[1]["kernel"][...][5:]).max()) == 0.0


def test_masked_init_scale_follows_the_live_fan_in(key):
    from jaxtune.layers import MaskedLinear
    from jaxtune.space import Masked

    layer = MaskedLinear(Masked(jax.numpy.asarray(16), 256), 512, rngs=nnx.Rngs(key))
    std = float(layer.kernel[...][:16].std())
    assert abs(std - 1 / np.sqrt(16)) < 0.02  # lecun normal for 16 live inputs, not 256


def test_cnn_patches_equals_cnn_nnx_conv_same_init(key):
    from jaxtune.tasks.models import CNN

    patches = CNN(conv="patches", rngs=nnx.Rngs(key))
    grouped = CNN(conv="nnx", rngs=nnx.Rngs(key))
    for a, b in zip(patches.convs, grouped.convs):
        np.testing.assert_array_equal(a.kernel[...], b.kernel[...])  # same draws, same shapes
    x = jax.random.normal(jax.random.key(5), (8, 40))
    np.testing.assert_allclose(patches(x), grouped(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="conv must be 'patches' or 'nnx'"):
        CNN(conv="fft", rngs=nnx.Rngs(0))
