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

from jaxtune.drivers.args import Arguments
from jaxtune.drivers.population import segment_value
from jaxtune.execute.population import Population, supports_protocol
from jaxtune.keys import DECIDE_STREAM, lane_keys
from jaxtune.records import lane_scores, trial_record
from jaxtune.result import Result
from jaxtune.schedulers.base import check_space
from jaxtune.space import Space
from jaxtune.strategies.base import describe, make_spec
from jaxtune.strategies.halving import bracket_plan, budgets, is_halving
from jaxtune.study import Study, study_config

__all__ = ["run", "continued_halving"]


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
        return _run_halving(objective, sub, spec, plan, levels, args, metric, study)


def _run_halving(objective, sub: Space, spec, plan, levels, args: Arguments, metric: str, study: Study) -> Result:
    root = jax.random.key(args.seed)
    from_unit = jax.jit(sub.from_unit)
    pops: dict[int, Population] = {}
    compiles = 0

    def population(width: int) -> Population:
        if width not in pops:
            pops[width] = Population(objective, sub, (), width)
        return pops[width]

    r, b, t0 = 0, 0, time.perf_counter()
    while r < args.rounds:
        rungs = plan[b % len(plan)]
        first = r
        n = rungs[0][0]
        u = np.asarray(jax.random.uniform(jax.random.fold_in(jax.random.fold_in(root, DECIDE_STREAM), r), (n, sub.dim)))
        hp = from_unit(u)
        params = sub.to_python({k: np.asarray(v) for k, v in hp.items()})
        pop = population(n)
        pop.start(hp, lane_keys(root, first, n))
        alive = np.arange(n)  # bracket slots of the lanes, in lane order
        trained = 0
        for i, (_, level) in enumerate(rungs):
            if r >= args.rounds:
                break
            budget = levels[level]
            metrics = pop.train(budget - trained)
            trained = budget
            score, _ = lane_scores(metrics, metric, args.mode)
            last = i == len(rungs) - 1 or r == args.rounds - 1
            keep = np.zeros(len(alive), bool)
            if not last:
                k = rungs[i + 1][0]
                order = np.argsort(score, kind="stable")[:k]
                keep[order[np.isfinite(score[order])]] = True
            rows, points = [], []
            stored_curves = functools.cache(study.curves)
            for lane, slot in enumerate(alive):
                m = {name: float(v[lane]) for name, v in metrics.items()}
                points.append((first, int(slot), budget, m))
                if keep[lane]:
                    continue
                status = "ok" if level == len(levels) - 1 else "stopped"
                curve = segment_value(stored_curves, (first, int(slot)), points, metric, args)
                trial_params = {**params[slot], spec.fidelity: budget}
                rows.append(
                    trial_record(first, slot, trial_params, u[slot], m, metric, args.mode, args.select, curve, status)
                )
            study.write(rows, points)
            if args.verbose:
                print(
                    f"[jaxtune] round {r} ({r + 1}/{args.rounds}): {len(alive)} trials continued to {budget} steps, "
                    f"{int(keep.sum())} go on; {time.perf_counter() - t0:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
            r += 1
            if last or not keep.any():
                break
            narrow = population(int(keep.sum()))
            narrow.take(pop, np.flatnonzero(keep))
            pop, alive = narrow, alive[keep]
        b += 1
    compiles = sum(p.compiles for p in pops.values())
    result = study.result(metric, args.mode, args.tie_break, args.select, None)
    result.compiles = compiles
    return result


