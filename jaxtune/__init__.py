"""jaxtune: hyperparameter tuning that trains many trials at once.

A pure single-trial function goes in; jaxtune vmaps it over a batch of sampled
hyperparameters, compiles it once, and zooms the search coarse-to-fine between rounds.

    >>> import jaxtune as jt
    >>> space = jt.Space({"lr": jt.Float(1e-4, 1.0, scale="log"),
    ...                   "b1": jt.Float(0.9, 0.999, scale="reverse_log")})
    >>> result = jt.tune(objective, space, strategy="coarse_to_fine", trials=64, rounds=4,
    ...                  metric="val_loss", mode="min", seed=0, storage="sweep.db")
    >>> result.best
"""

import importlib

from jaxtune import errors, schedulers, schedules, strategies, tasks
from jaxtune.babysitting import Babysitter, babysit
from jaxtune.errors import InputError, JaxtuneError
from jaxtune.execute import Executor, use_cpu_cores
from jaxtune.planning import Plan, plan
from jaxtune.priorities import Importance, importance
from jaxtune.result import Result
from jaxtune.space import Choice, Float, Int, Masked, Space
from jaxtune.storage import Storage, StudyMismatchError
from jaxtune.tune import RoundReport, tune

__version__ = "0.1.0"

# Flax and Optax load only when used: a plain-JAX objective needs neither.
_LAZY = ("bench", "figures", "layers", "report", "train")


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"jaxtune.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'jaxtune' has no attribute {name!r}")


__all__ = [
    "Babysitter",
    "Choice",
    "Executor",
    "Float",
    "Importance",
    "InputError",
    "JaxtuneError",
    "Int",
    "Masked",
    "Plan",
    "Result",
    "RoundReport",
    "Space",
    "Storage",
    "layers",
    "plan",
    "report",
    "StudyMismatchError",
    "babysit",
    "errors",
    "figures",
    "importance",
    "schedulers",
    "schedules",
    "strategies",
    "tasks",
    "train",
    "tune",
    "use_cpu_cores",
    "__version__",
]
