"""Program sharing: which compiled program runs which masked bucket.

A masked width runs in a bucket of its power-of-two size (``hidden=33`` in ``hidden<=64``), and
each bucket is a program to compile. A smaller bucket's trials can run on a larger bucket's
program instead — their live units are the first ones, the rest are masked, so they compute the
same trials (up to float32 rounding: other matrix shapes sum in another order) — at the cost of
the larger program's work per trial. :func:`hosts` makes that trade: a bucket's trials move to
the smallest larger bucket already chosen when what they would cost there is below what compiling
their own program costs.

The costs come from the trial's matrix-product flops (:func:`~jaxtune.execute.platform.matmul_flops`)
and two constants per platform (:data:`FLOP_RATE`, :data:`COMPILE_SECONDS`, measured by
``benchmarks/sharing.py``), never from clocks read during the run: the same batch always makes
the same choice, so a study with the same seed computes the same results, and nothing depends on
how loaded the machine is. A study's later rounds reuse the programs its earlier rounds chose
(:meth:`~jaxtune.execute.Executor.share` is told every round's whole batch in order, a stored
one too, so a resumed study chooses as the uninterrupted one did). ``jt.configure(share_programs=False)`` (or
``JAXTUNE_SHARE_PROGRAMS=0``) turns it off: each bucket its own program.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

__all__ = ["hosts", "dominates", "COMPILE_SECONDS", "FLOP_RATE"]

# Seconds to compile one trial program (a small MLP or CNN trained in a scan), and the rate the
# trials' matrix products run at, per platform (benchmarks/results/sharing_cpu.json; a GPU's
# compile is slower, with autotuning, and its flops far cheaper).
COMPILE_SECONDS = {"cpu": 1.5, "gpu": 8.0, "cuda": 8.0, "rocm": 8.0, "tpu": 15.0}
FLOP_RATE = {"cpu": 3e10, "gpu": 1e13, "cuda": 1e13, "rocm": 1e13, "tpu": 5e13}


def dominates(host: tuple, bucket: tuple, n_static: int) -> bool:
    """Whether ``host``'s program can run ``bucket``'s trials: the same static values, and every
    masked size at least ``bucket``'s (an inactive conditional parameter, None, in both)."""
    if host[:n_static] != bucket[:n_static]:
        return False
    return all((h is None) == (b is None) and (h is None or h >= b) for h, b in zip(host[n_static:], bucket[n_static:]))


def _size(bucket: tuple, n_static: int) -> int:
    return math.prod(s for s in bucket[n_static:] if s is not None)


def hosts(counts: Mapping[tuple, int], flops: Callable[[tuple], float], platform: str, n_static: int,
          existing: Iterable[tuple] = ()) -> dict[tuple, tuple]:  # fmt: skip
    """``{bucket: the bucket whose program runs it}`` for a batch's buckets and their trial counts.

    From the largest bucket down: a bucket moves to the smallest bucket with a program — one of
    ``existing`` (the study's earlier batches' programs) or one chosen so far — that can run it
    (:func:`dominates`) when its trials there would cost less (``count`` x the host's ``flops``
    per trial / :data:`FLOP_RATE`) than compiling its own program (:data:`COMPILE_SECONDS`);
    else it gets its own program. ``flops`` is asked only of buckets with a program.
    """
    rate, compile_s = FLOP_RATE.get(platform), COMPILE_SECONDS.get(platform)
    out: dict[tuple, tuple] = {}
    if rate is None or compile_s is None:  # an unknown platform: no basis for a trade
        return {b: b for b in counts}
    chosen: list[tuple] = list(existing)
    for b in sorted(counts, key=lambda b: (-_size(b, n_static), repr(b))):
        if b in chosen:  # its own program exists
            out[b] = b
            continue
        able = [h for h in chosen if dominates(h, b, n_static)]
        host = min(able, key=lambda h: (flops(h), repr(h))) if able else None
        if host is not None and counts[b] * flops(host) / rate < compile_s:
            out[b] = host
        else:
            chosen.append(b)
            out[b] = b
    return out
