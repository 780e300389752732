"""Pytrees as flat ``.npz``-ready arrays and back (PRNG keys travel as their raw data)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def host_leaf(x: Any) -> np.ndarray:
    """An array on the host; a PRNG key as its raw data."""
    return np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)


def tree_arrays(tree: Any, prefix: str) -> dict[str, np.ndarray]:
    """``{prefix + i: leaf i}`` for the leaves of ``tree``, on the host."""
    return {f"{prefix}{i}": host_leaf(x) for i, x in enumerate(jax.tree.leaves(jax.device_get(tree)))}


def restore_tree(data: Mapping[str, np.ndarray], prefix: str, template: Any) -> Any:
    """The pytree shaped like ``template`` whose leaves :func:`tree_arrays` wrote under ``prefix``."""
    leaves, treedef = jax.tree.flatten(template)
    out = []
    for i, t in enumerate(leaves):
        a = data[f"{prefix}{i}"]
        out.append(jax.random.wrap_key_data(a) if jnp.issubdtype(t.dtype, jax.dtypes.prng_key) else a)
    return jax.tree.unflatten(treedef, out)
