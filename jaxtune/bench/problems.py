"""Benchmark problems: jittable functions on a :class:`~jaxtune.Space` with a known optimum.

A :class:`Problem` maps one point's hyperparameters to a scalar to *minimise*. Built in: the
classic synthetic functions (Branin, Hartmann-3, Hartmann-6, Rosenbrock in ``d`` dimensions)
and a low-effective-dimension problem, ``branin_in_10d`` (Branin hidden among 8 hyperparameters
that do not matter: where grid search wastes its points on the idle axes, Bergstra & Bengio 2012).
Register your own with :func:`register_problem`.

A problem of several objectives (``objectives=2``) returns a vector of objectives to minimise;
its "value" is the *hypervolume* its points dominate up to ``reference``, and its regret the
front's hypervolume minus that. Built in: ZDT1 and ZDT2 (Zitzler, Deb & Thiele 2000) in 6
variables, a convex and a concave front, and (with the shipped table) ``mnist1d_width_table``:
the MNIST-1D MLP's validation error against its parameter count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from jaxtune.errors import InputError, UnknownNameError
from jaxtune.space import Float, Space
from jaxtune.tasks.synthetic import SYNTHETIC, branin, rosenbrock

__all__ = ["Problem", "PROBLEMS", "register_problem", "get_problem", "zdt_problem", "hypervolume_2d"]


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
      objectives: how many objectives ``fn`` returns (a vector ``[objectives]``, each minimised;
        two at most for now). With more than one, ``optimum`` is the hypervolume of the true
        front up to ``reference``, and regret is that minus the hypervolume of the points found.
      reference: the hypervolume's reference point (every objective's worst value that counts).
    """

    name: str
    space: Space
    fn: Callable[[Mapping[str, jax.Array]], jax.Array]
    optimum: float
    fidelity: str | None = None
    objectives: int = 1
    reference: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.objectives not in (1, 2):
            raise InputError(f"problem {self.name!r}: objectives must be 1 or 2, got {self.objectives!r}")
        if self.objectives > 1 and (self.reference is None or len(self.reference) != self.objectives):
            raise InputError(f"problem {self.name!r}: {self.objectives} objectives need a reference point of "
                             f"{self.objectives} values, got {self.reference!r}")  # fmt: skip
        if self.objectives > 1 and self.fidelity is not None:
            raise InputError(f"problem {self.name!r}: a multi-fidelity problem has one objective")


PROBLEMS: dict[str, Problem] = {}


def register_problem(problem: Problem) -> Problem:
    """Adds ``problem`` to :data:`PROBLEMS` (so ``jaxtune bench --problems NAME`` finds it)."""
    if not isinstance(problem, Problem):
        raise InputError(f"register_problem takes a jt.bench.Problem, got {type(problem).__name__}")
    PROBLEMS[problem.name] = problem
    return problem


def get_problem(name: str) -> Problem:
    """The registered problem ``name``, or your own as ``"package.module:attribute"`` (a
    :class:`Problem`, or a function of no arguments that returns one; imported as ``python -m``
    would, the current directory first, and registered under its own name); an error lists the
    registered ones."""
    if name not in PROBLEMS and ":" in name:
        from jaxtune.tasks import find

        found = find(name, what="problem")
        made = found() if callable(found) and not isinstance(found, Problem) else found
        if not isinstance(made, Problem):
            raise InputError(f"problem {name!r} is a {type(made).__name__}: name a jt.bench.Problem or a function "
                             "of no arguments returning one")  # fmt: skip
        return register_problem(made)
    if name not in PROBLEMS:
        raise UnknownNameError(f"unknown problem {name!r}; registered problems are {sorted(PROBLEMS)} "
                               "(or your own as 'package.module:attribute')")  # fmt: skip
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


def zdt_problem(kind: str, dim: int = 6) -> Problem:
    """ZDT1 (convex front ``f2 = 1 - sqrt(f1)``) or ZDT2 (concave, ``f2 = 1 - f1 ** 2``) in ``dim``
    variables on ``[0, 1]``, reference point ``(1.1, 11)`` (no point of the box lies beyond it)."""
    if kind not in ("zdt1", "zdt2"):
        raise UnknownNameError(f"unknown ZDT problem {kind!r}; allowed are 'zdt1', 'zdt2'")

    def fn(hp):
        xs = [hp[f"x{i}"] for i in range(dim)]
        f1 = xs[0]
        g = 1.0 + 9.0 * sum(xs[1:]) / (dim - 1)
        h = 1.0 - jnp.sqrt(f1 / g) if kind == "zdt1" else 1.0 - (f1 / g) ** 2
        return jnp.stack([f1, g * h])

    # The front (g = 1) dominates [f1, 1.1] x [1 - sqrt(f1) or 1 - f1**2, 11] over f1 in [0, 1],
    # and [1, 1.1] x [0, 11] beyond it.
    front = 10.0 + (2.0 / 3.0 if kind == "zdt1" else 1.0 / 3.0) + 0.1 * 11.0
    space = Space({f"x{i}": Float(0.0, 1.0) for i in range(dim)})
    return Problem(kind, space, fn, front, objectives=2, reference=(1.1, 11.0))


register_problem(zdt_problem("zdt1"))
register_problem(zdt_problem("zdt2"))


def hypervolume_2d(points: jax.Array, reference: jax.Array) -> jax.Array:
    """:func:`jaxtune.pareto.hypervolume` in JAX (jittable, a fixed number of rows): the area
    ``points[n, 2]`` dominate up to ``reference``; rows with a non-finite objective or beyond the
    reference count nothing."""
    ok = jnp.all(jnp.isfinite(points), axis=1) & jnp.all(points < reference[None], axis=1)
    p = jnp.where(ok[:, None], points, reference[None])
    p = p[jnp.lexsort((p[:, 1], p[:, 0]))]
    low = jax.lax.cummin(p[:, 1])
    right = jnp.append(p[1:, 0], reference[0])
    return jnp.sum((right - p[:, 0]) * (reference[1] - low))


def random_scale(problem: Problem, samples: int = 4096) -> float:
    """The median regret of a uniformly random point: the scale normalised regret divides by."""
    hp = problem.space.sample(jax.random.key(12345), samples)
    values = jax.vmap(lambda h: problem.fn(h))(hp)
    if problem.objectives > 1:  # the hypervolume one point dominates
        ref = jnp.asarray(problem.reference, jnp.float32)
        values = -jax.vmap(lambda v: hypervolume_2d(v[None], ref))(values)
        return float(jnp.median(values) + problem.optimum)
    return float(jnp.median(values) - problem.optimum)
