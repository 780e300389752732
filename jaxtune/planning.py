"""Plan a sweep from the compute at hand: caviar (many trials at once) or panda (babysit one).

:func:`plan` compiles the trial's program on this device at two widths, reads each program's
memory from XLA's compiled memory analysis and times it (after a warm-up run), then extrapolates:

- **memory**: bytes per lane (the slope between the two widths) and fixed bytes (data, code);
  how many trials fit at once within the memory budget the executor uses;
- **time**: for an objective with the stateful trial protocol (``jt.train.Trainer``), a segment
  program of 100 steps and one of an evaluation alone give the cost per training step and per
  evaluation at each width, so a 2,000-step trial is predicted from 100 steps; any other objective is run
  whole once per width;
- **a round** of ``trials`` trials: chunks of the sweep's width, each costing the measured
  (interpolated) time; **a sweep** of ``rounds`` rounds, plus compile time.

With a ``budget`` (seconds), it says how many trials the budget trains and recommends caviar
(``N`` trials x ``R`` rounds and a strategy) or panda (one model barely fits, or the budget
trains only a handful of trials: babysit one with ``jaxtune babysit``). Predictions against
measured runs on the machine at hand are in ``benchmarks/plan.py``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxtune._checks import check_int, next_pow2, round_up
from jaxtune.errors import InputError
from jaxtune.execute import Executor
from jaxtune.execute.placement import lanes_computed
from jaxtune.execute.population import Population, supports_protocol
from jaxtune.execute.programs import bytes_needed
from jaxtune.schedulers import is_scheduler
from jaxtune.space import Space
from jaxtune.strategies.base import make_strategy
from jaxtune.strategies.halving import bracket_plan, budgets, continued_halving, piece_of
from jaxtune.strategies.optuna_sampler import HostStrategy
from jaxtune.strategies.programs import compile_strategy

__all__ = ["Plan", "plan"]

DIRECT_S = 2.0  # a chunk predicted to run in less than this is timed whole (per-call overheads count)
PANDA_TRIALS = 8  # a budget that trains fewer trials than this is better spent babysitting one


@dataclasses.dataclass
class Measurement:
    """One width's program: compile seconds, bytes (memory analysis), seconds for one trial's run."""

    width: int
    compile_s: float
    bytes: int | None
    trial_s: float  # wall seconds for `width` trials run to the end, at once
    how: str = "whole"  # "whole": the sweep's own program timed; "steps": from per-step and per-evaluation costs


@dataclasses.dataclass
class Plan:
    """What :func:`plan` measured and predicts (all times in seconds, on this device)."""

    device: str
    devices: int
    steps: int | None
    measurements: list[Measurement]
    bytes_per_trial: float | None
    fixed_bytes: float | None
    budget_bytes: int | None
    fits: int | None  # most trials at once within the memory budget (None: unknown)
    width: int  # the program width the sweep runs
    trials: int
    rounds: int
    round_s: float
    compile_s: float  # every program the sweep compiles (``programs`` of them)
    budget_s: float | None
    budget_trials: int | None
    recommendation: str  # "caviar" or "panda"
    advice: str
    programs: int = 1  # trial programs the sweep compiles (its first round's, after program sharing)
    strategy_programs: int = 0  # the strategy's own programs (its compile seconds are in compile_s)
    rungs: bool = False  # a continued halving or Hyperband study: ``rounds`` rungs, ``round_s`` their mean

    @property
    def trials_per_s(self) -> float:
        """Trials finished per second at the sweep's width."""
        return self.trials / self.round_s

    @property
    def sweep_s(self) -> float:
        """The whole sweep: every round, plus compiling."""
        return self.rounds * self.round_s + self.compile_s

    def __str__(self) -> str:
        lines = [f"plan on {self.devices} x {self.device}" + (f", trials of {self.steps} steps" if self.steps else "")]
        lines.append(f"{'width':>7} {'compile s':>10} {'memory MiB':>11} {'s per chunk':>12} {'trials/s':>9}  timed")
        for m in self.measurements:
            mem = "-" if m.bytes is None else f"{m.bytes / 2**20:.1f}"
            how = "whole trials" if m.how == "whole" else "steps and evaluations, extrapolated"
            lines.append(
                f"{m.width:>7} {m.compile_s:>10.2f} {mem:>11} {m.trial_s:>12.3f} {m.width / m.trial_s:>9.2f}  {how}"
            )
        if self.bytes_per_trial is not None:
            fits = "unknown" if self.fits is None else f"{self.fits:,}"
            budget = "" if self.budget_bytes is None else f" of a {self.budget_bytes / 2**30:.1f} GiB budget"
            lines.append(
                f"memory: {self.bytes_per_trial / 2**20:.2f} MiB per trial + {self.fixed_bytes / 2**20:.1f} MiB fixed; "
                f"{fits} trials fit at once{budget}"
            )
        strategy = f" and {self.strategy_programs} of the strategy" if self.strategy_programs else ""
        programs = f"{self.programs} program{'s' * (self.programs != 1)}{strategy}"
        compiling = f"{_duration(self.compile_s)} of compiling ({programs})"
        if self.rungs:
            lines.append(
                f"{self.rounds} rungs of at most {self.trials} live trials (a population of {self.width}): "
                f"{_duration(self.round_s)} a rung on average; {_duration(self.sweep_s)} with {compiling}"
            )
        else:
            lines.append(
                f"a round of {self.trials} trials (width {self.width}): {_duration(self.round_s)} "
                f"({self.trials_per_s:.2f} trials/s); {self.rounds} rounds: {_duration(self.sweep_s)} with {compiling}"
            )
        if self.budget_s is not None:
            lines.append(f"budget {_duration(self.budget_s)}: about {self.budget_trials:,} trials")
        lines.append(f"recommendation: {self.recommendation} — {self.advice}")
        return "\n".join(lines)


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _timed(fn, *args) -> tuple[float, Any]:
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - t, out


def _hp(space: Space, width: int, seed: int = 0) -> dict[str, jax.Array]:
    return space.sample(jax.random.key(seed), width)


def _measure_population(
    objective, space, bucket, width: int, devices, steps: int, every: int, probe: int, vmap_width: int | None
):
    """Seconds per step and per evaluation at ``width`` lanes (segment programs of 0 steps, an
    evaluation alone, and of ``probe`` steps, their lanes batched as the sweep batches its trials),
    compile seconds and bytes."""
    pop = Population(objective, space, bucket, width, devices=devices, vmap_width=vmap_width)
    hp = {n: v for n, v in _hp(space, width).items()}
    t0 = time.perf_counter()
    pop.start(hp, jax.random.split(jax.random.key(0), width))
    pop.segment_program(0)
    long = pop.segment_program(probe)
    compile_s = time.perf_counter() - t0
    timings = {}
    for k in (0, probe):
        pop.train(k)  # warm-up: the first run of a program pays one-off costs
        runs = []
        for _ in range(2):
            t = time.perf_counter()
            pop.train(k)
            runs.append(time.perf_counter() - t)
        timings[k] = min(runs)
    per_eval = timings[0]
    per_step = max((timings[probe] - per_eval) / probe, 1e-9)
    trial_s = steps * per_step + math.ceil(steps / every) * per_eval
    return Measurement(width, compile_s, bytes_needed(long), trial_s, how="steps")


def _measure_whole(executor: Executor, bucket, width: int, ndev: int):
    """Compiles and runs the whole-trial program at ``width``: compile seconds, bytes, run seconds."""
    t0 = time.perf_counter()
    compiled = executor.programs.compiled(bucket, width, ndev)
    compile_s = time.perf_counter() - t0
    dyn = [n for n in executor.space.names if n not in executor.space.static_names]
    hp = {n: np.asarray(v) for n, v in _hp(executor.space, width).items() if n in dyn}
    keys = np.asarray(jax.random.key_data(jax.random.split(jax.random.key(0), width)))
    inputs = executor.placement.put((hp, keys, np.ones(width, bool)), ndev)
    _timed(compiled, *inputs)  # warm-up
    run_s = min(_timed(compiled, *inputs)[0] for _ in range(2))
    return Measurement(width, compile_s, bytes_needed(compiled), run_s)


def _measure(objective, space: Space, executor: Executor, bucket, widths, ndev: int, probe_steps):
    """The measurements at each width, and the seconds one of the sweep's programs compiles in:
    a protocol objective timed per step and per evaluation (its sweep's own program instead when a
    chunk is cheap, see :data:`DIRECT_S`), any other whole."""
    steps = getattr(objective, "steps", None)
    if not (supports_protocol(objective) and isinstance(steps, int) and "steps" not in space.params):
        measured = [_measure_whole(executor, bucket, w, ndev) for w in widths]
        return measured, max(m.compile_s for m in measured)
    every = getattr(objective, "eval_every", None) or steps
    probe = probe_steps or min(100, steps)
    devices = executor.placement.devices[:ndev]
    group = executor.vmap_width_of(bucket)  # the sweep's plan for this trial: timed the same way
    measured = [_measure_population(objective, space, bucket, w, devices, steps, every, probe, group) for w in widths]
    # The sweep compiles one whole-trial program: about as long as the step program here
    # (init, evaluation and a scan of steps), which these two compiles over-count a little.
    compile_s = max(m.compile_s for m in measured)
    if measured[-1].trial_s <= DIRECT_S:  # cheap enough: time the sweep's own program instead
        whole = _measure_whole(executor, bucket, measured[-1].width, ndev)
        compile_s = whole.compile_s  # (memory stays the step program's: one kind of program per slope)
        measured[-1] = dataclasses.replace(whole, bytes=measured[-1].bytes)
    return measured, compile_s


def plan(
    objective: Any,
    space: Space,
    *,
    trials: int = 64,
    rounds: int = 4,
    budget: float | None = None,
    widths: Sequence[int] | None = None,
    probe_steps: int | None = None,
    max_batch: int | None = None,
    strategy: Any = None,
    strategy_options: dict | None = None,
) -> Plan:
    """Measures the trial's program on this device and predicts a sweep's memory and time.

    Args:
      objective: the single-trial objective (a ``jt.train.Trainer`` is timed per step).
      space: its space (the plan uses the bucket at the centre of the space).
      trials: trials per round of the planned sweep.
      rounds: rounds of the planned sweep.
      budget: seconds available (None: just predict the planned sweep).
      widths: the program widths to measure (default: the smallest, one trial per device, and
        the sweep's own width).
      probe_steps: steps of the timed segment for a protocol objective (default:
        ``min(100, steps)``; an evaluation alone is timed too).
      max_batch: the sweep's chunk cap, as in :func:`jaxtune.tune`.
      strategy: the sweep's strategy (a name or a spec, as :func:`jaxtune.tune` takes it): with
        successive halving or Hyperband that continue their survivors, the plan follows their
        brackets (``rounds`` rungs, each training its live lanes in the shared population) and
        their programs; any other is planned as rounds of ``trials`` trials.
      strategy_options: the strategy's options (e.g. ``eta``), as :func:`jaxtune.tune` takes them.

    Returns:
      A :class:`Plan`; ``print(plan)`` shows the measurements, predictions and recommendation.

    Examples:
      >>> task = jt.tasks.get("mnist1d_mlp", steps=2000)
      >>> print(jt.plan(task.objective, task.space, trials=32, rounds=4, budget=20 * 60))
    """
    check_int("trials", trials)
    check_int("rounds", rounds)
    if budget is not None and not (isinstance(budget, (int, float)) and budget > 0):
        raise InputError(f"budget must be a positive number of seconds, got {budget!r}")
    executor = Executor(objective, space, max_batch=max_batch)
    executor.trial_fn.output_shapes(executor.first_bucket())  # traces the objective once: a bad one fails here
    halving = continued_halving(strategy, strategy_options, objective) if strategy is not None else None
    if halving is not None:
        return _plan_halving(objective, space, executor, halving, trials, rounds, budget, probe_steps)
    planned, bucket = _programs(executor, space, trials)
    programs = len(planned)
    ndev = executor.placement.devices_for(trials)
    width = executor.programs.width(bucket, trials, round_up(trials, ndev), ndev)
    small = round_up(1, ndev)
    widths = sorted({round_up(check_int("width", w), ndev) for w in widths} if widths else {small, width})
    steps = getattr(objective, "steps", None)
    measured, compile_s = _measure(objective, space, executor, bucket, widths, ndev, probe_steps)
    budget_bytes = executor.programs.memory_budget
    per_trial, fixed, fits, width = _memory(measured, budget_bytes, width, ndev)
    round_s = _round_s(executor, planned, bucket, width, _chunk_s(measured, width))
    budget_trials = None
    compile_s *= math.ceil(programs / _COMPILERS)  # each program about as long as the measured one
    strategy_programs, strategy_s = _strategy_compile(strategy, strategy_options, space, trials, executor, rounds)
    compile_s += strategy_s
    if budget is not None:
        budget_trials = int(max(budget - compile_s, 0) / round_s * trials)
    recommendation, advice = _recommend(space, trials, rounds, width, fits, budget, budget_trials, round_s, compile_s)
    return Plan(
        device=executor.placement.devices[0].device_kind,
        devices=ndev,
        steps=steps if isinstance(steps, int) else None,
        measurements=measured,
        bytes_per_trial=per_trial,
        fixed_bytes=fixed,
        budget_bytes=budget_bytes,
        fits=fits,
        width=width,
        trials=trials,
        rounds=rounds,
        round_s=round_s,
        compile_s=compile_s,
        budget_s=budget,
        budget_trials=budget_trials,
        recommendation=recommendation,
        advice=advice,
        programs=programs,
        strategy_programs=strategy_programs,
    )


def rung_schedule(spec, space: Space, trials: int, rounds: int) -> list[tuple[int, int]]:
    """The first ``rounds`` rungs a continued halving or Hyperband study trains, in order: ``(live
    lanes, steps each trains)`` per rung (its brackets as the driver cycles them)."""
    fidelity = space.params[spec.fidelity]
    levels = budgets(fidelity.low, fidelity.high, spec.eta)
    brackets = bracket_plan(trials, len(levels), spec.eta, type(spec).hyperband)
    out: list[tuple[int, int]] = []
    for b in range(rounds):  # (a bracket has at least one rung)
        trained = 0
        for n, level in brackets[b % len(brackets)]:
            out.append((n, levels[level] - trained))
            trained = levels[level]
    return out[:rounds]


def _plan_halving(objective, space: Space, executor: Executor, spec, trials: int, rounds: int, budget, probe_steps):
    """A continued halving or Hyperband study: its rungs in the shared population of the widest
    bracket, each costing the lanes its busiest device trains (whole groups of live lanes) at the
    measured cost per step and per evaluation; two programs (initialisation and a training piece)."""
    levels = budgets(space.params[spec.fidelity].low, space.params[spec.fidelity].high, spec.eta)
    plan_ = bracket_plan(trials, len(levels), spec.eta, type(spec).hyperband)
    sub = Space({n: p for n, p in space.params.items() if n != spec.fidelity})
    group = executor.vmap_width_of(executor.first_bucket())
    ndev = len(jax.devices())
    width = round_up(max(r[0][0] for r in plan_), ndev)
    piece = piece_of(plan_, levels)
    probe = piece or probe_steps or min(100, levels[0])
    pop = Population(objective, sub, (), width, vmap_width=group)
    t0 = time.perf_counter()
    pop.start(_hp(sub, width), jax.random.split(jax.random.key(0), width))
    pop.masked_program(probe)
    schedule = rung_schedule(spec, space, trials, rounds)
    programs = 2 if piece else 1 + len({steps for _, steps in schedule})  # initialisation + training pieces
    compile_s = (time.perf_counter() - t0) * (programs - 1)
    live = np.ones(width, bool)
    cost = {}
    for k, evaluate in ((probe, False), (0, True)):
        pop.train(k, live, evaluate)  # warm-up
        cost[k] = min(_timed(pop.train, k, live, evaluate)[0] for _ in range(2))
    per_step, per_eval = cost[probe] / probe, cost[0]
    total = 0.0
    for n, steps in schedule:
        share = lanes_computed(n, width, ndev, group) / (width // ndev)
        total += share * (steps * per_step + per_eval)
    trial_s = levels[-1] * per_step + per_eval  # the whole population, trained to the top budget
    m = Measurement(width, compile_s, bytes_needed(pop.masked_program(probe)), trial_s, "steps")
    per_trial, fixed, fits, _ = _memory([m], executor.programs.memory_budget, width, ndev)
    round_s = total / max(rounds, 1)
    budget_trials = None if budget is None else int(max(budget - compile_s, 0) / round_s * trials)
    recommendation, advice = _recommend(space, trials, rounds, width, fits, budget, budget_trials, round_s, compile_s)
    return Plan(
        device=jax.devices()[0].device_kind, devices=ndev, steps=levels[-1], measurements=[m],
        bytes_per_trial=per_trial, fixed_bytes=fixed, budget_bytes=executor.programs.memory_budget, fits=fits,
        width=width, trials=trials, rounds=rounds, round_s=round_s, compile_s=compile_s, budget_s=budget,
        budget_trials=budget_trials, recommendation=recommendation, advice=advice, programs=programs, rungs=True,
    )  # fmt: skip


def _strategy_compile(strategy, options, space: Space, trials: int, executor: Executor,
                      rounds: int) -> tuple[int, float]:  # fmt: skip
    """The programs of a device strategy's rounds sweep and the seconds they take to compile
    (none for a host strategy, a scheduler or no strategy)."""
    if strategy is None or (isinstance(strategy, str) and is_scheduler(strategy)):
        return 0, 0.0
    built = make_strategy(strategy, space, trials, **(options or {}))
    if isinstance(built, HostStrategy):
        return 0, 0.0
    return compile_strategy(built, space, trials, executor, rounds)


_COMPILERS = 2  # programs compiled at once: a study's buckets compile on worker threads, XLA's CPU work each


def _programs(executor: Executor, space: Space, trials: int) -> tuple[list, tuple]:
    """The trial programs a sweep's first round compiles (a random batch of ``trials``, its buckets
    after program sharing, as :meth:`Executor.programs_for` groups them: ``(bucket, width, devices,
    trials)`` each), and the bucket most of its trials run in (the one the plan times)."""
    planned = executor.programs_for(space.sample(jax.random.key(0), trials))
    return planned, max(planned, key=lambda p: (p[3], repr(p[0])))[0]


def _round_s(executor: Executor, planned: list, timed: tuple, width: int, chunk_s: float) -> float:
    """A round's seconds: each program's chunks at the timed chunk's cost, scaled by their bucket's
    matrix-product flops against the timed bucket's; a chunk with fewer trials than lanes costs
    the lanes its busiest device computes (:func:`~jaxtune.execute.placement.lanes_computed`:
    whole groups of live trials in sequence, the whole chunk with a full vmap)."""
    base = max(executor.flops(timed), 1.0) if len(planned) > 1 else 1.0
    total = 0.0
    for bucket, _, ndev, n in planned:
        scale = max(executor.flops(bucket), 1.0) / base if len(planned) > 1 else 1.0
        full, rest = divmod(n, width)
        per = width // ndev
        lanes = full * per + (lanes_computed(rest, width, ndev, executor.vmap_width_of(bucket)) if rest else 0)
        total += lanes / per * chunk_s * scale
    return total


def _memory(measured: list[Measurement], budget_bytes, width: int, ndev: int):
    """Bytes per trial and fixed bytes (a line through the measured widths), how many trials fit
    in ``budget_bytes``, and the chunk width the executor would run (halved until it fits)."""
    per_trial = fixed = fits = None
    sized = [m for m in measured if m.bytes is not None]
    if len(sized) >= 2 and sized[-1].width > sized[0].width:
        per_trial = max((sized[-1].bytes - sized[0].bytes) / (sized[-1].width - sized[0].width), 1.0)
        fixed = max(sized[0].bytes - per_trial * sized[0].width, 0.0)
    elif sized:
        per_trial, fixed = sized[-1].bytes / sized[-1].width, 0.0
    if per_trial is not None and budget_bytes is not None:
        fits = max(0, int((budget_bytes - fixed) / per_trial))
        if fits < width and fits >= 1:  # the executor would halve the chunk: plan with what fits
            width = round_up(min(width, 1 << (fits.bit_length() - 1)), ndev)
    return per_trial, fixed, fits, width


def _chunk_s(measured: list[Measurement], w: int) -> float:
    """Seconds for a chunk of ``w`` trials: interpolated between the measured widths, the
    narrowest's time below them, extrapolated along the last two above them."""
    xs, ys = [m.width for m in measured], [m.trial_s for m in measured]
    if len(xs) == 1 or w <= xs[-1]:
        return float(np.interp(w, xs, ys))
    return ys[-1] + (w - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])


def _recommend(space, trials, rounds, width, fits, budget, budget_trials, round_s, compile_s) -> tuple[str, str]:
    """Caviar or panda, and what to run (the rule is in the module docstring)."""
    if fits is not None and fits < 2:
        return "panda", "one model barely fits in memory: babysit it (jaxtune babysit), a segment at a time"
    if budget_trials is not None and budget_trials < PANDA_TRIALS:
        return "panda", (
            f"the budget trains about {budget_trials} trials: babysit one (jaxtune babysit) and fork a few edits "
            "side by side instead of a blind sweep"
        )
    if budget_trials is None:
        return "caviar", f"{trials} trials x {rounds} rounds run {min(width, trials)} at a time"
    per_round = min(next_pow2(max(width, 1)), max(PANDA_TRIALS, budget_trials // max(rounds, 1)))
    n = 1 << (per_round.bit_length() - 1)  # a power of two: the rounds share one program
    r = max(1, min(8, budget_trials // n))
    strategy = "grid" if space.dim <= 2 and r == 1 else "coarse_to_fine" if r > 1 else "random"
    return "caviar", (
        f"{n} trials x {r} rounds ({strategy}) fit the budget: about {_duration(r * round_s * n / trials + compile_s)}"
    )
