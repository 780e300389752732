"""Layers that stay fast when vmapped over trials, and layers whose width is a traced value.

Widths: a ``masked=True`` integer hyperparameter reaches the trial as
:class:`~jaxtune.space.Masked` ``(value, size)``. :class:`MaskedLinear` allocates ``size``
units and zeroes all but the first ``value``, on its inputs and its outputs, so it computes the
same function (and the same gradients for the live weights) as an ``nnx.Linear`` of width
``value``, for any activation in between. Trials of different widths then share one program.

``jax.vmap`` of a convolution over trials (each trial with its own kernel) becomes a grouped
convolution with tiny groups, which runs poorly on GPUs. :class:`PatchConv1d` computes the
same function as ``nnx.Conv`` by extracting patches with strided slices (no weights involved,
so vmap folds trials into the batch) and one matmul with the kernel, which vmap turns into a
single batched matmul.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtune.space import Masked

__all__ = ["PatchConv1d", "patches1d", "MaskedLinear", "live_mask"]


def patches1d(x: jax.Array, size: int, stride: int = 1, padding: int = 0) -> jax.Array:
    """Sliding windows of ``x[..., length, channels]``: ``[..., out_length, size * channels]``.

    The window axis is ordered (tap, channel), matching a kernel ``[size, channels, features]``
    reshaped to ``[size * channels, features]``.
    """
    if padding:
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(padding, padding), (0, 0)])
    out_len = (x.shape[-2] - size) // stride + 1
    if out_len < 1:
        raise ValueError(f"patches1d: window {size} does not fit a padded length of {x.shape[-2]}")
    taps = [x[..., j : j + stride * (out_len - 1) + 1 : stride, :] for j in range(size)]
    stacked = jnp.stack(taps, axis=-2)  # [..., out_len, size, channels]
    return stacked.reshape(*stacked.shape[:-2], size * x.shape[-1])


class PatchConv1d(nnx.Module):
    """1-D convolution as patches @ kernel; same parameters and outputs as ``nnx.Conv``.

    Args:
      in_features: input channels.
      out_features: output channels.
      kernel_size: window length.
      stride: window step.
      padding: zeros added at both ends of the length axis.
      rngs: parameter initialisation keys (kernel: LeCun normal, bias: zeros, as ``nnx.Conv``).

    Input ``[..., length, in_features]``, output ``[..., out_length, out_features]``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        rngs: nnx.Rngs,
    ):
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (kernel_size, in_features, out_features)))
        # Draw the bias key too (zeros need none): the key stream then matches nnx.Conv's.
        self.bias = nnx.Param(nnx.initializers.zeros(rngs.params(), (out_features,)))
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel[...]
        p = patches1d(x, self.kernel_size, self.stride, self.padding)
        y = p @ k.reshape(-1, k.shape[-1])
        return y + self.bias[...].reshape((1,) * (y.ndim - 1) + (-1,))


class MaskSize(nnx.Variable):
    """The live width of a masked layer (a traced integer, carried with the model state)."""


def _width(features: int | Masked) -> tuple[int, jax.Array | int]:
    if isinstance(features, Masked):
        return int(features.size), features.value
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
        raise TypeError(f"layer width must be a positive int or jt.Masked, got {features!r}")
    return features, features


def live_mask(size: int, live: jax.Array | int) -> jax.Array:
    """``f32[size]`` with ones for the first ``live`` units and zeros after."""
    return (jnp.arange(size) < live).astype(jnp.float32)


class MaskedLinear(nnx.Module):
    """A dense layer whose input and/or output width may be :class:`~jaxtune.space.Masked`.

    With plain ints it is an ordinary dense layer. The kernel is LeCun-normal with the *live*
    fan-in, as ``nnx.Linear`` of the live width would draw it; bias starts at zero.

    Args:
      in_features: input width, an int or ``Masked(value, size)``.
      out_features: output width, an int or ``Masked(value, size)``.
      rngs: initialisation keys.

    Example:
      >>> hidden = hp["hidden"]                      # Masked(value=traced, size=128)
      >>> h = jax.nn.relu(MaskedLinear(40, hidden, rngs=rngs)(x))
      >>> y = MaskedLinear(hidden, 10, rngs=rngs)(h)
    """

    def __init__(self, in_features: int | Masked, out_features: int | Masked, *, rngs: nnx.Rngs):
        in_size, in_live = _width(in_features)
        out_size, out_live = _width(out_features)
        # lecun_normal = truncated normal on [-2, 2] with variance 1 / fan_in (after its rescaling).
        std = jnp.sqrt(1.0 / jnp.asarray(in_live, jnp.float32)) / 0.87962566103423978
        self.kernel = nnx.Param(jax.random.truncated_normal(rngs.params(), -2.0, 2.0, (in_size, out_size)) * std)
        self.bias = nnx.Param(nnx.initializers.zeros(rngs.params(), (out_size,)))  # key drawn as nnx.Linear does
        self.in_live = MaskSize(jnp.asarray(in_live, jnp.int32))
        self.out_live = MaskSize(jnp.asarray(out_live, jnp.int32))

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        in_mask = live_mask(kernel.shape[0], self.in_live[...])
        out_mask = live_mask(kernel.shape[1], self.out_live[...])
        x = x * in_mask.reshape((1,) * (x.ndim - 1) + (-1,))
        y = x @ kernel + self.bias[...].reshape((1,) * (x.ndim - 1) + (-1,))
        return y * out_mask.reshape((1,) * (y.ndim - 1) + (-1,))
