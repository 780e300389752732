"""Synthetic test functions with known optima, for benchmarking strategies.

Each objective has the single-trial signature ``f(hp, key) -> {"value": scalar}`` and comes
with its usual domain as a :class:`~jaxtune.Space` and its known global minimum.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxtune._checks import MAX_STEPS, check_int
from jaxtune.errors import InputError
from jaxtune.space import Float, Space

__all__ = ["branin", "hartmann3", "hartmann6", "rosenbrock", "Synthetic", "SYNTHETIC", "ToyPBT", "TOY_PBT_SPACE"]


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


@dataclasses.dataclass(frozen=True)
class ToyPBT:
    """The toy problem of the PBT paper (Jaderberg et al., 2017, section 4.1), as a stateful trial.

    Weights ``theta`` start at ``(0.9, 0.9)`` and climb, by gradient ascent with learning rate
    ``lr``, the *surrogate* ``1.2 - (h0 * theta0**2 + h1 * theta1**2)``, where the hyperparameters
    ``h0``, ``h1`` weigh one coordinate each; the trial is scored on the true objective
    ``Q = 1.2 - (theta0**2 + theta1**2)`` (maximum 1.2 at 0). A fixed ``h = (1, 0)`` or
    ``(0, 1)`` moves one coordinate only and plateaus at ``Q = 0.39``; PBT, copying the better
    member's weights and exploring ``h``, reaches 1.2.

    It implements the stateful trial protocol (``init``, ``train``, ``evaluate_state``), so
    ``jt.tune(ToyPBT(), space, "pbt", ...)`` runs it as a population, and is callable as a
    one-shot objective for the round-based strategies.
    """

    steps: int = 400
    lr: float = 0.01

    def __post_init__(self):
        check_int("pbt_toy: steps", self.steps, 1, MAX_STEPS)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < 1:
            raise InputError(f"pbt_toy: lr must be a number in (0, 1), got {self.lr!r}")

    def init(self, hp, key):
        """``theta = (0.9, 0.9)`` at step 0."""
        return {"theta": jnp.full((2,), 0.9, jnp.float32), "step": jnp.zeros((), jnp.int32)}

    def train(self, hp, state, steps: int):
        """``steps`` steps of gradient ascent on the surrogate weighted by ``h0``, ``h1``."""
        h = jnp.stack([hp["h0"], hp["h1"]]).astype(jnp.float32)

        def step(theta, _):
            return theta + self.lr * 2 * (-h * theta), None  # d/dtheta of -(h . theta^2)

        theta, _ = jax.lax.scan(step, state["theta"], None, length=steps)
        return {"theta": theta, "step": state["step"] + steps}, {"surrogate": 1.2 - jnp.sum(h * theta**2)}

    def evaluate_state(self, hp, state):
        """The true objective ``Q``."""
        return {"Q": 1.2 - jnp.sum(state["theta"] ** 2)}

    def __call__(self, hp, key):
        """One trial trained straight through with fixed ``h``."""
        state, metrics = self.train(hp, self.init(hp, key), self.steps)
        return {**metrics, **self.evaluate_state(hp, state)}


TOY_PBT_SPACE = Space({"h0": Float(0.0, 1.0), "h1": Float(0.0, 1.0)})
