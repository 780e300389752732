"""Layers that stay fast when vmapped over trials.

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

__all__ = ["PatchConv1d", "patches1d"]


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
        self.bias = nnx.Param(jnp.zeros((out_features,)))
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel[...]
        p = patches1d(x, self.kernel_size, self.stride, self.padding)
        y = p @ k.reshape(-1, k.shape[-1])
        return y + self.bias[...].reshape((1,) * (y.ndim - 1) + (-1,))
