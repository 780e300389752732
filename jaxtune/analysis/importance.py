"""Which hyperparameters mattered: a first-order importance per hyperparameter, with an interval.

The default (``method="variance"``) estimates each hyperparameter's *first-order variance share*
``S_i = Var(E[y | u_i]) / Var(y)`` on its own scale (the unit cube the strategies sample): the
trials are cut into equal-count bins along ``u_i`` (or grouped by value for a choice or a narrow
integer), and the share of the variance that the bin means explain is corrected for the share
that bins of pure noise explain (``1 - (1 - eta^2)(n - 1)/(n - B)``, as adjusted R^2 is). On
uniform samples this estimates the first-order Sobol index (Ishigami: 0.314 / 0.442 / 0, checked
in the tests). It is deterministic (a seeded bootstrap gives the interval) and linear in the
number of trials: 10,000 trials take a fraction of a second.

Other measures answer other questions:

- a *rank correlation* (Spearman) asks "does more help or hurt?" and misses an optimum inside the
  range; it is reported here as the *direction*, beside the best bin;
- *fANOVA* (``method="fanova"``, Optuna's evaluator on a random forest) splits the variance of a
  fitted surrogate, interactions included in the total;
- *PED-ANOVA* (``method="ped_anova"``, Optuna's) asks which hyperparameters set the *top* trials
  apart from the rest: what matters for getting the best, not for the average.

By default the metric is turned into ranks first (``transform="rank"``): a loss that explodes for
a few learning rates would otherwise own all the variance, and diverged trials (NaN/Inf) can take
part as the worst rank instead of being dropped. Coarse-to-fine rounds after the first sample a
shrinking box, so by default only the rounds that sample the whole space are used (see
:func:`uniform_rounds`); an estimate from later rounds is labelled ``local``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxtune.errors import InputError, InputTypeError, MissingDependencyError

if TYPE_CHECKING:
    from jaxtune.result import Result

METHODS = ("variance", "fanova", "ped_anova")
TRANSFORMS = ("rank", "none")


@dataclasses.dataclass(frozen=True)
class Importance:
    """One hyperparameter's importance.

    Attributes:
      name: the hyperparameter.
      value: the estimate (for ``"variance"``: its first-order share of the metric's variance, in [0, 1]).
      low, high: the interval (bootstrap percentiles; equal to ``value`` where a method gives none).
      direction: ``"higher is better"``, ``"lower is better"``, ``"no clear direction"`` or
        ``"best inside"`` (an optimum inside the range, which a rank correlation would miss), on
        the parameter's own scale.
      best_at: the parameter's value at the centre of the best bin.
      local: True when the trials came from a zoomed-in box (later coarse-to-fine rounds), so
        the estimate describes that region, not the whole space.
    """

    name: str
    value: float
    low: float
    high: float
    direction: str
    best_at: Any
    local: bool = False


def _groups(x: np.ndarray, bins: int) -> tuple[np.ndarray, int]:
    """Bin index per row: by distinct value when there are at most ``bins`` of them, else
    equal-count bins by rank (robust to the uneven spread of a zoomed search)."""
    values, inverse = np.unique(x, return_inverse=True)
    if len(values) <= bins:
        return inverse.reshape(-1), len(values)
    order = np.argsort(x, kind="stable")
    g = np.empty(len(x), np.int64)
    g[order] = np.arange(len(x)) * bins // len(x)
    return g, bins


def _eta2(g: np.ndarray, k: int, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Adjusted share of the variance of ``y`` explained by group means, for weight vectors ``w[b, n]``."""
    n = w.sum(1)
    mean = (w * y).sum(1) / n
    total = (w * (y - mean[:, None]) ** 2).sum(1)
    count = np.stack([np.bincount(g, wb, minlength=k) for wb in w])
    sums = np.stack([np.bincount(g, wb * y, minlength=k) for wb in w])
    groups = (count > 0).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        between = (sums**2 / np.where(count > 0, count, 1)).sum(1) - n * mean**2
        eta2 = np.where(total > 0, between / total, 0.0)
        adjusted = 1 - (1 - eta2) * (n - 1) / np.maximum(n - groups, 1)
    return np.clip(adjusted, 0.0, 1.0)


def first_order(
    u: np.ndarray,
    y: np.ndarray,
    *,
    bins: int | None = None,
    bootstrap: int = 200,
    level: float = 0.9,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First-order variance shares of ``y`` over each column of ``u`` (see the module docstring).

    Args:
      u: ``[n, d]`` coordinates (unit cube, or any scale: only their order and ties matter).
      y: ``[n]`` finite values.
      bins: bins per coordinate (default ``clip(sqrt(n), 3, 50)``: on Ishigami and on an optimum
        inside the range, less bias than fewer bins at about the same spread).
      bootstrap: resamples for the interval (0: none).
      level: the interval's coverage.
      seed: the bootstrap's seed (same inputs, same numbers).

    Returns:
      ``(value[d], low[d], high[d], best_bin_centre[d])``, the last in ``u``'s units, where
      lower ``y`` is better.
    """
    u, y = np.asarray(u, np.float64), np.asarray(y, np.float64)
    if u.ndim != 2 or y.shape != (u.shape[0],):
        raise InputError(f"first_order: need u[n, d] and y[n], got shapes {u.shape} and {y.shape}")
    if not np.isfinite(y).all():
        raise InputError("first_order: y must be finite (rank-transform it, or drop diverged trials)")
    n, d = u.shape
    bins = bins or int(np.clip(math.isqrt(n), 3, 50))
    rng = np.random.default_rng(seed)
    # Poisson-free bootstrap as weights: row counts of n draws with replacement, shared by all columns.
    weights = [np.ones((1, n))]
    if bootstrap:
        draws = rng.integers(0, n, size=(bootstrap, n))
        weights.append(np.stack([np.bincount(row, minlength=n) for row in draws]).astype(np.float64))
    value, low, high, best = (np.zeros(d) for _ in range(4))
    for j in range(d):
        g, k = _groups(u[:, j], bins)
        value[j] = _eta2(g, k, y, weights[0])[0]
        if bootstrap:
            # Resampled rows repeat, which biases eta^2 upward: the interval is the bootstrap's
            # spread around its own median, placed at the estimate.
            boot = _eta2(g, k, y, weights[1])
            spread = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2]) - np.median(boot)
            low[j], high[j] = np.clip(value[j] + spread, 0.0, 1.0)
        else:
            low[j] = high[j] = value[j]
        count = np.bincount(g, minlength=k)
        means = np.bincount(g, y, minlength=k) / np.maximum(count, 1)
        means[count == 0] = np.inf
        b = int(np.argmin(means))
        best[j] = float(np.median(u[g == b, j]))
    return value, low, high, best


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), 0-based."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse.reshape(-1), r)
    return (sums / counts)[inverse.reshape(-1)]


def _direction(u: np.ndarray, y: np.ndarray) -> str:
    """``"best inside"`` where the best bin lies inside the range and is better than the bins at
    both ends by more than two standard errors (an optimum a rank correlation would miss), else
    Spearman's sign (``y``: lower is better) — unless the best bin is not at the end that sign
    favours: then ``"no clear direction"`` (a trend and an inner best bin, neither clear enough,
    would read as "higher is better; best near" a middle value)."""
    g, k = _groups(u, int(np.clip(math.isqrt(len(u)) // 2, 3, 20)))
    count = np.bincount(g, minlength=k)
    b = None
    if k >= 3 and (count >= 2).all():
        mean = np.bincount(g, y, minlength=k) / count
        var = np.bincount(g, (y - mean[g]) ** 2, minlength=k) / (count - 1)
        se = np.sqrt(var / count)
        b = int(np.argmin(mean))
        if 0 < b < k - 1 and all(mean[e] - mean[b] > 2 * math.hypot(se[e], se[b]) for e in (0, k - 1)):
            return "best inside"
    rho = np.corrcoef(_ranks(u), _ranks(y))[0, 1] if np.ptp(u) > 0 and np.ptp(y) > 0 else 0.0
    if b is not None and b != (k - 1 if rho < 0 else 0):
        return "no clear direction"
    return "higher is better" if rho < 0 else "lower is better"


def uniform_rounds(result) -> list[int] | None:
    """The rounds of ``result`` whose trials sample the whole space (None: all of them).

    Coarse-to-fine zooms after round 0; successive halving and Hyperband evaluate survivors of
    round 0 at larger budgets: for those, round 0 only. Every round of random or grid search,
    and every initial configuration of a population (ASHA, PBT, median stopping), counts.
    """
    from jaxtune.strategies.base import traits

    return [0] if traits((result.config.get("strategy") or {}).get("name"))["zooms"] else None


def _require_independent(result: Any) -> None:
    """Refuses a scheduler's study (PBT, ASHA, median stopping): its trials are not independent
    samples trained alike. (Halving's rungs are: their budget is a parameter importance leaves out.)"""
    if (result.config.get("strategy") or {}).get("name") in ("pbt", "asha", "median") or result.lineage:
        raise InputError(
            "importance: a population's trials are not independent samples trained alike (PBT's continue each "
            "other's states with changed hyperparameters; ASHA's stop at different steps), so their scores do not "
            "compare; measure importance on a round-based sweep (random or halton)"
        )


def _check_arguments(result, method: str, transform: str) -> None:
    """Refuses what :func:`importance` cannot use, naming it."""
    from jaxtune.result import Result

    if not isinstance(result, Result):
        raise InputTypeError(f"importance: result must be a jt.Result (from jt.tune or jt.Result.load), got {result!r}")
    if method not in METHODS:
        raise InputError(f"importance: unknown method {method!r}; allowed are {', '.join(map(repr, METHODS))}")
    if transform not in TRANSFORMS:
        raise InputError(f"importance: transform must be one of {TRANSFORMS}, got {transform!r}")


def importance(
    result: Result,
    *,
    method: str = "variance",
    rounds: str | Sequence[int] = "uniform",
    transform: str = "rank",
    bootstrap: int = 200,
    seed: int = 0,
) -> list[Importance]:
    """How much each hyperparameter of a study mattered, most important first.

    Args:
      result: a :class:`jaxtune.Result` (from :func:`jaxtune.tune` or ``Result.load``).
      method: ``"variance"`` (first-order variance share with a bootstrap interval, home-made,
        see the module docstring), ``"fanova"`` or ``"ped_anova"`` (Optuna's evaluators, which
        need ``pip install optuna``; fANOVA's interval spans 5 forest seeds).
      rounds: ``"uniform"`` (the rounds that sample the whole space, :func:`uniform_rounds`),
        ``"all"``, or a list of round numbers. Results from zoomed rounds are marked ``local``.
      transform: ``"rank"`` (the default: robust to exploding losses; diverged trials count as
        the worst) or ``"none"`` (raw values, diverged trials dropped).
      bootstrap: resamples for the interval of ``"variance"``.
      seed: seed of the bootstrap (or of the forests): same study, same numbers.

    Returns:
      One :class:`Importance` per hyperparameter (a study's fidelity parameter excluded).

    Examples:
      >>> for imp in jt.importance(result):
      ...     print(f"{imp.name}: {imp.value:.2f} [{imp.low:.2f}, {imp.high:.2f}] {imp.direction}")
    """
    _check_arguments(result, method, transform)
    _require_independent(result)
    chosen = uniform_rounds(result) if rounds == "uniform" else None if rounds == "all" else rounds
    if isinstance(chosen, str) or (chosen is not None and not all(isinstance(r, int) for r in chosen)):
        raise InputError(f"importance: rounds must be 'uniform', 'all' or a list of ints, got {rounds!r}")
    trials = [t for t in result.trials if chosen is None or t["round"] in chosen]
    from jaxtune.strategies.base import traits

    zooms_into_a_box = traits((result.config.get("strategy") or {}).get("name"))["has_box"]
    local = zooms_into_a_box and any(t["round"] > 0 for t in trials)
    fidelity = (result.config.get("strategy") or {}).get("fidelity")
    every = result.param_names
    names = [n for n in every if n != fidelity]
    scores = np.asarray([result.score(t) for t in trials], np.float64)  # minimised; +inf: diverged
    if transform == "none":
        keep = np.isfinite(scores)
        trials, scores = [t for t, k in zip(trials, keep) if k], scores[keep]
    else:
        scores = _ranks(np.where(np.isfinite(scores), scores, np.inf))
    if len(trials) < 8:
        raise InputError(
            f"importance: {len(trials)} usable trials in rounds {chosen if chosen is not None else 'all'}; "
            "need at least 8 (try rounds='all')"
        )
    index = [every.index(n) for n in names]
    u = np.asarray([[t["unit"][i] for i in index] for t in trials], np.float64)
    # A conditional hyperparameter is judged on the trials where it is active (and left out with
    # fewer than 8 of them): its share says how much it matters within its branch.
    active = np.asarray([[n in t["params"] for n in names] for t in trials])
    if not active.all() and method != "variance":
        raise InputError(
            f"importance: method {method!r} needs every hyperparameter in every trial; this space is conditional "
            "(some are absent where inactive): use method='variance', which judges each on the trials that have it"
        )
    whole = None  # every parameter in every trial: one analysis of all columns
    if active.all():
        whole = (first_order(u, scores, bootstrap=bootstrap, seed=seed) if method == "variance"
                 else _optuna(method, names, u, scores, seed))  # fmt: skip
    out = []
    for j, n in enumerate(names):
        rows = np.flatnonzero(active[:, j])
        if rows.size < 8:
            continue
        column = (
            whole
            if whole is not None
            else first_order(u[rows, j : j + 1], scores[rows], bootstrap=bootstrap, seed=seed)
        )
        value, low, high, best = (a[0 if whole is None else j] for a in column)
        near = rows[int(np.argmin(np.abs(u[rows, j] - best)))]
        out.append(
            Importance(
                name=n,
                value=float(value),
                low=float(low),
                high=float(high),
                direction=_direction(u[rows, j], scores[rows]),
                best_at=trials[near]["params"][n],
                local=local,
            )
        )
    return sorted(out, key=lambda i: -i.value)


def _optuna(method: str, names: list[str], u: np.ndarray, y: np.ndarray, seed: int):
    """Optuna's fANOVA or PED-ANOVA on the unit-cube coordinates (each parameter on its own scale)."""
    try:
        import optuna
    except ImportError as e:
        raise MissingDependencyError(f"importance method {method!r} needs optuna: pip install optuna") from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # "normalize" and PED-ANOVA are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _optuna_evaluate(optuna, method, names, u, y, seed)


def _optuna_evaluate(optuna, method: str, names: list[str], u: np.ndarray, y: np.ndarray, seed: int):
    dist = {n: optuna.distributions.FloatDistribution(0.0, 1.0) for n in names}
    study = optuna.create_study(direction="minimize")
    study.add_trials(
        [
            optuna.trial.create_trial(params=dict(zip(names, map(float, row))), distributions=dist, value=float(v))
            for row, v in zip(u, y)
        ]
    )
    if method == "fanova":
        runs = [
            optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed + s), normalize=False
            )
            for s in range(5)
        ]
        table = np.asarray([[r[n] for n in names] for r in runs])
        value, low, high = table.mean(0), table.min(0), table.max(0)
    else:
        got = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), normalize=False
        )
        value = np.asarray([got[n] for n in names])
        low = high = value
    _, _, _, best = first_order(u, y, bootstrap=0)
    return value, low, high, best


NO_EFFECT = 0.01  # a share below this says nothing about which way is better


def direction_shown(imp: Importance) -> str:
    """``imp.direction``, or ``"no clear effect"`` for a parameter whose share is under 1%."""
    return "no clear effect" if imp.value < NO_EFFECT else imp.direction


def table(imps: Sequence[Importance]) -> str:
    """A plain-text table of importances (for reports and the terminal)."""
    width = max([len(i.name) for i in imps] + [14])
    lines = [f"{'hyperparameter':<{width}}  importance  interval        direction         best near"]
    for i in imps:
        best = f"{i.best_at:.3g}" if isinstance(i.best_at, float) else str(i.best_at)
        tag = "  (local)" if i.local else ""
        lines.append(
            f"{i.name:<{width}}  {i.value:10.3f}  [{i.low:.3f}, {i.high:.3f}]  {direction_shown(i):<16}  {best}{tag}"
        )
    return "\n".join(lines)
