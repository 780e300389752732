"""Benchmark problems: jittable functions on a :class:`~jaxtune.Space` with a known optimum.

A :class:`Problem` maps one point's hyperparameters to a scalar to *minimise*. Built in: the
classic synthetic functions (Branin, Hartmann-3, Hartmann-6, Rosenbrock in ``d`` dimensions)
and a low-effective-dimension problem, ``branin_in_10d`` (Branin hidden among 8 hyperparameters
that do not matter: where grid search wastes its points on the idle axes, Bergstra & Bengio 2012).
Register your own with :func:`register_problem`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from jaxtune.errors import InputError, UnknownNameError
from jaxtune.space import Float, Space
from jaxtune.tasks.synthetic import SYNTHETIC, branin, rosenbrock

__all__ = ["Problem", "PROBLEMS", "register_problem", "get_problem"]


@dataclasses.dataclass(frozen=True)
class Problem:
    """A benchmark problem.

    Attributes:
      name: its registry name.
      space: the hyperparameters and their scales.
      fn: ``fn(hp) -> scalar`` to minimise; pure and jittable (``hp`` maps names to scalars).
      optimum: the known minimum (regret is measured from it).
      fidelity: for a multi-fidelity problem, the hyperparameter that sets the budget (an ``Int``
        of the space, e.g. ``"steps"``): an evaluation costs its value, and only evaluations at
        the largest budget count as found (what a sweep would select and deploy).
    """

    name: str
    space: Space
    fn: Callable[[Mapping[str, jax.Array]], jax.Array]
    optimum: float
    fidelity: str | None = None


PROBLEMS: dict[str, Problem] = {}


def register_problem(problem: Problem) -> Problem:
    """Adds ``problem`` to :data:`PROBLEMS` (so ``jaxtune bench --problems NAME`` finds it)."""
    if not isinstance(problem, Problem):
        raise InputError(f"register_problem takes a jt.bench.Problem, got {type(problem).__name__}")
    PROBLEMS[problem.name] = problem
    return problem


def get_problem(name: str) -> Problem:
    """The registered problem ``name``, or an error listing the registered ones."""
    if name not in PROBLEMS:
        raise UnknownNameError(f"unknown problem {name!r}; registered problems are {sorted(PROBLEMS)}")
    return PROBLEMS[name]


def _value(objective):
    return lambda hp: objective(hp)["value"]


for _name in ("branin", "hartmann3", "hartmann6"):
    _s = SYNTHETIC[_name]
    register_problem(Problem(_name, _s.space, _value(_s.objective), _s.optimum))


def rosenbrock_problem(d: int) -> Problem:
    """Rosenbrock in ``d`` dimensions on De Jong's ``[-2.048, 2.048]^d`` (minimum 0 at ``(1, ..., 1)``;
    not a point of an odd grid over the box, as it is of ``[-2, 2]``'s)."""
    space = Space({f"x{i}": Float(-2.048, 2.048) for i in range(1, d + 1)})
    return Problem(f"rosenbrock{d}", space, _value(rosenbrock), 0.0)


register_problem(rosenbrock_problem(4))

_IDLE = 8
register_problem(
    Problem(
        "branin_in_10d",
        Space({"x1": Float(-5.0, 10.0), "x2": Float(0.0, 15.0), **{f"idle{i}": Float(0.0, 1.0) for i in range(_IDLE)}}),
        lambda hp: branin(hp)["value"],  # the idle axes change nothing
        0.397887,
    )
)


def random_scale(problem: Problem, samples: int = 4096) -> float:
    """The median regret of a uniformly random point: the scale normalised regret divides by."""
    hp = problem.space.sample(jax.random.key(12345), samples)
    values = jax.vmap(lambda h: problem.fn(h))(hp)
    return float(jnp.median(values) - problem.optimum)
