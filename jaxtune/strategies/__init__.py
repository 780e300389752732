"""Search strategies: pure ask/tell functions on the unit cube, and their registry."""

from jaxtune.strategies.base import REGISTRY, Strategy, StrategySpec, make_strategy, register, sanitize_scores
from jaxtune.strategies.bayesian import GaussianProcess
from jaxtune.strategies.bohb import BOHB
from jaxtune.strategies.coarse_to_fine import CoarseToFine
from jaxtune.strategies.evolution import CMAES
from jaxtune.strategies.grid import GridSearch
from jaxtune.strategies.halving import Hyperband, SuccessiveHalving
from jaxtune.strategies.optuna_sampler import HostStrategy, OptunaSampler
from jaxtune.strategies.quasirandom import Halton
from jaxtune.strategies.random import RandomSearch

__all__ = [
    "REGISTRY",
    "Strategy",
    "StrategySpec",
    "make_strategy",
    "register",
    "sanitize_scores",
    "BOHB",
    "CMAES",
    "CoarseToFine",
    "GaussianProcess",
    "GridSearch",
    "Halton",
    "HostStrategy",
    "Hyperband",
    "OptunaSampler",
    "RandomSearch",
    "SuccessiveHalving",
]
