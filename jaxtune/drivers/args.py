"""The checked arguments of :func:`jaxtune.tune`, as every driver receives them."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any

from jaxtune.errors import raise_swallowed_signal
from jaxtune.study.study import agreed

__all__ = ["Arguments"]


@dataclasses.dataclass(frozen=True)
class Arguments:
    """``tune``'s arguments, checked (see :func:`jaxtune.tune` for each one's meaning)."""

    strategy: Any  # a built Strategy for the rounds driver; None for a population scheduler
    trials: int
    rounds: int
    mode: str
    seed: int
    study: str
    report: Callable[[Any], None] | None  # called with each finished round's, rung's or segment's Progress
    timeout: float | None
    select: str
    verbose: bool
    tie_break: tuple[str, str] | None = None
    seeds: int = 1  # each configuration trained under this many keys in the same batch
    aggregate: str = "mean"  # how its seeds' values make its value (jaxtune.study.records.aggregate)
    objectives: tuple = ()  # ((metric, mode), ...) of several objectives (the first is the primary one)
    constraints: tuple = ()  # jaxtune.constraints.Constraint, checked against the objective's metrics
    strategy_key: str | None = None  # what the built strategy depends on (its programs are cached by it), if known
    spec: Any = None  # the halving spec (continued halving) or the scheduler spec (populations); None for rounds
    described: Any = None  # the strategy as its study describes it (matched on resume)
    warm: Any = None  # a scored jaxtune.study.warm.WarmStart the strategy is told before round 0 (rounds only)
    started: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float | None:
        """The ``time.monotonic()`` after which the run stops at its next safe point (None: never)."""
        return None if self.timeout is None else self.started + self.timeout

    def past_deadline(self) -> bool:
        """Whether the timeout has passed; called at the drivers' safe points.

        It also raises a Ctrl-C or SIGTERM that the code it interrupted swallowed
        (:func:`jaxtune.errors.raise_from_signal`), so that the run stops there.
        """
        raise_swallowed_signal()
        return agreed(self.deadline is not None and time.monotonic() > self.deadline)  # process 0's clock

    def say_stopped(self, stored: int, resumes_at: str) -> None:
        """Tells (with ``progress=True``) that the timeout stopped the run and how a rerun resumes."""
        if self.verbose:
            print(
                f"[jaxtune] stopped after timeout={self.timeout:g} s with {stored} trials stored; rerun with the same "
                f"storage and study to resume ({resumes_at})",
                file=sys.stderr,
            )
