"""The halving driver: successive halving and Hyperband whose survivors continue from their state.

A bracket starts its configurations as one population; each rung trains the steps its budget
adds; the best ``1/eta`` (never a diverged one) move, gathered on the device, into a narrower
population (one per width, reused by every bracket). ``rounds`` counts rungs, as for the
retraining version (:class:`~jaxtune.strategies.SuccessiveHalving`).
"""

from __future__ import annotations

import functools
import sys
import time

import jax
import numpy as np

from jaxtune.constraints import feasible
from jaxtune.drivers.args import Arguments
from jaxtune.drivers.population import jit_counted, pack_checkpoint, segment_value, unpack_book, unpack_checkpoint
from jaxtune.execute.population import Population, supports_protocol
from jaxtune.keys import DECIDE_STREAM, lane_keys
from jaxtune.records import lane_scores, trial_record
from jaxtune.result import Result
from jaxtune.schedulers.base import check_space
from jaxtune.space import Space
from jaxtune.strategies.base import describe, make_spec
from jaxtune.strategies.halving import bracket_plan, budgets, is_halving
from jaxtune.study import Study, study_config

__all__ = ["run", "continued_halving", "REFUSES"]

# The jt.tune arguments this driver cannot honour, and why: refused before anything is traced.
REFUSES = {
    "max_batch": "a rung's lanes live on the device together: use fewer trials",
    "vmap_width": "a rung vmaps all its lanes",
    "progress": "continued halving reports per rung (progress=True prints it), not through a RoundReport callable",
    "metric": "several objectives: a rung promotes on one metric (not yet)",
    "seeds": "not yet: a rung promotes lane by lane (halving that retrains, continue_survivors=False, takes seeds)",
}


def continued_halving(strategy, options, objective):
    """The halving spec if this sweep continues survivors from their state, else None."""
    spec = make_spec(strategy, **(options or {})) if isinstance(strategy, str) else strategy
    if is_halving(spec) and spec.continue_survivors and supports_protocol(objective):
        return spec
    return None


def run(objective, space: Space, spec, args: Arguments, executor, metric: str, storage) -> Result:
    """Runs successive halving or Hyperband with continued survivors; called by :func:`jaxtune.tune`."""
    fidelity = space.params[spec.fidelity]
    levels = budgets(fidelity.low, fidelity.high, spec.eta)
    plan = bracket_plan(args.trials, len(levels), spec.eta, type(spec).hyperband)
    sub = Space({n: p for n, p in space.params.items() if n != spec.fidelity})
    check_space(sub)
    config = study_config(space, describe(spec), args, metric, args.tie_break, objective, executor, "population")
    with Study(storage, args.study, config) as study:
        return _run_halving(objective, space, sub, spec, plan, levels, args, metric, study)


class _Bracket:
    """One bracket's configurations, trained rung by rung as a population that narrows."""

    def __init__(self, run: _Halving, first: int, rungs, saved: bytes | None = None):
        self.run, self.first, self.rungs = run, first, rungs
        n = rungs[0][0]
        key = jax.random.fold_in(jax.random.fold_in(run.root, DECIDE_STREAM), first)
        self.u = np.asarray(jax.random.uniform(key, (n, run.sub.dim)))
        hp = run.from_unit(self.u)
        self.params = run.sub.to_python({k: np.asarray(v) for k, v in hp.items()})
        self.alive = np.arange(n)  # bracket slots of the lanes, in lane order
        self.trained, self.next = 0, 0  # steps trained so far; the rung to train next
        if saved is None:
            self.pop = run.population(n)
            self.pop.start(hp, lane_keys(run.root, first, n))
            return
        book = unpack_book(saved)  # resumed at the rung a checkpoint stored
        self.alive, self.trained, self.next = book["alive"], int(book["trained"]), int(book["next"])
        self.pop = run.population(len(self.alive))
        unpack_checkpoint(saved, self.pop, ())
        self.pop.set_hp({k: np.asarray(v)[self.alive] for k, v in hp.items()})

    def checkpoint(self) -> tuple[int, bytes]:
        """The narrowed population as it starts its next rung (stored with the rung's trials)."""
        book = {"first": self.first, "alive": self.alive, "trained": self.trained, "next": self.next}
        return self.first, pack_checkpoint(self.pop, (), book)

    def rung(self, i: int, last: bool) -> tuple[list, list, np.ndarray, int]:
        """Trains rung ``i``; returns the records of the trials that end there, every lane's curve
        point, which lanes go on, and the rung's budget."""
        run, args = self.run, self.run.args
        level = self.rungs[i][1]
        budget = run.levels[level]
        metrics = self.pop.train(budget - self.trained)
        self.trained = budget
        score, _ = lane_scores(metrics, run.metric, args.mode)
        ok = np.ones(len(self.alive), bool)
        for lane, slot in enumerate(self.alive if args.constraints else ()):
            m = {n: float(v[lane]) for n, v in metrics.items()}
            ok[lane] = feasible(args.constraints, run.full(self.params[slot], self.u[slot], budget)[0], m)
        score[~ok] = np.inf  # an infeasible trial is not promoted
        keep = np.zeros(len(self.alive), bool)
        if not last:
            order = np.argsort(score, kind="stable")[: self.rungs[i + 1][0]]
            keep[order[np.isfinite(score[order])]] = True
        rows, points = [], []
        stored_curves = functools.cache(run.study.curves)
        status = "ok" if level == len(run.levels) - 1 else "stopped"
        for lane, slot in enumerate(self.alive):
            m = {name: float(v[lane]) for name, v in metrics.items()}
            points.append((self.first, int(slot), budget, m))
            if not keep[lane]:
                curve = segment_value(stored_curves, (self.first, int(slot)), points, run.metric, args)
                params, unit = run.full(self.params[slot], self.u[slot], budget)
                rows.append(trial_record(self.first, slot, params, unit, m, run.metric, args.mode, args.select, curve,
                                         status, bool(ok[lane])))  # fmt: skip
        return rows, points, keep, budget

    def narrow(self, keep: np.ndarray) -> None:
        """Moves the lanes that go on into a narrower population (cached per width)."""
        narrow = self.run.population(int(keep.sum()))
        narrow.take(self.pop, np.flatnonzero(keep))
        self.pop, self.alive = narrow, self.alive[keep]


class _Halving:
    """A continued-halving sweep: brackets one after another, ``rounds`` rungs in all."""

    def __init__(self, objective, space: Space, sub: Space, spec, levels, args: Arguments, metric: str, study: Study):
        self.objective, self.space, self.sub, self.spec, self.levels = objective, space, sub, spec, levels
        self.args, self.metric, self.study = args, metric, study
        self.root = jax.random.key(args.seed)
        self.from_unit = jit_counted(sub.from_unit)
        self.pops: dict[int, Population] = {}
        self.fidelity_at = space.names.index(spec.fidelity)

    def population(self, width: int) -> Population:
        """The population of ``width`` lanes (one per width, reused by every bracket)."""
        if width not in self.pops:
            self.pops[width] = Population(self.objective, self.sub, (), width)
        return self.pops[width]

    def full(self, params: dict, u: np.ndarray, budget: int) -> tuple[dict, list[float]]:
        """A trial's parameters and unit coordinates in the whole space, its budget included (what
        every other driver stores, so importance and the report read them alike)."""
        fid = self.space.params[self.spec.fidelity]
        at = float(np.asarray(fid.to_unit(np.asarray([budget], np.float32)))[0])
        unit = [*map(float, u[: self.fidelity_at]), at, *map(float, u[self.fidelity_at :])]
        return {**params, self.spec.fidelity: budget}, unit

    def finished(self, first: int, n: int) -> bool:
        """Whether the bracket that started at round ``first`` with ``n`` configurations is stored
        whole (each of its configurations ends in exactly one stored trial)."""
        return sum(1 for r, _ in self.study.done if r == first) >= n


def _run_halving(objective, space: Space, sub: Space, spec, plan, levels, args, metric: str, study: Study) -> Result:
    run = _Halving(objective, space, sub, spec, levels, args, metric, study)
    r, b, t0, stopped, ran = 0, 0, time.perf_counter(), None, False
    while r < args.rounds and stopped is None:
        if ran and args.past_deadline():  # between brackets: every finished rung is stored
            stopped = "timeout"
            break
        rungs = plan[b % len(plan)]
        b += 1
        if run.finished(r, rungs[0][0]):  # stored by an earlier run: resumed after it, nothing retrained
            r += min(len(rungs), args.rounds - r)
            continue
        saved = study.checkpoint()
        bracket = _Bracket(run, r, rungs, saved[1] if saved is not None and saved[0] == r else None)
        r += bracket.next
        for i in range(bracket.next, len(rungs)):
            last = i == len(rungs) - 1 or r == args.rounds - 1
            rows, points, keep, budget = bracket.rung(i, last)
            going_on = not last and keep.any()
            if going_on:  # the survivors move on; stored with this rung's trials, in one transaction
                bracket.narrow(keep)
                bracket.next = i + 1
            study.write(rows, points, (), bracket.checkpoint() if going_on else None)
            ran = True
            if args.verbose:
                print(
                    f"[jaxtune] round {r} ({r + 1}/{args.rounds}): {len(keep)} trials continued to {budget} "
                    f"steps, {int(keep.sum())} go on; {time.perf_counter() - t0:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
            r += 1
            if not going_on:
                break
            if args.past_deadline():  # a safe point: this rung and the survivors' states are stored
                stopped = "timeout"
                break
    if stopped:
        args.say_stopped(len(study.done), "at the last stored rung")
    result = study.result(metric, args.mode, args.tie_break, args.select, stopped)
    result.compiles = sum(p.compiles for p in run.pops.values())
    return result
