"""What a built-in task is: an objective with a sensible default space and selection metric."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from jaxtune.space import Space

__all__ = ["Task"]


@dataclasses.dataclass(frozen=True)
class Task:
    """A ready-to-tune objective.

    Attributes:
      name: registry name.
      objective: single-trial objective (often a :class:`~jaxtune.train.Trainer`).
      space: default search space.
      metric: selection metric (computed on a validation split).
      mode: ``"min"`` or ``"max"``.
      report: metrics worth showing for the best trial (test metrics are reported, never
        selected on).
    """

    name: str
    objective: Callable[..., Any]
    space: Space
    metric: str
    mode: str
    report: tuple[str, ...] = ()
