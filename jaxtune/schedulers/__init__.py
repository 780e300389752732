"""Schedulers: what each lane of a live population does next (continue, stop, refill, exploit).

See :mod:`jaxtune.schedulers.base` for the interface; ``jt.tune(trainer, space, "pbt")``,
``"pb2"``, ``"asha"`` or ``"median"`` runs one (the objective must implement the stateful trial protocol, as
``jt.train.Trainer`` does).
"""

from jaxtune.schedulers.asha import ASHA, MedianStopping
from jaxtune.schedulers.base import (
    SCHEDULERS,
    Decision,
    Lanes,
    Scheduler,
    is_scheduler,
    make_scheduler,
    register_scheduler,
)
from jaxtune.schedulers.pb2 import PB2
from jaxtune.schedulers.pbt import PBT

__all__ = [
    "ASHA",
    "MedianStopping",
    "PB2",
    "PBT",
    "SCHEDULERS",
    "Decision",
    "Lanes",
    "Scheduler",
    "is_scheduler",
    "make_scheduler",
    "register_scheduler",
]
