"""Fresh seeds for a study's best configurations: how much of a tuned margin was luck.

A configuration picked on its tuning seeds looks better than it is (the selection favours the
lucky draws). :func:`reseed` trains the top configurations of a stored study again under keys
that no tuning run used (a stream of the study's seed of its own), all in one vmapped batch,
and reports each one's tuning value beside its fresh-seed mean and standard error: the gap is
the winner's curse, and a fresh-seed ranking is what a paper can report.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from jaxtune._checks import check_int
from jaxtune.errors import InputError, InputTypeError, StudyMismatchError
from jaxtune.result import Result
from jaxtune.study.records import minimised

__all__ = ["reseed", "RESEED_STREAM", "gap_table"]

RESEED_STREAM = 5  # a stream of the study's seed that no sweep draws from (see jaxtune.keys)


def reseed(result: Result, objective: Any, seeds: int = 8, top: int = 5) -> list[dict[str, Any]]:
    """Trains ``result``'s ``top`` best configurations under ``seeds`` fresh keys each, in one batch.

    Args:
      result: a stored study (``jt.Result.load``), run with ``objective``.
      objective: the single-trial function the study tuned (``task.objective``).
      seeds: fresh keys per configuration (never one of the tuning keys).
      top: how many of the best finished configurations.

    Returns:
      One row per configuration, best first: ``round``, ``slot``, ``params``, ``tuned`` (its
      stored value), ``fresh`` (the mean of the selection metric over the fresh seeds),
      ``stderr``, ``values`` (each fresh seed's), ``gap`` (``tuned - fresh``, signed so that a
      positive gap is a tuning value better than the fresh one) and ``fresh_metrics`` (every
      metric's fresh mean).

    Examples:
      >>> space = jt.Space({"x": jt.Float(0.0, 1.0)})
      >>> noisy = lambda hp, key: {"loss": (hp["x"] - 0.3) ** 2 + 0.1 * jax.random.normal(key)}
      >>> study = jt.tune(noisy, space, trials=16, metric="loss", progress=False)
      >>> rows = reseed(study, noisy, seeds=32, top=3)
      >>> rows[0]["gap"] > 0  # the winner's tuning draw was lucky
      True
    """
    from jaxtune.execute import Executor
    from jaxtune.space import Space
    from jaxtune.study.study import objective_mismatch

    if not isinstance(result, Result):
        raise InputTypeError(f"reseed: result must be a jt.Result (jt.Result.load(path)), got {result!r}")
    if not callable(objective):
        raise InputTypeError(f"reseed: objective must be the study's objective(hp, key), got {objective!r}")
    check_int("seeds", seeds, 1, 2**16)
    check_int("top", top, 1)
    if "space" not in result.config or "seed" not in result.config:
        raise InputError("reseed needs a stored study (jt.Result.load): its space and seed are part of it")
    best = [t for t in result.ranked() if math.isfinite(result.score(t))][:top]
    if not best:
        raise InputError("reseed: the study has no finished configuration")
    scheduled = [f"{t['round']}:{t['slot']}" for t in best if (t["round"], t["slot"]) in result.lineage]
    if scheduled:
        raise InputError(
            f"reseed: trial(s) {scheduled} continued another trial's state with new hyperparameters (PBT): their "
            "configuration is a schedule, and reseed trains fixed values; Result.replay(..., seed=) trains one "
            "along its lineage"
        )
    space = Space.from_description(result.config["space"])
    what = objective_mismatch(result.config, objective, space)
    if what:
        raise StudyMismatchError(f"reseed: objective is not the one the study was run with ({what})")
    units = np.repeat(np.asarray([t["unit"] for t in best], np.float32), seeds, axis=0)
    hp = jax.jit(space.from_unit)(units)
    root = jax.random.fold_in(jax.random.key(result.config["seed"]), RESEED_STREAM)
    keys = jax.random.split(root, len(best) * seeds)
    metrics: dict[str, np.ndarray] = {}
    for idx, out, _ in Executor(objective, space).run(hp, keys):
        for name, v in out.items():
            metrics.setdefault(name, np.full(len(best) * seeds, np.nan))[idx] = v
    rows = []
    for i, t in enumerate(best):
        lanes = slice(i * seeds, (i + 1) * seeds)
        values = metrics[result.metric][lanes]
        fresh = float(np.mean(values))
        stderr = float(np.std(values, ddof=1) / np.sqrt(seeds)) if seeds > 1 else 0.0
        gap = minimised(fresh, result.mode) - minimised(t["value"], result.mode)
        rows.append({"round": t["round"], "slot": t["slot"], "params": t["params"], "tuned": t["value"],
                     "fresh": fresh, "stderr": stderr, "values": [float(v) for v in values], "gap": gap,
                     "fresh_metrics": {n: float(np.mean(v[lanes])) for n, v in metrics.items()}})  # fmt: skip
    return rows


def gap_table(rows: list[dict[str, Any]], metric: str) -> str:
    """``reseed``'s rows as a text table: tuning value, fresh mean ± standard error, gap."""
    head = f"{'rank':>4}  {'trial':>8}  {'tuned ' + metric:>18}  {'fresh mean ± se':>20}  {'gap':>9}"
    lines = [head]
    for i, r in enumerate(rows):
        trial = f"{r['round']}:{r['slot']}"
        fresh = f"{r['fresh']:.4g} ± {r['stderr']:.2g}"
        lines.append(f"{i + 1:>4}  {trial:>8}  {r['tuned']:>18.4g}  {fresh:>20}  {r['gap']:>+9.3g}")
    return "\n".join(lines)
