"""Successive halving: many configurations on a small budget, the best few on ever larger ones."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune.space import Int, Space
from jaxtune.strategies.base import Strategy, register, sanitize_scores


def budgets(low: int, high: int, eta: int) -> list[int]:
    """The budgets of a bracket, smallest first: ``high, high/eta, high/eta**2, ...`` down to ``low``."""
    rungs = int(math.floor(math.log(high / low, eta) + 1e-9)) + 1
    return [int(round(high / eta ** (rungs - 1 - k))) for k in range(rungs)]


@register("successive_halving")
@dataclasses.dataclass(frozen=True)
class SuccessiveHalving:
    """Successive halving (Jamieson & Talwalkar, 2016; one bracket of Hyperband, Li et al., 2017).

    A *bracket* samples ``num_trials`` configurations and trains them on the smallest budget;
    each next round trains the best ``1/eta`` of the last round's survivors on ``eta`` times the
    budget, up to the largest; then a new bracket starts with fresh samples. Rounds default to
    one bracket.

    The budget is a hyperparameter of the space that this strategy sets: ``fidelity`` names a
    ``jt.Int(low, high, static=True)`` (e.g. the Trainer's ``"steps"``), and the budgets are
    ``high, high/eta, high/eta**2, ...`` down to ``low``: ``Int(100, 2700)`` with ``eta=3`` gives
    100, 300, 900, 2700 steps. Each budget is one compiled program, reused by every bracket.

    A survivor trains again from the start on its larger budget (nothing is carried between
    rounds), which costs about ``eta / (eta - 1)`` times continuing it and keeps every trial a
    complete run that is stored and resumable like any other. Slots of stopped trials stay
    empty (``valid``); a bracket whose survivors all diverged starts over.

    Args:
      fidelity: name of the budget parameter in the space.
      eta: keep ``1/eta`` of the trials each round and multiply the budget by ``eta`` (>= 2).
    """

    fidelity: str = "steps"
    eta: int = 3

    def build(self, space: Space, num_trials: int) -> Strategy:
        """Binds the schedule to ``space`` and ``num_trials`` configurations a bracket."""
        if isinstance(self.eta, bool) or not isinstance(self.eta, int) or self.eta < 2:
            raise ValueError(f"successive_halving: eta must be an int >= 2, got {self.eta!r}")
        p = space.params.get(self.fidelity)
        if p is None:
            raise ValueError(
                f"successive_halving: fidelity {self.fidelity!r} is not in the space {space.names}; add the budget, "
                f'e.g. "steps": jt.Int(100, 2700, scale="log", static=True)'
            )
        if not isinstance(p, Int) or not p.static:
            raise ValueError(
                f"successive_halving: fidelity {self.fidelity!r} must be a jt.Int(low, high, static=True) budget, "
                f"got {p!r}"
            )
        if p.high < self.eta * p.low:
            raise ValueError(
                f"successive_halving: fidelity {self.fidelity!r} spans {p.low}..{p.high}, less than one factor of "
                f"eta={self.eta}: make high >= eta * low"
            )
        steps = budgets(p.low, p.high, self.eta)
        rungs = len(steps)
        units = jnp.asarray(np.asarray(p.to_unit(jnp.asarray(steps, jnp.float32))), jnp.float32)
        survivors = jnp.asarray([max(1, num_trials // self.eta**k) for k in range(rungs)], jnp.int32)
        column = space.names.index(self.fidelity)
        dim = space.dim

        def init(key):
            return {
                "u": jnp.zeros((num_trials, dim), jnp.float32),
                "alive": jnp.ones((num_trials,), bool),
                "rung": jnp.zeros((), jnp.int32),
            }

        def ask(key, state):
            fresh = jax.random.uniform(key, (num_trials, dim))
            u = jnp.where(state["rung"] == 0, fresh, state["u"])
            u = u.at[:, column].set(units[state["rung"]])
            return u, {**state, "u": u}

        def tell(state, u, scores):
            s = jnp.where(state["alive"], sanitize_scores(scores), jnp.inf)
            rung = state["rung"] + 1
            rank = jnp.argsort(jnp.argsort(s))  # 0 = best; ties broken by slot
            keep = survivors[jnp.minimum(rung, rungs - 1)]
            alive = (rank < keep) & jnp.isfinite(s)
            restart = (rung >= rungs) | ~alive.any()
            return {
                "u": state["u"],
                "alive": alive | restart,
                "rung": jnp.where(restart, 0, rung).astype(jnp.int32),
            }

        return Strategy(init, ask, tell, lambda state: state["alive"], num_trials, dim, num_rounds=rungs)
