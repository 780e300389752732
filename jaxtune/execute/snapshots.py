"""A population's states as one ``.npz`` blob and back: what a checkpoint stores.

A blob holds the lanes' states (``state*``), a scheduler's state (``sched*``) and the driver's
bookkeeping (``book_*``). Reading one checks it against what this run expects — every array there,
with the shape and dtype of this program's state — before anything is placed on a device, so a
blob that passed its checksum but is not this study's (or was rewritten) is refused in one line
(:class:`~jaxtune.errors.CheckpointError`) instead of failing deep inside a program.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxtune._trees import restore_tree, tree_arrays
from jaxtune.errors import CheckpointError

__all__ = ["pack", "unpack", "unpack_book", "check_book"]


def pack(states: Any, sched_state: Any = (), book: Mapping[str, Any] | None = None, lanes=None) -> bytes:
    """The lanes' ``states`` (only lanes ``lanes``, in that order, when given: a checkpoint sized
    to the live trials), a scheduler's state and the driver's ``book`` (``{name: array}``) as one blob."""
    arrays = tree_arrays(states, "state")
    if lanes is not None:
        arrays = {k: v[np.asarray(lanes)] for k, v in arrays.items()}
    arrays.update(tree_arrays(sched_state, "sched"))
    arrays.update({f"book_{k}": np.asarray(v) for k, v in (book or {}).items()})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _load(blob: bytes, where: str):
    try:
        return np.load(io.BytesIO(blob), allow_pickle=False)
    except _UNREADABLE as e:
        raise CheckpointError(f"{where} cannot be read ({e}); {_AFRESH}") from None


_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile)  # what a blob that is no good .npz raises
_AFRESH = "to start the population afresh (stored trials are kept), run jt.Storage(path).drop_checkpoints(study)"


def unpack_book(blob: bytes, where: str = "the checkpoint") -> dict[str, np.ndarray]:
    """The driver's bookkeeping in a :func:`pack` blob (check it with :func:`check_book`).

    Raises:
      CheckpointError: the blob is not an ``.npz`` of arrays.
    """
    data = _load(blob, where)
    try:
        return {k[5:]: data[k] for k in data.files if k.startswith("book_")}
    except _UNREADABLE as e:
        raise CheckpointError(f"{where} cannot be read ({e}); {_AFRESH}") from None


def unpack(blob: bytes, state_spec: Any, sched_state: Any = (), where: str = "the checkpoint") -> tuple:
    """``(book, states, sched_state)`` from a :func:`pack` blob, host arrays checked against
    ``state_spec`` and ``sched_state`` (the shapes and dtypes this run's program has).

    Raises:
      CheckpointError: an array is missing or not of this program's shape and dtype.
    """
    data = _load(blob, where)
    try:
        states, sched = restore_tree(data, "state", state_spec), restore_tree(data, "sched", sched_state)
    except _UNREADABLE as e:
        raise CheckpointError(f"{where} is not this study's population ({e}); {_AFRESH}") from None
    return unpack_book(blob, where), states, sched


def check_book(book: Mapping[str, np.ndarray], spec: Mapping[str, tuple], where: str = "the checkpoint") -> None:
    """Checks a driver's bookkeeping: ``spec`` is ``{name: (shape, kind, low, high)}`` (``kind`` a
    NumPy kind, ``"i"``, ``"f"`` or ``"b"``; ``shape`` with ``None`` for any length; values in
    ``[low, high]`` where given).

    Raises:
      CheckpointError: an entry is missing, of another shape or kind, or out of its range.
    """
    for name, (shape, kind, low, high) in spec.items():
        if name not in book:
            raise CheckpointError(f"{where} has no {name!r} in its bookkeeping; {_AFRESH}")
        a = np.asarray(book[name])
        fits = a.ndim == len(shape) and all(s is None or s == n for s, n in zip(shape, a.shape))
        if not fits or (a.dtype.kind not in (kind, "u") if kind == "i" else a.dtype.kind != kind):
            got, want = f"{a.dtype}{list(a.shape)}", f"{kind}{list(shape)}"
            raise CheckpointError(f"{where}: {name} is {got}, expected {want}; {_AFRESH}")
        bad = (low is not None and bool((a < low).any())) or (high is not None and bool((a > high).any()))
        if bad:
            shown = np.array2string(a, threshold=8, edgeitems=3)
            raise CheckpointError(f"{where}: {name} = {shown} is outside [{low}, {high}]; {_AFRESH}")
