"""Warm start: a stored study's trials as what a new study's strategy is told before its first round.

A trial fits the new space when it has a value for every parameter the new space has (the same
names; an inactive conditional one may be absent) and each value lies in the new range (a
``Choice``: among its values). Trials that do not fit are dropped and counted; a study whose
parameter names differ from the new space's is refused before anything is traced. Each kept
trial becomes its point of the new unit cube and its score for the new study (lower is better:
its stored value of the new study's metric, minimised for its mode; +inf for a diverged or
infeasible trial, or one without that metric).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any

import numpy as np

from jaxtune.errors import InputError, InputTypeError
from jaxtune.pareto import promotion_order
from jaxtune.result import Result
from jaxtune.space import Choice, Space
from jaxtune.study.records import minimised

__all__ = ["WarmStart", "load_warm_start"]


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """The stored trials a strategy is told first: points ``u[W, d]`` of the new unit cube, their
    ``scores[W]`` (lower is better; None until :meth:`scored`), and where they came from (stored
    with the new study)."""

    u: np.ndarray
    trials: tuple
    source: dict[str, Any]
    scores: np.ndarray | None = None
    points: np.ndarray | None = None  # [W, objectives] with several objectives (each minimised)

    def scored(self, metric: str, mode: str, objectives: tuple = ()) -> WarmStart:
        """The points ordered best first with their scores for a study of ``metric`` (``mode``): a
        batch filled by repeating points repeats the best. With several ``objectives``
        (``((metric, mode), ...)``) they are ordered by non-dominated rank, ties by hypervolume
        contribution (:func:`jaxtune.pareto.promotion_order`), ``scores`` is that place (+inf for
        a trial without every objective) and ``points`` every objective."""
        def value(t, name, how):
            return minimised(t["metrics"].get(name), how, t["status"] in ("ok", "stopped"))

        if objectives:
            points = np.asarray([[value(t, n, m) for n, m in objectives] for t in self.trials], np.float64)
            order = promotion_order(points)
            scores = np.where(np.all(np.isfinite(points[order]), axis=1), np.arange(len(order)), np.inf)
            points = points[order].astype(np.float32)
        else:
            scores = np.asarray([value(t, metric, mode) for t in self.trials], np.float64)
            order, points = np.argsort(scores, kind="stable"), None
            scores = scores[order]
        return dataclasses.replace(self, u=self.u[order], trials=tuple(self.trials[i] for i in order),
                                   scores=scores.astype(np.float32), points=points,
                                   source={**self.source, "metric": metric})  # fmt: skip

    def best(self, count: int) -> np.ndarray:
        """The unit points of up to ``count`` of the best trials with a finite score (best first):
        what a bracket or a population starts from."""
        return self.u[np.isfinite(self.scores)][:count]

    def describe(self) -> dict[str, Any]:
        """Where the study started from, as its configuration stores it (a digest of the points)."""
        digest = hashlib.sha256(self.u.astype(np.float32).tobytes() + np.asarray(self.scores, np.float32).tobytes())
        return {**self.source, "digest": digest.hexdigest()[:16]}


def _load(source: Any) -> tuple[Result, dict[str, Any]]:
    """The stored study ``source`` names: a Result, a path, or ``(path, study)``."""
    if isinstance(source, Result):
        return source, {"from": source.storage or "a Result in memory", "study": source.study}
    study = None
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], str):
        source, study = source
    if not isinstance(source, (str, os.PathLike)):
        raise InputTypeError(f"warm_start must be a jt.Result, a study file's path or (path, study), got {source!r}")
    if not os.path.isfile(source):
        raise InputError(f"warm_start: no study file at {os.fspath(source)!r}")
    result = Result.load(source, study)
    return result, {"from": os.fspath(source), "study": result.study}


def _fits(space: Space, params: dict[str, Any]) -> bool:
    """Whether a trial's parameters lie in ``space`` (every active parameter present and in range)."""
    for name, p in space.params.items():
        if name not in params:
            if not p.when:
                return False
            continue
        v = params[name]
        if isinstance(p, Choice):
            if v not in p.values:
                return False
        elif not (isinstance(v, (int, float)) and p.low <= v <= p.high):
            return False
    return True


def load_warm_start(source: Any, space: Space) -> WarmStart:
    """The trials of the stored study ``source`` that fit ``space``, as points of its unit cube
    (``source["dropped"]`` counts the others); scores come with :meth:`WarmStart.scored`.

    Raises:
      InputError: the stored study's parameters are not the space's (named), or none of its trials fits.
    """
    result, where = _load(source)
    stored = set(result.param_names)
    if stored != set(space.names):
        raise InputError(
            f"warm_start: {where['from']} (study {where['study']!r}) has parameters {sorted(stored)}, the space has "
            f"{sorted(space.names)}: a warm start needs the same names (other ranges are fine)"
        )
    kept = [t for t in result.trials if _fits(space, t["params"])]
    if not kept:
        raise InputError(f"warm_start: none of the {len(result.trials)} trials of {where['from']} lies in the space "
                         f"{space.describe()}")  # fmt: skip
    hp = {n: np.asarray([_index(space, n, t["params"].get(n)) for t in kept]) for n in space.names}
    active = {n: v for n, v in hp.items() if not any(x is None for x in v)}
    u = np.asarray(space.to_unit(active), np.float32)
    for j, name in enumerate(space.names):  # a conditional parameter inactive in some trials
        if name not in active:
            u[:, j] = [0.5 if t["params"].get(name) is None else float(np.asarray(space.params[name].to_unit(
                _index(space, name, t["params"][name])))) for t in kept]  # fmt: skip
    where.update(trials=len(kept), dropped=len(result.trials) - len(kept))
    return WarmStart(u, tuple(kept), where)


def _index(space: Space, name: str, value: Any) -> Any:
    """A stored value as the space's arrays hold it (a non-numeric choice travels as its index)."""
    p = space.params[name]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in getattr(p, "values", ()))
    return p.values.index(value) if isinstance(p, Choice) and value is not None and not numeric else value
