"""Strategies × problems × seeds, each whole sweep one ``lax.scan`` and all seeds one ``vmap``.

A strategy is pure ask/tell on the unit cube and a benchmark problem is a jittable function, so
a sweep of ``evals / trials`` rounds (ask, evaluate the batch, tell) is one scan, and ``seeds``
sweeps of it run as one vmapped program: a thousand seeds of a thousand evaluations cost about
what one sweep of a real task's round costs. Seed ``s`` proposes exactly what
``jt.tune(problem, space, strategy, trials=..., seed=s)`` would (the same keys).

Regret is the best value found minus the problem's optimum (for a problem of several
objectives, the front's hypervolume minus that of the points found, each round telling the
strategy the random Chebyshev scalarisation :func:`jaxtune.tune` tells it, or every objective
to an Optuna sampler); *normalised* regret divides it by
the median regret of a uniformly random point (so problems of different scales average). The
rank of a strategy on a problem is its place by median final regret; the average rank across
problems orders the strategies.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune._checks import check_int
from jaxtune.bench.problems import Problem, get_problem, hypervolume_2d, random_scale
from jaxtune.errors import InputError, MissingDependencyError
from jaxtune.keys import INIT_STREAM, round_keys
from jaxtune.pareto import finite_range, hypervolume, round_weights, scalarised
from jaxtune.strategies.base import make_spec, make_strategy, sanitize_scores
from jaxtune.strategies.optuna_sampler import HostStrategy

__all__ = ["BenchResult", "run", "sweep_curves"]


def sweep_curves(problem: Problem, strategy: Any, seeds: Sequence[int] | int, evals: int, trials: int,
                 options: dict | None = None, *, cost: bool = False) -> np.ndarray:  # fmt: skip
    """Best value found after each round, ``f[seeds, rounds]``, for every seed in one program (for
    a problem of several objectives, minus the hypervolume of the points found so far).

    Args:
      problem: the benchmark problem.
      strategy: a registry name, a spec, or a built strategy (``trials`` points a round).
      seeds: seed values, or a count (``0 .. seeds - 1``).
      evals: evaluations per sweep (``evals // trials`` rounds).
      trials: points per round (the batch a strategy proposes at once).
      options: strategy options, with a registry name.
      cost: also return the budget spent by the end of each round, ``f[seeds, rounds]`` (a
        multi-fidelity problem's evaluation costs its budget; any other costs 1).
    """
    check_int("trials", trials)
    check_int("evals", evals, low=trials)
    seeds = np.arange(seeds) if isinstance(seeds, int) else np.asarray(seeds)
    rounds = evals // trials
    built = make_strategy(strategy, problem.space, trials, objectives=problem.objectives, **(options or {}))
    if problem.objectives > 1:
        curves = _front_curves(problem, built, strategy, seeds, rounds, trials, options)
        return (curves, np.cumsum(np.full_like(curves, trials), axis=1)) if cost else curves
    if isinstance(built, HostStrategy):  # proposes on the host: a Python loop of seeds and rounds
        return _host_curves(problem, strategy, seeds, rounds, trials, options)

    def one(seed):
        root = jax.random.key(seed)
        state = built.init(jax.random.fold_in(root, INIT_STREAM))

        def round_(carry, r):
            state, best, spent = carry
            ask_key, _ = round_keys(root, r)
            u, state = built.ask(ask_key, state)
            valid = built.valid(state)
            hp = problem.space.from_unit(u)
            values = jax.vmap(problem.fn)(hp)
            scores = jnp.where(valid, sanitize_scores(values), jnp.inf)
            state = built.tell(state, u, scores)
            if problem.fidelity is None:
                found, price = scores, valid.astype(jnp.float32)
            else:  # only full-budget evaluations count as found; each costs its budget
                full = hp[problem.fidelity] >= problem.space.params[problem.fidelity].high
                found, price = jnp.where(full, scores, jnp.inf), jnp.where(valid, hp[problem.fidelity], 0)
            best = jnp.minimum(best, found.min())
            spent = spent + price.sum().astype(jnp.float32)
            return (state, best, spent), (best, spent)

        _, (curve, spent) = jax.lax.scan(round_, (state, jnp.float32(jnp.inf), jnp.float32(0)), jnp.arange(rounds))
        return curve, spent

    curves, spent = jax.jit(jax.vmap(one))(jnp.asarray(seeds))
    return (np.asarray(curves), np.asarray(spent)) if cost else np.asarray(curves)


def _host_curves(problem: Problem, strategy: Any, seeds: np.ndarray, rounds: int, trials: int, options) -> np.ndarray:
    """:func:`sweep_curves` for a host strategy (an Optuna sampler): seed by seed, round by round,
    each batch evaluated in one jitted call."""
    evaluate = jax.jit(lambda u: jax.vmap(problem.fn)(problem.space.from_unit(u)))
    out = np.zeros((len(seeds), rounds), np.float32)
    for i, seed in enumerate(seeds):
        built, best = make_strategy(strategy, problem.space, trials, **(options or {})), np.inf
        for r in range(rounds):
            u = built.ask(int(seed), r)
            scores = np.asarray(sanitize_scores(evaluate(jnp.asarray(u))))
            built.tell(u, scores)
            out[i, r] = best = min(best, float(scores.min()))
    return out


def _front_curves(problem: Problem, built: Any, strategy: Any, seeds: np.ndarray, rounds: int, trials: int,
                  options) -> np.ndarray:  # fmt: skip
    """:func:`sweep_curves` of a problem of several objectives: minus the hypervolume of the points
    found after each round (so lower is better, as for one objective), ``f[seeds, rounds]``."""
    m, ref = problem.objectives, jnp.asarray(problem.reference, jnp.float32)
    evaluate = jax.vmap(problem.fn)
    if isinstance(built, HostStrategy):  # told every objective, seed by seed, round by round
        batch = jax.jit(lambda u: evaluate(problem.space.from_unit(u)))
        out = np.zeros((len(seeds), rounds), np.float32)
        for i, seed in enumerate(seeds):
            host, seen = make_strategy(strategy, problem.space, trials, objectives=m, **(options or {})), []
            for r in range(rounds):
                u = host.ask(int(seed), r)
                values = np.asarray(batch(jnp.asarray(u)), np.float64)
                values[~np.all(np.isfinite(values), axis=1)] = np.inf
                host.tell(u, values)
                seen.append(values)
                out[i, r] = -hypervolume(np.concatenate(seen), problem.reference)
        return out
    weights = jnp.asarray([[round_weights(int(s), r, m) for r in range(rounds)] for s in seeds], jnp.float32)

    def one(seed, weights):
        root = jax.random.key(seed)
        state = built.init(jax.random.fold_in(root, INIT_STREAM))

        def round_(carry, xs):
            state, seen = carry
            r, w = xs
            ask_key, _ = round_keys(root, r)
            u, state = built.ask(ask_key, state)
            values = evaluate(problem.space.from_unit(u))
            counts = built.valid(state) & jnp.all(jnp.isfinite(values), axis=1)
            values = jnp.where(counts[:, None], values, jnp.inf)
            seen = jax.lax.dynamic_update_slice(seen, values, (r * trials, 0))
            if built.objectives > 1:  # told every objective
                state = built.tell(state, u, values)
            else:  # told the round's scalarisation, as jt.tune tells it
                low, high = finite_range(seen, jnp)
                state = built.tell(state, u, scalarised(values, w, low, high, jnp).astype(jnp.float32))
            return (state, seen), -hypervolume_2d(seen, ref)

        seen = jnp.full((rounds * trials, m), jnp.inf, jnp.float32)
        return jax.lax.scan(round_, (state, seen), (jnp.arange(rounds), weights))[1]

    return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(seeds), weights))


@dataclasses.dataclass
class BenchResult:
    """Curves and summaries of a benchmark: ``curves[(problem, strategy)] = regret[seeds, rounds]``."""

    problems: list[str]
    strategies: list[str]
    seeds: int
    evals: int
    trials: int
    curves: dict[tuple[str, str], np.ndarray]
    scales: dict[str, float]
    seconds: dict[tuple[str, str], float]

    def merge(self, other: BenchResult) -> BenchResult:
        """This result and ``other``'s strategies as one (same problems, evaluations and rounds).
        ``other`` may have run fewer seeds (an expensive strategy): summaries, ranks and tables
        use each strategy's own seeds, and say how many where they differ from ``seeds``."""
        if (other.problems, other.evals, other.trials) != (self.problems, self.evals, self.trials):
            raise InputError(
                "merge: results must share problems, evaluations and trials a round; got "
                f"{(other.problems, other.evals, other.trials)} and {(self.problems, self.evals, self.trials)}"
            )
        both = set(self.strategies) & set(other.strategies)
        if both:
            raise InputError(f"merge: strategies {sorted(both)} are in both results")
        return BenchResult(self.problems, self.strategies + other.strategies, self.seeds, self.evals, self.trials,
                           {**self.curves, **other.curves}, self.scales, {**self.seconds, **other.seconds})  # fmt: skip

    def seeds_of(self, strategy: str) -> int:
        """How many seeds ``strategy`` ran."""
        return self.curves[(self.problems[0], strategy)].shape[0]

    def label(self, strategy: str) -> str:
        """``strategy`` as tables and figures name it: with its seed count where that differs."""
        n = self.seeds_of(strategy)
        return strategy if n == self.seeds else f"{strategy} ({n} seeds)"

    def final(self, problem: str, strategy: str, normalised: bool = False) -> np.ndarray:
        """Final regret of every seed (normalised: divided by the random-point scale)."""
        out = self.curves[(problem, strategy)][:, -1]
        return out / self.scales[problem] if normalised else out

    def ranks(self) -> dict[str, dict[str, float]]:
        """``{problem: {strategy: rank}}`` by median final regret (1 = best; ties share a rank)."""
        out = {}
        for p in self.problems:
            med = {s: float(np.median(self.final(p, s))) for s in self.strategies}
            out[p] = {s: 1 + sum(v < m for v in med.values()) + 0.5 * (sum(v == m for v in med.values()) - 1)
                      for s, m in med.items()}  # fmt: skip
        return out

    def average_rank(self) -> dict[str, float]:
        """Each strategy's rank averaged over the problems."""
        ranks = self.ranks()
        return {s: float(np.mean([ranks[p][s] for p in self.problems])) for s in self.strategies}

    def summary(self) -> list[dict[str, Any]]:
        """One row per (problem, strategy): median and quartiles of the final regret, normalised
        regret, rank and seconds."""
        ranks = self.ranks()
        rows = []
        for p in self.problems:
            for s in self.strategies:
                q1, med, q3 = np.quantile(self.final(p, s), [0.25, 0.5, 0.75])
                rows.append({"problem": p, "strategy": s, "median_regret": float(med), "q25": float(q1),
                             "q75": float(q3), "median_normalised": float(np.median(self.final(p, s, True))),
                             "rank": ranks[p][s], "seeds": self.seeds_of(s),
                             "seconds": self.seconds[(p, s)]})  # fmt: skip
        return rows

    def table(self) -> str:
        """A markdown table: median final regret [quartiles] per problem, and the average rank."""
        avg = self.average_rank()
        order = sorted(self.strategies, key=lambda s: avg[s])
        head = "| strategy | " + " | ".join(self.problems) + " | average rank |"
        lines = [head, "|" + "---|" * (len(self.problems) + 2)]
        for s in order:
            cells = []
            for p in self.problems:
                q1, med, q3 = np.quantile(self.final(p, s), [0.25, 0.5, 0.75])
                cells.append(f"{med:.3g} [{q1:.3g}, {q3:.3g}]")
            lines.append(f"| {self.label(s)} | " + " | ".join(cells) + f" | {avg[s]:.2f} |")
        return "\n".join(lines)

    def to_json(self, path: str, **extra: Any) -> None:
        """Writes the settings, the summary rows and the median/quartile curves as JSON."""
        curves = {f"{p}/{s}": {q: np.quantile(c, v, axis=0).tolist() for q, v in (("q25", 0.25), ("median", 0.5),
                                                                                   ("q75", 0.75))}
                  for (p, s), c in self.curves.items()}  # fmt: skip
        payload = {"problems": self.problems, "strategies": self.strategies, "seeds": self.seeds, "evals": self.evals,
                   "trials": self.trials, "summary": self.summary(), "average_rank": self.average_rank(),
                   "curves": curves, **extra}  # fmt: skip
        with open(path, "w") as f:
            json.dump(payload, f, indent=1)

    def to_csv(self, path: str) -> None:
        """Writes the summary rows as CSV."""
        import csv

        rows = self.summary()
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    def plot(self, path: str) -> str:
        """Anytime regret curves (median and quartile band over seeds, log scale), a panel per problem."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise MissingDependencyError("plots need matplotlib: pip install 'jaxtune[report]'") from e
        cols = min(3, len(self.problems))
        rows = math.ceil(len(self.problems) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
        evals = np.arange(1, self.evals // self.trials + 1) * self.trials
        for k, p in enumerate(self.problems):
            ax = axes[k // cols, k % cols]
            for s in self.strategies:
                c = np.maximum(self.curves[(p, s)], 1e-12)
                q1, med, q3 = np.quantile(c, [0.25, 0.5, 0.75], axis=0)
                (line,) = ax.plot(evals, med, label=self.label(s))
                ax.fill_between(evals, q1, q3, color=line.get_color(), alpha=0.2)
            ax.set_yscale("log")
            ax.set_title(p, fontsize=10)
            ax.set_xlabel("evaluations")
            ax.set_ylabel("regret (median, quartiles)")
        for k in range(len(self.problems), rows * cols):
            axes[k // cols, k % cols].set_visible(False)
        axes[0, 0].legend(fontsize=8)
        fig.suptitle(f"{self.seeds} seeds, {self.trials} evaluations a round", fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def check_strategies(strategies: Sequence[str | tuple[str, dict]]) -> list[tuple[str, str, dict]]:
    """``[(label, name, options)]`` of benchmark strategies, each name and its options checked
    (an unknown one raises :class:`~jaxtune.InputError`) before anything runs; one name is one
    strategy, not a list of its letters."""
    strategies = [strategies] if isinstance(strategies, str) else strategies
    parsed = [_parse(s) for s in strategies]
    for _, name, options in parsed:
        make_spec(name, **options)
    return parsed


def _parse(entry: str | tuple[str, dict]) -> tuple[str, str, dict]:
    """``"name"`` or ``"name:key=value,key=value"`` or ``(name, options)``: (label, name, options)."""
    if isinstance(entry, tuple):
        name, options = entry
        label = name + (":" + ",".join(f"{k}={v}" for k, v in options.items()) if options else "")
        return label, name, dict(options)
    name, _, rest = entry.partition(":")
    options = {}
    for pair in filter(None, rest.split(",")):
        k, eq, v = pair.partition("=")
        if not eq:
            raise InputError(f"strategy {entry!r}: options are key=value, got {pair!r}")
        try:
            options[k] = json.loads(v)
        except json.JSONDecodeError:
            options[k] = v
    return entry, name, options


def run(
    problems: Sequence[str | Problem],
    strategies: Sequence[str | tuple[str, dict]],
    *,
    seeds: int = 100,
    evals: int = 1000,
    trials: int = 50,
    progress: bool = False,
) -> BenchResult:
    """Runs every strategy on every problem for ``seeds`` seeds (vectorized) and collects regret.

    Args:
      problems: registered names (``jt.bench.PROBLEMS``) or :class:`Problem` objects.
      strategies: registry names, ``"name:key=value,..."`` with options (e.g.
        ``"coarse_to_fine:inner=\\"grid\\""``), or ``(name, options)`` pairs. A ``"grid"`` without
        ``points`` gets ``floor(evals ** (1 / dim))`` points a side (2 at least: in many
        dimensions more points than evaluations, of which it runs the first ``evals``).
      seeds: sweeps per (problem, strategy), seeds ``0 .. seeds - 1``.
      evals: evaluations per sweep.
      trials: evaluations a round (what each strategy proposes at once).
      progress: print one line per (problem, strategy).

    Examples:
      >>> res = jt.bench.run(["branin", "hartmann3"], ["random", "coarse_to_fine"], seeds=100, evals=500)
      >>> print(res.table())
    """
    check_int("seeds", seeds)
    problems = [problems] if isinstance(problems, (str, Problem)) else problems  # one, as meant: not its letters
    probs = [p if isinstance(p, Problem) else get_problem(p) for p in problems]
    parsed = check_strategies(strategies)
    curves, seconds, scales = {}, {}, {}
    for p in probs:
        scales[p.name] = random_scale(p)
        for label, name, options in parsed:
            if name == "grid" and "points" not in options:  # a grid of about `evals` points, 2 a side at least
                options = {**options, "points": max(2, int(math.floor(evals ** (1 / p.space.dim) + 1e-9)))}
            t = time.perf_counter()
            best = sweep_curves(p, name, seeds, evals, trials, options)
            seconds[(p.name, label)] = time.perf_counter() - t
            curves[(p.name, label)] = np.maximum(best + p.optimum if p.objectives > 1 else best - p.optimum, 0.0)
            if progress:
                med = float(np.median(curves[(p.name, label)][:, -1]))
                print(f"{p.name:<16} {label:<28} median final regret {med:.4g}  ({seconds[(p.name, label)]:.2f} s)")
    return BenchResult([p.name for p in probs], [label for label, _, _ in parsed], seeds, evals, trials, curves,
                       scales, seconds)  # fmt: skip
