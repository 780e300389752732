"""Flax NNX models of the built-in tasks (architectures of the MNIST-1D paper)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtune.errors import InputError
from jaxtune.layers import MaskedLinear, PatchConv1d
from jaxtune.space import Masked

__all__ = ["Linear", "MLP", "CNN", "GRU", "TutorialCNN"]

# Flax >= 0.12 wants lists of submodules wrapped in nnx.List; older versions take plain lists.
_ModuleList = getattr(nnx, "List", list)


class Linear(nnx.Module):
    """Logistic regression: one dense layer."""

    def __init__(self, features_in: int, classes: int, *, rngs: nnx.Rngs):
        self.out = nnx.Linear(features_in, classes, rngs=rngs)

    def __call__(self, x):
        return self.out(x)


class MLP(nnx.Module):
    """``features_in -> hidden x depth (ReLU) -> classes``; the paper's MLP is 40-100-100-10.

    ``hidden`` may be :class:`~jaxtune.space.Masked` (a ``masked=True`` hyperparameter).
    """

    def __init__(self, features_in: int, classes: int, hidden: int | Masked = 100, depth: int = 2, *, rngs: nnx.Rngs):
        # A masked width (a traced value in a power-of-two bucket) needs masked layers.
        dense = MaskedLinear if isinstance(hidden, Masked) else nnx.Linear
        sizes = [features_in] + [hidden] * depth
        self.layers = _ModuleList([dense(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.out = dense(sizes[-1], classes, rngs=rngs)

    def __call__(self, x):
        for layer in self.layers:
            x = jax.nn.relu(layer(x))
        return self.out(x)


class CNN(nnx.Module):
    """The MNIST-1D paper's ConvBase: three Conv1d of 25 channels (k5 s2, k3 s2, k3 s2), then Linear.

    ``conv="patches"`` (default) runs the convolutions as patches @ kernel
    (:class:`jaxtune.layers.PatchConv1d`): the same function and the same initial parameters as
    ``conv="nnx"`` (``nnx.Conv``), but one batched matmul when vmapped over trials instead of a
    grouped convolution with tiny groups.
    """

    def __init__(
        self, length: int = 40, classes: int = 10, channels: int = 25, conv: str = "patches", *, rngs: nnx.Rngs
    ):
        if conv not in ("patches", "nnx"):
            raise InputError(f"CNN conv must be 'patches' or 'nnx', got {conv!r}")

        def layer(cin, k):
            if conv == "nnx":
                return nnx.Conv(cin, channels, (k,), strides=(2,), padding=[(1, 1)], rngs=rngs)
            return PatchConv1d(cin, channels, k, stride=2, padding=1, rngs=rngs)

        self.convs = _ModuleList([layer(1, 5), layer(channels, 3), layer(channels, 3)])
        n = length
        for k in (5, 3, 3):
            n = (n + 2 - k) // 2 + 1
        self.out = nnx.Linear(n * channels, classes, rngs=rngs)

    def __call__(self, x):
        x = x[..., None]
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        return self.out(x.reshape(*x.shape[:-2], -1))


class GRU(nnx.Module):
    """The MNIST-1D paper's GRUBase: a bidirectional GRU (hidden 6) over the sequence, all
    steps' states flattened into a Linear layer."""

    def __init__(self, length: int = 40, classes: int = 10, hidden: int = 6, *, rngs: nnx.Rngs):
        self.fwd = nnx.GRUCell(1, hidden, rngs=rngs)
        self.bwd = nnx.GRUCell(1, hidden, rngs=rngs)
        self.hidden = hidden
        self.out = nnx.Linear(2 * hidden * length, classes, rngs=rngs)

    def _run(self, cell, xs):
        h0 = jnp.zeros((xs.shape[1], self.hidden), xs.dtype)

        def step(h, x):
            h, y = cell(h, x)
            return h, y

        return jax.lax.scan(step, h0, xs)[1]

    def __call__(self, x):
        xs = jnp.swapaxes(x, 0, 1)[..., None]  # (length, batch, 1)
        f = self._run(self.fwd, xs)
        b = self._run(self.bwd, xs[::-1])[::-1]
        h = jnp.concatenate([f, b], -1)  # (length, batch, 2 * hidden)
        return self.out(jnp.swapaxes(h, 0, 1).reshape(x.shape[0], -1))


class TutorialCNN(nnx.Module):
    """The Flax NNX MNIST tutorial's CNN, sized for ``side x side`` images (scikit-learn digits: 8).

    Conv 3x3 (32) -> Dropout -> BatchNorm -> ReLU -> avg-pool 2 -> Conv 3x3 (64) -> BatchNorm ->
    ReLU -> avg-pool 2 -> Linear (256) -> Dropout -> ReLU -> Linear (classes), with ``nnx.Conv``
    as in the tutorial (which has 28x28 inputs and a 3136-wide first Linear layer). Dropout keeps
    its own RNG stream (``nnx.Dropout(rate, rngs=rngs)``), so the model is called as ``model(x)``.
    The :class:`~jaxtune.train.Trainer` runs its convolutions as patches @ kernel unless told not to.
    """

    def __init__(self, side: int = 8, classes: int = 10, dropout: float = 0.025, *, rngs: nnx.Rngs):
        self.side = side
        self.conv1 = nnx.Conv(1, 32, (3, 3), rngs=rngs)
        self.batch_norm1 = nnx.BatchNorm(32, rngs=rngs)
        self.dropout1 = nnx.Dropout(dropout, rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, (3, 3), rngs=rngs)
        self.batch_norm2 = nnx.BatchNorm(64, rngs=rngs)
        self.linear1 = nnx.Linear((side // 4) ** 2 * 64, 256, rngs=rngs)
        self.dropout2 = nnx.Dropout(dropout, rngs=rngs)
        self.linear2 = nnx.Linear(256, classes, rngs=rngs)

    def __call__(self, x):
        x = x.reshape(*x.shape[:-1], self.side, self.side, 1)  # flat pixels -> NHWC

        def pool(v):
            return nnx.avg_pool(v, window_shape=(2, 2), strides=(2, 2))

        x = pool(jax.nn.relu(self.batch_norm1(self.dropout1(self.conv1(x)))))
        x = pool(jax.nn.relu(self.batch_norm2(self.conv2(x))))
        x = x.reshape(*x.shape[:-3], -1)
        x = jax.nn.relu(self.dropout2(self.linear1(x)))
        return self.linear2(x)
