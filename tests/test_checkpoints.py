"""Population checkpoints in a study's file (jaxtune/study/checkpoints.py): the last two kept, each bound
to its study by a checksum, a damaged one reported and the one before it used."""

import sqlite3
import warnings

import pytest

from jaxtune.errors import CheckpointError, CheckpointWarning
from jaxtune.study import checkpoints
from jaxtune.study.sqlite_files import SCHEMA


@pytest.fixture
def conn():
    c = sqlite3.connect(":memory:")
    c.executescript(SCHEMA)
    c.execute("INSERT INTO studies (id, name, config) VALUES (1, 'a', '{\"x\": 1}'), (2, 'b', '{\"x\": 1}')")
    return c


def test_the_newest_of_the_last_two_is_read_back(conn):
    assert checkpoints.read(conn, "f.db", 1) is None
    for segment in range(3):
        checkpoints.write(conn, 1, segment, f"state {segment}".encode())
    assert checkpoints.read(conn, "f.db", 1) == (2, b"state 2")
    assert conn.execute("SELECT COUNT(*) FROM checkpoint_ring WHERE study_id = 1").fetchone()[0] == 2
    assert checkpoints.read(conn, "f.db", 2) is None  # another study's are not this one's


def test_a_damaged_checkpoint_is_reported_and_the_one_before_used(conn):
    checkpoints.write(conn, 1, 4, b"good")
    checkpoints.write(conn, 1, 5, b"newest")
    conn.execute("UPDATE checkpoint_ring SET state = ? WHERE segment = 5", (sqlite3.Binary(b"newest, flipped"),))
    with pytest.warns(CheckpointWarning, match="f.db: the checkpoint at segment 5 is damaged; the one before"):
        assert checkpoints.read(conn, "f.db", 1) == (4, b"good")
    conn.execute("UPDATE checkpoint_ring SET state = ? WHERE segment = 4", (sqlite3.Binary(b"bad"),))
    with warnings.catch_warnings(), pytest.raises(CheckpointError, match="drop_checkpoints"):
        warnings.simplefilter("ignore", CheckpointWarning)
        checkpoints.read(conn, "f.db", 1)
    checkpoints.drop(conn, 1)
    assert checkpoints.read(conn, "f.db", 1) is None


def test_a_checkpoint_is_bound_to_its_study_and_follows_a_changed_configuration(conn):
    """Copied to another study it does not check; after a resume changes the study's stored
    configuration, ``resign`` binds the good ones to the new one."""
    checkpoints.write(conn, 1, 3, b"state")
    conn.execute("UPDATE checkpoint_ring SET study_id = 2")
    with warnings.catch_warnings(), pytest.raises(CheckpointError):
        warnings.simplefilter("ignore", CheckpointWarning)
        checkpoints.read(conn, "f.db", 2)
    conn.execute("UPDATE checkpoint_ring SET study_id = 1")
    conn.execute("UPDATE studies SET config = '{\"x\": 2}' WHERE id = 1")  # a resume changed the layout
    with warnings.catch_warnings(), pytest.raises(CheckpointError):
        warnings.simplefilter("ignore", CheckpointWarning)
        checkpoints.read(conn, "f.db", 1)
    checkpoints.resign(conn, 1, before='{"x": 1}')
    assert checkpoints.read(conn, "f.db", 1) == (3, b"state")
