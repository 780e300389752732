"""Any Optuna sampler as a jaxtune strategy: it proposes a batch of N trials a round.

Optuna's samplers (TPE, GP, CMA-ES, QMC, ...) run on the host, one proposal at a time, so this
strategy is a *host* strategy: each round it asks an Optuna study for ``num_trials`` points of the
unit cube (every hyperparameter on jaxtune's own scale: log, a true log(1 - x), choices by cell),
jaxtune trains them at once, and it tells the study their scores (diverged trials as failed).
TPE runs with ``constant_liar=True`` so the points of one batch spread out instead of piling on
the same promising spot. Proposals are deterministic for a seed, so a resumed sweep asks the same
points again. Optional dependency: ``pip install optuna``.

With several objectives (``metric=[...]``) the Optuna study is a multi-objective one and is told
every objective of every trial (not a scalarisation): TPE (Optuna's default) and NSGA-II
(``sampler="nsga2"``) then propose from the front as they do in Optuna.

    jt.tune(objective, space, "optuna", trials=16, rounds=4, strategy_options={"sampler": "tpe"})
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxtune.errors import InputError, MissingDependencyError
from jaxtune.space import Space
from jaxtune.strategies.base import register

SAMPLERS = ("tpe", "gp", "cmaes", "qmc", "random", "nsga2")


class HostStrategy:
    """A strategy that proposes on the host (not jittable): ``ask(seed, round) -> u[num_trials, dim]``
    and ``tell(u, scores)``, called once a round in order (a resumed sweep replays them).

    ``objectives`` is set before the first ``ask`` by a sweep of several objectives; ``tell`` then
    gets ``values[num_trials, objectives]`` (each minimised, +inf for a trial that does not count)
    instead of one score a trial."""

    num_trials: int
    dim: int
    num_rounds: int | None = None
    objectives: int = 1

    def set_objectives(self, count: int) -> None:
        """Tells the strategy it proposes for ``count`` objectives (called once, before any ``ask``)."""
        self.objectives = count

    def ask(self, seed: int, r: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def tell(self, u: np.ndarray, scores: np.ndarray) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def warm(self, seed: int, u: np.ndarray, scores: np.ndarray) -> None:  # pragma: no cover - interface
        """Takes a stored study's points and scores as finished trials, before the first ``ask``."""
        raise NotImplementedError


def _optuna():
    try:
        import optuna
    except ImportError as e:
        raise MissingDependencyError("strategy 'optuna' needs optuna: pip install optuna") from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class _OptunaStrategy(HostStrategy):
    def __init__(self, spec: OptunaSampler, space: Space, num_trials: int):
        self.spec, self.names, self.num_trials, self.dim = (
            spec,
            [f"u{i}" for i in range(space.dim)],
            num_trials,
            space.dim,
        )
        self.study, self.pending = None, []

    def set_objectives(self, count: int) -> None:
        if count > 1 and self.spec.sampler == "cmaes":
            raise InputError("optuna: sampler 'cmaes' optimises one objective; for several objectives use 'tpe' "
                             "(Optuna's default), 'nsga2', 'gp', 'qmc' or 'random'")  # fmt: skip
        self.objectives = count

    def _sampler(self, optuna, seed: int):
        kind, options = self.spec.sampler, dict(self.spec.options)
        if kind == "tpe":
            return optuna.samplers.TPESampler(seed=seed, **{"constant_liar": True, **options})
        if kind == "gp":
            return optuna.samplers.GPSampler(seed=seed, **options)
        if kind == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, **options)
        if kind == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, **options)
        if kind == "qmc":
            return optuna.samplers.QMCSampler(seed=seed, **options)
        return optuna.samplers.RandomSampler(seed=seed, **options)

    def _study(self, optuna, seed: int):
        if self.study is None:
            import warnings

            with warnings.catch_warnings():  # constant_liar and some samplers are "experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study = optuna.create_study(sampler=self._sampler(optuna, seed),
                                                 directions=["minimize"] * self.objectives)  # fmt: skip
        return self.study

    def warm(self, seed: int, u: np.ndarray, scores: np.ndarray) -> None:
        """Adds a stored study's points to the Optuna study as finished trials (failed if not finite)."""
        optuna = _optuna()
        study = self._study(optuna, seed)
        dist = {n: optuna.distributions.FloatDistribution(0.0, 1.0) for n in self.names}
        for row, score in zip(np.asarray(u, np.float64), np.asarray(scores, np.float64)):
            params = dict(zip(self.names, map(float, row)))
            if np.all(np.isfinite(score)):  # one score, or every objective's
                values = {"value": float(score)} if np.ndim(score) == 0 else {"values": [float(v) for v in score]}
                study.add_trial(optuna.trial.create_trial(params=params, distributions=dist, **values))
            else:
                study.add_trial(optuna.trial.create_trial(params=params, distributions=dist,
                                                          state=optuna.trial.TrialState.FAIL))  # fmt: skip

    def ask(self, seed: int, r: int) -> np.ndarray:
        optuna = _optuna()
        self._study(optuna, seed)
        dist = {n: optuna.distributions.FloatDistribution(0.0, 1.0) for n in self.names}
        self.pending = [self.study.ask(dist) for _ in range(self.num_trials)]
        return np.asarray([[t.params[n] for n in self.names] for t in self.pending], np.float32)

    def tell(self, u: np.ndarray, scores: np.ndarray) -> None:
        optuna = _optuna()
        for trial, score in zip(self.pending, np.asarray(scores, np.float64)):
            if np.all(np.isfinite(score)):
                self.study.tell(trial, score.tolist() if score.ndim else float(score))
            else:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self.pending = []


@register("optuna")
@dataclasses.dataclass(frozen=True)
class OptunaSampler:
    """An Optuna sampler proposing jaxtune's batches (see the module docstring).

    Args:
      sampler: ``"tpe"`` (default), ``"gp"``, ``"cmaes"``, ``"qmc"``, ``"random"`` or ``"nsga2"``
        (NSGA-II, for several objectives).
      options: keyword arguments for the sampler's constructor (``seed`` comes from the sweep).
    """

    sampler: str = "tpe"
    options: tuple[tuple[str, Any], ...] | dict = ()

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise InputError(f"optuna: unknown sampler {self.sampler!r}; allowed are {', '.join(map(repr, SAMPLERS))}")
        if isinstance(self.options, dict):  # hashable, and stored in a study's description
            object.__setattr__(self, "options", tuple(sorted(self.options.items())))

    def build(self, space: Space, num_trials: int) -> HostStrategy:
        """Binds the sampler to ``space`` and ``num_trials`` points a round (Optuna is imported here)."""
        _optuna()
        return _OptunaStrategy(self, space, num_trials)
