"""Synthetic test functions with known optima, for benchmarking strategies.

Each objective has the single-trial signature ``f(hp, key) -> {"value": scalar}`` and comes
with its usual domain as a :class:`~jaxtune.Space` and its known global minimum.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxtune.space import Float, Space

__all__ = ["branin", "hartmann3", "hartmann6", "rosenbrock", "Synthetic", "SYNTHETIC"]


def branin(hp, key=None):
    """Branin-Hoo on ``x1 in [-5, 10], x2 in [0, 15]``; minimum 0.397887 at three points."""
    x1, x2 = hp["x1"], hp["x2"]
    b, c, t = 5.1 / (4 * jnp.pi**2), 5 / jnp.pi, 1 / (8 * jnp.pi)
    return {"value": (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * jnp.cos(x1) + 10}


_H3_A = [[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]]
_H3_P = [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]
_H6_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
_H6_P = [
    [1312, 1696, 5569, 124, 8283, 5886],
    [2329, 4135, 8307, 3736, 1004, 9991],
    [2348, 1451, 3522, 2883, 3047, 6650],
    [4047, 8828, 8732, 5743, 1091, 381],
]
_ALPHA = [1.0, 1.2, 3.0, 3.2]


def _hartmann(x, a, p):
    a, p = jnp.asarray(a), jnp.asarray(p) * 1e-4
    return -jnp.sum(jnp.asarray(_ALPHA) * jnp.exp(-jnp.sum(a * (x[None] - p) ** 2, axis=-1)))


def hartmann3(hp, key=None):
    """Hartmann-3 on ``[0, 1]^3``; minimum -3.86278."""
    return {"value": _hartmann(jnp.stack([hp[f"x{i}"] for i in range(1, 4)]), _H3_A, _H3_P)}


def hartmann6(hp, key=None):
    """Hartmann-6 on ``[0, 1]^6``; minimum -3.32237."""
    return {"value": _hartmann(jnp.stack([hp[f"x{i}"] for i in range(1, 7)]), _H6_A, _H6_P)}


def rosenbrock(hp, key=None):
    """Rosenbrock in as many dimensions as ``hp`` has (``x1..xd`` in ``[-2, 2]``); minimum 0."""
    x = jnp.stack([hp[f"x{i}"] for i in range(1, len(hp) + 1)])
    return {"value": jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)}


@dataclasses.dataclass(frozen=True)
class Synthetic:
    """A test function with its domain and known minimum."""

    objective: Callable[..., dict[str, jax.Array]]
    space: Space
    optimum: float


SYNTHETIC: dict[str, Synthetic] = {
    "branin": Synthetic(branin, Space({"x1": Float(-5.0, 10.0), "x2": Float(0.0, 15.0)}), 0.397887),
    "hartmann3": Synthetic(hartmann3, Space({f"x{i}": Float(0.0, 1.0) for i in range(1, 4)}), -3.86278),
    "hartmann6": Synthetic(hartmann6, Space({f"x{i}": Float(0.0, 1.0) for i in range(1, 7)}), -3.32237),
    "rosenbrock": Synthetic(rosenbrock, Space({f"x{i}": Float(-2.0, 2.0) for i in range(1, 5)}), 0.0),
}
