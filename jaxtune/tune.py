"""``jt.tune``: checks every argument once, then hands the sweep to its driver.

Every argument is checked before anything is traced or compiled, all problems reported at once
(:func:`_check_arguments`); the objective is traced to choose the metric; then one driver runs
the sweep over the study layer (:mod:`jaxtune.study.study`):

* :mod:`jaxtune.drivers.rounds` — rounds of ask -> execute -> tell, for every strategy;
* :mod:`jaxtune.drivers.population` — PBT, ASHA and median stopping: lanes in segments;
* :mod:`jaxtune.drivers.halving` — successive halving and Hyperband continuing survivors.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxtune._checks import check_int
from jaxtune.constraints import check_constraints
from jaxtune.drivers import halving as halving_driver
from jaxtune.drivers import population as population_driver
from jaxtune.drivers import rounds as rounds_driver
from jaxtune.drivers.args import Arguments
from jaxtune.drivers.base import Driver
from jaxtune.errors import InputError, InputTypeError, Problems
from jaxtune.execute import CURVES, Executor
from jaxtune.execute.timing import CLOCK
from jaxtune.progress import Progress, RoundReport, print_progress
from jaxtune.result import Result
from jaxtune.schedulers import is_scheduler
from jaxtune.schedulers.base import make_spec as make_scheduler_spec
from jaxtune.settings import enable_compile_cache
from jaxtune.space import Space
from jaxtune.strategies.base import Strategy, describe, make_strategy
from jaxtune.strategies.halving import continued_halving
from jaxtune.study.records import AGGREGATES, MODES, SELECT, tie_break_spec
from jaxtune.study.storage import Storage
from jaxtune.study.warm import WarmStart, load_warm_start

__all__ = ["tune", "Progress", "RoundReport", "MAX_TRIALS", "MAX_SEED", "RULES", "check_argument"]


# A round's points, keys and results are held at once; past this a round would not fit anyway.
MAX_TRIALS = 2**24
# JAX keys are made from 32-bit seeds here (jax_enable_x64 off): larger seeds would wrap around.
MAX_SEED = 2**32 - 1
MAX_SEEDS = 2**10  # training seeds per configuration (trials * seeds lanes stay under MAX_TRIALS)


def _positive_seconds(value: Any, name: str) -> float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
        raise InputError(f"{name} must be a positive number of seconds or None, got {value!r}")
    return None if value is None else float(value)


def _one_of(allowed: tuple[str, ...], text: str | None = None) -> Callable[[Any, str], str]:
    text = text or f"one of {', '.join(map(repr, allowed))}"

    def check(value: Any, name: str) -> str:
        if value not in allowed:
            raise InputError(f"{name} must be {text}, got {value!r}")
        return value

    return check


def _name(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _metrics(value: Any, name: str) -> str | tuple[str, ...]:
    """A metric name, or a list of two or more distinct names (several objectives)."""
    if isinstance(value, (list, tuple)):
        names = [v for v in value if isinstance(v, str) and v]
        if len(value) < 2 or len(names) != len(value) or len(set(names)) != len(names):
            raise InputError(f"{name} must be a metric name or a list of two or more distinct names, got {value!r}")
        return tuple(value)
    return _name(value, name)


def _modes(value: Any, name: str) -> str | tuple[str, ...]:
    """'min' or 'max', or a list of them: one per metric of several objectives."""
    if isinstance(value, (list, tuple)):
        if len(value) < 2 or any(v not in MODES for v in value):
            raise InputError(f"{name} must be 'min' or 'max', or a list of them (one per metric), got {value!r}")
        return tuple(value)
    return _one_of(MODES, "'min' or 'max'")(value, name)


# One table of rules for tune()'s plain arguments, shared with the CLI's [tune] section: each
# takes the value and the name to report, and returns the checked value or raises InputError.
RULES: dict[str, Callable[[Any, str], Any]] = {
    "trials": lambda v, name: check_int(name, v, 1, MAX_TRIALS),
    "rounds": lambda v, name: check_int(name, v, 1, none=True),
    "seed": lambda v, name: check_int(name, v, 0, MAX_SEED),
    "max_batch": lambda v, name: check_int(name, v, 1, none=True),
    "mode": _modes,
    "select": _one_of(SELECT),
    "study": _name,
    "metric": _metrics,
    "storage": _name,
    "timeout": _positive_seconds,
    "tie_break": lambda v, name: tie_break_spec(v),
    "seeds": lambda v, name: check_int(name, v, 1, MAX_SEEDS),
    "aggregate": _one_of(AGGREGATES),
}


def _strategy_key(strategy, options, space: Space, trials: int, objectives: int) -> str | None:
    """Everything a strategy built from a name or spec depends on, as text (None for a built
    strategy or one proposed on the host: their programs are not cached across calls)."""
    import json

    if not (isinstance(strategy, str) or dataclasses.is_dataclass(strategy)) or hasattr(strategy, "set_objectives"):
        return None
    spec = strategy if isinstance(strategy, str) else [type(strategy).__qualname__, describe(strategy)]
    try:
        return json.dumps([spec, options or {}, space.describe(), trials, objectives, jax.config.jax_enable_x64],
                          sort_keys=True)  # fmt: skip
    except TypeError:  # an option that is not plain data: not cached
        return None


def check_argument(key: str, value: Any, name: str | None = None) -> Any:
    """``value`` of tune()'s argument ``key`` checked by :data:`RULES` (errors name it ``name``)."""
    return RULES[key](value, name or key)


def _check_arguments(
    objective, space, strategy, trials, rounds, mode, seed, study, strategy_options, progress, timeout, select,
    tie_break, seeds=1, aggregate="mean", metric=None,
) -> Arguments:  # fmt: skip
    """Checks every argument of :func:`tune`; raises one :class:`InputError` listing every problem."""
    problems = Problems()
    with problems.check():
        if not isinstance(space, Space):
            raise InputTypeError(f"space must be a jt.Space, got {type(space).__name__}")
    with problems.check():
        if not callable(objective):
            raise InputTypeError(f"objective must be callable as objective(hp, key), got {objective!r}")
    values = {"trials": trials, "rounds": rounds, "mode": mode, "seed": seed, "study": study, "timeout": timeout,
              "select": select, "tie_break": tie_break, "seeds": seeds, "aggregate": aggregate}  # fmt: skip
    for key, value in values.items():
        with problems.check():
            values[key] = check_argument(key, value)
    with problems.check():
        metric = None if metric is None else check_argument("metric", metric)
        several = isinstance(metric, tuple)
        if several != isinstance(values["mode"], tuple) or several and len(metric) != len(values["mode"]):
            raise InputError(f"several objectives need a list of metrics and a list of modes, one per metric; got "
                             f"metric={metric!r}, mode={values['mode']!r}")  # fmt: skip
    with problems.check():
        if all(isinstance(values[n], int) and values[n] >= 1 for n in ("trials", "seeds")):  # each good alone
            check_int("trials * seeds (the lanes of a round)", values["trials"] * values["seeds"], 1, MAX_TRIALS)
    with problems.check():
        if not (isinstance(progress, bool) or callable(progress)):
            raise InputTypeError(f"progress must be True, False or a callable taking a Progress, got {progress!r}")
    problems.raise_if_any("jt.tune's arguments")
    # The strategy needs a valid space and trial count: checked once those are known to be good.
    # A population scheduler ("pbt", "asha") is built by its own driver (it needs the step budget).
    trials, rounds = values["trials"], values["rounds"]
    several = len(metric) if isinstance(metric, tuple) else 1  # a strategy that can is told every objective
    built = None if is_scheduler(strategy) else make_strategy(strategy, space, trials, objectives=several,
                                                              **(strategy_options or {}))  # fmt: skip
    return Arguments(
        strategy=built,
        strategy_key=_strategy_key(strategy, strategy_options, space, trials, several) if built else None,
        trials=trials,
        rounds=rounds if rounds is not None else (built.num_rounds if built else None) or 1,
        mode=values["mode"][0] if isinstance(values["mode"], tuple) else values["mode"],
        seed=values["seed"],
        study=values["study"],
        report=print_progress if progress is True else (progress or None),
        timeout=values["timeout"],
        select=values["select"],
        verbose=progress is True,
        tie_break=values["tie_break"],
        seeds=values["seeds"],
        aggregate=values["aggregate"],
        objectives=tuple(zip(metric, values["mode"])) if isinstance(metric, tuple) else (),
    )


def _driver_for(args: Arguments, objective: Any, strategy: Any, options: dict | None) -> tuple[Arguments, Driver]:
    """The driver that runs ``strategy``, and the arguments with what it runs (``spec``) and how
    the study describes it: a population scheduler (lanes trained in segments), successive halving
    whose survivors continue from their state, or rounds (every other strategy)."""
    if args.strategy is None:
        if isinstance(strategy, str):
            spec = make_scheduler_spec(strategy, **(options or {}))
        elif options:
            raise InputError(f"strategy options {sorted(options)} can only go with a strategy name")
        else:
            spec = strategy
        return dataclasses.replace(args, spec=spec, described=describe(spec)), population_driver
    spec = continued_halving(strategy, options, objective)
    if spec is not None:
        return dataclasses.replace(args, spec=spec, described=describe(spec)), halving_driver
    described = describe(strategy) if not isinstance(strategy, Strategy) else {"name": "custom"}
    return dataclasses.replace(args, described=described), rounds_driver


def _warm_start(source: Any, space: Space, args: Arguments) -> WarmStart:
    """The stored trials a warm start tells the strategy (checked before anything is traced)."""
    warm = load_warm_start(source, space)
    if args.verbose:
        s = warm.source
        dropped = f"; {s['dropped']} dropped (outside the space)" if s["dropped"] else ""
        print(f"[jaxtune] warm start: told the strategy {s['trials']} trials of {s['from']} (study {s['study']!r})"
              f"{dropped}", file=sys.stderr)  # fmt: skip
    return warm


def _strategy_name(strategy: Any) -> str:
    """A strategy's name for messages."""
    return strategy if isinstance(strategy, str) else getattr(strategy, "registry_name", type(strategy).__name__)


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
    progress: bool | Callable[[Progress], None] = True,
    timeout: float | None = None,
    select: str = "final",
    tie_break: str | tuple[str, str] | None = None,
    constraints: Any = None,
    seeds: int = 1,
    aggregate: str = "mean",
    warm_start: Any = None,
) -> Result:
    """Tunes ``objective`` over ``space``: ``rounds`` rounds of ``trials`` trials run at once.

    Args:
      objective: a pure single-trial function ``objective(hp, key) -> {metric: scalar}`` (or a
        scalar, named ``"value"``); ``hp`` values are scalar arrays, or Python values for
        ``static=True`` parameters. It is vmapped and compiled by jaxtune.
      space: the :class:`~jaxtune.Space` to search.
      strategy: a registry name (``"random"``, ``"grid"``, ``"coarse_to_fine"``), a strategy spec
        such as ``jt.strategies.CoarseToFine(top_fraction=0.2)``, or a built ``Strategy``.
      trials: how many trials run at once, for every strategy: a round's batch; the lanes of a
        population (PBT, ASHA, median stopping), which start ever new trials as others end; the
        configurations of the first, widest rung of successive halving and Hyperband.
      rounds: number of rounds; None means 1, or enough to cover the grid for ``"grid"``
        (successive halving and Hyperband: rungs; a population refuses it: its length is the
        objective's step budget). Rounds are numbered from 0 (in progress lines, tables and
        ``Result``).
      metric: metric to select on; may be omitted if the objective returns one metric. Or a list
        of two or more (several objectives, with a list of modes): round strategies are told
        every objective or a scalarisation of them, halving and the populations rank by
        non-dominated rank, ties by hypervolume contribution; ``Result.pareto`` is the front.
      mode: ``"min"`` or ``"max"`` (a list of them with several objectives).
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
      progress: print what compiles, chunks and one line per round or rung (a population: a bar of
        segments) (True), stay silent (False), or a callable that receives a :class:`Progress` per
        finished round, rung or segment (every driver).
      timeout: seconds after which the sweep stops at the next safe point (a stored chunk; each
        call runs at least one); the result says ``stopped="timeout"``, and a rerun with the same
        storage resumes.
      select: a trial's selection value: its ``"final"`` evaluation, or ``"best_step"``, the best
        point of its learning curve (objectives that return curves, e.g. the Trainer with
        ``eval_every``): what early stopping at the best checkpoint would keep.
      tie_break: another metric that orders trials of equal value in ``Result.best`` and the
        tables: a name, lower is better (e.g. ``"val_loss"`` between trials of equal
        ``"val_accuracy"``), or ``(name, "max")``.
      seeds: train every configuration under this many keys (seed 0 its own, ``fold_in(key, k)``
        for the others) in the same vmapped program: one program per bucket, ``trials * seeds``
        lanes. A trial then stores every seed's final metrics (``trial["seeds"]``), their means
        (``metrics``) and their aggregate (``value``), which strategies and selection use.
        Every driver takes it: continued halving and the populations decide a configuration's
        seeds together, on their aggregate.
      aggregate: how a configuration's seeds make its value: ``"mean"``, ``"median"`` or
        ``"lcb"`` (mean minus its standard error, plus for ``mode="min"``: good on every seed).
      constraints: limits a trial must respect to count: strings ``"NAME OP NUMBER"`` (a metric
        or a hyperparameter; ``OP`` one of ``< <= > >=``) or callables ``fn(params, metrics) ->
        bool`` (see :mod:`jaxtune.constraints`). A trial that breaks one is stored as
        ``"infeasible"``, never the best, and told to the strategy as a diverged trial is (a
        population's scheduler ranks such a lane below every feasible one). Every driver takes them.
      warm_start: a stored study to start from: a :class:`~jaxtune.Result`, a study file's path,
        or ``(path, study)``. Its trials that fit ``space`` (the same parameter names; values in
        the new ranges — the others are dropped and counted) are told to the strategy before the
        first round: ``gp`` fits them, coarse-to-fine starts from their best box, Optuna gets
        them as finished trials, BOHB's model observes them; successive halving and Hyperband
        start their first bracket, a population its first lanes, half from their best. The new
        study stores where it started from.

    Returns:
      A :class:`~jaxtune.Result` with every trial of the study (stored ones included).

    Examples:
      >>> space = jt.Space({"x1": jt.Float(-5, 10), "x2": jt.Float(0, 15)})
      >>> result = jt.tune(jt.tasks.branin, space, "coarse_to_fine", trials=256, rounds=8, progress=False)
      >>> round(result.best["value"], 3)  # Branin's minimum is 0.397887
      0.398
    """
    start, t0 = CLOCK.copy(), time.perf_counter()
    # All validation happens before anything is compiled or run.
    args = _check_arguments(
        objective, space, strategy, trials, rounds, mode, seed, study, strategy_options, progress, timeout, select,
        tie_break, seeds, aggregate, metric,
    )  # fmt: skip
    if storage is not None and jax.process_index() == 0:
        Storage.check(storage)  # an unusable path fails now, before any tracing or compiling
    args, driver = _driver_for(args, objective, strategy, strategy_options)
    given = {"rounds": rounds is not None, "max_batch": max_batch is not None, "vmap_width": vmap_width != "auto",
             "progress": callable(progress) and not isinstance(progress, bool),
             "constraints": constraints is not None, "seeds": seeds != 1, "metric": bool(args.objectives),
             "warm_start": warm_start is not None}  # fmt: skip
    refused = [f"{name}= ({why})" for name, why in driver.REFUSES.items() if given[name]]
    if refused:
        raise InputError(f"strategy {_strategy_name(strategy)!r} cannot take " + "; ".join(refused))
    warm = None if warm_start is None else _warm_start(warm_start, space, args)
    driver.check(objective, space, args)
    if hasattr(objective, "validate_space"):
        objective.validate_space(space)
    enable_compile_cache(say=args.verbose)  # before the first program: a later run loads it
    executor = Executor(objective, space, max_batch=max_batch, vmap_width=vmap_width)
    executor.trial_fn.driven = driver.driven(args)  # (continued halving's budget: the driver trains it)
    first = executor.first_bucket()
    names = [n for n in executor.output_shapes(first) if n != CURVES]
    for name, _ in args.objectives[1:]:
        if name not in names:
            raise InputError(f"metric {name!r} is not among the objective's metrics {names}")
    metric = _choose_metric(names, args.objectives[0][0] if args.objectives else metric, args.tie_break)
    if warm is not None:  # scored for the study's metric, now that it is known
        args = dataclasses.replace(args, warm=warm.scored(metric, args.mode, args.objectives))
    if constraints is not None:
        example = space.to_python(space.from_unit(jnp.full((1, space.dim), 0.5, jnp.float32)))[0]
        args = dataclasses.replace(args, constraints=check_constraints(constraints, example, names))
    if args.verbose and executor.defaulted:
        fixed = ", ".join(f"{n}={v!r}" for n, v in executor.defaulted.items())
        print(f"[jaxtune] not in the search space, so at the objective's defaults: {fixed}", file=sys.stderr)

    result = driver.run(objective, space, args, executor, metric, storage)
    result.timing = CLOCK.since(start, time.perf_counter() - t0)
    if args.verbose:
        print(f"[jaxtune] {timing_line(result.timing)}", file=sys.stderr)
    return result


def timing_line(timing: dict[str, float]) -> str:
    """Where a study's wall time went, in one line (``Result.timing``)."""
    w = max(timing["wall_s"], 1e-9)
    n, cached = timing.get("programs", 0), timing.get("cached", 0)
    programs = f"{n} program{'s' if n != 1 else ''}" + (f" ({cached} from the cache)" if cached else "")
    return (f"{timing['wall_s']:.1f} s: trial programs {100 * timing['trials_s'] / w:.1f}%, compiling "
            f"{100 * timing['compile_s'] / w:.1f}% ({programs}, {timing['compile_s']:.1f} s), host "
            f"{100 * timing['host_share']:.1f}% (storage, strategy, transfers, Python)")  # fmt: skip
