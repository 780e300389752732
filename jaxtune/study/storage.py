"""SQLite storage for studies, trials and learning curves (stdlib ``sqlite3``, WAL mode).

One database holds many studies. Every chunk of finished trials is written in one transaction
before the next chunk starts, so a crash, Ctrl-C or kill loses at most the chunk in flight, and
a rerun of the same study resumes from what is stored.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from jaxtune.errors import (
    InputTypeError,
    LayoutWarning,
    StorageError,
    StorageFullError,
    StudyBusyError,
    StudyMismatchError,
    UnknownNameError,
)
from jaxtune.study import checkpoints
from jaxtune.study.records import TrialRecord
from jaxtune.study.sqlite_files import (
    APPLICATION_ID,
    SCHEMA,
    SQLITE_HEADER,
    TABLES,
    check_path,
    lock_dir,
    lock_study,
    storage_error,
)

__all__ = ["Storage", "StorageError", "StudyBusyError", "StudyMismatchError", "LayoutWarning", "lock_dir", "json_text",
           "metrics_from_json"]


def _changes(key: str, old: Any, new: Any) -> str:
    """``key: stored OLD, now NEW``, field by field for dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        return "; ".join(_changes(k, old.get(k), new.get(k)) for k in sorted({*old, *new}) if old.get(k) != new.get(k))
    return f"{key}: stored {old!r}, now {new!r}"


def _json_default(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    raise InputTypeError(f"cannot store {x!r} as JSON")


def json_text(x: Any) -> str:
    """``x`` as the JSON text a column holds (NaN and Infinity kept: a diverged trial's metrics)."""
    # Python's json writes NaN/Infinity and reads them back, which is all a diverged trial needs.
    return json.dumps(x, default=_json_default)


def metrics_from_json(text: str) -> dict[str, float]:
    """A metrics column read back as floats."""
    return {k: float(v) for k, v in json.loads(text).items()}


# SQLite's application_id of a jaxtune database ("JTUN"): a file that carries another is
# another application's, and is never written to.


class Storage:
    """A SQLite database of studies.

    Args:
      path: a file path, or ``":memory:"`` for a throw-away database.
      read_only: open an existing database without writing to it (no tables, no WAL switch).

    Raises:
      StorageError: ``path`` is a directory, its directory does not exist or is not writable,
        the file is not a SQLite database (or is damaged), or it is another application's.
    """

    def __init__(self, path: str | os.PathLike = ":memory:", *, read_only: bool = False, lock: str | None = None):
        self.path = os.fspath(path)
        self._locks: list[int] = []
        memory = self.path == ":memory:"
        if not memory:
            check_path(self.path, read_only)
        existed = memory or os.path.exists(self.path)
        if lock is not None and existed:
            self.lock_study(lock)  # before SQLite touches the file: every path to it meets the lock first
        try:
            self.conn = self._connect(read_only)
        except sqlite3.DatabaseError as e:
            self.close()
            if not existed and os.path.exists(self.path) and os.path.getsize(self.path) == 0:
                os.remove(self.path)  # a database that could not be made leaves no empty file behind
            raise storage_error(self.path, e) from e
        if lock is not None and not existed:
            self.lock_study(lock)

    def _connect(self, read_only: bool) -> sqlite3.Connection:
        if read_only:
            where = os.path.abspath(self.path)
            # Read it as it is, writing nothing beside it, when no run has it open (no -wal file:
            # everything is in the database itself) or where SQLite could not make its WAL side
            # files (a read-only filesystem or file); beside a running sweep, as a WAL reader.
            writable = os.access(where, os.W_OK) and os.access(os.path.dirname(where), os.W_OK)
            quiet = not writable or not os.path.exists(where + "-wal")
            conn = sqlite3.connect(f"file:{where}?{'immutable=1' if quiet else 'mode=ro'}", uri=True)
        else:
            conn = sqlite3.connect(self.path)
        self.conn = conn
        self._check_schema()
        if read_only:
            return conn
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.commit()
        return conn

    @contextlib.contextmanager
    def writing(self):
        """One transaction; an SQLite error in it raised as what it means for the user
        (:func:`~jaxtune.study.sqlite_files.storage_error`: a full disk, a read-only file ...)."""
        try:
            with self.conn:
                yield
        except sqlite3.OperationalError as e:
            raise storage_error(self.path, e) from e

    @staticmethod
    def check(path: str | os.PathLike) -> None:
        """Raises :class:`StorageError` now if ``path`` could not hold a study; writes nothing."""
        path = os.fspath(path)
        if path == ":memory:":
            return
        check_path(path, read_only=False)
        if not os.path.exists(path):
            return
        with open(path, "rb") as f:
            head = f.read(72)
        if head and not head.startswith(SQLITE_HEADER):
            raise StorageError(f"{path!r} is not a SQLite database (its first bytes are not SQLite's header)")
        app = int.from_bytes(head[68:72], "big") if len(head) >= 72 else 0
        if app not in (0, APPLICATION_ID):
            raise StorageError(f"{path!r} belongs to another application (SQLite application_id {app:#x})")
        try:
            Storage(path, read_only=True).close()  # its tables
        except StorageError as e:
            if "jaxtune database" in str(e):
                raise
            # SQLite cannot read it through this path right now (e.g. a hard link to a database that
            # a run holds in WAL mode elsewhere): the run's own open, after its lock, says why.

    def _check_schema(self) -> None:
        """Refuses a database that holds tables of another application."""
        app = self.conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if app not in (0, APPLICATION_ID):
            raise StorageError(f"{self.path!r} belongs to another application (SQLite application_id {app:#x})")
        foreign = sorted(tables - set(TABLES) - {"sqlite_sequence"})
        ours = {t: {r[1] for r in self.conn.execute(f"PRAGMA table_info({t})")} for t in tables & set(TABLES)}
        wrong = sorted(t for t, cols in ours.items() if not TABLES[t] <= cols)
        if foreign or wrong:
            raise StorageError(
                f"{self.path!r} is not a jaxtune database (it holds tables {sorted(tables)}); "
                "give jaxtune a file of its own"
            )

    def close(self) -> None:
        """Closes the connection (and releases a study lock held by :meth:`lock_study`)."""
        for fd in self._locks:
            os.close(fd)  # closing the descriptor releases its flock
        self._locks = []
        if getattr(self, "conn", None) is not None:
            self.conn.close()

    def lock_study(self, name: str) -> None:
        """Claims study ``name`` for this process until :meth:`close` (or the process ends, kill -9
        included): a second run of the same study at the same time is refused, not duplicated
        (see :func:`jaxtune.study.sqlite_files.lock_study`).

        Raises:
          StudyBusyError: another process (or another Storage in this one) runs the study now.
        """
        if self.path != ":memory:":
            self._locks.append(lock_study(self.path, name))

    def study_names(self) -> list[str]:
        """Names of the stored studies, oldest first."""
        return [r[0] for r in self.conn.execute("SELECT name FROM studies ORDER BY id")]

    def study_config(self, name: str) -> dict[str, Any] | None:
        """The configuration a study was created with, or None if there is no such study."""
        row = self.conn.execute("SELECT config FROM studies WHERE name = ?", (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    def open_study(
        self, name: str, config: Mapping[str, Any], *, check: Iterable[str] = (), warn: Iterable[str] = ()
    ) -> int:
        """Returns the id of study ``name``, creating it with ``config`` if it is new.

        Raises:
          StudyMismatchError: the study exists and differs from ``config`` in a key of ``check``.

        Warns:
          LayoutWarning: the study exists and differs from ``config`` in a key of ``warn``.
        """
        config = json.loads(json_text(config))
        with self.writing():  # two processes creating the same study at once: the first one's stands
            self.conn.execute("INSERT OR IGNORE INTO studies (name, config) VALUES (?, ?)", (name, json_text(config)))
        row = self.conn.execute("SELECT id, config FROM studies WHERE name = ?", (name,)).fetchone()
        stored = json.loads(row[1])
        diff = [k for k in check if stored.get(k) != config.get(k)]
        if diff:
            details = "; ".join(f"{k}: stored {stored.get(k)!r}, now {config.get(k)!r}" for k in diff)
            raise StudyMismatchError(
                f"study {name!r} in {self.path} was made with a different {', '.join(diff)} ({details}); "
                "use another study name or storage file to start afresh"
            )
        changed = [k for k in warn if stored.get(k) != config.get(k)]
        if changed:
            details = "; ".join(_changes(k, stored.get(k), config.get(k)) for k in changed)
            warnings.warn(
                LayoutWarning(
                    f"study {name!r} in {self.path} resumes with a different {', '.join(changed)} ({details}): the "
                    "trials still to run are batched differently from the stored ones, so they are not bit-for-bit "
                    "what an uninterrupted run would have computed (see 'Reproducibility' in README.md)"
                ),
                stacklevel=3,
            )
            # From here on the study runs with this layout: a later resume with it is silent.
            with self.writing():  # its checkpoints stay good: signed again for the new configuration
                self.conn.execute(
                    "UPDATE studies SET config = ? WHERE id = ?",
                    (json_text({**stored, **{k: config.get(k) for k in changed}}), row[0]),
                )
                checkpoints.resign(self.conn, row[0], row[1])
        return row[0]

    def write_trials(
        self,
        study_id: int,
        rows: Iterable[Mapping[str, Any]],
        curves: Iterable[tuple[int, int, int, Mapping[str, float]]] = (),
        lineage: Iterable[tuple[int, int, int, int, int]] = (),
        checkpoint: tuple[int, bytes] | None = None,
    ) -> None:
        """Stores finished trials, their curve points and lineage ``(round, slot, parent_round,
        parent_slot, step)`` (a trial that started from its parent's state at that step), and a
        population's ``(segment, state)`` checkpoint (replacing the last one), in one transaction:
        a kill leaves either all of them or none.

        Raises:
          StorageFullError: the disk is full (nothing of this call is stored; all before it is).
        """
        try:
            with self.writing():
                self._write_trials(study_id, rows, curves, lineage, checkpoint)
        except StorageFullError as error:
            stored = self.conn.execute("SELECT COUNT(*) FROM trials WHERE study_id = ?", (study_id,)).fetchone()[0]
            raise StorageFullError(f"{error} ({stored} trials of this study are stored)") from error.__cause__

    def _write_trials(self, study_id, rows, curves, lineage, checkpoint) -> None:
        """The statements of :meth:`write_trials` (inside its transaction)."""
        if checkpoint is not None:
            checkpoints.write(self.conn, study_id, int(checkpoint[0]), checkpoint[1])
        self.conn.executemany(
            "INSERT OR REPLACE INTO lineage (study_id, round, slot, parent_round, parent_slot, step) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(study_id, *map(int, row)) for row in lineage],
        )
        self.conn.executemany(
            "INSERT OR REPLACE INTO trials (study_id, round, slot, params, unit, metrics, status, value) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    study_id,
                    int(r["round"]),
                    int(r["slot"]),
                    json_text(r["params"]),
                    json_text(r["unit"]),
                    json_text(r["metrics"]),
                    r["status"],
                    r["value"] if r["value"] is None or math.isfinite(r["value"]) else None,
                )
                for r in rows
            ],
        )
        self.conn.executemany(
            "INSERT OR REPLACE INTO trial_seeds (study_id, round, slot, seed, metrics) VALUES (?, ?, ?, ?, ?)",
            [(study_id, int(r["round"]), int(r["slot"]), k, json_text(m)) for r in rows
             for k, m in enumerate(r.get("seeds", ()))],
        )  # fmt: skip
        self.conn.executemany(
            "INSERT OR REPLACE INTO trial_programs (study_id, round, slot, sizes) VALUES (?, ?, ?, ?)",
            [(study_id, int(r["round"]), int(r["slot"]), json_text(dict(r.program))) for r in rows
             if getattr(r, "program", None)],
        )  # fmt: skip
        self.conn.executemany(
            "INSERT OR REPLACE INTO curves (study_id, round, slot, step, metrics) VALUES (?, ?, ?, ?, ?)",
            [(study_id, int(r), int(s), int(step), json_text(m)) for r, s, step, m in curves],
        )

    def trials(self, study_id: int) -> list[TrialRecord]:
        """All stored trials of a study, in (round, slot) order."""
        cur = self.conn.execute(
            "SELECT round, slot, params, unit, metrics, status, value FROM trials WHERE study_id = ? "
            "ORDER BY round, slot",
            (study_id,),
        ).fetchall()
        seeds: dict[tuple[int, int], list] = {}
        if self._has_table("trial_seeds"):  # a database from before seeds has none
            query = "SELECT round, slot, metrics FROM trial_seeds WHERE study_id = ? ORDER BY round, slot, seed"
            for r, s, m in self.conn.execute(query, (study_id,)):
                seeds.setdefault((r, s), []).append(metrics_from_json(m))
        programs = {}
        if self._has_table("trial_programs"):  # (a database from before program sharing has none)
            query = "SELECT round, slot, sizes FROM trial_programs WHERE study_id = ?"
            programs = {(r, s): json.loads(z) for r, s, z in self.conn.execute(query, (study_id,))}
        return [
            TrialRecord(
                round=r,
                slot=s,
                params=json.loads(p),
                unit=json.loads(u),
                metrics=metrics_from_json(m),
                status=st,
                value=v if v is not None else float("nan"),
                seeds=tuple(seeds.get((r, s), ())),
                program=programs.get((r, s), {}),
            )
            for r, s, p, u, m, st, v in cur
        ]

    def _has_table(self, name: str) -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self.conn.execute(query, (name,)).fetchone() is not None

    def curves(self, study_id: int) -> dict[tuple[int, int], list[tuple[int, dict[str, float]]]]:
        """Learning curves: ``{(round, slot): [(step, metrics), ...]}``."""
        out: dict[tuple[int, int], list] = {}
        cur = self.conn.execute(
            "SELECT round, slot, step, metrics FROM curves WHERE study_id = ? ORDER BY round, slot, step", (study_id,)
        )
        for r, s, step, m in cur:
            out.setdefault((r, s), []).append((step, metrics_from_json(m)))
        return out

    def checkpoint(self, study_id: int) -> tuple[int, bytes] | None:
        """The newest good ``(segment, state)`` checkpoint of a population study, or None (see
        :func:`jaxtune.study.checkpoints.read`: a damaged one is reported and the one before it used).

        Raises:
          CheckpointError: every stored checkpoint of the study is bad.
        """
        return checkpoints.read(self.conn, self.path, study_id)

    def drop_checkpoints(self, study: str) -> None:
        """Forgets the population checkpoints of study ``study`` (its trials stay): the next run starts
        the population afresh."""
        with self.writing():
            checkpoints.drop(self.conn, self.study_id(study))

    def release_checkpoints(self, study: str, compact: bool = False) -> None:
        """Drops study ``study``'s checkpoints once nothing can resume from them (a finished bracket
        or study); with ``compact``, gives their pages back to the disk (``VACUUM``) when free pages
        are most of the file (a deleted checkpoint otherwise leaves the file at its largest)."""
        self.drop_checkpoints(study)
        if not compact:
            return
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        total = self.conn.execute("PRAGMA page_count").fetchone()[0]
        if free * 2 > total:
            try:
                self.conn.execute("VACUUM")
            except sqlite3.Error:  # another reader, or no room for the copy: the file stays as it is
                pass

    def lineage(self, study_id: int) -> dict[tuple[int, int], tuple[int, int, int]]:
        """``{(round, slot): (parent_round, parent_slot, step)}`` for trials that continued a parent's state."""
        if "lineage" not in {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}:
            return {}  # a database from before lineage was stored, opened read-only
        cur = self.conn.execute(
            "SELECT round, slot, parent_round, parent_slot, step FROM lineage WHERE study_id = ?", (study_id,)
        )
        return {(r, s): (pr, ps, step) for r, s, pr, ps, step in cur}

    def set_end(self, study_id: int, how: str | None) -> None:
        """Records how the study's run ended (``"finished"``, ``"timeout"``), or clears it (None)
        as a run starts: a study whose lock is free and that has no end was interrupted or killed."""
        with self.writing():
            self.conn.execute("DELETE FROM study_ends WHERE study_id = ?", (study_id,))
            if how is not None:
                self.conn.execute("INSERT INTO study_ends (study_id, how) VALUES (?, ?)", (study_id, how))

    def end(self, study_id: int) -> tuple[str, str] | None:
        """``(how, when)`` the study's last run ended (when: UTC, ``YYYY-MM-DD HH:MM:SS``), or None
        while one runs, after an interrupted run, or in a database from before ends were stored."""
        if not self._has_table("study_ends"):
            return None
        row = self.conn.execute("SELECT how, at FROM study_ends WHERE study_id = ?", (study_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def study_id(self, name: str) -> int:
        """The id of an existing study; KeyError naming the stored studies otherwise."""
        row = self.conn.execute("SELECT id FROM studies WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UnknownNameError(f"no study {name!r} in {self.path}; stored studies: {self.study_names()}")
        return row[0]
