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

import dataclasses
import functools
import math
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune.constraints import feasible
from jaxtune.drivers.args import Arguments
from jaxtune.errors import CheckpointError, InputError
from jaxtune.execute import snapshots
from jaxtune.execute.population import Population, require_protocol
from jaxtune.execute.timing import jit_counted
from jaxtune.keys import DECIDE_STREAM, INIT_STREAM, lane_keys, seed_keys
from jaxtune.progress import Progress
from jaxtune.result import Result
from jaxtune.schedulers import Lanes, make_scheduler
from jaxtune.schedulers.base import check_space
from jaxtune.space import Space
from jaxtune.study.records import lane_scores, minimised, seed_groups, selection_curve, trial_record
from jaxtune.study.study import Study, agreed, study_config

__all__ = [
    "run",
    "check",
    "driven",
    "budget_of",
    "REFUSES",
]

# The jt.tune arguments this driver cannot honour, and why: refused before anything is traced.
REFUSES = {
    "rounds": "a population's length is the objective's step budget (steps), not a number of rounds",
    "max_batch": "every lane lives on the device for the whole run: use fewer trials (lanes)",
    "vmap_width": "a population vmaps all its lanes in every segment",
}


def budget_of(objective: Any) -> int:
    """The objective's step budget (its ``steps``), which a population needs."""
    steps = getattr(objective, "steps", None)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"a population scheduler needs the objective's step budget (an int .steps), got {steps!r}")
    return steps


def driven(args: Arguments) -> frozenset[str]:
    """None: the objective reads every hyperparameter of the space itself."""
    return frozenset()


def check(objective, space: Space, args: Arguments) -> None:
    """Checks, before anything is traced, that ``objective`` and ``space`` can run as a population."""
    require_protocol(objective, f"strategy {getattr(args.spec, 'registry_name', args.spec)!r}")
    check_space(space)
    make_scheduler(_spec(args), space, args.trials, budget_of(objective))  # its options against lanes and budget


def run(objective, space: Space, args: Arguments, executor, metric: str, storage) -> Result:
    """Runs (or resumes) a population sweep (see the module docstring); called by :func:`jaxtune.tune`."""
    budget = budget_of(objective)
    sched = make_scheduler(_spec(args), space, args.trials, budget)
    config = study_config(
        space, args.described, args, metric, args.tie_break, objective, executor, "population", steps=budget
    )
    with Study(storage, args.study, config) as study:
        return _run(objective, space, sched, args, metric, study, budget)


def _spec(args: Arguments):
    """The scheduler's spec, told how many objectives its rung records hold (ASHA, median)."""
    spec = args.spec
    if args.objectives and "objectives" in {f.name for f in dataclasses.fields(spec)}:
        spec = dataclasses.replace(spec, objectives=len(args.objectives))
    return spec


@dataclasses.dataclass
class _Book:
    """The driver's bookkeeping of its lanes (checkpointed with the population's states)."""

    u: np.ndarray  # f32[lanes, d]: each lane's configuration on the unit cube
    start: np.ndarray  # i64[lanes]: the segment each lane's trial started at (its round)
    steps: np.ndarray  # i32[lanes]: steps each lane's trial has trained
    active: np.ndarray  # bool[lanes]: lanes training a live trial
    busy: int = 0  # lane-segments that trained a live trial (utilisation)
    best: float = math.inf  # the best finished trial's score so far (minimised)

    def arrays(self) -> dict[str, Any]:
        """The bookkeeping as arrays, for a checkpoint."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_arrays(cls, book: dict[str, np.ndarray]) -> _Book:
        """The bookkeeping a checkpoint stored."""
        return cls(book["u"], book["start"], book["steps"], book["active"], int(book["busy"]), float(book["best"]))


class _Run:
    """One population run: its lanes on the device, the scheduler's state and the bookkeeping."""

    def __init__(self, objective, space: Space, sched, args: Arguments, metric: str, study: Study, budget: int):
        self.space, self.sched, self.args, self.metric, self.study, self.budget = (
            space, sched, args, metric, study, budget
        )  # fmt: skip
        self.lanes = sched.num_lanes  # configurations; each trains in k lanes (its seeds), decided together
        self.k = args.seeds
        self.root = jax.random.key(args.seed)
        state = jit_counted(sched.init)(jax.random.fold_in(self.root, INIT_STREAM))
        u, self.state = jit_counted(sched.first)(jax.random.fold_in(self.root, INIT_STREAM), state)
        if args.warm is not None:  # up to half the lanes start from the stored study's best
            given = len(getattr(args.spec, "initial", ()) or ())  # (after a scheduler's own initial ones)
            best = args.warm.best(max(0, min(-(-self.lanes // 2), self.lanes - given)))
            u = np.asarray(u).copy()
            u[given : given + len(best)] = best
        self.decide = jit_counted(sched.decide)
        self.from_unit = jit_counted(space.from_unit)
        self.lane_keys = jit_counted(lane_keys, static_argnums=2)
        self.pop = Population(objective, space, (), self.lanes * self.k)
        self.book = _Book(np.asarray(u), *(np.zeros(self.lanes, t) for t in (np.int64, np.int32)),
                          np.ones(self.lanes, bool))  # fmt: skip
        self.hp = self.from_unit(self.book.u)
        self.pop.start(self.seeded(self.hp), self.keys(0))
        self.per_seed: dict[str, np.ndarray] | None = None  # the last segment's metrics, lane by lane

    def seeded(self, values):
        """Per-configuration values (a dict of arrays, or an array) for every lane: a configuration's
        ``k`` seeds hold ``k`` consecutive lanes."""
        if self.k == 1:
            return values
        if isinstance(values, dict):
            return {n: np.repeat(np.asarray(v), self.k, axis=0) for n, v in values.items()}
        return np.repeat(np.asarray(values), self.k, axis=0)

    def keys(self, seg: int) -> jax.Array:
        """Every lane's key for trials that start at segment ``seg``: its configuration's lane key,
        ``fold_in(key, j)`` for seed ``j > 0`` (:func:`jaxtune.keys.seed_keys`)."""
        return seed_keys(self.lane_keys(self.root, seg, self.lanes), self.k)

    def grouped(self, per_seed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One value per configuration from its seeds' lanes (:func:`~jaxtune.study.records.seed_groups`)."""
        pairs = self.args.objectives or ((self.metric, self.args.mode),)
        return seed_groups(per_seed, self.k, pairs, self.args.aggregate)

    def seeds_of(self, i: int) -> list[dict[str, float]]:
        """Configuration ``i``'s seeds' metrics in the last segment (none with one seed)."""
        if self.k == 1 or self.per_seed is None:
            return []
        return [{n: float(v[i * self.k + j]) for n, v in self.per_seed.items()} for j in range(self.k)]

    def resume(self, saved: tuple[int, bytes]) -> int:
        """Restores the run from a checkpoint; returns the segment to train next."""
        where = f"{self.study.store.path}: the checkpoint at segment {saved[0]}"
        if not 0 <= saved[0] < self.sched.max_segments:
            raise CheckpointError(f"{where} is past this run's {self.sched.max_segments} segments")
        book, states, self.state = snapshots.unpack(saved[1], self.pop.state_spec(), self.state, where)
        n, d = self.lanes, self.space.dim
        snapshots.check_book(book, {"u": ((n, d), "f", 0, 1), "start": ((n,), "i", 0, saved[0] + 1),
                                    "steps": ((n,), "i", 0, None), "active": ((n,), "b", None, None),
                                    "busy": ((), "i", 0, None), "best": ((), "f", None, None)}, where)  # fmt: skip
        self.pop.load_state(states)
        self.book = _Book.from_arrays(book)
        self.hp = self.from_unit(self.book.u)
        self.pop.set_hp(self.seeded(self.hp))
        return saved[0] + 1

    def segment(self, seg: int):
        """Trains every lane one segment and asks the scheduler; returns the metrics and decision."""
        b, args = self.book, self.args
        self.per_seed = self.pop.train(self.sched.segment)
        metrics = self.grouped(self.per_seed)
        b.steps = np.where(b.active, b.steps + self.sched.segment, b.steps)
        b.busy += int(b.active.sum())
        score, _ = lane_scores(metrics, self.metric, args.mode)
        self.ok = self.lanes_feasible(metrics)
        score = np.where(self.ok | ~np.isfinite(score), score, INFEASIBLE)  # below every feasible lane
        live = np.asarray(score)[b.active & self.ok]
        self.now = float(np.min(live[np.isfinite(live)], initial=np.inf))  # the lanes' best, for progress
        points = None
        if args.objectives:  # every objective minimised; an infeasible lane below every feasible one
            points = np.stack([lane_scores(metrics, name, mode)[0] for name, mode in args.objectives], axis=1)
            points = jnp.asarray(np.where(self.ok[:, None] | ~np.isfinite(points), points, INFEASIBLE))
        lanes = Lanes(jnp.asarray(score), jnp.asarray(b.steps), jnp.asarray(b.u, jnp.float32), jnp.asarray(b.active),
                      points)  # fmt: skip
        decision, self.state = self.decide(
            jax.random.fold_in(jax.random.fold_in(self.root, DECIDE_STREAM), seg), self.state, lanes
        )
        return metrics, jax.tree.map(np.asarray, decision)

    def lanes_feasible(self, metrics) -> np.ndarray:
        """Which lanes respect every constraint now (all of them without constraints)."""
        ok = np.ones(self.lanes, bool)
        if not self.args.constraints:
            return ok
        params = self.space.to_python({n: np.asarray(v) for n, v in self.hp.items()})
        for i in np.flatnonzero(self.book.active):
            m = {n: float(v[i]) for n, v in metrics.items()}
            where = f"lane {i} (the trial started at segment {int(self.book.start[i])})"
            ok[i] = feasible(self.args.constraints, params[i], m, where)
        return ok

    def records(self, metrics, d) -> tuple[list, list]:
        """This segment's curve points, and records of the trials that ended in it."""
        b, args = self.book, self.args
        rows, points = [], []
        stored_curves = functools.cache(self.study.curves)
        params = self.space.to_python({n: np.asarray(v) for n, v in self.hp.items()})
        for i in np.flatnonzero(b.active):
            m = {n: float(v[i]) for n, v in metrics.items()}
            points.append((int(b.start[i]), int(i), int(b.steps[i]), m))
            if d.end[i]:
                curve = selection_curve(stored_curves, (int(b.start[i]), int(i)), points, self.metric, args.select)
                status = "ok" if d.finished[i] else "stopped"
                row = trial_record(b.start[i], i, params[i], b.u[i], m, self.metric, args.mode, args.select, curve,
                                   status, feasible=bool(self.ok[i]), seeds=self.seeds_of(i),
                                   how=args.aggregate)  # fmt: skip
                rows.append(row)
                if row.status == "ok":
                    b.best = min(b.best, minimised(m[self.metric], args.mode))
        return rows, points

    def advance(self, seg: int, d) -> list:
        """Applies the decision to the bookkeeping and the lanes; returns the lineage it made."""
        b = self.book
        moved = d.source != np.arange(self.lanes)
        new = d.end & ~d.idle  # lanes that start a new trial: refilled or exploiting
        lineage = [
            (seg + 1, int(i), int(b.start[d.source[i]]), int(d.source[i]), int(b.steps[d.source[i]]))
            for i in np.flatnonzero(new & moved)
        ]
        b.steps = np.where(new, np.where(d.restart, 0, b.steps[d.source]), b.steps)
        b.start = np.where(new, seg + 1, b.start)
        b.active = ~d.idle
        b.u = d.u
        self.hp = self.from_unit(b.u)
        if b.active.any():  # a configuration's seed j continues its source's seed j
            k = self.k
            source = (d.source[:, None] * k + np.arange(k)[None, :]).reshape(-1) if k > 1 else d.source
            self.pop.replace(self.seeded(self.hp), source=source, restart=self.seeded(d.restart),
                             keys=self.keys(seg + 1), reseed=self.seeded(moved))  # fmt: skip
        return lineage

    def finish(self, stopped: str | None) -> None:
        """Ends the trials of lanes still training; a finished run is marked (a rerun returns it)."""
        b, args = self.book, self.args
        rows = []
        params = self.space.to_python({n: np.asarray(v) for n, v in self.hp.items()})
        curves = self.study.curves()
        for i in np.flatnonzero(b.active):
            key = (int(b.start[i]), int(i))
            curve = curves.get(key, [])
            if key in self.study.done or not curve:
                continue
            status = "ok" if b.steps[i] >= self.budget else "stopped"
            points = [p[self.metric] for _, p in curve]
            ok = feasible(args.constraints, params[i], curve[-1][1], f"lane {i}")
            rows.append(trial_record(*key, params[i], b.u[i], curve[-1][1], self.metric, args.mode, args.select,
                                     points, status, feasible=ok, seeds=self.seeds_of(i),
                                     how=args.aggregate))  # fmt: skip
        self.study.write(rows, [], [], None if stopped else (_FINISHED, b""))

    def result(self, segments: int, stopped: str | None) -> Result:
        """The study's result, with the lane utilisation (and ASHA's rungs)."""
        total = max(segments, 1) * self.lanes
        if self.args.verbose:
            print(
                f"[jaxtune] {segments} segments of {self.sched.segment} steps on {self.lanes} lanes: lane utilisation "
                f"{self.book.busy / total:.0%}, {len(self.study.done)} trials, {self.pop.compiles} programs compiled",
                file=sys.stderr,
            )
        result = self.study.result(self.metric, self.args.mode, self.args.tie_break, self.args.select, stopped)
        result.utilisation = self.book.busy / total
        if hasattr(self.state, "passed"):  # ASHA: how many reached each rung, and how many went on
            result.rungs = [
                {"steps": int(r), "arrived": int(n), "passed": int(p)}
                for r, n, p in zip(self.sched.rungs, np.asarray(self.state.count), np.asarray(self.state.passed))
            ]
        return result


def _run(objective, space, sched, args: Arguments, metric: str, study: Study, budget: int) -> Result:
    saved = study.checkpoint()
    if saved is not None and saved[0] == _FINISHED:  # a finished run: nothing to do
        return study.result(metric, args.mode, args.tie_break, args.select, None)
    run = _Run(objective, space, sched, args, metric, study, budget)
    first = 0
    if saved is not None:  # resume at the last segment boundary stored
        first = run.resume(saved)
        if args.verbose:
            print(f"[jaxtune] resuming at segment {first} (the last checkpoint)", file=sys.stderr)
    checkpoints, progress = _Checkpoints(run.pop.nbytes()), _Progress(sched, args, metric, first)
    stopped, seg = None, first - 1
    for seg in range(first, sched.max_segments):
        metrics, decision = run.segment(seg)
        rows, points = run.records(metrics, decision)
        lineage = run.advance(seg, decision)
        if not run.book.active.any():
            study.write(rows, points, lineage)
            break
        # The population as it starts segment seg + 1, stored with this segment's trials (one
        # transaction), as often as keeps its cost small (see _Checkpoints).
        stopping = args.past_deadline()
        if checkpoints.due(stopping):
            with checkpoints.timed():  # packed and written: what a checkpoint costs
                study.write(rows, points, lineage, (seg, snapshots.pack(run.pop.state, run.state, run.book.arrays())))
        else:
            study.write(rows, points, lineage)
        progress.update(seg, run.book, run.now, rows, run.pop.compiles)
        if stopping:
            stopped = "timeout"
            break
    progress.close()
    run.finish(stopped)
    if stopped:
        args.say_stopped(len(study.done), "at the last checkpoint")
    return run.result(seg + 1, stopped)


class _Progress:
    """A population's progress: a tqdm bar of segments on a terminal, else a line every few segments."""

    def __init__(self, sched, args: Arguments, metric: str, first: int):
        self.sched, self.args, self.metric = sched, args, metric
        self.bar = _bar(sched.max_segments, first) if args.verbose else None
        self.t0, self.every = time.perf_counter(), max(1, sched.max_segments // 20)
        self.last = self.t0

    def update(self, seg: int, book: _Book, now: float, rows: list, compiles: int) -> None:
        """Reports the end of segment ``seg``: the best finished trial, else the lanes' best now (and
        its :class:`~jaxtune.progress.Progress` to ``progress``, ``rows`` the trials it ended)."""
        mode = self.args.mode
        t, self.last = self.last, time.perf_counter()
        if self.args.report is not None:
            busy = int(book.active.sum())
            self.args.report(Progress(
                unit="segment", round=seg, rounds=self.sched.max_segments, ran=busy, seconds=self.last - t,
                trials_per_s=busy / max(self.last - t, 1e-9), metric=self.metric,
                best=minimised(book.best, mode) if math.isfinite(book.best) else None,
                diverged=sum(r.status == "diverged" for r in rows), compiles=compiles, steps=self.sched.segment,
                busy=busy))  # fmt: skip
        if math.isfinite(book.best):
            best = f"{minimised(book.best, mode):.6g}"
        else:
            lanes = f"{minimised(now, mode):.6g}" if math.isfinite(now) else "all diverged"
            best = f"none finished; lanes now {lanes}"
        busy = f"{int(book.active.sum())}/{len(book.active)}"
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"busy {busy}, best {self.metric} {best}", refresh=False)
        elif self.args.verbose and (seg + 1) % self.every == 0:
            print(
                f"[jaxtune] segment {seg + 1} of at most {self.sched.max_segments} ({self.sched.segment} steps each): "
                f"{busy} lanes busy, {time.perf_counter() - self.t0:.1f} s, best {self.metric} {best}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        """Closes the bar, if any."""
        if self.bar is not None:
            self.bar.close()


# The score of a lane that breaks a constraint: below every feasible lane (exploited, not promoted,
# stopped), yet finite, so a scheduler does not take it for a diverged one.
INFEASIBLE = np.float32(1e30)

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
    """When to store the population: once the time since the last checkpoint (or the start) is at
    least ``RATIO`` times what a checkpoint costs to pack and write — the last one's, measured;
    before the first, its bytes at ``RATE`` — and when a timeout stops the run, so a rerun goes on
    from there. Its cost stays ~1%; a kill loses at most that long of training, never a finished
    trial."""

    RATIO = 100
    RATE = 6e7  # bytes/s a checkpoint is packed and written at, until one is measured (67-84 MB/s on a 2-core CPU)

    def __init__(self, nbytes: int):
        self.last, self.cost = time.perf_counter(), nbytes / self.RATE

    def due(self, stopping: bool = False) -> bool:
        return stopping or agreed(time.perf_counter() - self.last >= self.RATIO * self.cost)  # process 0's clock

    def timed(self):
        import contextlib

        @contextlib.contextmanager
        def clock():
            t = time.perf_counter()
            yield
            self.last, self.cost = time.perf_counter(), time.perf_counter() - t

        return clock()
