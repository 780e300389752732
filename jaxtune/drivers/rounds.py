"""The rounds driver: rounds of ask -> execute -> tell, stored as they finish, resumable.

Every round, the strategy's compiled ``plan`` asks for a batch of points; the executor runs the
trials not yet stored; each finished chunk is stored before the next one runs; the strategy is
told the round's scores. Resuming needs no saved strategy state: strategies are deterministic
functions of their keys and of what they were told, so a rerun replays ``ask``/``tell`` over the
stored rounds (checking that it asks for the very same points) and carries on from the first
trial not yet stored.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune.constraints import feasible
from jaxtune.drivers.args import Arguments
from jaxtune.errors import InputError, StudyMismatchError
from jaxtune.execute import Executor
from jaxtune.keys import round_keys, seed_keys
from jaxtune.pareto import finite_range, round_weights, scalarised
from jaxtune.progress import ChunkProgress, Progress, print_compiling
from jaxtune.result import Result
from jaxtune.space import Space
from jaxtune.strategies.optuna_sampler import HostStrategy
from jaxtune.strategies.programs import StrategyPrograms
from jaxtune.study.records import aggregate, minimised, trial_record
from jaxtune.study.study import Study, study_config

__all__ = ["check", "run", "driven", "REFUSES"]

REFUSES: dict[str, str] = {}  # every jt.tune argument is honoured


class _HostDriver:
    """The interface of :class:`~jaxtune.strategies.programs.StrategyPrograms` for a strategy that
    proposes on the host (Optuna's samplers): the same trial keys, its points asked and told once a
    round, in order."""

    def __init__(self, strategy: HostStrategy, space: Space, trials: int, seed: int, executor: Executor):
        self.strategy, self.space, self.trials, self.seed = strategy, space, trials, seed
        self.root = jax.random.key(seed)

    def ask(self, r: int):
        """Round ``r``'s ``(u, valid, hp, keys)``."""
        u = jnp.asarray(self.strategy.ask(self.seed, r), jnp.float32)
        _, trial_key = round_keys(self.root, r)
        return u, np.ones((self.trials,), bool), self.space.from_unit(u), jax.random.split(trial_key, self.trials)

    def warm(self, u: np.ndarray, scores: np.ndarray) -> None:
        """Gives the host strategy a stored study's points and scores before its first round."""
        self.strategy.warm(self.seed, u, scores)

    def tell(self, u: jax.Array, scores: np.ndarray) -> None:
        """Tells the host strategy a round's scores (lower is better, +inf for diverged)."""
        self.strategy.tell(np.asarray(u), np.asarray(scores))


class _Seeds:
    """Gathers each configuration's ``k`` seed lanes (trial-major: lane ``i * k + s``) from the
    chunks the executor yields; a configuration is complete once all its seeds have finished."""

    def __init__(self, k: int):
        self.k, self.got = k, {}

    def add(self, idx, metrics, curves) -> list[tuple[int, list[dict], dict]]:
        """``[(configuration, [each seed's metrics], {curve: f[k, S]}), ...]`` completed by this chunk."""
        for j, lane in enumerate(idx):
            i, s = divmod(int(lane), self.k)
            self.got.setdefault(i, {})[s] = ({n: float(v[j]) for n, v in metrics.items()},
                                             {n: np.asarray(v[j]) for n, v in curves.items()})  # fmt: skip
        done = sorted(i for i, seeds in self.got.items() if len(seeds) == self.k)
        out = []
        for i in done:
            got = self.got.pop(i)
            seeds = [got[s] for s in range(self.k)]
            out.append((i, [m for m, _ in seeds], {n: np.stack([c[n] for _, c in seeds]) for n in seeds[0][1]}))
        return out


def _records(r, done, params, u, metric: str, args: Arguments, program):
    """Records (and learning-curve points) of the configurations of round ``r`` that ``done``
    completes, and the first error of a constraint that could not judge one (that configuration
    is left out, to be trained again once the constraint is fixed; the others are stored)."""
    rows, points, error = [], [], None
    for (i, seeds, curves), p in zip(done, params):
        steps, one = curves.get("step"), len(seeds) == 1
        # A configuration's curves: its seeds' means at every step, and the selection metric's
        # aggregate, which select="best_step" reads (one seed: its own curves).
        means = {n: v[0] if one else v.mean(axis=0) for n, v in curves.items() if n != "step"}
        curve = None
        if metric in curves:
            values = curves[metric]
            curve = [float(x) for x in values[0]] if one else [
                aggregate(values[:, c], args.aggregate, args.mode) for c in range(values.shape[1])]  # fmt: skip
        m = seeds[0] if one else {n: float(np.mean([s[n] for s in seeds])) for n in seeds[0]}
        try:
            ok = feasible(args.constraints, p, m, f"trial (round {r}, slot {i})")
        except InputError as e:
            error = error or e
            continue
        rows.append(trial_record(r, i, p, u[i], m, metric, args.mode, args.select, curve, feasible=ok,
                                 seeds=() if one else seeds, how=args.aggregate, program=program(p)))  # fmt: skip
        for c in range(0 if steps is None else steps.shape[1]):
            points.append((r, int(i), int(steps[0, c]), {n: float(v[c]) for n, v in means.items()}))
    return rows, points, error


def _run_round(
    r, args: Arguments, executor, space, study: Study, driver, metric, announced
) -> tuple[Progress | None, str]:
    """Runs round ``r``'s trials not yet stored, stores them chunk by chunk and tells the strategy.

    Returns the round's report (None if nothing ran) and how it ended: ``"done"``, ``"timeout"``
    (the deadline passed; every finished chunk is stored) or ``"empty"`` (the strategy has
    nothing left to ask: a finished grid).
    """
    u, valid, hp, keys = driver.ask(r)
    if not valid.any():
        return None, "empty"
    u_np = np.asarray(u)
    stored = {s: study.done[(r, s)] for s in np.flatnonzero(valid) if (r, s) in study.done}
    for s, t in stored.items():
        if np.max(np.abs(np.asarray(t["unit"]) - u_np[s])) > 1e-5:
            raise StudyMismatchError(
                f"stored trial (round {r}, slot {s}) of study {study.name!r} does not match what the strategy "
                "asks now (did the strategy code or the jax version change?); use a new study name"
            )
    missing = np.asarray([s for s in np.flatnonzero(valid) if s not in stored], dtype=np.int64)
    t0 = time.perf_counter()
    k = args.seeds  # each configuration's seeds are lanes of the same batch
    lanes_hp = hp if k == 1 else {n: jnp.repeat(v, k, axis=0) for n, v in hp.items()}
    if not missing.size:  # stored: its programs are still the study's (what later rounds share)
        executor.share(lanes_hp)
    else:
        lanes = (missing[:, None] * k + np.arange(k)).ravel()
        seeds = _Seeds(k)
        if args.verbose:
            new = [p for p in executor.programs_for(lanes_hp, only=lanes) if p[:3] not in announced]
            if new:  # programs no earlier round ran: compiled now (or loaded from JAX's cache)
                announced.update(p[:3] for p in new)
                named = [(executor.trial_fn.describe(b), n, w) for b, w, _, n in new]
                print_compiling(r, args.rounds, named, lanes.size)
        chunks = ChunkProgress(r, args.rounds, int(missing.size), executor.compiles) if args.verbose else None
        for idx, metrics, curves in executor.run(lanes_hp, seed_keys(keys, k), only=lanes, group=k):
            done = seeds.add(idx, metrics, curves)
            configs = np.asarray([i for i, _, _ in done], np.int64)
            params = space.to_python({n: np.asarray(v)[configs] for n, v in hp.items()})
            rows, points, error = _records(r, done, params, u_np, metric, args, executor.program_sizes)
            study.write(rows, points)
            if error is not None:  # the chunk's other trials are stored
                raise InputError(f"{error}; the {len(rows)} other trials of its chunk are stored: fix the constraint "
                                 "and rerun to resume") from error.__cause__  # fmt: skip
            if chunks is not None:
                chunks.update(len(idx), executor.compiles)
            if args.past_deadline() and not all((r, s) in study.done for s in missing):
                return None, "timeout"  # a safe point: every finished chunk is stored
    seconds = time.perf_counter() - t0
    driver.tell(u, _told(r, valid, study, args))
    if not missing.size:
        return None, "done"
    return (
        Progress(
            unit="round",
            round=r,
            rounds=args.rounds,
            ran=int(missing.size),
            seconds=seconds,
            trials_per_s=missing.size / max(seconds, 1e-9),
            metric=metric,
            best=None,  # filled in by tune, which knows the best of every round so far
            diverged=int(sum(study.done[(r, s)]["status"] == "diverged" for s in missing)),
            compiles=executor.compiles,
        ),
        "done",
    )


def _told(r: int, valid: np.ndarray, study: Study, args: Arguments) -> np.ndarray:
    """Round ``r``'s scores for the strategy (lower is better, +inf for diverged, infeasible or
    empty lanes); with several objectives, the round's random Chebyshev scalarisation
    (:mod:`jaxtune.pareto`), normalised over the trials of rounds up to ``r`` — or, for a strategy
    built for several objectives (``gp``, Optuna's samplers), every objective, ``[trials, objectives]``."""
    scores = np.full((args.trials,), np.inf, np.float32)
    slots = np.flatnonzero(valid)
    if not args.objectives:
        for s in slots:
            scores[s] = study.done[(r, s)].score(args.mode)
        return scores

    def point(t):
        return [minimised(t["metrics"].get(n), m, t["status"] == "ok") for n, m in args.objectives]

    dim = len(args.objectives)
    points = np.full((args.trials, dim), np.inf)
    for s in slots:
        points[s] = point(study.done[(r, s)])
    if getattr(args.strategy, "objectives", 1) > 1:
        return points
    seen = np.asarray([point(t) for (tr, _), t in study.done.items() if tr <= r], np.float64).reshape(-1, dim)
    low, high = finite_range(seen)
    return scalarised(points, round_weights(args.seed, r, dim), low, high).astype(np.float32)


def driven(args: Arguments) -> frozenset[str]:
    """None: the objective reads every hyperparameter of the space itself."""
    return frozenset()


def check(objective, space: Space, args: Arguments) -> None:
    """Every objective and space can run in rounds (the strategy was built and checked by tune)."""


def run(objective, space: Space, args: Arguments, executor: Executor, metric: str, storage) -> Result:
    """Runs (or resumes) a round-based sweep; called by :func:`jaxtune.tune`."""
    config = study_config(space, args.described, args, metric, args.tie_break, objective, executor, "rounds")
    with Study(storage, args.study, config) as sweep:
        if not sweep.done:  # a fresh study: its first program may be known already
            executor.prefetch_batch(args.trials * args.seeds)  # a configuration's seeds are lanes
        host = isinstance(args.strategy, HostStrategy)  # an Optuna sampler proposes on the host
        driver = (_HostDriver(args.strategy, space, args.trials, args.seed, executor) if host
                  else StrategyPrograms(args.strategy, space, args.trials, args.seed, executor, args.strategy_key,
                          args.rounds, warm=args.warm is not None))  # fmt: skip
        if args.warm is not None:  # told before round 0 (a resume tells it again: the same points)
            several = getattr(args.strategy, "objectives", 1) > 1  # told every objective, as each round is
            driver.warm(args.warm.u, args.warm.points if several else args.warm.scores)
        best, stopped, announced = math.inf, None, set()
        ran = False  # every run makes progress: the deadline is checked once a chunk is stored
        for r in range(args.rounds):
            if ran and args.past_deadline():
                stopped = "timeout"
                break
            report, end = _run_round(r, args, executor, space, sweep, driver, metric, announced)
            ran = ran or report is not None or end == "timeout"
            if end != "done":
                stopped = "timeout" if end == "timeout" else None
                break
            best = min([best] + [t.score(args.mode) for (tr, _), t in sweep.done.items() if tr == r])
            if report is not None and args.report is not None:
                report["best"] = minimised(best, args.mode) if math.isfinite(best) else None  # back to the metric
                args.report(report)
        if stopped:
            args.say_stopped(len(sweep.done), "at the first trial not stored")
        return sweep.result(metric, args.mode, args.tie_break, args.select, stopped)
