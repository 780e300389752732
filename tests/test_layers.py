import jax
import numpy as np
import pytest
from flax import nnx

from jaxtune.layers import PatchConv1d


@pytest.mark.parametrize("k, stride, padding, cin, cout", [(5, 2, 1, 1, 25), (3, 2, 1, 25, 25), (3, 1, 0, 4, 2)])
def test_patch_conv_equals_nnx_conv(k, stride, padding, cin, cout, key):
    conv = nnx.Conv(cin, cout, (k,), strides=(stride,), padding=[(padding, padding)], rngs=nnx.Rngs(0))
    conv.bias[...] = jax.random.normal(key, (cout,))
    patch = PatchConv1d(cin, cout, k, stride=stride, padding=padding, rngs=nnx.Rngs(1))
    patch.kernel[...] = conv.kernel[...]
    patch.bias[...] = conv.bias[...]
    x = jax.random.normal(jax.random.key(3), (6, 40, cin))
    np.testing.assert_allclose(patch(x), conv(x), rtol=1e-5, atol=1e-5)


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
