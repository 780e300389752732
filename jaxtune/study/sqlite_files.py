"""The database file itself: its tables, path checks, SQLite's header, what an SQLite error means, the study lock.

Kept apart from :mod:`jaxtune.study.storage` (what is stored and how) because these are about the file
and the filesystem: a healthy database is never called damaged for an error of the disk, a full
disk says what is kept, and the study lock names the database by device and inode.
"""

from __future__ import annotations

import os
import sqlite3
import stat

from jaxtune.errors import MissingFileError, StorageError, StorageFullError, StudyBusyError

__all__ = [
    "SCHEMA",
    "TABLES",
    "APPLICATION_ID",
    "SQLITE_HEADER",
    "lock_dir",
    "lock_study",
    "study_running",
    "storage_error",
    "check_path",
]


# The tables of a jaxtune database (created if missing; a file with other tables is refused).
SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    config TEXT NOT NULL,
    created TEXT DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS trials (
    study_id INTEGER NOT NULL REFERENCES studies(id),
    round INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    params TEXT NOT NULL,
    unit TEXT NOT NULL,
    metrics TEXT NOT NULL,
    status TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (study_id, round, slot)
);
CREATE TABLE IF NOT EXISTS lineage (
    study_id INTEGER NOT NULL REFERENCES studies(id),
    round INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    parent_round INTEGER NOT NULL,
    parent_slot INTEGER NOT NULL,
    step INTEGER NOT NULL,
    PRIMARY KEY (study_id, round, slot)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    study_id INTEGER PRIMARY KEY REFERENCES studies(id),
    segment INTEGER NOT NULL,
    state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoint_ring (
    study_id INTEGER NOT NULL REFERENCES studies(id),
    slot INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    digest TEXT NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (study_id, slot)
);
CREATE TABLE IF NOT EXISTS nodes (
    study_id INTEGER NOT NULL REFERENCES studies(id),
    id INTEGER NOT NULL,
    parent INTEGER,
    step INTEGER NOT NULL,
    event TEXT NOT NULL,
    hp TEXT NOT NULL,
    metrics TEXT NOT NULL,
    width INTEGER NOT NULL,
    lane INTEGER NOT NULL,
    state BLOB,
    PRIMARY KEY (study_id, id)
);
CREATE TABLE IF NOT EXISTS heads (
    study_id INTEGER PRIMARY KEY REFERENCES studies(id),
    node INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS curves (
    study_id INTEGER NOT NULL REFERENCES studies(id),
    round INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    step INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (study_id, round, slot, step)
);
CREATE TABLE IF NOT EXISTS trial_seeds (
    study_id INTEGER NOT NULL REFERENCES studies(id),
    round INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (study_id, round, slot, seed)
);
CREATE TABLE IF NOT EXISTS study_ends (
    study_id INTEGER PRIMARY KEY REFERENCES studies(id),
    how TEXT NOT NULL,
    at TEXT DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS trial_programs (
    study_id INTEGER NOT NULL REFERENCES studies(id),
    round INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    sizes TEXT NOT NULL,
    PRIMARY KEY (study_id, round, slot)
);
"""

APPLICATION_ID = 0x4A54554E
TABLES = {
    "studies": {"id", "name", "config", "created"},
    "trials": {"study_id", "round", "slot", "params", "unit", "metrics", "status", "value"},
    "curves": {"study_id", "round", "slot", "step", "metrics"},
    "lineage": {"study_id", "round", "slot", "parent_round", "parent_slot", "step"},
    "checkpoints": {"study_id", "segment", "state"},
    "checkpoint_ring": {"study_id", "slot", "seq", "segment", "digest", "state"},
    "nodes": {"study_id", "id", "parent", "step", "event", "hp", "metrics", "width", "lane", "state"},
    "heads": {"study_id", "node"},
    "trial_seeds": {"study_id", "round", "slot", "seed", "metrics"},
    "trial_programs": {"study_id", "round", "slot", "sizes"},
    "study_ends": {"study_id", "how", "at"},
}


def lock_dir() -> str:
    """The directory of this user's study locks: ``$JAXTUNE_LOCK_DIR``, else ``$XDG_RUNTIME_DIR/jaxtune``
    or ``<tmp>/jaxtune-<uid>``; made with mode 0700, and refused unless it is a real directory of
    this user's that no one else can write (so no one else can plant a lock file in it)."""
    import tempfile

    path = os.environ.get("JAXTUNE_LOCK_DIR") or (
        os.path.join(os.environ["XDG_RUNTIME_DIR"], "jaxtune")
        if os.environ.get("XDG_RUNTIME_DIR")
        else os.path.join(tempfile.gettempdir(), f"jaxtune-{os.getuid()}")
    )
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as e:
        raise StorageError(f"the study lock directory {path!r} cannot be made ({e.strerror})") from e
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise StorageError(
            f"the study lock directory {path!r} is not a directory of this user's that only it can write; "
            "remove it, or set JAXTUNE_LOCK_DIR"
        )
    return path


SQLITE_HEADER = b"SQLite format 3\x00"


def storage_error(path: str, e: sqlite3.Error) -> StorageError:
    """What an SQLite error on ``path`` means for the user, from the file's header first: a file with
    SQLite's header is never called damaged for an error of the disk or the filesystem."""
    text = str(e).lower()
    try:
        with open(path, "rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError:
        header = None
    if "full" in text:
        return StorageFullError(
            f"{path!r}: the disk is full ({e}); everything stored so far is intact: free some space and rerun "
            "the same command to resume"
        )
    if header is not None and header not in (b"", SQLITE_HEADER):
        return StorageError(f"{path!r} is not a SQLite database (its first bytes are not SQLite's header)")
    if "malformed" in text or "not a database" in text:
        return StorageError(f"{path!r} is damaged ({e}): its header is SQLite's but its pages are not")
    if "readonly" in text or "read-only" in text or not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        return StorageError(
            f"{path!r} cannot be written ({e}): the file or its directory is read-only; the database itself is "
            "fine (jaxtune report and jt.Result.load read it where it is)"
        )
    return StorageError(
        f"{path!r} cannot be read or written ({e}); the file has SQLite's header, so the data is probably fine: "
        "check the disk and the file's permissions"
    )


def check_path(path: str, read_only: bool) -> None:
    """Raises :class:`StorageError` if ``path`` cannot hold a database (a directory, a missing or
    unwritable directory), or :class:`MissingFileError` if a database to read is not there."""
    if os.path.isdir(path):
        raise StorageError(
            f"storage {path!r} is a directory; give a file path such as {os.path.join(path, 'sweep.db')!r}"
        )
    if read_only:
        if not os.path.exists(path):
            raise MissingFileError(f"no storage file at {path!r}")
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        what = "is a file, not a directory" if os.path.exists(parent) else "does not exist"
        raise StorageError(f"storage {path!r}: its directory {parent!r} {what}")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise StorageError(f"storage {path!r} is not writable")


def _lock_path(path: str, name: str) -> str:
    """Study ``name``'s lock file for the database at ``path`` (named by device and inode)."""
    import hashlib

    st = os.stat(path)
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    return os.path.join(lock_dir(), f"{st.st_dev}-{st.st_ino}-{digest}.lock")


def study_running(path: str, name: str) -> bool:
    """Whether a process on this machine runs study ``name`` of the database at ``path`` now (holds
    its lock). A probe, not a claim: it holds a shared lock for an instant, which a run starting at
    that instant waits out (:func:`lock_study` retries for a moment before calling a study busy)."""
    import fcntl

    try:
        fd = os.open(_lock_path(path, name), os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except (OSError, StorageError):  # no lock file: no run of this study has ever started here
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # releases the probe's shared lock at once
    return False


def lock_study(path: str, name: str) -> int:
    """Claims study ``name`` of the database at ``path`` for this process; the lock's descriptor
    (closing it releases the lock; so does the process's end, kill -9 included).

    The lock names the database by device and inode, so every path to it (a symlink, a hard
    link, a relative path) takes the same lock; it lives in a directory of this user's own
    (:func:`lock_dir`), and is opened without following a symlink planted at its name.

    Raises:
      StudyBusyError: another process (or another descriptor in this one) holds the study now.
    """
    import fcntl
    import time

    lock_path = _lock_path(path, name)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as e:
        raise StorageError(f"study lock {lock_path!r} cannot be opened ({e.strerror}); is it a symlink?") from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageError(f"study lock {lock_path!r} is not a regular file; remove it")
    for _ in range(20):  # a live view's probe (study_running) holds it for an instant: wait that out
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            time.sleep(0.01)
    else:
        holder = os.read(fd, 100).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise StudyBusyError(
            f"study {name!r} in {path} is being run by {holder} right now; wait for it to finish, "
            "or use another study name"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()}".encode(), 0)
    return fd
