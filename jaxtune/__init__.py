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

from jaxtune import errors as errors
from jaxtune import schedulers as schedulers
from jaxtune import schedules, strategies, tasks
from jaxtune.analysis.importance import Importance as Importance
from jaxtune.analysis.importance import importance
from jaxtune.analysis.live import serve
from jaxtune.babysitting import Babysitter as Babysitter
from jaxtune.babysitting import babysit
from jaxtune.errors import InputError, JaxtuneError, StorageError, StudyBusyError
from jaxtune.execute import Executor as Executor
from jaxtune.execute import use_cpu_cores
from jaxtune.planning import Plan as Plan
from jaxtune.planning import plan
from jaxtune.reseeding import reseed
from jaxtune.result import Result
from jaxtune.settings import configure
from jaxtune.space import Choice, Float, Int, Masked, Space
from jaxtune.study.storage import Storage as Storage
from jaxtune.study.storage import StudyMismatchError
from jaxtune.tune import Progress as Progress
from jaxtune.tune import RoundReport as RoundReport
from jaxtune.tune import tune

__version__ = "0.1.0"

# Flax and Optax load only when used: a plain-JAX objective needs neither.
_LAZY = {"bench": "jaxtune.bench", "figures": "jaxtune.analysis.figures", "layers": "jaxtune.layers",
         "report": "jaxtune.analysis.report", "train": "jaxtune.train"}  # fmt: skip


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'jaxtune' has no attribute {name!r}")


# What the README teaches. Also importable, for the few who need them: Executor, Storage,
# Babysitter, Plan, Importance, Progress (RoundReport) and the modules errors, schedulers, figures.
__all__ = [
    # search spaces
    "Space",
    "Float",
    "Int",
    "Choice",
    "Masked",
    # tuning, and what it returns
    "tune",
    "Result",
    "importance",
    "plan",
    "babysit",
    "reseed",
    "serve",
    "use_cpu_cores",
    "configure",
    # errors about the input
    "JaxtuneError",
    "InputError",
    "StudyMismatchError",
    "StudyBusyError",
    "StorageError",
    # modules
    "tasks",
    "train",
    "layers",
    "strategies",
    "schedules",
    "bench",
    "report",
    "__version__",
]
