"""The driver: rounds of ask -> execute -> tell, stored as they finish, resumable.

This is jaxtune's only impure loop. Everything it calls (space, strategy, executor programs) is
pure and compiled once per sweep. Its pieces, one job each:

* :func:`_check_arguments` — every argument checked, all problems reported at once, before
  anything is traced or compiled;
* :class:`_Driver` — the strategy's compiled programs (init, a round's plan, tell);
* :class:`_Study` — the study in storage: opened, locked, checked against what runs now, shared
  with every process of a ``jax.distributed`` run (process 0 writes), written chunk by chunk;
* :func:`_run_round` — one round's missing trials through the executor, stored as they finish;
* :func:`tune` — the loop over rounds.

Resuming needs no saved strategy state: strategies are deterministic functions of their keys
and of what they were told, so a rerun replays ``ask``/``tell`` over the stored rounds (checking
that it asks for the very same points) and carries on from the first trial not yet stored.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune._checks import check_int
from jaxtune.errors import InputError, InputTypeError, Problems
from jaxtune.execute import CURVES, Executor
from jaxtune.keys import INIT_STREAM, round_keys
from jaxtune.progress import ChunkProgress, RoundReport, print_compiling, print_round
from jaxtune.result import MODES, SELECT, Result, minimised, select_value, tie_break_spec
from jaxtune.schedulers import is_scheduler
from jaxtune.space import Space
from jaxtune.storage import Storage, StudyMismatchError
from jaxtune.strategies.base import Strategy, describe, make_strategy
from jaxtune.strategies.optuna_sampler import HostStrategy

__all__ = ["tune", "RoundReport", "MAX_TRIALS", "MAX_SEED"]


# A round's points, keys and results are held at once; past this a round would not fit anyway.
MAX_TRIALS = 2**24
# JAX keys are made from 32-bit seeds here (jax_enable_x64 off): larger seeds would wrap around.
MAX_SEED = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class _Arguments:
    """``tune``'s arguments, checked."""

    strategy: Strategy | None  # None: a population scheduler
    trials: int
    rounds: int
    mode: str
    seed: int
    study: str
    report: Callable[[RoundReport], None] | None
    timeout: float | None
    select: str
    verbose: bool


def _check_arguments(
    objective, space, strategy, trials, rounds, mode, seed, study, strategy_options, progress, timeout, select
) -> _Arguments:
    """Checks every argument of :func:`tune`; raises one :class:`InputError` listing every problem."""
    problems = Problems()
    with problems.check():
        if not isinstance(space, Space):
            raise InputTypeError(f"space must be a jt.Space, got {type(space).__name__}")
    with problems.check():
        if not callable(objective):
            raise InputTypeError(f"objective must be callable as objective(hp, key), got {objective!r}")
    with problems.check():
        trials = check_int("trials", trials, 1, MAX_TRIALS)
    with problems.check():
        if mode not in MODES:
            raise InputError(f"mode must be 'min' or 'max', got {mode!r}")
    with problems.check():
        seed = check_int("seed", seed, 0, MAX_SEED)
    with problems.check():
        if not isinstance(study, str) or not study:
            raise InputError(f"study must be a non-empty string, got {study!r}")
    with problems.check():
        rounds = check_int("rounds", rounds, 1, none=True)
    with problems.check():
        if not (isinstance(progress, bool) or callable(progress)):
            raise InputTypeError(f"progress must be True, False or a callable taking a RoundReport, got {progress!r}")
    with problems.check():
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
        ):
            raise InputError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    with problems.check():
        if select not in SELECT:
            raise InputError(f"select must be one of {', '.join(map(repr, SELECT))}, got {select!r}")
    problems.raise_if_any("jt.tune's arguments")
    # The strategy needs a valid space and trial count: checked once those are known to be good.
    # A population scheduler ("pbt", "asha") is built by its own driver (it needs the step budget).
    built = None if is_scheduler(strategy) else make_strategy(strategy, space, trials, **(strategy_options or {}))
    return _Arguments(
        strategy=built,
        trials=trials,
        rounds=rounds if rounds is not None else (built.num_rounds if built else None) or 1,
        mode=mode,
        seed=seed,
        study=study,
        report=print_round if progress is True else (progress or None),
        timeout=None if timeout is None else float(timeout),
        select=select,
        verbose=progress is True,
    )


def _continued_halving(strategy, options, objective):
    """The halving spec if this sweep continues survivors from their state, else None."""
    from jaxtune.execute.population import supports_protocol
    from jaxtune.strategies.base import make_spec
    from jaxtune.strategies.halving import _Halving

    spec = make_spec(strategy, **(options or {})) if isinstance(strategy, str) else strategy
    if isinstance(spec, _Halving) and spec.continue_survivors and supports_protocol(objective):
        return spec
    return None


def study_config(space, strategy: dict, args, metric, tie_break, objective, executor, kind: str, **extra) -> dict:
    """What a study is made of, stored with it and checked on resume (see :class:`_Study`)."""
    return {
        "space": space.describe(),
        "strategy": strategy,
        "trials": args.trials,
        "seed": args.seed,
        "metric": metric,
        "mode": args.mode,
        "select": args.select,
        "tie_break": tie_break,
        "objective": getattr(objective, "__qualname__", type(objective).__qualname__),
        "program": executor.trial.fingerprint(executor.first_bucket()),
        "layout": executor.layout(),
        "kind": kind,  # "rounds" or "population": how trial keys were made (jaxtune.keys)
        **extra,
    }


def _choose_metric(names: list[str], metric: str | None, tie_break: tuple[str, str] | None) -> str:
    """The selection metric among the objective's ``names`` (the only one, if not given)."""
    if metric is None:
        if len(names) != 1:
            raise InputError(f"the objective returns metrics {names}: pass metric= to choose one")
        metric = names[0]
    elif metric not in names:
        raise InputError(f"metric {metric!r} is not among the objective's metrics {names}")
    if tie_break is not None and (tie_break[0] not in names or tie_break[0] == metric):
        raise InputError(f"tie_break must be another of the objective's metrics {names}, got {tie_break[0]!r}")
    return metric


class _Driver:
    """The strategy's programs for one sweep, compiled once on worker threads: init, plan, tell.

    They are submitted only after the objective has been traced and the metric checked (so a bad
    argument compiles nothing), and after the objective's first program (which takes longest).
    """

    def __init__(self, strategy: Strategy, space: Space, trials: int, seed: int, executor: Executor):
        self.root = jax.random.key(seed)
        state0 = jax.eval_shape(strategy.init, self.root)
        u0, _ = jax.eval_shape(strategy.ask, self.root, state0)
        if u0.shape != (trials, space.dim):
            raise InputError(f"strategy asked for points of shape {u0.shape}, expected {(trials, space.dim)}")

        def plan(root, r, state):
            """A round's points, strategy state, valid lanes, hyperparameters and trial keys."""
            ask_key, trial_key = round_keys(root, r)
            u, state = strategy.ask(ask_key, state)
            return u, state, strategy.valid(state), space.from_unit(u), jax.random.split(trial_key, trials)

        jit = functools.partial(jax.jit, compiler_options=executor.compiler_options or None)
        scores = jax.ShapeDtypeStruct((trials,), jnp.float32)
        self._plan = executor.compile_async(jit(plan).lower(self.root, np.int32(0), state0))
        self._init = executor.compile_async(
            jit(lambda root: strategy.init(jax.random.fold_in(root, INIT_STREAM))).lower(self.root)
        )
        self._tell = executor.compile_async(jit(strategy.tell).lower(state0, u0, scores))
        self.state = None

    def plan(self, r: int):
        """Round ``r``'s ``(u, valid, hp, keys)``; advances the strategy state past its ``ask``."""
        if self.state is None:
            self.state = self._init.result()(self.root)
        u, self.state, valid, hp, keys = self._plan.result()(self.root, np.int32(r), self.state)
        return u, np.asarray(valid), hp, keys

    def tell(self, u: jax.Array, scores: np.ndarray) -> None:
        """Tells the strategy a round's scores (lower is better, +inf for diverged or empty lanes)."""
        self.state = self._tell.result()(self.state, u, jnp.asarray(scores))


class _HostDriver:
    """:class:`_Driver`'s interface for a strategy that proposes on the host (Optuna's samplers):
    the same trial keys, its points asked and told once a round, in order."""

    def __init__(self, strategy: HostStrategy, space: Space, trials: int, seed: int, executor: Executor):
        self.strategy, self.space, self.trials, self.seed = strategy, space, trials, seed
        self.root = jax.random.key(seed)

    def plan(self, r: int):
        """Round ``r``'s ``(u, valid, hp, keys)``."""
        u = jnp.asarray(self.strategy.ask(self.seed, r), jnp.float32)
        _, trial_key = round_keys(self.root, r)
        return u, np.ones((self.trials,), bool), self.space.from_unit(u), jax.random.split(trial_key, self.trials)

    def tell(self, u: jax.Array, scores: np.ndarray) -> None:
        """Tells the host strategy a round's scores (lower is better, +inf for diverged)."""
        self.strategy.tell(np.asarray(u), np.asarray(scores))


def _from_process_0(obj: Any) -> Any:
    """``obj`` as process 0 has it, on every process of a ``jax.distributed`` run (JSON-able)."""
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(obj).encode(), np.uint8) if jax.process_index() == 0 else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
    buf = np.zeros(size, np.uint8)
    buf[: data.size] = data
    return json.loads(bytes(np.asarray(multihost_utils.broadcast_one_to_all(buf))))


class _Study:
    """A study in storage, as this sweep sees it: the trials done, and a place to write new ones.

    With several processes (``jax.distributed``) the study lives in one file that process 0 opens,
    locks and writes; it sends what is stored to the others, which keep their copy in memory
    (every process computes every result, so all return the same :class:`Result`).
    """

    def __init__(self, storage: str | None, name: str, config: dict[str, Any]):
        self.storage, self.name = storage, name
        self.writer = jax.process_index() == 0
        self.store = Storage(storage if storage is not None and self.writer else ":memory:")
        error = None
        try:
            if self.writer:
                self.store.lock_study(name)  # a second run of this study at the same time is refused
                self.sid = self._open(config)
            else:
                self.sid = self.store.open_study(name, config)
        except StudyMismatchError as e:
            error = e
        if jax.process_count() > 1:
            shared = _from_process_0(
                {"error": str(error) if error else None, "trials": self.store.trials(self.sid) if not error else []}
            )
            if shared["error"] is not None:
                error = error or StudyMismatchError(shared["error"])
            elif not self.writer:
                self.store.write_trials(self.sid, shared["trials"])
        if error is not None:
            self.store.close()
            raise error
        self.done = {(t["round"], t["slot"]): t for t in self.store.trials(self.sid)}

    def _open(self, config: dict[str, Any]) -> int:
        """Opens (or creates) the study, refusing one made with another space, strategy or objective."""
        check = ["space", "strategy", "trials", "seed", "metric", "mode", "select"]
        stored = self.store.study_config(self.name)
        if stored is not None and stored.get("program") != config["program"]:
            if stored.get("layout", {}).get("jax") == config["layout"]["jax"]:
                check.append("program")  # the same jax traces the same objective to the same program
            else:
                warnings.warn(
                    f"study {self.name!r} was stored with jax {stored.get('layout', {}).get('jax')}; its objective's "
                    "program cannot be compared across jax versions, so jaxtune cannot check that the trials still "
                    "to run train the same model on the same data as the stored ones",
                    stacklevel=4,
                )
        sid = self.store.open_study(self.name, config, check=check, warn=("layout",))
        return sid

    def write(self, rows: list[dict[str, Any]], points: list, lineage: list = (), checkpoint=None) -> None:
        """Stores a finished chunk (every process keeps it; process 0 writes it to the file), with
        a population's checkpoint when given (in the same transaction)."""
        self.store.write_trials(self.sid, rows, points, lineage, checkpoint if self.writer else None)
        self.done.update({(row["round"], row["slot"]): row for row in rows})

    def result(self, metric: str, mode: str, tie_break, select: str, stopped: str | None) -> Result:
        """Every trial of the study, stored ones included."""
        curves = self.store.curves(self.sid)
        if jax.process_count() > 1:  # curves stored before this run are in process 0's file only
            curves = {
                tuple(k): v
                for k, v in _from_process_0([[list(k), v] for k, v in curves.items()] if self.writer else None)
            }
        return Result(
            list(self.done.values()), metric, mode, study=self.name, storage=self.storage, curves=curves,
            tie_break=tie_break, select=select, stopped=stopped, lineage=self.store.lineage(self.sid),
            config=self.store.study_config(self.name),
        )  # fmt: skip

    def close(self) -> None:
        """Closes the storage (and frees the study's lock)."""
        self.store.close()


def _records(r, idx, params, u, metrics, curves, metric, mode, select):
    """Storage rows (and learning-curve points) for one finished chunk of round ``r``."""
    rows, points = [], []
    steps = curves.get("step")
    for j, i in enumerate(idx):
        m = {n: float(v[j]) for n, v in metrics.items()}
        # Any non-finite metric means the run blew up, whatever the selection metric says.
        ok = all(math.isfinite(v) for v in m.values())
        curve = [float(v) for v in curves[metric][j]] if metric in curves else None
        value, _ = select_value(m[metric], curve, mode, select)
        rows.append(
            {
                "round": r,
                "slot": int(i),
                "params": params[j],
                "unit": u[i].tolist(),
                "metrics": m,
                "value": value,
                "status": "ok" if ok else "diverged",
            }
        )
        for c in range(0 if steps is None else steps.shape[1]):
            point = {n: float(v[j, c]) for n, v in curves.items() if n != "step"}
            points.append((r, int(i), int(steps[j, c]), point))
    return rows, points


def _run_round(r, args, executor, space, study, driver, metric, deadline, announced) -> tuple[RoundReport | None, str]:
    """Runs round ``r``'s trials not yet stored, stores them chunk by chunk and tells the strategy.

    Returns the round's report (None if nothing ran) and how it ended: ``"done"``, ``"timeout"``
    (the deadline passed; every finished chunk is stored) or ``"empty"`` (the strategy has
    nothing left to ask: a finished grid).
    """
    u, valid, hp, keys = driver.plan(r)
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
    if missing.size:
        if args.verbose:
            new = [p for p in executor.plan(hp, only=missing) if p not in announced]
            if new:  # programs no earlier round ran: compiled now (or loaded from JAX's cache)
                announced.update(new)
                print_compiling(r, args.rounds, [(executor.trial.describe(b), w) for b, w, _ in new])
        chunks = ChunkProgress(r, args.rounds, int(missing.size), executor.compiles) if args.verbose else None
        for idx, metrics, curves in executor.run(hp, keys, only=missing):
            params = space.to_python({n: np.asarray(v)[idx] for n, v in hp.items()})
            study.write(*_records(r, idx, params, u_np, metrics, curves, metric, args.mode, args.select))
            if chunks is not None:
                chunks.update(len(idx), executor.compiles)
            if deadline is not None and time.monotonic() > deadline and not all((r, s) in study.done for s in missing):
                return None, "timeout"  # a safe point: every finished chunk is stored
    seconds = time.perf_counter() - t0
    scores = np.full((args.trials,), np.inf, np.float32)
    for s in np.flatnonzero(valid):
        t = study.done[(r, s)]
        scores[s] = minimised(t["value"], args.mode, t["status"] == "ok")
    driver.tell(u, scores)
    if not missing.size:
        return None, "done"
    return (
        RoundReport(
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
    timeout: float | None = None,
    select: str = "final",
    tie_break: str | tuple[str, str] | None = None,
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
        Rounds are numbered from 0 (in progress lines, tables and ``Result``).
      metric: metric to select on; may be omitted if the objective returns one metric.
      mode: ``"min"`` or ``"max"``.
      seed: seeds the strategy and every trial's key; same seed, same results.
      storage: SQLite file to store trials in (None: in memory). Rerunning with the same file
        and study resumes: finished trials are not run again; ``rounds`` may grow. A study is
        refused if it was made with another space, strategy, trial count, seed, metric, mode or
        objective (another model, step count or data). With several processes
        (``jax.distributed``), process 0 writes the file and every process returns every result.
      study: study name inside the storage file.
      strategy_options: options for a strategy given by name, e.g. ``{"top_fraction": 0.2}``.
      max_batch: most trials one compiled program runs at once (None: as many as fit in memory).
      vmap_width: trials vmapped together inside a program (see :class:`~jaxtune.Executor`);
        ``"auto"`` uses the measured best for the platform.
      progress: print what compiles, chunks and one line per round (True), stay silent (False),
        or a callable that receives a :class:`RoundReport` per round.
      timeout: seconds after which the sweep stops at the next safe point (a stored chunk; each
        call runs at least one); the result says ``stopped="timeout"``, and a rerun with the same
        storage resumes.
      select: a trial's selection value: its ``"final"`` evaluation, or ``"best_step"``, the best
        point of its learning curve (objectives that return curves, e.g. the Trainer with
        ``eval_every``): what early stopping at the best checkpoint would keep.
      tie_break: another metric that orders trials of equal value in ``Result.best`` and the
        tables: a name, lower is better (e.g. ``"val_loss"`` between trials of equal
        ``"val_accuracy"``), or ``(name, "max")``.

    Returns:
      A :class:`~jaxtune.Result` with every trial of the study (stored ones included).

    Example:
      >>> space = jt.Space({"x1": jt.Float(-5, 10), "x2": jt.Float(0, 15)})
      >>> result = jt.tune(jt.tasks.branin, space, "coarse_to_fine", trials=256, rounds=8, progress=False)
      >>> round(result.best["value"], 3)  # Branin's minimum is 0.397887
      0.398
    """
    # All validation happens before anything is compiled or run.
    args = _check_arguments(
        objective, space, strategy, trials, rounds, mode, seed, study, strategy_options, progress, timeout, select
    )
    tie_break = tie_break_spec(tie_break)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    if storage is not None and jax.process_index() == 0:
        Storage.check(storage)  # an unusable path fails now, before any tracing or compiling
    if args.strategy is None:  # a population scheduler: checked before anything is traced
        from jaxtune.tune_population import check_population

        check_population(objective, space, strategy)
    if hasattr(objective, "validate_space"):
        objective.validate_space(space)
    executor = Executor(objective, space, max_batch=max_batch, vmap_width=vmap_width)
    first = executor.first_bucket()
    metric = _choose_metric([n for n in executor.output_shapes(first) if n != CURVES], metric, tie_break)
    if args.verbose and executor.defaulted:
        fixed = ", ".join(f"{n}={v!r}" for n, v in executor.defaulted.items())
        print(f"[jaxtune] not in the search space, so at the objective's defaults: {fixed}", file=sys.stderr)

    if args.strategy is None:  # a population scheduler: lanes trained in segments
        from jaxtune.tune_population import tune_population

        return tune_population(
            objective, space, strategy, strategy_options or {}, args, executor, metric, tie_break, storage
        )
    halving = _continued_halving(strategy, strategy_options, objective)
    if halving is not None:  # successive halving whose survivors continue from their state
        from jaxtune.tune_population import tune_halving

        return tune_halving(objective, space, halving, args, executor, metric, tie_break, storage)
    described = describe(strategy) if not isinstance(strategy, Strategy) else {"name": "custom"}
    config = study_config(space, described, args, metric, tie_break, objective, executor, "rounds")
    sweep = _Study(storage, study, config)
    try:
        if not sweep.done:  # a fresh study: its first program may be known already
            executor.prefetch_batch(args.trials)
        host = isinstance(args.strategy, HostStrategy)  # an Optuna sampler proposes on the host
        driver = (_HostDriver if host else _Driver)(args.strategy, space, args.trials, args.seed, executor)
        best, stopped, announced = math.inf, None, set()
        ran = False  # every run makes progress: the deadline is checked once a chunk is stored
        for r in range(args.rounds):
            if ran and deadline is not None and time.monotonic() > deadline:
                stopped = "timeout"
                break
            report, end = _run_round(r, args, executor, space, sweep, driver, metric, deadline, announced)
            ran = ran or report is not None or end == "timeout"
            if end != "done":
                stopped = "timeout" if end == "timeout" else None
                break
            best = min([best] + [minimised(t["value"], args.mode, t["status"] == "ok")
                                 for (tr, _), t in sweep.done.items() if tr == r])  # fmt: skip
            if report is not None and args.report is not None:
                report["best"] = minimised(best, args.mode) if math.isfinite(best) else None  # back to the metric
                args.report(report)
        if stopped and args.verbose:
            print(
                f"[jaxtune] stopped after timeout={args.timeout:g} s with {len(sweep.done)} trials stored; "
                "rerun with the same storage and study to resume",
                file=sys.stderr,
            )
        return sweep.result(metric, args.mode, tie_break, args.select, stopped)
    finally:
        sweep.close()
