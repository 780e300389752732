"""Population checkpoints in a study's database: the last two kept, each with a checksum bound to
its study, so a damaged one (or another study's) is found before it is unpacked, reported in one
line, and the one before it used."""

from __future__ import annotations

import hashlib
import sqlite3
import warnings

from jaxtune.errors import CheckpointError, CheckpointWarning

__all__ = ["read", "write", "drop", "resign"]


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _checksum(conn: sqlite3.Connection, study_id: int, segment: int, state: bytes, config: str | None = None) -> str:
    """A checkpoint's checksum, bound to its study (name and configuration, the stored one unless
    ``config`` is given) and its segment."""
    name, stored = conn.execute("SELECT name, config FROM studies WHERE id = ?", (study_id,)).fetchone()
    h = hashlib.sha256(f"{name}\0{stored if config is None else config}\0{segment}\0".encode())
    h.update(state)
    return h.hexdigest()


def resign(conn: sqlite3.Connection, study_id: int, before: str) -> None:
    """Binds a study's good checkpoints to its configuration as it is now stored, after a resume
    changed it (its layout) from ``before`` (inside the caller's transaction); a damaged one stays
    damaged."""
    if "checkpoint_ring" not in _tables(conn):
        return
    rows = conn.execute(
        "SELECT slot, segment, digest, CAST(state AS BLOB) FROM checkpoint_ring WHERE study_id = ?", (study_id,)
    ).fetchall()
    for slot, segment, digest, state in rows:
        if _checksum(conn, study_id, int(segment), bytes(state), before) == digest:
            conn.execute(
                "UPDATE checkpoint_ring SET digest = ? WHERE study_id = ? AND slot = ?",
                (_checksum(conn, study_id, int(segment), bytes(state)), study_id, slot),
            )


def write(conn: sqlite3.Connection, study_id: int, segment: int, state: bytes) -> None:
    """Stores a checkpoint (inside the caller's transaction); it replaces the older of the last two."""
    rows = conn.execute(
        "SELECT slot, seq FROM checkpoint_ring WHERE study_id = ? ORDER BY seq DESC", (study_id,)
    ).fetchall()
    slot, seq = (0, 1) if not rows else (1 - rows[0][0], rows[0][1] + 1)
    conn.execute(
        "INSERT OR REPLACE INTO checkpoint_ring (study_id, slot, seq, segment, digest, state) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (study_id, slot, seq, segment, _checksum(conn, study_id, segment, state), sqlite3.Binary(state)),
    )


def read(conn: sqlite3.Connection, path: str, study_id: int) -> tuple[int, bytes] | None:
    """The newest good ``(segment, state)`` of a study, or None; a bad one is reported in one line
    (:class:`CheckpointWarning`) and the one before it used.

    Raises:
      CheckpointError: every stored checkpoint of the study is bad.
    """
    tables = _tables(conn)
    rows = []
    if "checkpoint_ring" in tables:
        rows = conn.execute(
            "SELECT segment, digest, CAST(state AS BLOB) FROM checkpoint_ring WHERE study_id = ? ORDER BY seq DESC",
            (study_id,),
        ).fetchall()
    if not rows:  # a database from before checksums: its one checkpoint as it is
        if "checkpoints" not in tables:
            return None
        row = conn.execute("SELECT segment, state FROM checkpoints WHERE study_id = ?", (study_id,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))
    for i, (segment, digest, state) in enumerate(rows):
        if _checksum(conn, study_id, int(segment), bytes(state)) == digest:
            return int(segment), bytes(state)
        what = "the one before it is used" if i + 1 < len(rows) else "no good checkpoint is left"
        message = f"{path}: the checkpoint at segment {segment} is damaged; {what}"
        warnings.warn(CheckpointWarning(message), stacklevel=3)
    raise CheckpointError(
        f"{path}: every stored checkpoint of the study is damaged, so its population cannot resume; to start it "
        "afresh (the stored trials are kept), run jt.Storage(path).drop_checkpoints(study) and rerun"
    )


def drop(conn: sqlite3.Connection, study_id: int) -> None:
    """Deletes a study's checkpoints (inside the caller's transaction)."""
    tables = _tables(conn)
    for table in ("checkpoint_ring", "checkpoints"):
        if table in tables:
            conn.execute(f"DELETE FROM {table} WHERE study_id = ?", (study_id,))
