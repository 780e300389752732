"""A trial as it is stored and reported, and how trials are scored: one place for both.

Every driver (rounds, populations, continued halving), :class:`~jaxtune.study.storage.Storage` and
:class:`~jaxtune.Result` use :class:`TrialRecord`, built by :func:`trial_record` alone, so the
rules a reader relies on hold everywhere: any non-finite metric makes a trial ``"diverged"``; a
trial's ``value`` is its final evaluation or, with ``select="best_step"``, the best point of its
learning curve; a sweep minimises (``mode="max"`` negates) and a diverged trial scores +inf, so
it is never the best.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from jaxtune.errors import InputError

__all__ = [
    "selection_curve",
    "MODES",
    "SELECT",
    "STATUSES",
    "TrialRecord",
    "trial_record",
    "minimised",
    "lane_scores",
    "select_value",
    "tie_break_spec",
    "AGGREGATES",
    "aggregate",
    "seed_groups",
    "held_out",
]

MODES = ("min", "max")
# How a trial's selection value is read from its evaluations: the last one, or the best one on
# its learning curve (the checkpoint a user would keep with early stopping).
SELECT = ("final", "best_step")
# "stopped": a population scheduler ended it before the full budget (ASHA, PBT's exploits, halving).
# "infeasible": finite, but it breaks a constraint (jaxtune.constraints): never the best.
STATUSES = ("ok", "diverged", "stopped", "infeasible")
# How a configuration trained under several seeds is valued (jt.tune(seeds=K, aggregate=...)).
AGGREGATES = ("mean", "median", "lcb")


def held_out(name: str) -> bool:
    """Whether metric ``name`` is held out (a test metric: its name starts with ``test``): stored,
    shown for the selected trial, kept out of tables unless asked, and never selected or
    constrained on, so nobody chooses on it."""
    return name.startswith("test")


@dataclasses.dataclass(frozen=True, eq=False)
class TrialRecord(Mapping):
    """One finished trial. Read-only; also a mapping (``trial["params"]``), as results always were.

    Attributes:
      round: the round it ran in (a population: the segment its lane started it at).
      slot: its lane in that round.
      params: its hyperparameters as plain Python values (inactive conditional ones absent).
      unit: its unit-cube coordinates.
      metrics: every metric it returned, as floats.
      value: its selection value (see :func:`select_value`); NaN when it has none.
      status: ``"ok"``, ``"diverged"`` (a non-finite metric), ``"stopped"`` (ended early) or
        ``"infeasible"`` (it breaks a constraint).
      seeds: with ``jt.tune(seeds=K)``, the final metrics of each of its K seeds (``metrics`` then
        holds their means, ``value`` their aggregate); empty for a trial of one seed.
      program: the masked sizes of the program that ran it where they are larger than its own
        power-of-two bucket (a larger bucket's program ran it: :mod:`jaxtune.execute.sharing`),
        so a replay binds the same ones; empty otherwise. An attribute, not a mapping key.
    """

    round: int
    slot: int
    params: Mapping[str, Any]
    unit: Sequence[float]
    metrics: Mapping[str, float]
    value: float
    status: str
    seeds: tuple[Mapping[str, float], ...] = ()
    program: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        if name not in _FIELDS:
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(_FIELDS)

    def __len__(self) -> int:
        return len(_FIELDS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self) == dict(other)

    __hash__ = None  # its params and metrics are dicts

    @property
    def key(self) -> tuple[int, int]:
        """``(round, slot)``: the trial's identity in its study."""
        return self.round, self.slot

    def score(self, mode: str) -> float:
        """What a sweep minimises for this trial (see :func:`minimised`)."""
        return minimised(self.value, mode, self.status == "ok")


_FIELDS = tuple(f.name for f in dataclasses.fields(TrialRecord) if f.name != "program")


def trial_record(
    round: int,
    slot: int,
    params: Mapping[str, Any],
    unit: Sequence[float],
    metrics: Mapping[str, float],
    metric: str,
    mode: str,
    select: str = "final",
    curve: Sequence[float] | None = None,
    status: str = "ok",
    feasible: bool = True,
    seeds: Sequence[Mapping[str, float]] = (),
    how: str = "mean",
    program: Mapping[str, int] | None = None,
) -> TrialRecord:
    """The one place a trial's record is made.

    Args:
      round, slot, params, unit: the trial's identity and hyperparameters.
      metrics: its final metrics; any non-finite one makes it ``"diverged"``, whatever ``status``.
      metric, mode, select: how its ``value`` is read (see :func:`select_value`).
      curve: its learning curve of ``metric`` (for ``select="best_step"``), if it has one.
      status: ``"ok"`` or ``"stopped"`` for a trial whose metrics are finite.
      feasible: False makes a finite trial ``"infeasible"`` (see :func:`jaxtune.constraints.feasible`).
      seeds: the final metrics of each seed of a configuration trained under several; ``metrics``
        is then ignored (their means are stored) and ``curve`` is the seeds' aggregated curve.
      how: how the seeds' values of ``metric`` make the trial's (see :func:`aggregate`).
      program: the masked sizes of the program that ran it, where larger than its own bucket.
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    seeds = tuple({n: float(v) for n, v in s.items()} for s in seeds)
    if seeds:
        metrics = {n: float(np.mean([s[n] for s in seeds])) for n in seeds[0]}
        final = aggregate([s[metric] for s in seeds], how, mode)
    else:
        metrics = {n: float(v) for n, v in metrics.items()}
        final = metrics[metric]
    ok = all(math.isfinite(v) for v in metrics.values())
    value, _ = select_value(final, None if curve is None else list(curve), mode, select)
    return TrialRecord(
        round=int(round),
        slot=int(slot),
        params=dict(params),
        unit=[float(x) for x in unit],
        metrics=metrics,
        value=float(value) if value is not None else math.nan,
        status=("infeasible" if not feasible else status) if ok else "diverged",
        seeds=seeds,
        program={n: int(v) for n, v in (program or {}).items()},
    )


def seed_groups(per_seed: Mapping[str, Any], k: int, objectives: Sequence[tuple[str, str]], how: str) -> dict:
    """Lane metrics of configurations trained under ``k`` seeds each (``k`` consecutive lanes) as
    one value per configuration: the seeds' means, and for each of ``objectives`` (``(metric,
    mode)``: the selection metric, or every objective) their :func:`aggregate`. What continued
    halving and a population decide on, and what their stored curve points hold."""
    if k == 1:
        return dict(per_seed)
    out = {n: np.asarray(v).reshape(-1, k).mean(axis=1) for n, v in per_seed.items()}
    for name, mode in objectives:
        rows = np.asarray(per_seed[name]).reshape(-1, k)
        out[name] = np.asarray([aggregate(row, how, mode) for row in rows])
    return out


def aggregate(values: Sequence[float], how: str, mode: str) -> float:
    """One value from a configuration's seeds: their ``"mean"``, ``"median"``, or ``"lcb"``, the
    pessimistic bound mean − standard error for ``mode="max"`` (mean + standard error for
    ``"min"``): a configuration good on every seed beats one lucky on a few. Non-finite if any is.

    Examples:
      >>> aggregate([0.8, 0.9, 1.0], "lcb", "max")  # 0.9 - 0.1 / sqrt(3)
      0.8422649730810374
    """
    v = np.asarray(values, np.float64)
    if not np.all(np.isfinite(v)):
        return math.nan
    if how == "mean":
        return float(np.mean(v))
    if how == "median":
        return float(np.median(v))
    if how == "lcb":
        se = float(np.std(v, ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
        return float(np.mean(v)) + (se if mode == "min" else -se)
    raise InputError(f"aggregate must be one of {AGGREGATES}, got {how!r}")


def minimised(value: float | None, mode: str, ok: bool = True) -> float:
    """The score a sweep minimises: ``value`` for ``mode="min"``, ``-value`` for ``"max"``, and
    +inf for a diverged trial or a non-finite value, so that it is never the best."""
    if not ok or value is None or not math.isfinite(value):
        return math.inf
    return value if mode == "min" else -value


def lane_scores(metrics: Mapping[str, Any], metric: str, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """A batch's scores (:func:`minimised` lane by lane, float32) and which lanes are finite in
    every metric: what a scheduler or halving decides on."""
    finite = np.all([np.isfinite(np.asarray(v)) for v in metrics.values()], axis=0)
    values = np.asarray(metrics[metric], np.float64)
    return np.where(finite, values if mode == "min" else -values, np.inf).astype(np.float32), finite


def tie_break_spec(tie_break: Any) -> tuple[str, str] | None:
    """``tie_break`` as ``(metric, mode)``: a bare name is minimised (a loss, the usual tie-breaker)."""
    if tie_break is None:
        return None
    if isinstance(tie_break, str) and tie_break:
        return tie_break, "min"
    if (
        isinstance(tie_break, (tuple, list))
        and len(tie_break) == 2
        and isinstance(tie_break[0], str)
        and tie_break[1] in MODES
    ):
        return tie_break[0], tie_break[1]
    raise InputError(f"tie_break must be a metric name or (name, 'min' | 'max'), got {tie_break!r}")


def select_value(final: float, curve: list[float] | None, mode: str, select: str) -> tuple[float, int | None]:
    """A trial's selection value and the index of its curve point (None: the final evaluation).

    ``select="final"`` takes the final evaluation; ``"best_step"`` the best finite value of the
    learning curve (the final evaluation is its last point), ties to the earliest step.
    """
    if select == "final" or not curve:
        return final, None
    scores = [minimised(v, mode) for v in curve]
    i = min(range(len(scores)), key=scores.__getitem__)
    return (curve[i], i) if math.isfinite(scores[i]) else (final, None)


def selection_curve(stored_curves, key: tuple[int, int], points, metric: str, select: str) -> list[float] | None:
    """A trial's learning curve of ``metric`` for its selection value with ``select="best_step"``
    (None with ``"final"``, which needs none): the stored points, read once per segment or rung by
    ``stored_curves()``, then this segment's or rung's ``points`` (``(round, slot, step, metrics)``),
    not yet stored."""
    if select == "final":
        return None
    stored = stored_curves().get(key, [])
    return [m[metric] for _, m in stored] + [m[metric] for r, s, _, m in points if (r, s) == key]
