"""Strategies against Optuna's TPE on the MNIST-1D MLP, at lookup speed (the shipped table).

Every strategy gets 48 and 192 evaluations (rounds of 8 or 16, and 16 or 48); jaxtune's run 1,000
seeds at once on the device (the Gaussian process, which fits a model every round:
``--gp-seeds``), TPE (Optuna's default sampler, sequential: it sees every result before its
next proposal) runs ``--tpe-seeds`` seeds on the host. Every method searches the same unit cube
(each hyperparameter on its own scale: TPE gets jaxtune's true log(1 - b1) scale too) and scores
a point with the table's nearest configuration, so all compare on the same problem. Reported:
the validation accuracy of the configuration each sweep selects, median and quartiles over seeds.

    python benchmarks/table_strategies.py      # writes results/table_strategies_<backend>.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402

STRATEGIES = ["random", "halton", "coarse_to_fine", "cma_es"]
BUDGETS = {48: (16, 8), 192: (48, 16)}  # evaluations: trials a round (a wide and a narrow batch)


def tpe(problem, evals: int, seed: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = problem.space.names
    fn = jax.jit(lambda u: problem.fn(problem.space.from_unit(u)))
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))

    def objective(trial):
        u = jnp.asarray([trial.suggest_float(n, 0.0, 1.0) for n in names], jnp.float32)
        return float(fn(u))

    study.optimize(objective, n_trials=evals)
    return -study.best_value


def gp_round_seconds(problem, trials: int = 16, rounds: int = 8) -> float:
    """Seconds one round of the Gaussian process takes with its defaults (capacity 256, 1,024
    candidates), ask and tell, one seed, compiled and warm: its cost inside a real sweep."""
    strategy = jt.strategies.make_strategy("gp", problem.space, trials)
    ask, tell = jax.jit(strategy.ask), jax.jit(strategy.tell)
    evaluate = jax.jit(lambda u: jax.vmap(problem.fn)(problem.space.from_unit(u)))
    state, times = strategy.init(jax.random.key(0)), []
    for r in range(rounds):
        t = time.perf_counter()
        u, state = ask(jax.random.key(r), state)
        state = jax.block_until_ready(tell(state, u, evaluate(u)))
        times.append(time.perf_counter() - t)
    return float(np.median(times[2:]))  # past the Halton round and the compiles


def summary(strategy: str, evals: int, trials: int, seeds: int, acc: np.ndarray, seconds: float) -> dict:
    return {"strategy": strategy, "evals": evals, "trials_a_round": trials, "seeds": seeds,
            "median": float(np.median(acc)), "q25": float(np.quantile(acc, 0.25)),
            "q75": float(np.quantile(acc, 0.75)), "seconds": seconds}  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=1000)
    p.add_argument("--tpe-seeds", type=int, default=20)
    p.add_argument("--gp-seeds", type=int, default=100)
    p.add_argument("--out")
    a = p.parse_args()
    problem = jt.bench.get_problem("mnist1d_mlp_table")
    rows = {}
    for evals, widths in BUDGETS.items():
        for trials in widths:
            t = time.perf_counter()
            res = jt.bench.run([problem], STRATEGIES, seeds=a.seeds, evals=evals, trials=trials)
            seconds = time.perf_counter() - t
            for s in STRATEGIES:
                acc = -(res.final(problem.name, s) + problem.optimum)  # selected validation accuracy
                rows[f"{s}@{evals}/{trials}"] = summary(s, evals, trials, a.seeds, acc, seconds)
            t = time.perf_counter()  # the Gaussian process, keeping every point (capacity = evaluations)
            res = jt.bench.run([problem], [("gp", {"capacity": evals})], seeds=a.gp_seeds, evals=evals, trials=trials)
            acc = -(res.final(problem.name, res.strategies[0]) + problem.optimum)
            rows[f"gp@{evals}/{trials}"] = summary("gp", evals, trials, a.gp_seeds, acc, time.perf_counter() - t)
            t = time.perf_counter()  # Optuna's TPE proposing jaxtune's batches (constant liar)
            res = jt.bench.run([problem], [("optuna", {"sampler": "tpe"})], seeds=a.tpe_seeds, evals=evals,
                               trials=trials)  # fmt: skip
            acc = -(res.final(problem.name, res.strategies[0]) + problem.optimum)
            rows[f"optuna_tpe_batch@{evals}/{trials}"] = summary(
                "optuna_tpe_batch", evals, trials, a.tpe_seeds, acc, time.perf_counter() - t
            )
        t = time.perf_counter()  # Optuna's TPE as people run it: sequential, one trial at a time
        acc = np.asarray([tpe(problem, evals, s) for s in range(a.tpe_seeds)])
        rows[f"tpe@{evals}/1"] = summary("optuna_tpe_sequential", evals, 1, a.tpe_seeds, acc, time.perf_counter() - t)
    payload = {"problem": problem.name, "table_best_val_accuracy": -problem.optimum, "rows": rows,
               "gp_seconds_a_round": gp_round_seconds(problem),
               "predicted": "the Gaussian process at least as good as sequential TPE at 48 and 192 evaluations; "
               "coarse-to-fine at least as good as random"}  # fmt: skip
    path = common.write(f"table_strategies_{jax.default_backend()}", payload, a.out)
    print(
        f"table's best validation accuracy: {-problem.optimum:.4f}; gp: {payload['gp_seconds_a_round']:.2f} s a round"
    )
    print(f"{'strategy':<22} {'evals':>5} {'a round':>7} {'seeds':>6} {'median':>7}  quartiles")
    for r in rows.values():
        line = f"{r['strategy']:<22} {r['evals']:>5} {r['trials_a_round']:>7} {r['seeds']:>6} {r['median']:>7.4f}"
        print(f"{line}  [{r['q25']:.4f}, {r['q75']:.4f}]")
    print(path)


if __name__ == "__main__":
    main()
