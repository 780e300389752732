"""What a driver is: the one interface :func:`jaxtune.tune` runs every driver through.

A driver is a module (:mod:`~jaxtune.drivers.rounds`, :mod:`~jaxtune.drivers.halving`,
:mod:`~jaxtune.drivers.population`) with the members of :class:`Driver`. Every driver takes the
checked arguments (:class:`~jaxtune.drivers.args.Arguments`: the strategy it runs is
``args.strategy`` (built, rounds) or ``args.spec`` (halving, populations), its study description
``args.described``), stores through the study layer, reports a
:class:`~jaxtune.progress.Progress` per round, rung or segment to ``args.report``, and returns
the study's :class:`~jaxtune.Result`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from jaxtune.drivers.args import Arguments
from jaxtune.execute import Executor
from jaxtune.result import Result
from jaxtune.space import Space

__all__ = ["Driver"]


class Driver(Protocol):
    """A driver module's interface (a module is a structural match: ``rounds: Driver``)."""

    REFUSES: Mapping[str, str]  # the jt.tune arguments it cannot honour, and why (refused before tracing)

    def check(self, objective: Any, space: Space, args: Arguments) -> None:
        """Checks, before anything is traced, that it can run ``objective`` over ``space``."""

    def driven(self, args: Arguments) -> frozenset[str]:
        """The hyperparameters it sets itself (continued halving's budget): an objective need not read them."""

    def run(self, objective: Any, space: Space, args: Arguments, executor: Executor, metric: str,
            storage: str | None) -> Result:  # fmt: skip
        """Runs (or resumes) the study; its :class:`~jaxtune.Result`."""
