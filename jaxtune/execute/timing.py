"""Where a study's wall time goes: the compiled trial programs, compilation, and the rest.

The rest is the *host overhead*: storage, the strategy or scheduler (its programs included),
transfers and Python. :data:`CLOCK` accumulates, for the whole process, the seconds spent
running trial programs (from the call to their results on the host) and compiling (tracing,
lowering, and waiting for XLA); :func:`jaxtune.tune` reads it before and after a study and
reports the split as ``Result.timing``.

Examples:
  >>> t = Timing()
  >>> with t.count("trials_s"):
  ...     pass
  >>> sorted(t.since(Timing(), wall=1.0))
  ['cached', 'compile_s', 'host_s', 'host_share', 'programs', 'trials_s', 'wall_s']
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Timing", "CLOCK", "jit_counted"]


@dataclasses.dataclass
class Timing:
    """Seconds spent running compiled trial programs and compiling, accumulated."""

    trials_s: float = 0.0
    compile_s: float = 0.0
    programs: int = 0  # trial programs compiled (or loaded from JAX's persistent cache)
    cached: int = 0  # of those, loaded from the persistent cache

    @contextlib.contextmanager
    def count(self, what: str) -> Iterator[None]:
        """Adds the time the ``with`` body takes to ``what`` (``"trials_s"`` or ``"compile_s"``)."""
        t = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, what, getattr(self, what) + time.perf_counter() - t)

    def copy(self) -> Timing:
        """A snapshot (read :meth:`since` it later)."""
        return dataclasses.replace(self)

    def since(self, start: Timing, wall: float) -> dict[str, float]:
        """The split of ``wall`` seconds since snapshot ``start``: ``wall_s``, ``trials_s``,
        ``compile_s``, ``host_s`` (the rest) and ``host_share`` (``host_s / wall_s``); and the
        trial ``programs`` compiled, ``cached`` of them loaded from JAX's persistent cache."""
        trials, compiling = self.trials_s - start.trials_s, self.compile_s - start.compile_s
        host = max(wall - trials - compiling, 0.0)
        return {"wall_s": wall, "trials_s": trials, "compile_s": compiling, "host_s": host,
                "host_share": host / wall if wall > 0 else 0.0, "programs": self.programs - start.programs,
                "cached": self.cached - start.cached}  # fmt: skip


CLOCK = Timing()  # this process's: every executor and population adds to it


def jit_counted(fn: Callable, static_argnums: tuple[int, ...] | int = (), out_shardings: Any = None) -> Callable:
    """``jax.jit(fn)`` whose calls that compile — the first with each argument shape (and static
    value) — count as compiling in ``Result.timing``, the others as what they are: a scheduler's
    or driver's own run takes microseconds. ``out_shardings`` as ``jax.jit``'s."""
    import jax
    import numpy as np

    static = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    options = {} if out_shardings is None else {"out_shardings": out_shardings}
    jitted, seen = jax.jit(fn, static_argnums=static, **options), set()

    def call(*args: Any) -> Any:
        leaves, tree = jax.tree.flatten([a for i, a in enumerate(args) if i not in static])
        signature = (tree, tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves),
                     tuple(args[i] for i in static))  # fmt: skip
        if signature in seen:
            return jitted(*args)
        seen.add(signature)
        with CLOCK.count("compile_s"):
            return jax.block_until_ready(jitted(*args))

    return call
