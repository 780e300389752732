"""The halving driver: successive halving and Hyperband whose survivors continue from their state.

The sweep's configurations train in one population as wide as its widest bracket; each rung
trains the steps its budget adds to its bracket's live lanes (the others skipped in sequence, or
computed and dropped when vmapped), and the best ``1/eta`` (never a diverged one) stay live: one
training program for every bracket and rung. ``rounds`` counts rungs, as for the
retraining version (:class:`~jaxtune.strategies.SuccessiveHalving`).
"""

from __future__ import annotations

import functools
import math
import time

import jax
import numpy as np

from jaxtune._checks import round_up
from jaxtune.constraints import feasible
from jaxtune.drivers.args import Arguments
from jaxtune.errors import CheckpointError
from jaxtune.execute import snapshots
from jaxtune.execute.placement import spread
from jaxtune.execute.population import Population
from jaxtune.execute.timing import jit_counted
from jaxtune.keys import DECIDE_STREAM, lane_keys, seed_keys
from jaxtune.pareto import promotion_order
from jaxtune.progress import Progress
from jaxtune.result import Result
from jaxtune.schedulers.base import check_space
from jaxtune.space import Space
from jaxtune.strategies.halving import bracket_plan, budgets, piece_of
from jaxtune.study.records import lane_scores, minimised, seed_groups, selection_curve, trial_record
from jaxtune.study.study import Study, study_config

__all__ = ["check", "run", "driven", "REFUSES"]

# The jt.tune arguments this driver cannot honour, and why: refused before anything is traced.
REFUSES = {
    "max_batch": "a rung's lanes live on the device together: use fewer trials",
}


def driven(args: Arguments) -> frozenset[str]:
    """The hyperparameters this driver sets itself: the budget, trained rung by rung (an objective
    need not read it)."""
    return frozenset({args.spec.fidelity})


def check(objective, space: Space, args: Arguments) -> None:
    """Checks, before anything is traced, that the space without its budget can live in a population."""
    check_space(Space({n: p for n, p in space.params.items() if n != args.spec.fidelity}))


def run(objective, space: Space, args: Arguments, executor, metric: str, storage) -> Result:
    """Runs successive halving or Hyperband with continued survivors; called by :func:`jaxtune.tune`."""
    spec = args.spec
    fidelity = space.params[spec.fidelity]
    levels = budgets(fidelity.low, fidelity.high, spec.eta)
    plan = bracket_plan(args.trials, len(levels), spec.eta, type(spec).hyperband)
    sub = Space({n: p for n, p in space.params.items() if n != spec.fidelity})
    config = study_config(space, args.described, args, metric, args.tie_break, objective, executor, "population")
    vmap_width = executor.vmap_width_of(executor.first_bucket())
    with Study(storage, args.study, config) as study:
        return _run_halving(objective, space, sub, spec, plan, levels, args, metric, study, vmap_width)


class _Bracket:
    """One bracket's configurations, trained rung by rung.

    Its lanes are lanes of the sweep's one population; only the survivors stay live
    (:meth:`_Halving.train`).
    """

    def __init__(self, run: _Halving, first: int, rungs, saved: bytes | None = None):
        self.run, self.first, self.rungs = run, first, rungs
        n = rungs[0][0]
        u, hp, keys = run.bracket_points(first)
        self.u, self.hp, self.keys = u[:n], {k: v[:n] for k, v in hp.items()}, keys[:n]
        self.params = run.sub.to_python(self.hp)
        self.alive = np.arange(n)  # bracket slots of the live configurations
        self.trained, self.next = 0, 0  # steps trained so far; the rung to train next
        if saved is None:
            self.pop, self.lane = run.layout(n * run.k)  # the lanes each live slot's seeds train in
            self.pop.start(self.hp_of_lanes(), self.keys_of_lanes())
        else:  # resumed at the rung a checkpoint stored
            book = self.checked_book(saved)
            self.alive, self.trained, self.next = book["alive"], int(book["trained"]), int(book["next"])
            self.pop, self.lane = run.restore(saved, book)
            self.pop.set_hp(self.hp_of_lanes())

    def slot_of_lanes(self) -> np.ndarray:
        """The bracket slot each lane of the population holds (a live one's own; slot 0 for the
        rest). A configuration's ``K`` seeds hold ``K`` consecutive entries of ``self.lane``."""
        slots = np.full(self.pop.width, self.alive[0])
        slots[self.lane] = np.repeat(self.alive, self.run.k)
        return slots

    def keys_of_lanes(self) -> jax.Array:
        """Every lane's training key: its configuration's key, ``fold_in(key, k)`` for seed ``k > 0``
        (:func:`jaxtune.keys.seed_keys`, as a round-based sweep trains its seeds)."""
        keys = jax.random.wrap_key_data(self.keys[self.slot_of_lanes()])
        if self.run.k == 1:
            return keys
        live = seed_keys(jax.random.wrap_key_data(self.keys[self.alive]), self.run.k)
        return jax.random.wrap_key_data(jax.random.key_data(keys).at[self.lane].set(jax.random.key_data(live)))

    def hp_of_lanes(self) -> dict[str, np.ndarray]:
        """Every lane's hyperparameters (``{name: [width]}``)."""
        return {k: v[self.slot_of_lanes()] for k, v in self.hp.items()}

    def checkpoint(self) -> tuple[int, bytes]:
        """The survivors as they start the next rung (stored with the rung's trials): only the live
        lanes' states, in live-slot order, whatever population they train in."""
        n = len(self.lane)
        book = {"first": self.first, "alive": self.alive, "lane": np.arange(n), "width": n,
                "trained": self.trained, "next": self.next}  # fmt: skip
        whole = np.array_equal(self.lane, np.arange(self.pop.width))
        return self.first, snapshots.pack(self.pop.state, (), book, None if whole else self.lane)

    def checked_book(self, saved: bytes) -> dict[str, np.ndarray]:
        """The bookkeeping of a stored checkpoint of this bracket, checked against its plan.

        Raises:
          CheckpointError: an entry is missing or does not fit the bracket.
        """
        where = f"{self.run.study.store.path}: the checkpoint of the bracket at round {self.first}"
        book = snapshots.unpack_book(saved, where)
        n, rungs = self.rungs[0][0], len(self.rungs)
        width = int(book.get("width", 1))
        spec = {"first": ((), "i", self.first, self.first), "alive": ((None,), "i", 0, n - 1),
                "trained": ((), "i", 0, max(self.run.levels)), "next": ((), "i", 1, rungs - 1),
                "width": ((), "i", 1, None), "lane": ((None,), "i", 0, width - 1)}  # fmt: skip
        snapshots.check_book(book, spec, where)
        if not 0 < len(book["alive"]) * self.run.k == len(book["lane"]) <= int(book["width"]):
            raise CheckpointError(f"{where}: its {len(book['alive'])} live trials do not fit its lanes")
        return book

    def rung(self, i: int, last: bool) -> tuple[list, list, np.ndarray, int]:
        """Trains rung ``i``; returns the records of the trials that end there, every lane's curve
        point, which lanes go on, and the rung's budget."""
        run, args = self.run, self.run.args
        level = self.rungs[i][1]
        budget = run.levels[level]
        per_seed = run.train(self, budget - self.trained)
        self.trained = budget
        metrics = run.grouped(per_seed)
        score, _ = lane_scores(metrics, run.metric, args.mode)
        ok = np.ones(len(self.alive), bool)
        for lane, slot in enumerate(self.alive if args.constraints else ()):
            m = {n: float(v[lane]) for n, v in metrics.items()}
            where = f"configuration {slot} of the bracket at round {self.first}"
            ok[lane] = feasible(args.constraints, run.full(self.params[slot], self.u[slot], budget)[0], m, where)
        score[~ok] = np.inf  # an infeasible trial is not promoted
        keep = np.zeros(len(self.alive), bool)
        if not last:
            order = self.ranked(metrics, score, ok)[: self.rungs[i + 1][0]]
            keep[order[np.isfinite(score[order])]] = True
        rows, points = [], []
        stored_curves = functools.cache(run.study.curves)
        status = "ok" if level == len(run.levels) - 1 else "stopped"
        k = run.k
        for lane, slot in enumerate(self.alive):
            seeds = [{name: float(v[lane * k + j]) for name, v in per_seed.items()} for j in range(k)]
            m = {name: float(v[lane]) for name, v in metrics.items()}  # (seeds: their means and aggregate)
            points.append((self.first, int(slot), budget, m))
            if not keep[lane]:
                curve = selection_curve(stored_curves, (self.first, int(slot)), points, run.metric, args.select)
                params, unit = run.full(self.params[slot], self.u[slot], budget)
                rows.append(trial_record(self.first, slot, params, unit, m, run.metric, args.mode, args.select, curve,
                                         status, bool(ok[lane]), seeds=seeds if k > 1 else (),
                                         how=args.aggregate))  # fmt: skip
        return rows, points, keep, budget

    def ranked(self, metrics, score: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """The rung's lanes best first: by ``score``, or with several objectives by non-dominated
        rank, ties by hypervolume contribution (:func:`jaxtune.pareto.promotion_order`)."""
        if not self.run.args.objectives:
            return np.argsort(score, kind="stable")
        points = np.stack([lane_scores(metrics, name, mode)[0] for name, mode in self.run.args.objectives], axis=1)
        points[~ok | ~np.isfinite(score)] = np.inf
        return promotion_order(points)

    def narrow(self, keep: np.ndarray) -> None:
        """Keeps the lanes that go on, spread evenly over the population's devices again."""
        self.alive = self.alive[keep]
        self.pop, self.lane = self.run.balanced(self.lane[np.repeat(keep, self.run.k)])


class _Halving:
    """A continued-halving sweep: brackets one after another, ``rounds`` rungs in all."""

    def __init__(self, objective, space: Space, sub: Space, spec, plan, levels, args: Arguments, metric: str,
                 study: Study, vmap_width: int | None):  # fmt: skip
        self.objective, self.space, self.sub, self.spec, self.levels = objective, space, sub, spec, levels
        self.args, self.metric, self.study, self.vmap_width = args, metric, study, vmap_width
        self.root = jax.random.key(args.seed)
        self.draw = jit_counted(self._draw)
        self.proposed = jit_counted(self._proposed)
        self.unit_points = jit_counted(self._unit_points)
        self.pops: dict[int, Population] = {}
        self.fidelity_at = space.names.index(spec.fidelity)
        fid = space.params[spec.fidelity]  # each budget's unit coordinate, in one call
        self.unit_at = dict(zip(levels, map(float, np.asarray(fid.to_unit(np.asarray(levels, np.float32))))))
        self.most = max(rungs[0][0] for rungs in plan)  # configurations of the widest bracket
        self.k = args.seeds  # each configuration's seeds are k lanes, decided together
        # One population for the sweep: a rung trains its live lanes, a group of idle lanes run in
        # sequence costs nothing (vmapped, idle lanes are computed and dropped), so every bracket
        # and rung runs on one training program (pieces of one length).
        width = round_up(self.most * self.k, len(jax.devices()))
        self.shared = Population(objective, sub, (), width, vmap_width=vmap_width)
        self.piece = piece_of(plan, levels)

    def population(self, width: int) -> Population:
        """A population of ``width`` lanes: where a checkpoint of another layout is unpacked, to
        be gathered into the sweep's own (one per width)."""
        if width not in self.pops:
            self.pops[width] = Population(self.objective, self.sub, (), width, vmap_width=self.vmap_width)
        return self.pops[width]

    def layout(self, n: int) -> tuple[Population, np.ndarray]:
        """The population a bracket of ``n`` configurations starts in, and the lane of each."""
        return self.shared, spread(n, self.shared.width, self.shared.ndev)

    def bracket_points(self, first: int) -> tuple:
        """The unit points, hyperparameters and key data of the bracket that starts at round
        ``first`` (rows for the widest bracket): uniform draws, or with a model
        (:class:`~jaxtune.strategies.BOHB`) its proposals from the rungs stored before it."""
        u, hp, keys = self.draw(self.root, first)
        if hasattr(self.spec, "propose"):
            x, score, used = self.observations(first)
            key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(self.root, DECIDE_STREAM), first), 1)
            u, hp = self.proposed(key, u, x, score, used)
        elif first == 0 and self.args.warm is not None:  # the first bracket starts from the stored best
            best = np.delete(self.args.warm.best(-(-self.most // 2)), self.fidelity_at, axis=1)
            u, hp = self.unit_points(np.concatenate([best, np.asarray(u)[len(best) :]]).astype(np.float32))
        return jax.device_get((u, hp, keys))

    def _unit_points(self, u) -> tuple:
        return u, self.sub.from_unit(u)

    def _proposed(self, key, u, x, score, used) -> tuple:
        u = self.spec.propose(key, u, x, score, used)
        return u, self.sub.from_unit(u)

    def observations(self, first: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The model's data before the bracket at round ``first``: every stored configuration of
        an earlier bracket at the largest budget with enough of them (its curve's point there;
        infeasible or diverged: +inf; several objectives: its place in their promotion order),
        the most recent ``capacity``, padded and masked."""
        curves = self.study.curves()
        at: dict[int, list] = {}
        warm = self.args.warm
        for j, trial in enumerate(warm.trials if warm is not None else ()):  # a warm start's, at its budget
            budget = trial["params"][self.spec.fidelity]
            level = max((b for b in self.levels if b <= budget), default=self.levels[0])
            values = warm.points[j].tolist() if warm.points is not None else [float(warm.scores[j])]
            u = [x for i, x in enumerate(warm.u[j]) if i != self.fidelity_at]
            at.setdefault(level, []).append((u, [v if math.isfinite(v) else math.inf for v in values]))
        for key, trial in sorted(self.study.done.items()):
            if key[0] >= first:
                continue
            u = [x for j, x in enumerate(trial.unit) if j != self.fidelity_at]
            for step, m in curves.get(key, []):
                if trial.status == "infeasible":
                    values = [math.inf] * max(1, len(self.args.objectives))
                else:
                    pairs = self.args.objectives or ((self.metric, self.args.mode),)
                    values = [minimised(m.get(name, math.nan), mode) for name, mode in pairs]
                at.setdefault(step, []).append((u, [v if math.isfinite(v) else math.inf for v in values]))
        cap, dim = self.spec.capacity, self.sub.dim
        x, score, used = np.zeros((cap, dim), np.float32), np.full(cap, np.inf, np.float32), np.zeros(cap, bool)
        enough = [step for step, rows in at.items() if len(rows) >= dim + 3]
        if enough:
            rows = at[max(enough)][-cap:]
            values = np.asarray([v for _, v in rows], np.float64)
            if values.shape[1] > 1:  # several objectives: a point's place in the promotion order
                values = np.argsort(promotion_order(values)).astype(np.float64)[:, None]
                values[~np.all(np.isfinite(np.asarray([v for _, v in rows])), axis=1)] = np.inf
            x[: len(rows)] = [u for u, _ in rows]
            score[: len(rows)] = values[:, 0]
            used[: len(rows)] = True
        return x, score, used

    def _draw(self, root: jax.Array, first: jax.Array) -> tuple:
        """The unit points, hyperparameters and key data of the bracket that starts at round
        ``first``, drawn for the widest bracket: a bracket of ``n`` takes the first ``n`` rows,
        which under JAX's partitionable threefry (the default) are those of shape ``(n, ...)``,
        and one program serves every bracket."""
        key = jax.random.fold_in(jax.random.fold_in(root, DECIDE_STREAM), first)
        u = jax.random.uniform(key, (self.most, self.sub.dim))
        return u, self.sub.from_unit(u), jax.random.key_data(lane_keys(root, first, self.most))

    def balanced(self, lanes: np.ndarray) -> tuple[Population, np.ndarray]:
        """The live ``lanes`` of the shared population spread evenly over its devices again (a
        device holding more of them than its share would run alone at the end of each rung)."""
        pop = self.shared
        per = pop.width // pop.ndev
        if np.bincount(lanes // per, minlength=pop.ndev).max() <= -(-len(lanes) // pop.ndev):
            return pop, lanes
        to = spread(len(lanes), pop.width, pop.ndev)
        source = np.arange(pop.width)
        source[to] = lanes
        pop.take(pop, source)
        return pop, to

    def restore(self, saved: bytes, book: dict) -> tuple[Population, np.ndarray]:
        """The population and lanes of a bracket resumed from a checkpoint, in this run's layout
        (a checkpoint of vmapped lanes resumes with lanes one at a time, and the other way)."""
        alive = book["alive"]
        lanes = book["lane"] if "lane" in book else np.arange(len(alive))
        width = int(book.get("width", len(alive)))  # a checkpoint without it: a narrowed population
        fits = self.shared.width == width
        source = self.shared if fits else self.population(width)
        where = f"{self.study.store.path}: the checkpoint of a bracket"
        source.load_state(snapshots.unpack(saved, source.state_spec(), (), where)[1])
        if fits:
            return source, lanes
        to = spread(len(lanes), self.shared.width, self.shared.ndev)
        gather = np.zeros(self.shared.width, np.int64)
        gather[to] = lanes
        self.shared.take(source, gather)
        return self.shared, to

    def train(self, bracket: _Bracket, steps: int) -> dict[str, np.ndarray]:
        """Trains the bracket's live lanes ``steps`` steps; their metrics, in live-slot order.

        In the shared population, in pieces of one length (one program), evaluated after the
        last; a training metric (a segment's mean) is the mean of the pieces'."""
        live = np.zeros(self.shared.width, bool)
        live[bracket.lane] = True
        pieces = [self.piece] * (steps // self.piece) if self.piece and steps % self.piece == 0 else [steps]
        runs = [self.shared.train(n, live, evaluate=k == len(pieces) - 1) for k, n in enumerate(pieces)]
        metrics = {n: v if n not in runs[0] else np.mean([r[n] for r in runs], axis=0) for n, v in runs[-1].items()}
        return {n: v[bracket.lane] for n, v in metrics.items()}

    def grouped(self, per_seed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One value per configuration from its seeds' lanes (:func:`~jaxtune.study.records.seed_groups`)."""
        pairs = self.args.objectives or ((self.metric, self.args.mode),)
        return seed_groups(per_seed, self.k, pairs, self.args.aggregate)

    def full(self, params: dict, u: np.ndarray, budget: int) -> tuple[dict, list[float]]:
        """A trial's parameters and unit coordinates in the whole space, its budget included (what
        every other driver stores, so importance and the report read them alike)."""
        unit = [*map(float, u[: self.fidelity_at]), self.unit_at[budget], *map(float, u[self.fidelity_at :])]
        return {**params, self.spec.fidelity: budget}, unit

    def finished(self, first: int, n: int) -> bool:
        """Whether the bracket that started at round ``first`` with ``n`` configurations is stored
        whole (each of its configurations ends in exactly one stored trial)."""
        return sum(1 for r, _ in self.study.done if r == first) >= n

    @property
    def compiles(self) -> int:
        """Programs compiled so far, by every population of the sweep."""
        return sum(p.compiles for p in [*self.pops.values(), self.shared])


def _run_halving(objective, space: Space, sub: Space, spec, plan, levels, args, metric: str, study: Study,
                 vmap_width: int | None) -> Result:  # fmt: skip
    run = _Halving(objective, space, sub, spec, plan, levels, args, metric, study, vmap_width)
    r, b, stopped, ran = 0, 0, None, False
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
            t0 = time.perf_counter()
            rows, points, keep, budget = bracket.rung(i, last)
            going_on = not last and keep.any()
            if going_on:  # the survivors move on; stored with this rung's trials, in one transaction
                bracket.narrow(keep)
                bracket.next = i + 1
            study.write(rows, points, (), bracket.checkpoint() if going_on else None)
            ran = True
            if args.report is not None:
                args.report(_rung_progress(r, args, study, metric, len(keep), budget, int(keep.sum()),
                                           time.perf_counter() - t0, run.compiles))  # fmt: skip
            r += 1
            if not going_on:  # the bracket is done: its checkpoint resumes nothing
                study.release_checkpoints()
                break
            if args.past_deadline():  # a safe point: this rung and the survivors' states are stored
                stopped = "timeout"
                break
    if stopped:
        args.say_stopped(len(study.done), "at the last stored rung")
    else:  # finished: no checkpoint is kept, and the file gives their space back
        study.release_checkpoints(compact=True)
    result = study.result(metric, args.mode, args.tie_break, args.select, stopped)
    result.compiles = run.compiles
    return result


def _rung_progress(r: int, args, study: Study, metric: str, ran: int, steps: int, kept: int, seconds: float,
                   compiles: int) -> Progress:  # fmt: skip
    """Rung ``r``'s :class:`~jaxtune.progress.Progress` (the best finished trial of the study so far)."""
    best = min((t.score(args.mode) for t in study.done.values()), default=math.inf)  # (inf unless "ok")
    diverged = sum(t.status == "diverged" for (tr, _), t in study.done.items() if tr == r)
    return Progress(unit="rung", round=r, rounds=args.rounds, ran=ran, seconds=seconds,
                    trials_per_s=ran / max(seconds, 1e-9), metric=metric,
                    best=minimised(best, args.mode) if math.isfinite(best) else None, diverged=int(diverged),
                    compiles=compiles, steps=steps, kept=kept)  # fmt: skip
