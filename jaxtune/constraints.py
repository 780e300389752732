"""Constraints on trials: limits a configuration must respect to count (``jt.tune(constraints=...)``).

A constraint is a string ``"NAME OP NUMBER"`` (``OP`` one of ``< <= > >=``; ``NAME`` a metric of
the objective or a hyperparameter of the space; the TOML config takes these) or a callable
``fn(params, metrics) -> bool`` (True: feasible) of the trial's hyperparameters and final metrics,
as plain Python values. Both are checked before anything is compiled: a name that is neither a
metric nor a hyperparameter is refused, naming what is.

A trial whose metrics are finite but that breaks a constraint is stored with status
``"infeasible"``: it scores +inf, so it is never the best, and a strategy is told +inf for it,
as for a diverged trial — the Gaussian process and CMA-ES model that as the worst score seen so
far, so their proposals move away from where constraints break.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxtune.errors import InputError, InputTypeError
from jaxtune.study.records import held_out

__all__ = ["Constraint", "constraint", "check_constraints", "feasible"]

OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt
}  # fmt: skip
_SPEC = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclasses.dataclass(frozen=True)
class Constraint:
    """One constraint: ``test(params, metrics) -> bool`` and how it is described (stored with the study)."""

    description: str
    test: Callable[[Mapping[str, Any], Mapping[str, float]], Any]
    name: str | None = None  # the metric or hyperparameter a string constraint reads

    def __call__(self, params: Mapping[str, Any], metrics: Mapping[str, float]) -> bool:
        """Whether a trial with these ``params`` and ``metrics`` respects the constraint.

        The test must return a bool (Python's or NumPy's): ``None``, a string, NaN or an array
        read by truthiness would judge every trial one way, silently, so they are refused.
        """
        value = self.test(params, metrics)
        if not isinstance(value, (bool, np.bool_)):
            raise InputTypeError(
                f"constraint {self.description!r} returned {value!r} ({type(value).__name__}); it must return a bool: "
                "True for a feasible trial, False for one that breaks it"
            )
        return bool(value)


def constraint(spec: str | Callable | Constraint) -> Constraint:
    """A :class:`Constraint` from a string ``"NAME OP NUMBER"`` or a callable ``fn(params, metrics)``.

    Examples:
      >>> c = constraint("val_loss < 2")
      >>> c({"lr": 0.1}, {"val_loss": 1.5}), c({"lr": 0.1}, {"val_loss": 2.0})
      (True, False)
    """
    if isinstance(spec, Constraint):
        return spec
    if isinstance(spec, str):
        m = _SPEC.match(spec)
        if m is None:
            raise InputError(
                f"constraint {spec!r} is not 'NAME OP NUMBER' with OP one of {list(OPS)}, e.g. 'val_loss < 2'"
            )
        name, op, bound = m.group(1), OPS[m.group(2)], float(m.group(3))

        def test(params, metrics):
            value = metrics[name] if name in metrics else params.get(name)
            return True if value is None else op(float(value), bound)  # an inactive hyperparameter: no limit

        return Constraint(f"{name} {m.group(2)} {m.group(3)}", test, name)
    if callable(spec):
        return Constraint(getattr(spec, "__qualname__", repr(spec)), spec)
    raise InputTypeError(
        f"a constraint must be a string 'NAME OP NUMBER' or a callable fn(params, metrics), got {spec!r}"
    )


class _Known(dict):
    """Example values that name what is known when a constraint reads an unknown key."""

    def __init__(self, values: Mapping[str, Any], what: str, owner: str):
        super().__init__(values)
        self.what, self.owner = what, owner
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __missing__(self, key):
        raise _Unknown(f"{key!r}, which is not {self.what} ({self.owner}: {sorted(self)})")


class _Unknown(KeyError):
    pass


def check_constraints(specs: Any, params: Mapping[str, Any], metrics: Sequence[str]) -> tuple[Constraint, ...]:
    """``specs`` (None, one, or a list) as constraints, each checked against the space's example
    ``params`` and the objective's ``metrics`` before anything is compiled."""
    if specs is None:
        return ()
    if isinstance(specs, (str, Constraint)) or callable(specs):
        specs = [specs]
    if not isinstance(specs, (list, tuple)):
        raise InputTypeError(f"constraints must be a list of strings or callables, got {specs!r}")
    out = tuple(constraint(s) for s in specs)
    for c in out:
        if c.name is not None:
            if c.name not in metrics and c.name not in params:
                raise InputError(f"constraint {c.description!r}: {c.name!r} is neither a metric of the objective "
                                 f"{sorted(metrics)} nor a hyperparameter of the space {sorted(params)}")  # fmt: skip
            _refuse_held_out(c, [c.name] if c.name in metrics else [])
            continue
        known = _Known(dict.fromkeys(metrics, 1.0), "a metric", "the objective's")
        try:
            c(_Known(params, "a hyperparameter", "the space's"), known)
        except _Unknown as e:
            raise InputError(f"constraint {c.description!r} reads {e.args[0]}") from None
        except InputError:
            raise
        except Exception as e:  # wrong arity, or it fails on plain values: before any compute
            raise InputError(
                f"constraint {c.description!r} failed on example values ({type(e).__name__}: {e}); a callable "
                "constraint is fn(params, metrics) -> bool, both dicts of plain Python values"
            ) from None
        _refuse_held_out(c, known.read)
    return out


def _refuse_held_out(c: Constraint, read) -> None:
    """A constraint on a held-out (test) metric would select on test data."""
    held = sorted(n for n in read if held_out(n))
    if held:
        raise InputError(
            f"constraint {c.description!r} reads held-out metric(s) {held}: a constraint selects trials, and "
            "selecting on test data spoils it; constrain a validation metric instead"
        )


def feasible(
    constraints: Sequence[Constraint], params: Mapping[str, Any], metrics: Mapping[str, float], trial: str = "a trial"
) -> bool:
    """Whether a trial respects every constraint (a trial with a non-finite metric is judged diverged instead).

    Raises:
      InputError: a constraint raised, or returned no bool, on this trial (``trial`` names it).
    """
    if not constraints or not all(math.isfinite(v) for v in metrics.values()):
        return True
    for c in constraints:
        try:
            if not c(params, metrics):
                return False
        except Exception as e:  # the user's code, on values the example check did not meet
            shown = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v!r}" for k, v in {**params,
                              **metrics}.items())  # fmt: skip
            why = str(e) if isinstance(e, InputError) else f"raised {type(e).__name__}: {e}"
            raise InputError(f"constraint {c.description!r} on {trial} ({shown}): {why}") from e
    return True
