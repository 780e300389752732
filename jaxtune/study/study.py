"""One study, as every driver sees it: its config, lock, open and resume check, records, Result.

A driver (rounds, population, continued halving) describes what it runs with
:func:`study_config`, opens a :class:`Study` (which locks it, checks it against what is stored
and reads the trials done), writes each finished chunk with :meth:`Study.write` and returns
:meth:`Study.result`. Trials are :class:`~jaxtune.study.records.TrialRecord` values made by
:func:`~jaxtune.study.records.trial_record` alone.

With several processes (``jax.distributed``) the study lives in one file that process 0 opens,
locks and writes; it sends what is stored to the others, which keep their copy in memory
(every process computes every result, so all return the same :class:`~jaxtune.Result`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxtune.errors import StorageError, StudyMismatchError
from jaxtune.result import Result
from jaxtune.study.records import TrialRecord
from jaxtune.study.storage import Storage

__all__ = ["Study", "study_config", "objective_settings", "settings_changed"]

# What must equal the stored study's for a run to resume it (the program, too, under the same jax).
CHECKED = ("space", "strategy", "trials", "seed", "metric", "mode", "select", "warm_start")


def _setting(value: Any) -> Any:
    """A setting as JSON can hold it: scalars as they are, arrays and data as their shapes."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{value.dtype}{list(value.shape)}"
    if isinstance(value, Mapping):
        return {str(k): _setting(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_setting(v) for v in value]
    if callable(value):
        return getattr(value, "__qualname__", type(value).__qualname__)
    return type(value).__qualname__


def objective_settings(objective: Any) -> dict[str, Any]:
    """An objective's settings (a dataclass's fields, e.g. a Trainer's ``steps``, ``batch_size``
    and data shapes), so a refused resume can say which one changed."""
    if not dataclasses.is_dataclass(objective):
        return {}
    return {f.name: _setting(getattr(objective, f.name)) for f in dataclasses.fields(objective)}


def study_config(space, strategy: dict, args, metric, tie_break, objective, executor, kind: str, **extra) -> dict:
    """What a study is made of, stored with it and checked on resume (see :class:`Study`)."""
    return {
        "space": space.describe(),
        "strategy": strategy,
        "trials": args.trials,
        "seed": args.seed,
        "metric": metric,
        "mode": args.mode,
        "select": args.select,
        "tie_break": tie_break,
        "objective": getattr(objective, "__qualname__", type(objective).__qualname__),
        "settings": objective_settings(objective),
        "program": executor.trial_fn.fingerprint(executor.first_bucket()),
        "layout": executor.layout(),
        "kind": kind,  # "rounds" or "population": how trial keys were made (jaxtune.keys)
        **({"constraints": [c.description for c in args.constraints]} if args.constraints else {}),
        **({"seeds": args.seeds, "aggregate": args.aggregate} if args.seeds > 1 else {}),
        **({"objectives": [list(o) for o in args.objectives]} if args.objectives else {}),
        **({"warm_start": args.warm.describe()} if getattr(args, "warm", None) is not None else {}),
        **extra,
    }


def agreed(flag: bool) -> bool:
    """Process 0's ``flag`` on every process of a ``jax.distributed`` run (``flag`` itself with one
    process): a decision taken from a clock (a timeout, a checkpoint's turn) must be the same on
    every process, or one would wait in a collective the others never reach."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def _bytes_from_process_0(blob: bytes | None) -> bytes:
    """``blob`` as process 0 has it, on every process."""
    from jax.experimental import multihost_utils

    data = np.frombuffer(blob, np.uint8) if jax.process_index() == 0 and blob else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int64(data.size)))
    buf = np.zeros(size, np.uint8)
    buf[: data.size] = data
    return bytes(np.asarray(multihost_utils.broadcast_one_to_all(buf)))


def _from_process_0(obj: Any) -> Any:
    """``obj`` as process 0 has it, on every process of a ``jax.distributed`` run (JSON-able)."""
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(obj).encode(), np.uint8) if jax.process_index() == 0 else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
    buf = np.zeros(size, np.uint8)
    buf[: data.size] = data
    return json.loads(bytes(np.asarray(multihost_utils.broadcast_one_to_all(buf))))


def settings_changed(stored: dict[str, Any], settings: dict[str, Any]) -> str | None:
    """What differs between a study's stored objective settings and ``settings``, in words
    (``objective setting steps: stored 300, now 500``); None when nothing differs or the study
    predates stored settings."""
    old = stored.get("settings") or {}
    changed = [k for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]
    if not old or not changed:
        return None
    return "; ".join(f"objective setting {k}: stored {old.get(k)!r}, now {settings.get(k)!r}" for k in changed)


def objective_mismatch(config: Mapping[str, Any], objective: Any, space) -> str | None:
    """Why ``objective`` is not the one a stored study (its ``config``) was run with, in words, or
    None: its settings (a Trainer's steps, data shapes, ...) and, under the same jax version, its
    program's fingerprint. ``export``, ``reseed`` and ``jt.reseed`` check it before training."""
    from jaxtune.execute import Executor

    what = settings_changed(config, objective_settings(objective))
    if what:
        return what
    if config.get("layout", {}).get("jax") == jax.__version__ and config.get("program"):
        executor = Executor(objective, space)
        if executor.trial_fn.fingerprint(executor.first_bucket()) != config["program"]:
            return "its program differs: another task, model, data or step count"
    return None


def _program_changed(name: str, path: str, stored: dict[str, Any], config: dict[str, Any]) -> StudyMismatchError:
    """The error for a resume whose objective computes something else: it names the settings that
    changed (``settings steps: stored 300, now 500``) when the objective has any."""
    what = settings_changed(stored, config.get("settings") or {}) or (
        f"the objective's program changed (fingerprint stored {stored.get('program')}, now {config['program']}): "
        "another model, step count, data or code"
    )
    return StudyMismatchError(
        f"study {name!r} in {path} was made with another objective ({what}); its stored trials would mix with "
        "different ones: use another study name or storage file to start afresh"
    )


class Study:
    """A study in storage, as one run sees it: the trials done, and a place to write new ones.

    ``Study.stored_in_process`` counts the trials written by every study of this process, and
    :meth:`stored_since_opened` counts them in their files (what the CLI says after a Ctrl-C).

    Args:
      storage: the SQLite file (None: in memory).
      name: the study's name in it.
      config: what this run is made of (:func:`study_config`); a stored study made otherwise is
        refused with :class:`~jaxtune.StudyMismatchError`, which names what changed.
      check: the config keys that must equal the stored ones.
    """

    stored_in_process = 0
    _opened: dict[tuple[str, str], int] = {}  # (file, study): trials stored when this process first opened it

    def __init__(self, storage: str | None, name: str, config: dict[str, Any], check: Sequence[str] = CHECKED):
        self.storage, self.name = storage, name
        self.writer = jax.process_index() == 0
        # A second run of this study at the same time is refused (the lock is taken first).
        self.store = Storage(storage if storage is not None and self.writer else ":memory:", lock=name)
        error = None
        try:
            if self.writer:
                self.sid = self._open(config, check)
            else:
                self.sid = self.store.open_study(name, config)
        except StudyMismatchError as e:
            error = e
        if jax.process_count() > 1:
            shared = _from_process_0(
                {
                    "error": str(error) if error else None,
                    "trials": [dict(t) for t in self.store.trials(self.sid)] if not error else [],
                }
            )
            if shared["error"] is not None:
                error = error or StudyMismatchError(shared["error"])
            elif not self.writer:
                self.store.write_trials(self.sid, shared["trials"])
        if error is not None:
            self.store.close()
            raise error
        self.done: dict[tuple[int, int], TrialRecord] = {t.key: t for t in self.store.trials(self.sid)}
        if storage is not None and self.writer:
            self.store.set_end(self.sid, None)  # running now: a live view says how it ends
            Study._opened.setdefault((os.path.abspath(self.store.path), name), len(self.done))

    @classmethod
    def stored_since_opened(cls) -> int:
        """Trials this process's studies have stored since it opened them, counted in their files:
        the truth even when a stop lands between a write's commit and its bookkeeping (studies in
        memory are counted as written)."""
        import sqlite3

        in_files, written = 0, cls.stored_in_process
        for (path, name), before in cls._opened.items():
            try:  # read as report does: nothing written beside the file
                with contextlib.closing(Storage(path, read_only=True)) as store:
                    (now,) = store.conn.execute("SELECT COUNT(*) FROM trials JOIN studies ON trials.study_id = "
                                                "studies.id WHERE studies.name = ?", (name,)).fetchone()  # fmt: skip
            except (sqlite3.Error, StorageError):
                return written
            in_files += now - before
        return max(in_files, 0) if cls._opened else written

    def _open(self, config: dict[str, Any], check: Sequence[str]) -> int:
        """Opens (or creates) the study, refusing one made with another space, strategy or objective."""
        stored = self.store.study_config(self.name)
        if stored is not None and stored.get("program") != config["program"]:
            if stored.get("layout", {}).get("jax") == config["layout"]["jax"]:
                # The same jax traces the same objective to the same program.
                if all(stored.get(k) == config.get(k) for k in check if k != "program"):
                    raise _program_changed(self.name, self.store.path, stored, config)
                check = [*dict.fromkeys([*check, "program"])]
            else:
                warnings.warn(
                    f"study {self.name!r} was stored with jax {stored.get('layout', {}).get('jax')}; its objective's "
                    "program cannot be compared across jax versions, so jaxtune cannot check that the trials still "
                    "to run train the same model on the same data as the stored ones",
                    stacklevel=5,
                )
        return self.store.open_study(self.name, config, check=check, warn=("layout",))

    @property
    def config(self) -> dict[str, Any] | None:
        """The study's configuration as stored."""
        return self.store.study_config(self.name)

    def write(self, rows: Sequence[TrialRecord], points: Sequence = (), lineage: Sequence = (), checkpoint=None):
        """Stores finished trials, their curve points and lineage (every process keeps them;
        process 0 writes them to the file), with a population's checkpoint when given, in one
        transaction."""
        self.store.write_trials(self.sid, rows, points, lineage, checkpoint if self.writer else None)
        self.done.update({(row["round"], row["slot"]): row for row in rows})
        Study.stored_in_process += len(rows)

    def curves(self) -> dict[tuple[int, int], list]:
        """Every stored learning curve of the study (on every process)."""
        curves = self.store.curves(self.sid)
        if jax.process_count() > 1:  # curves stored before this run are in process 0's file only
            curves = {
                tuple(k): v
                for k, v in _from_process_0([[list(k), v] for k, v in curves.items()] if self.writer else None)
            }
        return curves

    def checkpoint(self) -> tuple[int, bytes] | None:
        """The last stored checkpoint of a population run: ``(segment, blob)``, or None (with several
        processes, process 0's, on every process)."""
        if jax.process_count() == 1:
            return self.store.checkpoint(self.sid)
        saved = self.store.checkpoint(self.sid) if self.writer else None
        segment = _from_process_0(None if saved is None else saved[0])
        blob = _bytes_from_process_0(None if saved is None else saved[1])
        return None if segment is None else (segment, blob)

    def release_checkpoints(self, compact: bool = False) -> None:
        """Drops the study's checkpoints (nothing resumes from them any more); see
        :meth:`~jaxtune.study.storage.Storage.release_checkpoints`. Only the writing process writes."""
        if self.writer:
            self.store.release_checkpoints(self.name, compact)

    def result(self, metric: str, mode: str, tie_break, select: str, stopped: str | None) -> Result:
        """Every trial of the study, stored ones included; records that this run ended (finished, or
        stopped by ``stopped``) for a live view and a later report."""
        if self.storage is not None and self.writer:
            self.store.set_end(self.sid, stopped or "finished")
        return Result(
            list(self.done.values()), metric, mode, study=self.name, storage=self.storage, curves=self.curves(),
            tie_break=tie_break, select=select, stopped=stopped, lineage=self.store.lineage(self.sid),
            config=self.config,
        )  # fmt: skip

    def close(self) -> None:
        """Closes the storage (and frees the study's lock)."""
        self.store.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
