"""Layers that stay fast when vmapped over trials, and layers whose width is a traced value.

Widths: a ``masked=True`` integer hyperparameter reaches the trial as
:class:`~jaxtune.space.Masked` ``(value, size)``. :class:`MaskedLinear` allocates ``size``
units and zeroes all but the first ``value``, on its inputs and its outputs, so it computes the
same function (and the same gradients for the live weights) as an ``nnx.Linear`` of width
``value``, for any activation in between. Trials of different widths then share one program.

``jax.vmap`` of a convolution over trials (each trial with its own kernel) becomes a grouped
convolution with tiny groups, which runs poorly on GPUs. :class:`PatchConv` (any number of
spatial axes; :class:`PatchConv1d` for 1-D) computes the same function as ``nnx.Conv`` by
extracting patches with strided slices (no weights involved, so vmap folds trials into the
batch) and one matmul with the kernel, which vmap turns into a single batched matmul.

Hyperparameters a model reads (a dropout rate, a masked width): hold them in :class:`Hyper`
variables. ``jt.train.Trainer`` sets every ``Hyper`` value from the trial's current ``hp`` at
each segment, so a value that PBT explores or babysit sets reaches the model; a value the
model kept in its state any other way would stay at its first value, and the Trainer refuses
such a model where values change between segments. :class:`Dropout` is ``nnx.Dropout`` with a
``Hyper`` rate, which may be traced (``nnx.Dropout`` tests ``rate == 0.0`` in Python).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxtune.errors import InputError, InputTypeError
from jaxtune.space import Masked

__all__ = [
    "PatchConv", "PatchConv1d", "patch_convs", "patches", "patches1d", "MaskedLinear", "live_mask", "Hyper", "Dropout",
    "live_params",
]  # fmt: skip


class Hyper(nnx.Variable):
    """A hyperparameter the model reads (e.g. ``Hyper(jnp.asarray(hp["label_smoothing"]))``).

    ``jt.train.Trainer`` rebuilds its value from the trial's current ``hp`` at every segment
    (and in ``model_of``): it is never trained and never kept from initialisation, so a value
    changed between segments (PBT's explore, babysit's ``set``) takes effect from the next step.
    """


_TRACED_AS_PYTHON = (
    "the model used a traced hyperparameter as a Python value ({error}). A value that shapes the model (a width, "
    "a depth) must be static=True in the space; a dropout rate goes to jt.layers.Dropout, which takes a traced "
    "rate (nnx.Dropout tests rate == 0.0 in Python); any other value the model reads, to a jt.layers.Hyper variable"
)


@contextlib.contextmanager
def traced_values_explained():
    """Re-raises JAX's concretization error from the user's model as what to change."""
    try:
        yield
    except jax.errors.ConcretizationTypeError as e:
        raise InputError(_TRACED_AS_PYTHON.format(error=type(e).__name__)) from e


def refuse_static_tracers(model: nnx.Module) -> None:
    """A traced value kept as a plain attribute (not a Variable) would be baked into the model's structure."""
    leaves = {id(x) for x in jax.tree.leaves(nnx.state(model))}
    for path, m in nnx.iter_graph(model):
        if not isinstance(m, nnx.Module):
            continue
        for name, v in vars(m).items():
            if isinstance(v, jax.core.Tracer) and id(v) not in leaves:
                where = ".".join(map(str, (*path, name)))
                raise InputError(_TRACED_AS_PYTHON.format(error=f"{type(m).__name__} keeps it as {where}"))


def reached_by(closed, names: list[str]) -> list[set[str]]:
    """For each output of a jaxpr, the names of the inputs it depends on (dataflow over its equations)."""
    from jax.extend.core import Literal

    jaxpr = closed.jaxpr
    reach = {v: {n} for v, n in zip(jaxpr.invars, names)}
    for eqn in jaxpr.eqns:
        got = set().union(*(reach.get(v, set()) for v in eqn.invars if not isinstance(v, Literal)))
        for out in eqn.outvars:
            reach[out] = got
    return [set() if isinstance(v, Literal) else reach.get(v, set()) for v in jaxpr.outvars]


class Dropout(nnx.Dropout):
    """``nnx.Dropout`` whose ``rate`` may be a traced hyperparameter (held in a :class:`Hyper`).

    The same arguments and the same behaviour as ``nnx.Dropout`` (train mode masks and rescales
    by ``1 / (1 - rate)``; eval mode, ``deterministic=True``, is the identity; a rate of 1 gives
    zeros with finite gradients), except that it draws a mask even at rate 0.

    Examples:
      >>> drop = Dropout(jnp.float32(0.25), rngs=nnx.Rngs(0))
      >>> float(drop.rate[...])
      0.25
    """

    def __init__(self, rate, *, broadcast_dims: Sequence[int] = (), deterministic: bool | None = False,
                 rng_collection: str = "dropout", rngs: nnx.Rngs | nnx.RngStream | None = None):  # fmt: skip
        # nnx.Dropout's own __init__ would make ``rate`` a static attribute: set the fields here.
        self.rate = Hyper(jnp.asarray(rate, jnp.float32))
        self.broadcast_dims = broadcast_dims
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        if isinstance(rngs, nnx.Rngs):
            self.rngs = rngs[rng_collection].fork()
        elif isinstance(rngs, nnx.RngStream):
            self.rngs = rngs.fork()
        elif rngs is None:
            self.rngs = nnx.data(None)
        else:
            raise InputTypeError(f"jt.layers.Dropout: rngs must be an nnx.Rngs, an nnx.RngStream or None, got {rngs!r}")

    def __call__(self, inputs: jax.Array, *, deterministic: bool | None = None, rngs=None) -> jax.Array:
        """Masks ``inputs`` at the current rate in train mode; the identity in eval mode."""
        deterministic = self.deterministic if deterministic is None else deterministic
        if deterministic:
            return inputs
        rngs = self.rngs if rngs is None else rngs
        if rngs is None:
            raise InputError("jt.layers.Dropout in train mode needs rngs (at construction or as a call argument)")
        key = rngs[self.rng_collection]() if isinstance(rngs, nnx.Rngs) else rngs() if callable(rngs) else rngs
        keep = 1.0 - self.rate[...]
        shape = [1 if d in self.broadcast_dims else n for d, n in enumerate(inputs.shape)]
        mask = jnp.broadcast_to(jax.random.bernoulli(key, keep, shape), inputs.shape)
        scale = jnp.where(keep > 0, 1.0 / jnp.where(keep > 0, keep, 1.0), 0.0)  # rate 1: zeros, finite grads
        return jax.lax.select(mask, inputs * scale.astype(inputs.dtype), jnp.zeros_like(inputs))


def _pairs(padding, kernel_size: tuple[int, ...], strides: tuple[int, ...], spatial: tuple[int, ...]):
    """``nnx.Conv``'s padding argument as one ``(low, high)`` pair per spatial axis."""
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return [(0, 0)] * len(kernel_size)
        if padding.upper() == "SAME":  # as lax.padtype_to_pads: output length ceil(n / stride)
            pads = []
            for n, k, s in zip(spatial, kernel_size, strides):
                total = max((-(-n // s) - 1) * s + k - n, 0)
                pads.append((total // 2, total - total // 2))
            return pads
        raise InputError(f"padding must be 'SAME', 'VALID', an int or (low, high) pairs, got {padding!r}")
    if isinstance(padding, int):
        return [(padding, padding)] * len(kernel_size)
    pads = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
    if len(pads) != len(kernel_size) or any(len(p) != 2 for p in pads):
        raise InputError(f"padding needs one (low, high) pair per spatial axis ({len(kernel_size)}), got {padding!r}")
    return pads


def _tuple(v: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    t = (v,) * n if isinstance(v, int) else tuple(v)
    if len(t) != n or any(isinstance(i, bool) or not isinstance(i, int) or i < 1 for i in t):
        raise InputError(f"{name} must be a positive int or {n} positive ints, got {v!r}")
    return t


def patches(
    x: jax.Array,
    kernel_size: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str | int | Sequence = "VALID",
) -> jax.Array:
    """Sliding windows of ``x[..., *spatial, channels]``: ``[..., *out_spatial, prod(kernel_size) * channels]``.

    The window axis is ordered (tap along each spatial axis, then channel), matching a kernel
    ``[*kernel_size, channels, features]`` reshaped to ``[-1, features]``. Windows are strided
    slices, so nothing here depends on weights and ``vmap`` folds trials into the batch.
    """
    kernel_size = tuple(kernel_size)
    nd = len(kernel_size)
    strides = (1,) * nd if strides is None else tuple(strides)
    spatial = x.shape[-nd - 1 : -1]
    pads = _pairs(padding, kernel_size, strides, spatial)
    if any(pads_ != (0, 0) for pads_ in pads):
        x = jnp.pad(x, [(0, 0)] * (x.ndim - nd - 1) + list(pads) + [(0, 0)])
    out = [(x.shape[x.ndim - nd - 1 + a] - k) // s + 1 for a, (k, s) in enumerate(zip(kernel_size, strides))]
    if min(out) < 1:
        raise InputError(f"patches: window {kernel_size} does not fit the padded input {x.shape[-nd - 1 : -1]}")
    taps = []
    for offset in itertools.product(*(range(k) for k in kernel_size)):
        index = tuple(slice(o, o + s * (n - 1) + 1, s) for o, s, n in zip(offset, strides, out))
        taps.append(x[(..., *index, slice(None))])
    stacked = jnp.stack(taps, axis=-2)  # [..., *out, taps, channels]
    return stacked.reshape(*stacked.shape[:-2], len(taps) * x.shape[-1])


def patches1d(x: jax.Array, size: int, stride: int = 1, padding: int = 0) -> jax.Array:
    """Sliding windows of ``x[..., length, channels]``: ``[..., out_length, size * channels]``.

    The window axis is ordered (tap, channel), matching a kernel ``[size, channels, features]``
    reshaped to ``[size * channels, features]``.
    """
    return patches(x, (size,), (stride,), padding)


class PatchConv(nnx.Module):
    """N-D convolution as patches @ kernel; the same parameters and outputs as ``nnx.Conv``.

    Under ``jax.vmap`` over trials (each trial with its own kernel) ``nnx.Conv`` becomes a grouped
    convolution with tiny groups; this layer becomes one batched matmul.

    Args:
      in_features: input channels.
      out_features: output channels.
      kernel_size: window size per spatial axis (an int for 1-D, or a tuple: ``(3, 3)`` is 2-D).
      strides: window step, an int or one per spatial axis.
      padding: ``"SAME"`` (``nnx.Conv``'s default), ``"VALID"``, an int, or ``(low, high)`` pairs.
      use_bias: add a bias (zeros at init).
      rngs: parameter initialisation keys (kernel: LeCun normal, bias: zeros, drawn as ``nnx.Conv``).

    Input ``[..., *spatial, in_features]``, output ``[..., *out_spatial, out_features]``.

    Examples:
      >>> conv = PatchConv(1, 32, kernel_size=(3, 3), rngs=nnx.Rngs(0))  # as nnx.Conv(1, 32, (3, 3))
      >>> conv(jnp.ones((4, 8, 8, 1))).shape
      (4, 8, 8, 32)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        *,
        padding: str | int | Sequence = "SAME",
        use_bias: bool = True,
        rngs: nnx.Rngs,
    ):
        self.kernel_size = _tuple(kernel_size, 1 if isinstance(kernel_size, int) else len(kernel_size), "kernel_size")
        self.strides = _tuple(strides, len(self.kernel_size), "strides")
        _pairs(padding, self.kernel_size, self.strides, self.kernel_size)  # validate now, not at call time
        self.padding = padding
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (*self.kernel_size, in_features, out_features)))
        # Draw the bias key even without a bias: the key stream then matches nnx.Conv's.
        bias = nnx.initializers.zeros(rngs.params(), (out_features,))
        self.bias = nnx.Param(bias) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel[...]
        y = patches(x, self.kernel_size, self.strides, self.padding) @ k.reshape(-1, k.shape[-1])
        if self.bias is not None:
            y = y + self.bias[...].reshape((1,) * (y.ndim - 1) + (-1,))
        return y

    @classmethod
    def from_conv(cls, conv: nnx.Conv) -> PatchConv:
        """A PatchConv computing what ``conv`` computes, sharing its kernel and bias Params.

        Raises ``ValueError`` for a convolution it cannot express (see :func:`patch_convs`).
        """
        reason = _unsupported(conv)
        if reason:
            raise InputError(f"cannot compute this nnx.Conv as patches @ kernel: {reason}")
        strides = 1 if conv.strides is None else conv.strides
        new = cls(
            conv.in_features,
            conv.out_features,
            conv.kernel_size,
            strides,
            padding=conv.padding,
            use_bias=conv.bias is not None,
            rngs=nnx.Rngs(0),  # placeholders, replaced by conv's own Params below
        )
        new.kernel = conv.kernel
        new.bias = conv.bias
        return new


def _is_one(v) -> bool:
    return v is None or (isinstance(v, int) and v == 1) or (not isinstance(v, int) and all(i == 1 for i in v))


def _unsupported(conv: nnx.Conv) -> str | None:
    """Why ``conv`` cannot run as patches @ kernel (None if it can)."""
    padding = conv.padding
    if isinstance(padding, str) and padding.upper() not in ("SAME", "VALID"):
        return f"padding {padding!r}"
    checks = {
        "feature_group_count": conv.feature_group_count == 1,
        "input_dilation": _is_one(conv.input_dilation),
        "kernel_dilation": _is_one(conv.kernel_dilation),
        "mask": getattr(conv, "mask", None) is None,
        "dtype": getattr(conv, "dtype", None) in (None, jnp.float32),
        "param_dtype": getattr(conv, "param_dtype", jnp.float32) == jnp.float32,
        "precision": getattr(conv, "precision", None) is None,
        "conv_general_dilated": getattr(conv, "conv_general_dilated", jax.lax.conv_general_dilated)
        is jax.lax.conv_general_dilated,
        "preferred_element_type": getattr(conv, "preferred_element_type", None) is None,
    }
    bad = [name for name, ok in checks.items() if not ok]
    return f"non-default {', '.join(bad)}" if bad else None


def patch_convs(model: nnx.Module) -> nnx.Module:
    """Replaces, in place, every ``nnx.Conv`` of ``model`` that it can express by a :class:`PatchConv`.

    The replacement shares the convolution's Params and computes the same function (up to float
    rounding); under ``jax.vmap`` over trials it runs as one batched matmul instead of a grouped
    convolution: 8x the trials/s on an H200 and 7x on a 2-core CPU for the built-in CNNs
    (``benchmarks/cnn.py``, ``benchmarks/cnn2d.py``). Convolutions it cannot express (feature
    groups, dilations, masks, circular/causal padding, other dtypes or precisions) stay as
    they are. :class:`jaxtune.train.Trainer` calls this on every model it builds unless
    ``patch_convs=False``.

    Returns:
      ``model`` (or its replacement, when ``model`` itself is an ``nnx.Conv``).

    Examples:
      >>> from jaxtune.tasks.models import TutorialCNN
      >>> model = patch_convs(TutorialCNN(rngs=nnx.Rngs(0)))
      >>> type(model.conv1).__name__
      'PatchConv'
    """
    if type(model) is nnx.Conv:
        return PatchConv.from_conv(model) if _unsupported(model) is None else model
    found = [(path, node) for path, node in nnx.iter_graph(model) if type(node) is nnx.Conv and path]
    for path, conv in found:
        if _unsupported(conv) is not None:
            continue
        parent = model
        for name in path[:-1]:
            parent = parent[name] if isinstance(name, int) else getattr(parent, name)
        if isinstance(path[-1], int):
            parent[path[-1]] = PatchConv.from_conv(conv)
        else:
            setattr(parent, path[-1], PatchConv.from_conv(conv))
    return model


class PatchConv1d(PatchConv):
    """1-D :class:`PatchConv` with an int window, stride and symmetric padding (zeros at both ends).

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
        super().__init__(in_features, out_features, (kernel_size,), (stride,), padding=padding, rngs=rngs)


class MaskSize(Hyper):
    """The live width of a masked layer (a traced integer, set from ``hp`` as every :class:`Hyper`)."""


def _width(features: int | Masked) -> tuple[int, jax.Array | int]:
    if isinstance(features, Masked):
        return int(features.size), features.value
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
        raise InputTypeError(f"layer width must be a positive int or jt.Masked, got {features!r}")
    return features, features


def live_mask(size: int, live: jax.Array | int) -> jax.Array:
    """``f32[size]`` with ones for the first ``live`` units and zeros after."""
    return (jnp.arange(size) < live).astype(jnp.float32)


class MaskedLinear(nnx.Module):
    """A dense layer whose input and/or output width may be :class:`~jaxtune.space.Masked`.

    With plain ints it is an ordinary dense layer. The kernel is LeCun-normal with the *live*
    fan-in, as ``nnx.Linear`` of the live width would draw it; bias starts at zero. Its live
    block does not depend on the bucket: row ``i`` is drawn from its own key, and a row's first
    entries are the same however long it is (JAX's partitionable threefry), so a trial computes
    the same model in any bucket that holds its width (the programs a study shares,
    :mod:`jaxtune.execute.sharing`).

    Args:
      in_features: input width, an int or ``Masked(value, size)``.
      out_features: output width, an int or ``Masked(value, size)``.
      rngs: initialisation keys.

    Examples:
      >>> from jaxtune.space import Masked
      >>> hidden = Masked(jnp.asarray(100), 128)     # how hp["hidden"] arrives for masked=True
      >>> rngs, x = nnx.Rngs(0), jnp.ones((4, 40))
      >>> h = jax.nn.relu(MaskedLinear(40, hidden, rngs=rngs)(x))
      >>> MaskedLinear(hidden, 10, rngs=rngs)(h).shape
      (4, 10)
    """

    def __init__(self, in_features: int | Masked, out_features: int | Masked, *, rngs: nnx.Rngs):
        in_size, in_live = _width(in_features)
        out_size, out_live = _width(out_features)
        # lecun_normal = truncated normal on [-2, 2] with variance 1 / fan_in (after its rescaling).
        std = jnp.sqrt(1.0 / jnp.asarray(in_live, jnp.float32)) / 0.87962566103423978
        rows = jax.vmap(lambda i, key: jax.random.truncated_normal(jax.random.fold_in(key, i), -2.0, 2.0, (out_size,)),
                        in_axes=(0, None))  # fmt: skip
        self.kernel = nnx.Param(rows(jnp.arange(in_size), rngs.params()) * std)
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


def live_params(model: nnx.Module) -> jax.Array:
    """How many trainable parameters ``model`` uses: every ``nnx.Param``'s size, and of a
    :class:`MaskedLinear` only its live block (a masked width counts as the width it trains).

    Examples:
      >>> from jaxtune.space import Masked
      >>> int(live_params(MaskedLinear(40, Masked(jnp.asarray(100), 128), rngs=nnx.Rngs(0))))  # 40 x 100 + 100
      4100
    """
    total = jnp.asarray(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))), jnp.float32)
    for _, module in nnx.iter_modules(model):
        if isinstance(module, MaskedLinear):
            live = module.in_live[...] * module.out_live[...] + module.out_live[...]
            total = total - (module.kernel.size + module.bias.size) + live.astype(jnp.float32)
    return total
