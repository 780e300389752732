"""The driver: rounds of ask -> execute -> tell, stored as they finish, resumable.

This is jaxtune's only impure loop. Everything it calls (space, strategy, executor programs) is
pure and compiled once per sweep.

Resuming needs no saved strategy state: strategies are deterministic functions of their keys
and of what they were told, so a rerun replays ``ask``/``tell`` over the stored rounds (checking
that it asks for the very same points) and carries on from the first trial not yet stored.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune.execute import CURVES, Executor
from jaxtune.result import MODES, Result
from jaxtune.space import Space
from jaxtune.storage import Storage, StudyMismatchError
from jaxtune.strategies.base import Strategy, describe, make_strategy

__all__ = ["tune", "RoundReport"]

# Keys for the strategy and the trials come from disjoint streams of the seed.
_INIT_STREAM, _ROUND_STREAM = 1, 2


# A round's points, keys and results are held at once; past this a round would not fit anyway.
MAX_TRIALS = 2**24
# JAX keys are made from 32-bit seeds here (jax_enable_x64 off): larger seeds would wrap around.
MAX_SEED = 2**32 - 1


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be an int <= {high}, got {value!r}")
    return int(value)


class RoundReport(dict):
    """What a finished round reports to ``progress``: round, rounds, trials, seconds, best, ..."""


def _print_progress(report: RoundReport) -> None:
    best = "none yet" if report["best"] is None else f"{report['best']:.6g}"
    print(
        f"[jaxtune] round {report['round'] + 1}/{report['rounds']}: {report['ran']} trials in "
        f"{report['seconds']:.2f} s ({report['trials_per_s']:.1f} trials/s), "
        f"{report['diverged']} diverged, best {report['metric']} so far {best}",
        file=sys.stderr,
        flush=True,
    )


class _ChunkProgress:
    """Prints a line after each chunk of a round that runs in several: trials done, rate, time left."""

    def __init__(self, r: int, rounds: int, total: int, compiles: int):
        self.r, self.rounds, self.total, self.done = r, rounds, total, 0
        self.start = time.perf_counter()
        self.compiles = compiles
        self.steady: tuple[float, int] | None = None  # (time, trials done) once programs are compiled

    def update(self, n: int, compiles: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.done >= self.total:
            return  # the round's own line follows
        head = f"[jaxtune] round {self.r + 1}/{self.rounds}: {self.done}/{self.total} trials"
        if self.steady is None or compiles != self.compiles:
            # The first chunk (or one that compiled a new program): its rate says nothing yet.
            self.steady, self.compiles = (now, self.done), compiles
            print(f"{head} in {now - self.start:.1f} s (compiling included)", file=sys.stderr, flush=True)
            return
        rate = (self.done - self.steady[1]) / max(now - self.steady[0], 1e-9)
        left = (self.total - self.done) / rate
        print(f"{head}, {rate:.1f} trials/s, ~{left:.0f} s left", file=sys.stderr, flush=True)


def _records(r, idx, params, u, metrics, curves, metric):
    """Storage rows (and learning-curve points) for one finished chunk of round ``r``."""
    rows, points = [], []
    steps = curves.get("step")
    for j, i in enumerate(idx):
        m = {n: float(v[j]) for n, v in metrics.items()}
        # Any non-finite metric means the run blew up, whatever the selection metric says.
        ok = all(math.isfinite(v) for v in m.values())
        rows.append(
            {
                "round": r,
                "slot": int(i),
                "params": params[j],
                "unit": u[i].tolist(),
                "metrics": m,
                "value": m[metric],
                "status": "ok" if ok else "diverged",
            }
        )
        for c in range(0 if steps is None else steps.shape[1]):
            curve = {n: float(v[j, c]) for n, v in curves.items() if n != "step"}
            points.append((r, int(i), int(steps[j, c]), curve))
    return rows, points


def tune(
    objective: Callable[..., Any],
    space: Space,
    strategy: str | Any = "random",
    trials: int = 64,
    rounds: int | None = None,
    metric: str | None = None,
    mode: str = "min",
    seed: int = 0,
    storage: str | None = None,
    *,
    study: str = "default",
    strategy_options: dict[str, Any] | None = None,
    max_batch: int | None = None,
    vmap_width: int | None | str = "auto",
    progress: bool | Callable[[RoundReport], None] = True,
) -> Result:
    """Tunes ``objective`` over ``space``: ``rounds`` rounds of ``trials`` trials run at once.

    Args:
      objective: a pure single-trial function ``objective(hp, key) -> {metric: scalar}`` (or a
        scalar, named ``"value"``); ``hp`` values are scalar arrays, or Python values for
        ``static=True`` parameters. It is vmapped and compiled by jaxtune.
      space: the :class:`~jaxtune.Space` to search.
      strategy: a registry name (``"random"``, ``"grid"``, ``"coarse_to_fine"``), a strategy spec
        such as ``jt.strategies.CoarseToFine(top_fraction=0.2)``, or a built ``Strategy``.
      trials: trials per round (run together as one batch).
      rounds: number of rounds; None means 1, or enough to cover the grid for ``"grid"``.
      metric: metric to select on; may be omitted if the objective returns one metric.
      mode: ``"min"`` or ``"max"``.
      seed: seeds the strategy and every trial's key; same seed, same results.
      storage: SQLite file to store trials in (None: in memory). Rerunning with the same file
        and study resumes: finished trials are not run again; ``rounds`` may grow. With several
        processes (``jax.distributed``), give each process its own file: every process holds
        every result.
      study: study name inside the storage file.
      strategy_options: options for a strategy given by name, e.g. ``{"top_fraction": 0.2}``.
      max_batch: most trials one compiled program runs at once (None: as many as fit in memory).
      vmap_width: trials vmapped together inside a program (see :class:`~jaxtune.Executor`);
        ``"auto"`` uses the measured best for the platform.
      progress: print one line per round (True), stay silent (False), or a callable that
        receives a :class:`RoundReport` per round.

    Returns:
      A :class:`~jaxtune.Result` with every trial of the study (stored ones included).

    Example:
      >>> space = jt.Space({"x1": jt.Float(-5, 10), "x2": jt.Float(0, 15)})
      >>> result = jt.tune(jt.tasks.branin, space, "coarse_to_fine", trials=256, rounds=8, progress=False)
      >>> round(result.best["value"], 3)  # Branin's minimum is 0.397887
      0.398
    """
    # All validation happens before anything is compiled or run.
    if not isinstance(space, Space):
        raise TypeError(f"space must be a jt.Space, got {type(space).__name__}")
    if not callable(objective):
        raise TypeError(f"objective must be callable as objective(hp, key), got {objective!r}")
    trials = _check_int("trials", trials, 1, MAX_TRIALS)
    if mode not in MODES:
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    seed = _check_int("seed", seed, 0, MAX_SEED)
    if not isinstance(study, str) or not study:
        raise ValueError(f"study must be a non-empty string, got {study!r}")
    built: Strategy = make_strategy(strategy, space, trials, **(strategy_options or {}))
    if rounds is None:
        rounds = built.num_rounds or 1
    rounds = _check_int("rounds", rounds, 1)
    if not (isinstance(progress, bool) or callable(progress)):
        raise TypeError(f"progress must be True, False or a callable taking a RoundReport, got {progress!r}")
    report = _print_progress if progress is True else (progress or None)

    if storage is not None:
        Storage.check(storage)  # an unusable path fails now, before any tracing or compiling
    if hasattr(objective, "validate_space"):
        objective.validate_space(space)
    executor = Executor(objective, space, max_batch=max_batch, vmap_width=vmap_width)
    root = jax.random.key(seed)
    state0 = jax.eval_shape(built.init, root)
    u0, _ = jax.eval_shape(built.ask, root, state0)
    if u0.shape != (trials, space.dim):
        raise ValueError(f"strategy asked for points of shape {u0.shape}, expected {(trials, space.dim)}")

    def plan(root, r, state):
        """A round's points, strategy state, valid lanes, hyperparameters and trial keys."""
        ask_key, trial_key = jax.random.split(jax.random.fold_in(jax.random.fold_in(root, _ROUND_STREAM), r))
        u, state = built.ask(ask_key, state)
        return u, state, built.valid(state), space.from_unit(u), jax.random.split(trial_key, trials)

    names = [n for n in executor.output_shapes(executor.first_bucket()) if n != CURVES]
    if metric is None:
        if len(names) != 1:
            raise ValueError(f"the objective returns metrics {names}: pass metric= to choose one")
        metric = names[0]
    elif metric not in names:
        raise ValueError(f"metric {metric!r} is not among the objective's metrics {names}")
    if progress is True and executor.defaulted:
        fixed = ", ".join(f"{n}={v!r}" for n, v in executor.defaulted.items())
        print(f"[jaxtune] not in the search space, so at the objective's defaults: {fixed}", file=sys.stderr)

    store = Storage(storage if storage is not None else ":memory:")
    try:
        config = {
            "space": space.describe(),
            "strategy": describe(strategy) if not isinstance(strategy, Strategy) else {"name": "custom"},
            "trials": trials,
            "seed": seed,
            "metric": metric,
            "mode": mode,
            "objective": getattr(objective, "__qualname__", type(objective).__qualname__),
            "layout": executor.layout(),
        }
        store.lock_study(study)  # a second run of this study at the same time is refused, not duplicated
        sid = store.open_study(
            study, config, check=("space", "strategy", "trials", "seed", "metric", "mode"), warn=("layout",)
        )
        done = {(t["round"], t["slot"]): t for t in store.trials(sid)}
        if not done:  # a fresh study: its first program may be known already
            executor.prefetch_batch(trials)
        # Compiled once per sweep: init, a round's plan and tell, on worker threads alongside the
        # objective's program (which starts first: it takes longest), and only once the objective
        # has been traced and the metric checked, so a bad argument compiles nothing.
        jit = functools.partial(jax.jit, compiler_options=executor.compiler_options or None)
        plan_compiled = executor.compile_async(jit(plan).lower(root, np.int32(0), state0))
        init_compiled = executor.compile_async(
            jit(lambda root: built.init(jax.random.fold_in(root, _INIT_STREAM))).lower(root)
        )
        scores_spec = jax.ShapeDtypeStruct((trials,), jnp.float32)
        tell_compiled = executor.compile_async(jit(built.tell).lower(state0, u0, scores_spec))
        plan_round = plan_compiled.result()
        state = init_compiled.result()(root)
        sign = 1.0 if mode == "min" else -1.0
        tell = tell_compiled.result()
        best = math.inf

        for r in range(rounds):
            u, state, valid, hp, keys = plan_round(root, np.int32(r), state)
            valid = np.asarray(valid)
            if not valid.any():
                break  # the strategy has nothing left to ask (a finished grid)
            u_np = np.asarray(u)
            stored = {s: done[(r, s)] for s in np.flatnonzero(valid) if (r, s) in done}
            for s, t in stored.items():
                if np.max(np.abs(np.asarray(t["unit"]) - u_np[s])) > 1e-5:
                    raise StudyMismatchError(
                        f"stored trial (round {r}, slot {s}) of study {study!r} does not match what the strategy "
                        "asks now (did the strategy code or the jax version change?); use a new study name"
                    )
            missing = np.asarray([s for s in np.flatnonzero(valid) if s not in stored], dtype=np.int64)

            t0 = time.perf_counter()
            chunks = _ChunkProgress(r, rounds, int(missing.size), executor.compiles) if progress is True else None
            if missing.size:
                for idx, metrics, curves in executor.run(hp, keys, only=missing):
                    params = space.to_python({n: np.asarray(v)[idx] for n, v in hp.items()})
                    rows, points = _records(r, idx, params, u_np, metrics, curves, metric)
                    store.write_trials(sid, rows, points)
                    done.update({(r, row["slot"]): row for row in rows})
                    if chunks is not None:
                        chunks.update(len(idx), executor.compiles)
            seconds = time.perf_counter() - t0

            scores = np.full((trials,), np.inf, np.float32)
            for s in np.flatnonzero(valid):
                t = done[(r, s)]
                scores[s] = sign * t["value"] if t["status"] == "ok" else np.inf
            state = tell(state, u, jnp.asarray(scores))
            best = min(best, float(scores.min()))
            if report is not None and missing.size:
                report(
                    RoundReport(
                        round=r,
                        rounds=rounds,
                        ran=int(missing.size),
                        seconds=seconds,
                        trials_per_s=missing.size / max(seconds, 1e-9),
                        metric=metric,
                        best=None if not math.isfinite(best) else sign * best,
                        diverged=int(sum(done[(r, s)]["status"] == "diverged" for s in missing)),
                        compiles=executor.compiles,
                    )
                )

        return Result(list(done.values()), metric, mode, study=study, storage=storage, curves=store.curves(sid))
    finally:
        store.close()
