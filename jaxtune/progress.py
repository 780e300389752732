"""What a sweep tells its user while it runs: what compiles, chunks done, rounds finished.

Rounds are numbered from 0 everywhere (progress lines, tables, ``Result`` rows, storage); a
progress line also says how far the sweep is, as ``(k/R)``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

__all__ = ["Progress", "RoundReport", "print_progress", "print_compiling", "ChunkProgress"]


class Progress(dict):
    """What every driver reports to a ``progress`` callable, once per unit of work it finishes.

    Keys every event has: ``unit`` (``"round"``, ``"rung"`` or ``"segment"``: which driver and
    what finished), ``round`` (its index from 0: the round, the rung counted as a round, or the
    segment), ``rounds`` (how many the sweep runs: rounds, rungs, or at most this many segments),
    ``ran`` (trials it trained), ``seconds``, ``trials_per_s``, ``metric``, ``best`` (the best
    finished trial's metric so far, None before one), ``diverged`` (its trials that diverged) and
    ``compiles`` (programs compiled so far). A rung adds ``steps`` (its budget) and ``kept`` (the
    trials that go on); a segment adds ``steps`` (its length) and ``busy`` (lanes training).
    """


RoundReport = Progress  # the name of the round driver's report before every driver reported one


def _say(line: str) -> None:
    print(f"[jaxtune] {line}", file=sys.stderr, flush=True)


def _round(r: int, rounds: int) -> str:
    return f"round {r} ({r + 1}/{rounds})"


def print_progress(report: Progress) -> None:
    """The default ``progress`` (``progress=True``): one line per finished round or rung (a
    population's segments show as a bar of segments, which its driver draws)."""
    if report["unit"] == "segment":
        return
    if report["unit"] == "rung":
        _say(f"{_round(report['round'], report['rounds'])}: {report['ran']} trials continued to {report['steps']} "
             f"steps, {report['kept']} go on; {report['seconds']:.1f} s")  # fmt: skip
        return
    best = "none yet" if report["best"] is None else f"{report['best']:.6g}"
    _say(
        f"{_round(report['round'], report['rounds'])}: {report['ran']} trials in {report['seconds']:.2f} s "
        f"({report['trials_per_s']:.1f} trials/s), {report['diverged']} diverged, "
        f"best {report['metric']} so far {best}"
    )


def print_compiling(r: int, rounds: int, programs: Sequence[tuple[str, int, int]], trials: int) -> None:
    """Says which programs a round compiles before its first trial can run: ``[(bucket, trials of
    the bucket, trials one program runs at once)]``, of the ``trials`` the round runs."""
    what = ", ".join(f"{b} ({n} trial{'s' if n != 1 else ''}, {width} at once)" for b, n, width in programs[:4])
    more = f" and {len(programs) - 4} more" if len(programs) > 4 else ""
    s = "s" if len(programs) > 1 else ""
    _say(f"{_round(r, rounds)}: compiling {len(programs)} program{s} for {trials} trial{'s' if trials != 1 else ''}: "
         f"{what}{more}")  # fmt: skip


class ChunkProgress:
    """Prints a line after each chunk of a round that runs in several: trials done, rate, time left.

    On a terminal every chunk gets its line; off one (a log file, a CI job) a line comes at most
    every ``QUIET_S`` seconds, so a log holds a heartbeat rather than a line per chunk.
    """

    QUIET_S = 30.0

    def __init__(self, r: int, rounds: int, total: int, compiles: int):
        self.r, self.rounds, self.total, self.done = r, rounds, total, 0
        self.start = time.perf_counter()
        self.compiles = compiles
        self.steady: tuple[float, int] | None = None  # (time, trials done) once programs are compiled
        self.every = 0.0 if sys.stderr.isatty() else self.QUIET_S
        self.said = self.start

    def update(self, n: int, compiles: int) -> None:
        """Counts ``n`` more finished trials; ``compiles`` is the executor's compile count now."""
        self.done += n
        now = time.perf_counter()
        if self.done >= self.total:
            return  # the round's own line follows
        head = f"{_round(self.r, self.rounds)}: {self.done}/{self.total} trials"
        if self.steady is None or compiles != self.compiles:
            # The first chunk (or one that compiled a new program): its rate says nothing yet.
            self.steady, self.compiles = (now, self.done), compiles
            line = f"{head} in {now - self.start:.1f} s (compiling included)"
        else:
            rate = (self.done - self.steady[1]) / max(now - self.steady[0], 1e-9)
            line = f"{head}, {rate:.1f} trials/s, ~{(self.total - self.done) / rate:.0f} s left"
        if now - self.said >= self.every:
            self.said = now
            _say(line)
