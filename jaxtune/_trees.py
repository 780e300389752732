"""Pytrees as flat ``.npz``-ready arrays and back (PRNG keys travel as their raw data)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune.errors import InputError


def host_leaf(x: Any) -> np.ndarray:
    """An array on the host; a PRNG key as its raw data."""
    return np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)


def tree_arrays(tree: Any, prefix: str) -> dict[str, np.ndarray]:
    """``{prefix + i: leaf i}`` for the leaves of ``tree``, on the host. A leaf sharded over several
    processes (``jax.distributed``) is gathered whole on every process: every process must call it."""
    return {f"{prefix}{i}": host_leaf(x) for i, x in enumerate(jax.tree.leaves(on_host(tree)))}


def on_host(tree: Any) -> Any:
    """``tree``'s arrays on the host, whole, whichever processes hold their shards (a collective
    when some are another process's)."""
    def whole(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
                data = multihost_utils.process_allgather(jax.random.key_data(x), tiled=True)
                return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return x

    return jax.device_get(jax.tree.map(whole, tree))


def restore_tree(data: Mapping[str, np.ndarray], prefix: str, template: Any) -> Any:
    """The pytree shaped like ``template`` whose leaves :func:`tree_arrays` wrote under ``prefix``.

    Raises:
      ValueError: a leaf is missing, or its shape or dtype is not the template's (the data is
        another program's, or damaged); the message names the leaf.
    """
    leaves, treedef = jax.tree.flatten(template)
    out = []
    for i, t in enumerate(leaves):
        name = f"{prefix}{i}"
        if name not in data:
            raise ValueError(f"{name} is missing ({len(leaves)} arrays expected)")
        a = data[name]
        key = jnp.issubdtype(t.dtype, jax.dtypes.prng_key)
        want = jax.eval_shape(jax.random.key_data, t) if key else t
        if tuple(a.shape) != tuple(want.shape) or a.dtype != want.dtype:
            raise ValueError(f"{name} is {a.dtype}{list(a.shape)}, expected {want.dtype}{list(want.shape)}")
        out.append(jax.random.wrap_key_data(a) if key else a)
    return jax.tree.unflatten(treedef, out)


def leading_blocks(tree: Any, like: Any, what: str, missing_ok: bool = False) -> Any:
    """``tree``'s arrays, each cut to the leading block of the shape of ``like``'s array at its path.

    A path of ``like`` absent from ``tree`` is refused, unless ``missing_ok``: then ``like``'s
    own shape is filled with zeros (a ``Hyper`` value, which ``Trainer.model_of`` sets from ``hp``).
    """
    have = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    out = []
    for path, want in flat:
        name = jax.tree_util.keystr(path)
        x = have.get(name)
        if x is None:
            if not missing_ok:
                raise InputError(f"the trial's {what} has no array at {name}: the state is not this model's")
            x = jnp.zeros(want.shape, want.dtype)
        elif any(a < b for a, b in zip(x.shape, want.shape)) or len(x.shape) != len(want.shape):
            raise InputError(
                f"the trial's {what}{name} has shape {tuple(x.shape)}, smaller than the model's {tuple(want.shape)} "
                "at these hyperparameters: the state is not this model's (another hp?)"
            )
        else:
            x = x[tuple(slice(0, n) for n in want.shape)]
        out.append(x)
    return jax.tree_util.tree_unflatten(treedef, out)
