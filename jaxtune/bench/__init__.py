"""Benchmarking search strategies: problems with known optima, whole sweeps on the device.

    >>> res = jt.bench.run(["branin", "hartmann6"], ["random", "halton", "coarse_to_fine"], seeds=1000, evals=1000)
    >>> print(res.table())       # median final regret [quartiles] per problem, average rank
    >>> res.plot("regret.png")   # anytime regret curves

Command line: ``jaxtune bench --problems branin,hartmann6 --strategies random,coarse_to_fine``.
"""

from jaxtune.bench.problems import PROBLEMS, Problem, get_problem, register_problem
from jaxtune.bench.runner import BenchResult, check_strategies, run, sweep_curves
from jaxtune.bench.tables import build_table, register_shipped, table_problem

register_shipped()  # mnist1d_mlp_table: the shipped tabular benchmark of a real task

__all__ = [
    "PROBLEMS",
    "Problem",
    "BenchResult",
    "build_table",
    "check_strategies",
    "get_problem",
    "register_problem",
    "run",
    "sweep_curves",
    "table_problem",
]
