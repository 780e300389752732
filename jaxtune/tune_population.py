"""The population driver: lanes trained in segments, a scheduler deciding between them.

``jt.tune(trainer, space, "pbt" | "asha", trials=N)`` comes here: ``N`` lanes live on the
device as one :class:`~jaxtune.execute.population.Population`; after every segment the
scheduler's compiled ``decide`` says, per lane, continue, stop, refill or exploit, and the
driver applies it as one gather on the device. Each lane-lifetime with one configuration is a
*trial* in storage: ``round`` is the segment at which it started (its lane is its ``slot``);
its status is ``"ok"`` when it trained the full budget, ``"stopped"`` when the scheduler ended it
early (ASHA) or replaced it (PBT), ``"diverged"`` when its metrics were not finite. A trial that
continued another's state (PBT) records its parent and the step in the lineage, so
``Result.history(trial)`` gives the hyperparameter schedule that produced it.

A run is checkpointed at segment boundaries: the population's states and hyperparameters, the
scheduler's state and the driver's bookkeeping, stored with that segment's trials in one SQLite
transaction, as often as keeps the cost small (:class:`_Checkpoints`). A run killed midway
resumes at its last checkpoint and ends bit for bit as an uninterrupted one; a finished run
is marked, and a rerun returns what is stored.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune._trees import restore_tree, tree_arrays
from jaxtune.errors import InputError
from jaxtune.execute.population import Population, supports_protocol
from jaxtune.keys import DECIDE_STREAM, INIT_STREAM, lane_keys
from jaxtune.result import Result, minimised, select_value
from jaxtune.schedulers import Lanes, make_scheduler
from jaxtune.schedulers.base import check_space, make_spec
from jaxtune.space import Space
from jaxtune.strategies.base import describe

__all__ = ["tune_population"]


def _budget(objective: Any) -> int:
    steps = getattr(objective, "steps", None)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"a population scheduler needs the objective's step budget (an int .steps), got {steps!r}")
    return steps


def check_population(objective, space: Space, spec) -> None:
    """Checks, before anything is traced, that ``objective`` and ``space`` can run as a population."""
    if not supports_protocol(objective):
        raise InputError(
            f"strategy {getattr(spec, 'registry_name', spec)!r} trains lanes in segments: the objective must implement "
            "init(hp, key), train(hp, state, steps) and evaluate_state(hp, state), as jt.train.Trainer does"
        )
    check_space(space)
    _budget(objective)


def tune_population(objective, space: Space, spec, options, args, executor, metric: str, tie_break, storage) -> Result:
    """Runs a population sweep (see the module docstring); called by :func:`jaxtune.tune`."""
    from jaxtune.tune import _Study, study_config

    budget = _budget(objective)
    lanes = args.trials
    if isinstance(spec, str):
        spec = make_spec(spec, **options)
    elif options:
        raise InputError(f"strategy options {sorted(options)} can only go with a strategy name")
    sched = make_scheduler(spec, space, lanes, budget)
    config = study_config(
        space, describe(spec), args, metric, tie_break, objective, executor, "population", steps=budget
    )
    study = _Study(storage, args.study, config)
    try:
        return _run(objective, space, sched, args, metric, tie_break, study, budget)
    finally:
        study.close()


def _run(objective, space, sched, args, metric, tie_break, study, budget) -> Result:
    lanes = sched.num_lanes
    root = jax.random.key(args.seed)
    state = jax.jit(sched.init)(jax.random.fold_in(root, INIT_STREAM))
    u, state = jax.jit(sched.first)(jax.random.fold_in(root, INIT_STREAM), state)
    decide = jax.jit(sched.decide)
    from_unit = jax.jit(space.from_unit)
    pop = Population(objective, space, (), lanes)
    u = np.asarray(u)
    hp = from_unit(u)
    pop.start(hp, lane_keys(root, 0, lanes))
    start = np.zeros(lanes, np.int64)  # the segment each lane's trial started at: its round
    steps = np.zeros(lanes, np.int32)  # steps each lane's trial has trained
    active = np.ones(lanes, bool)
    busy = 0  # lane-segments that trained a live trial (utilisation)
    best, t0, every = math.inf, time.perf_counter(), max(1, sched.max_segments // 20)
    first = 0
    saved = study.store.checkpoint(study.sid) if jax.process_count() == 1 else None
    if saved is not None and saved[0] == _FINISHED:  # a finished run: nothing to do
        return study.result(metric, args.mode, tie_break, args.select, None)
    if saved is not None:  # resume at the last segment boundary stored
        book, state = _unpack(saved[1], pop, state)
        first, u, start, steps, active, busy, best = (
            saved[0] + 1, book["u"], book["start"], book["steps"], book["active"], int(book["busy"]),
            float(book["best"]),
        )  # fmt: skip
        hp = from_unit(u)
        pop.set_hp(hp)
        if args.verbose:
            print(f"[jaxtune] resuming at segment {first} (the last checkpoint)", file=sys.stderr)
    checkpoints = _Checkpoints()
    bar = _bar(sched.max_segments, first) if args.verbose else None
    stopped = None
    seg = first - 1
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    for seg in range(first, sched.max_segments):
        metrics = pop.train(sched.segment)
        steps = np.where(active, steps + sched.segment, steps)
        busy += int(active.sum())
        values = np.asarray(metrics[metric], np.float64)
        finite = np.all([np.isfinite(np.asarray(v)) for v in metrics.values()], axis=0)
        score = np.where(finite, values if args.mode == "min" else -values, np.inf).astype(np.float32)
        decision, state = decide(
            jax.random.fold_in(jax.random.fold_in(root, DECIDE_STREAM), seg),
            state,
            Lanes(jnp.asarray(score), jnp.asarray(steps), jnp.asarray(u, jnp.float32), jnp.asarray(active)),
        )
        d = jax.tree.map(np.asarray, decision)
        rows, points, lineage = [], [], []
        stored_curves = functools.cache(lambda: study.store.curves(study.sid))
        params = space.to_python({n: np.asarray(v) for n, v in hp.items()})
        for i in np.flatnonzero(active):
            m = {n: float(v[i]) for n, v in metrics.items()}
            points.append((int(start[i]), int(i), int(steps[i]), m))
            if d.end[i]:
                status = "diverged" if not finite[i] else ("ok" if d.finished[i] else "stopped")
                row = {"round": int(start[i]), "slot": int(i), "params": params[i], "unit": u[i].tolist()}
                value = _value(stored_curves, row, points, m, metric, args)
                rows.append({**row, "metrics": m, "value": value, "status": status})
                if status == "ok":
                    best = min(best, minimised(m[metric], args.mode))
        lane = np.arange(lanes)
        moved = d.source != lane
        new = d.end & ~d.idle  # lanes that start a new trial: refilled or exploiting
        for i in np.flatnonzero(new & moved):
            src = d.source[i]
            lineage.append((seg + 1, int(i), int(start[src]), int(src), int(steps[src])))
        steps = np.where(new, np.where(d.restart, 0, steps[d.source]), steps)
        start = np.where(new, seg + 1, start)
        active = ~d.idle
        u = d.u
        hp = from_unit(u)
        if not active.any():
            study.write(rows, points, lineage)
            break
        pop.replace(hp, source=d.source, restart=d.restart, keys=lane_keys(root, seg + 1, lanes), reseed=moved)
        # The population as it starts segment seg + 1, stored with this segment's trials (one
        # transaction), as often as keeps its cost small (see _Checkpoints).
        checkpoint = None
        if checkpoints.due():
            with checkpoints.timed():
                book = {"u": u, "start": start, "steps": steps, "active": active, "busy": busy, "best": best}
                checkpoint = (seg, _pack(pop, state, book))
        study.write(rows, points, lineage, checkpoint)
        if bar is not None:
            shown = "-" if not math.isfinite(best) else f"{minimised(best, args.mode):.4g}"
            bar.update(1)
            bar.set_postfix_str(f"busy {int(active.sum())}/{lanes}, best {metric} {shown}", refresh=False)
        elif args.verbose and (seg + 1) % every == 0:
            shown = "none yet" if not math.isfinite(best) else f"{minimised(best, args.mode):.6g}"
            print(
                f"[jaxtune] segment {seg + 1}/{sched.max_segments} ({sched.segment} steps each): "
                f"{int(active.sum())}/{lanes} lanes busy, {time.perf_counter() - t0:.1f} s, best {metric} {shown}",
                file=sys.stderr,
                flush=True,
            )
        if deadline is not None and time.monotonic() > deadline:
            stopped = "timeout"
            break
    if bar is not None:
        bar.close()
    # Lanes still training when the run ends: their trials end here.
    rows = []
    params = space.to_python({n: np.asarray(v) for n, v in hp.items()})
    curves = study.store.curves(study.sid)
    for i in np.flatnonzero(active):
        key = (int(start[i]), int(i))
        if key in study.done:
            continue
        curve = curves.get(key, [])
        if not curve:
            continue
        m = curve[-1][1]
        ok = all(math.isfinite(v) for v in m.values())
        status = "diverged" if not ok else ("ok" if steps[i] >= budget else "stopped")
        value, _ = select_value(m[metric], [p[metric] for _, p in curve], args.mode, args.select)
        rows.append(
            {"round": key[0], "slot": key[1], "params": params[i], "unit": u[i].tolist(), "metrics": m,
             "value": value, "status": status}
        )  # fmt: skip
    # A finished run replaces its last checkpoint by a mark: a rerun returns what is stored.
    study.write(rows, [], [], None if stopped else (_FINISHED, b""))
    total = max(seg + 1, 1) * lanes
    if args.verbose:
        print(
            f"[jaxtune] {seg + 1} segments of {sched.segment} steps on {lanes} lanes: lane utilisation "
            f"{busy / max(total, 1):.0%}, {len(study.done)} trials, {pop.compiles} programs compiled",
            file=sys.stderr,
        )
    result = study.result(metric, args.mode, tie_break, args.select, stopped)
    result.utilisation = busy / max(total, 1)
    if hasattr(state, "passed"):  # ASHA: how many reached each rung, and how many went on
        result.rungs = [
            {"steps": int(r), "arrived": int(n), "passed": int(p)}
            for r, n, p in zip(sched.rungs, np.asarray(state.count), np.asarray(state.passed))
        ]
    return result


def tune_halving(objective, space: Space, spec, args, executor, metric: str, tie_break, storage) -> Result:
    """Successive halving or Hyperband whose survivors continue from their state (see
    :class:`~jaxtune.strategies.SuccessiveHalving`); called by :func:`jaxtune.tune`.

    A bracket starts its configurations as one population; each rung trains the steps its budget
    adds; the best ``1/eta`` (never a diverged one) move, gathered on the device, into a narrower
    population (one per width, reused by every bracket). ``rounds`` counts rungs, as for the
    retraining version.
    """
    from jaxtune.strategies.halving import bracket_plan, budgets
    from jaxtune.tune import _Study, study_config

    fidelity = space.params[spec.fidelity]
    levels = budgets(fidelity.low, fidelity.high, spec.eta)
    plan = bracket_plan(args.trials, len(levels), spec.eta, type(spec).hyperband)
    sub = Space({n: p for n, p in space.params.items() if n != spec.fidelity})
    check_space(sub)
    config = study_config(space, describe(spec), args, metric, tie_break, objective, executor, "population")
    study = _Study(storage, args.study, config)
    try:
        return _run_halving(objective, space, sub, spec, plan, levels, args, metric, tie_break, study)
    finally:
        study.close()


def _run_halving(objective, space, sub, spec, plan, levels, args, metric, tie_break, study) -> Result:
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
            values = np.asarray(metrics[metric], np.float64)
            finite = np.all([np.isfinite(np.asarray(v)) for v in metrics.values()], axis=0)
            score = np.where(finite, values if args.mode == "min" else -values, np.inf)
            last = i == len(rungs) - 1 or r == args.rounds - 1
            keep = np.zeros(len(alive), bool)
            if not last:
                k = rungs[i + 1][0]
                order = np.argsort(score, kind="stable")[:k]
                keep[order[np.isfinite(score[order])]] = True
            rows, points = [], []
            stored_curves = functools.cache(lambda: study.store.curves(study.sid))
            for lane, slot in enumerate(alive):
                m = {name: float(v[lane]) for name, v in metrics.items()}
                points.append((first, int(slot), budget, m))
                if keep[lane]:
                    continue
                status = "diverged" if not finite[lane] else ("ok" if level == len(levels) - 1 else "stopped")
                row = {"round": first, "slot": int(slot), "params": {**params[slot], spec.fidelity: budget}}
                value = _value(stored_curves, row, points, m, metric, args)
                rows.append({**row, "unit": u[slot].tolist(), "metrics": m, "value": value, "status": status})
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
    result = study.result(metric, args.mode, tie_break, args.select, None)
    result.compiles = compiles
    return result


def _value(stored_curves, row, points, final, metric: str, args) -> float:
    """A trial's selection value: its final evaluation, or with ``select="best_step"`` the best
    point of its curve (the stored points, read once per segment by ``stored_curves()``, and
    this segment's, not yet stored)."""
    if args.select == "final":
        return final[metric]
    key = (row["round"], row["slot"])
    stored = stored_curves().get(key, [])
    curve = [m[metric] for _, m in stored] + [m[metric] for r, s, _, m in points if (r, s) == key]
    return select_value(final[metric], curve, args.mode, args.select)[0]


_FINISHED = -1  # the checkpoint "segment" of a run that has finished


def _bar(total: int, done: int):
    """A progress bar of segments on a terminal (tqdm, if installed); None: print lines instead."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=done, unit="segment", desc="[jaxtune]", file=sys.stderr, leave=True)


class _Checkpoints:
    """When to store the population: after the first segment, then once the time since the last
    checkpoint is at least ``RATIO`` times what that checkpoint took (its cost stays under ~5%)."""

    RATIO = 20

    def __init__(self):
        self.last, self.cost = None, 0.0

    def due(self) -> bool:
        return self.last is None or time.perf_counter() - self.last >= self.RATIO * self.cost

    def timed(self):
        import contextlib

        @contextlib.contextmanager
        def clock():
            t = time.perf_counter()
            yield
            self.last, self.cost = time.perf_counter(), time.perf_counter() - t

        return clock()


def _pack(pop: Population, sched_state, book: dict[str, Any]) -> bytes:
    """The population's states and hyperparameters, the scheduler's state and the driver's
    bookkeeping, as one ``.npz`` blob."""
    import io

    arrays = {**tree_arrays(pop.state, "state"), **tree_arrays(sched_state, "sched")}
    arrays.update({f"book_{k}": np.asarray(v) for k, v in book.items()})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _unpack(blob: bytes, pop: Population, sched_state) -> tuple[dict[str, np.ndarray], Any]:
    """Restores ``pop``'s states from a :func:`_pack` blob; the bookkeeping and the scheduler's state."""
    import io

    data = np.load(io.BytesIO(blob))

    def restore(prefix, template):
        return restore_tree(data, prefix, template)

    pop.state = jax.device_put(restore("state", pop._state_spec()), pop._sharded())
    book = {k[5:]: data[k] for k in data.files if k.startswith("book_")}
    return book, restore("sched", sched_state)
