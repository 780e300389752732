"""A babysitting run's tree in its study's file: every node (a checkpoint or an event) and the
run's head, stored beside the sweeps' trials (the same SQLite file, its own tables)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from jaxtune.study.storage import Storage, json_text, metrics_from_json

__all__ = ["add", "read", "state"]


def add(store: Storage, study_id: int, nodes: Iterable[Mapping[str, Any]], head: int) -> None:
    """Stores babysitting nodes (checkpoints and events: ``id``, ``parent``, ``step``, ``event``,
    ``hp``, ``metrics``, ``width``, ``lane`` and ``state`` bytes or None) and moves the run's head
    to node ``head``, in one transaction.

    Raises:
      StorageFullError: the disk is full (nothing of this call is stored; all before it is).
    """
    rows = [
        (study_id, n["id"], n["parent"], n["step"], n["event"], json_text(n["hp"]), json_text(n["metrics"]),
         n["width"], n["lane"], None if n["state"] is None else sqlite3.Binary(n["state"]))
        for n in nodes
    ]  # fmt: skip
    with store.writing():
        store.conn.executemany(
            "INSERT INTO nodes (study_id, id, parent, step, event, hp, metrics, width, lane, state) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        store.conn.execute("INSERT OR REPLACE INTO heads (study_id, node) VALUES (?, ?)", (study_id, int(head)))


def read(store: Storage, study_id: int) -> tuple[list[dict[str, Any]], int | None]:
    """A babysitting run's nodes (without their state bytes), in id order, and its head."""
    cur = store.conn.execute(
        "SELECT id, parent, step, event, hp, metrics, width, lane, state IS NOT NULL FROM nodes "
        "WHERE study_id = ? ORDER BY id",
        (study_id,),
    )
    nodes = [
        {"id": i, "parent": p, "step": st, "event": e, "hp": json.loads(h), "metrics": metrics_from_json(m),
         "width": w, "lane": ln, "has_state": bool(hs)}
        for i, p, st, e, h, m, w, ln, hs in cur
    ]  # fmt: skip
    row = store.conn.execute("SELECT node FROM heads WHERE study_id = ?", (study_id,)).fetchone()
    return nodes, None if row is None else row[0]


def state(store: Storage, study_id: int, node: int) -> bytes | None:
    """The state bytes stored with a babysitting node (None for an event that kept its parent's)."""
    row = store.conn.execute("SELECT state FROM nodes WHERE study_id = ? AND id = ?", (study_id, node)).fetchone()
    return None if row is None or row[0] is None else bytes(row[0])
