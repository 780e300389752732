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
from jaxtune.drivers.args import Arguments
from jaxtune.errors import InputError
from jaxtune.execute.population import Population, supports_protocol
from jaxtune.keys import DECIDE_STREAM, INIT_STREAM, lane_keys
from jaxtune.records import lane_scores, minimised, trial_record
from jaxtune.result import Result
from jaxtune.schedulers import Lanes, make_scheduler
from jaxtune.schedulers.base import check_space, make_spec
from jaxtune.space import Space
from jaxtune.strategies.base import describe
from jaxtune.study import Study, study_config

__all__ = ["run", "check", "budget_of", "segment_value"]


def budget_of(objective: Any) -> int:
    """The objective's step budget (its ``steps``), which a population needs."""
    steps = getattr(objective, "steps", None)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"a population scheduler needs the objective's step budget (an int .steps), got {steps!r}")
    return steps


def check(objective, space: Space, spec) -> None:
    """Checks, before anything is traced, that ``objective`` and ``space`` can run as a population."""
    if not supports_protocol(objective):
        raise InputError(
            f"strategy {getattr(spec, 'registry_name', spec)!r} trains lanes in segments: the objective must implement "
            "init(hp, key), train(hp, state, steps) and evaluate_state(hp, state), as jt.train.Trainer does"
        )
    check_space(space)
    budget_of(objective)


def run(objective, space: Space, spec, options, args: Arguments, executor, metric: str, storage) -> Result:
    """Runs (or resumes) a population sweep (see the module docstring); called by :func:`jaxtune.tune`."""
    budget = budget_of(objective)
    lanes = args.trials
    if isinstance(spec, str):
        spec = make_spec(spec, **options)
    elif options:
        raise InputError(f"strategy options {sorted(options)} can only go with a strategy name")
    sched = make_scheduler(spec, space, lanes, budget)
    config = study_config(
        space, describe(spec), args, metric, args.tie_break, objective, executor, "population", steps=budget
    )
    with Study(storage, args.study, config) as study:
        return _run(objective, space, sched, args, metric, study, budget)


def _run(objective, space, sched, args: Arguments, metric: str, study: Study, budget: int) -> Result:
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
    saved = study.checkpoint()
    if saved is not None and saved[0] == _FINISHED:  # a finished run: nothing to do
        return study.result(metric, args.mode, args.tie_break, args.select, None)
    if saved is not None:  # resume at the last segment boundary stored
        book, state = unpack_checkpoint(saved[1], pop, state)
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
    for seg in range(first, sched.max_segments):
        metrics = pop.train(sched.segment)
        steps = np.where(active, steps + sched.segment, steps)
        busy += int(active.sum())
        score, finite = lane_scores(metrics, metric, args.mode)
        decision, state = decide(
            jax.random.fold_in(jax.random.fold_in(root, DECIDE_STREAM), seg),
            state,
            Lanes(jnp.asarray(score), jnp.asarray(steps), jnp.asarray(u, jnp.float32), jnp.asarray(active)),
        )
        d = jax.tree.map(np.asarray, decision)
        rows, points, lineage = [], [], []
        stored_curves = functools.cache(study.curves)
        params = space.to_python({n: np.asarray(v) for n, v in hp.items()})
        for i in np.flatnonzero(active):
            m = {n: float(v[i]) for n, v in metrics.items()}
            points.append((int(start[i]), int(i), int(steps[i]), m))
            if d.end[i]:
                curve = segment_value(stored_curves, (int(start[i]), int(i)), points, metric, args)
                status = "ok" if d.finished[i] else "stopped"
                row = trial_record(start[i], i, params[i], u[i], m, metric, args.mode, args.select, curve, status)
                rows.append(row)
                if row.status == "ok":
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
                checkpoint = (seg, pack_checkpoint(pop, state, book))
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
        if args.past_deadline():
            stopped = "timeout"
            break
    if bar is not None:
        bar.close()
    # Lanes still training when the run ends: their trials end here.
    rows = []
    params = space.to_python({n: np.asarray(v) for n, v in hp.items()})
    curves = study.curves()
    for i in np.flatnonzero(active):
        key = (int(start[i]), int(i))
        curve = curves.get(key, [])
        if key in study.done or not curve:
            continue
        status = "ok" if steps[i] >= budget else "stopped"
        points = [p[metric] for _, p in curve]
        rows.append(trial_record(*key, params[i], u[i], curve[-1][1], metric, args.mode, args.select, points, status))
    # A finished run replaces its last checkpoint by a mark: a rerun returns what is stored.
    study.write(rows, [], [], None if stopped else (_FINISHED, b""))
    total = max(seg + 1, 1) * lanes
    if args.verbose:
        print(
            f"[jaxtune] {seg + 1} segments of {sched.segment} steps on {lanes} lanes: lane utilisation "
            f"{busy / max(total, 1):.0%}, {len(study.done)} trials, {pop.compiles} programs compiled",
            file=sys.stderr,
        )
    result = study.result(metric, args.mode, args.tie_break, args.select, stopped)
    result.utilisation = busy / max(total, 1)
    if hasattr(state, "passed"):  # ASHA: how many reached each rung, and how many went on
        result.rungs = [
            {"steps": int(r), "arrived": int(n), "passed": int(p)}
            for r, n, p in zip(sched.rungs, np.asarray(state.count), np.asarray(state.passed))
        ]
    return result


def segment_value(stored_curves, key: tuple[int, int], points, metric: str, args: Arguments) -> list[float] | None:
    """A trial's learning curve of ``metric`` for its selection value with ``select="best_step"``
    (None with ``"final"``, which needs none): the stored points, read once per segment by
    ``stored_curves()``, then this segment's, not yet stored."""
    if args.select == "final":
        return None
    stored = stored_curves().get(key, [])
    return [m[metric] for _, m in stored] + [m[metric] for r, s, _, m in points if (r, s) == key]


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


def pack_checkpoint(pop: Population, sched_state, book: dict[str, Any]) -> bytes:
    """The population's states and hyperparameters, the scheduler's state and the driver's
    bookkeeping, as one ``.npz`` blob."""
    import io

    arrays = {**tree_arrays(pop.state, "state"), **tree_arrays(sched_state, "sched")}
    arrays.update({f"book_{k}": np.asarray(v) for k, v in book.items()})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def unpack_checkpoint(blob: bytes, pop: Population, sched_state) -> tuple[dict[str, np.ndarray], Any]:
    """Restores ``pop``'s states from a :func:`pack_checkpoint` blob; the bookkeeping and the scheduler's state."""
    import io

    data = np.load(io.BytesIO(blob))

    def restore(prefix, template):
        return restore_tree(data, prefix, template)

    pop.load_state(restore("state", pop.state_spec()))
    book = {k[5:]: data[k] for k in data.files if k.startswith("book_")}
    return book, restore("sched", sched_state)
