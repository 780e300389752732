"""Small checks and integer helpers shared across jaxtune (one definition each)."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxtune.errors import InputError

# Step counts live in int32 counters on the device (a trial's step, its data keys' fold-ins).
MAX_STEPS = 2**31 - 1


def check_int(name: str, value: Any, low: int = 1, high: int | None = None, *, none: bool = False) -> int | None:
    """``value`` as an int in ``[low, high]``, else an :class:`InputError` naming it (bools are not ints).

    ``none=True`` lets None through (an option whose default is "decide for me").
    """
    if value is None and none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < low
        or (high is not None and value > high)
    ):
        allowed = f"an int >= {low}" if high is None else f"an int in [{low}, {high}]"
        raise InputError(f"{name} must be {allowed}{' or None' if none else ''}, got {value!r}")
    return int(value)


def next_pow2(n: int) -> int:
    """The smallest power of two >= ``n`` (1 for ``n <= 1``)."""
    return 1 << max(0, (int(n) - 1).bit_length())


def round_up(n: int, k: int) -> int:
    """``n`` rounded up to a multiple of ``k``."""
    return -(-n // k) * k
