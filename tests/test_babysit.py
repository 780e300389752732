"""Panda mode: set, rollback, fork/adopt, resume; replay equality; the CLI in a real terminal."""

import importlib.util
import os
import sys

import jax
import numpy as np
import pytest
from conftest import SPACE, make_trainer

import jaxtune as jt
from jaxtune import cli
from jaxtune.analysis import live
from jaxtune.babysitting import Babysitter, babysit
from jaxtune.errors import InputError, UnknownNameError


def leaves(state):
    return [
        np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
        for x in jax.tree.leaves(state)
    ]


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b), strict=True))


@pytest.fixture(scope="module")
def trainer():
    return make_trainer(steps=40)


def test_set_takes_effect_from_its_step_and_segments_equal_straight_training(trainer, tmp_path):
    sitter = babysit(trainer, SPACE, {"lr": 0.01, "b1": 0.9, "n": 2}, storage=str(tmp_path / "b.db"), segment=5)
    assert sitter.step == 0 and set(sitter.metrics) == {"val_loss", "val_accuracy", "n_params"}
    sitter.train(2)
    compiles = sum(p.compiles for p in sitter._pops.values())
    sitter.set(lr=0.05)
    sitter.train(1)
    assert sum(p.compiles for p in sitter._pops.values()) == compiles  # a traced change: no new program
    assert sitter.events() == [(0, "start"), (10, "set lr=0.05")]
    # What it trained equals init + train(10 steps, lr=0.01) + train(5 steps, lr=0.05), straight.
    hp0 = {"lr": np.float32(0.01), "b1": np.float32(0.9), "n": np.int32(2)}
    state = trainer.init(hp0, jax.random.fold_in(jax.random.key(0), jt.keys.TRIAL_STREAM))
    state, _ = jax.jit(trainer.train, static_argnums=2)(hp0, state, 10)
    other = {**hp0, "lr": np.float32(0.05)}
    state, _ = jax.jit(trainer.train, static_argnums=2)(other, state, 5)
    assert np.allclose(leaves(state)[0], leaves(sitter.state)[0], atol=1e-6)
    again = dict(sitter.metrics)
    assert again["val_loss"] == pytest.approx(float(trainer.evaluate_state(other, state)["val_loss"]), abs=1e-5)
    sitter.close()


def test_rollback_restores_the_checkpoints_state_and_hyperparameters(trainer):
    with Babysitter(trainer, SPACE, {"lr": 0.01}, segment=5) as sitter:
        rollback(sitter)


def rollback(sitter):
    sitter.train(2)
    at_10 = leaves(sitter.state)
    sitter.set(lr=0.2)
    sitter.train(2)
    sitter.rollback(10)
    # The rule: the checkpoint's hyperparameters come back with it, not the edit made after it.
    assert sitter.step == 10 and sitter.hp["lr"] == 0.01
    assert all(np.array_equal(a, b) for a, b in zip(at_10, leaves(sitter.state)))
    sitter.train(1)
    assert sitter.step == 15 and sitter.path()[-2]["event"] == "rollback to step 10"
    with pytest.raises(InputError, match=r"no checkpoint at step 7 .* checkpoints are at \[0, 5, 10, 15\]"):
        sitter.rollback(7)


def test_fork_trains_edits_side_by_side_and_adopt_continues_one(trainer):
    with Babysitter(trainer, SPACE, {"lr": 0.01}, segment=5) as sitter:
        fork(sitter)


def fork(sitter):
    sitter.train(1)
    start = leaves(sitter.state)
    out = sitter.fork([{"lr": 0.001}, {"lr": 0.3}, {"b1": 0.6}], segments=2)
    assert list(out) == ["a", "b", "c"] and sitter.step == 5  # the head stays until one is adopted
    assert all(np.array_equal(a, b) for a, b in zip(start, leaves(sitter.state)))
    tips = sitter.branches()
    assert [sitter.nodes[t]["step"] for t in tips.values()] == [15, 15, 15]
    assert sitter._pops[3].width == 3  # the three edits were three lanes of one program
    sitter.adopt("b")
    assert sitter.step == 15 and sitter.hp["lr"] == 0.3 and sitter.metrics == out["b"]
    # Branch b alone, trained as one lane from the fork point, reaches the same state (bit for bit:
    # replay runs each segment in the program it ran in).
    assert same(sitter.replay(), sitter.state)
    with pytest.raises(InputError, match="no branch 'z'"):
        sitter.adopt("z")
    assert "├─ #" in sitter.tree() and "└─ #" in sitter.tree()


def test_stop_and_resume_from_storage_and_replay_every_path(trainer, tmp_path):
    db = str(tmp_path / "panda.db")
    sitter = babysit(trainer, SPACE, {"lr": 0.02}, storage=db, name="p", segment=5)
    sitter.train(1)
    sitter.set(lr=0.05)
    sitter.fork({"low": {"lr": 0.005}, "high": {"lr": 0.1}})
    head, step, nodes = sitter.head, sitter.step, len(sitter.nodes)
    state = leaves(sitter.state)
    sitter.close()
    again = babysit(trainer, SPACE, {"lr": 0.02}, storage=db, name="p", segment=5)
    assert (again.head, again.step, len(again.nodes), again.hp["lr"]) == (head, step, nodes, 0.05)
    assert all(np.array_equal(a, b) for a, b in zip(state, leaves(again.state)))
    assert set(again.branches()) == {"low", "high"}  # a resumed run can still adopt
    again.adopt("high")
    again.train(1)
    for node in (again.head, again.branches().get("low", again.nodes[-1]["id"])):
        stored = again._state_of(node)
        assert same(again.replay(node), stored)
    if importlib.util.find_spec("matplotlib"):  # the live view: the session's tree, open, then closed
        status, page = live._render(db, "p", str(tmp_path / "live"), False)
        assert status["state"] == "open" and status["trials"] == len(again.nodes) and "adopt high" in page
    again.close()
    if importlib.util.find_spec("matplotlib"):
        assert live._render(db, "p", str(tmp_path / "live"), False)[0]["state"] == "closed"
    with pytest.raises(jt.StudyMismatchError, match="hp"):
        babysit(trainer, SPACE, {"lr": 0.03}, storage=db, name="p", segment=5)


def test_bad_edits_are_refused_before_anything_trains(trainer):
    with Babysitter(trainer, SPACE, {"lr": 0.01}, segment=5) as sitter:
        bad_edits(sitter, trainer)


def bad_edits(sitter, trainer):
    with pytest.raises(InputError, match=r"lr: 5.0 is outside its range \[0.001, 1.0\]"):
        sitter.set(lr=5.0)
    with pytest.raises(UnknownNameError, match="unknown hyperparameters \\['momentum'\\]"):
        sitter.set(momentum=0.9)
    with pytest.raises(InputError, match="branch labels"):
        sitter.fork({"no good": {"lr": 0.1}})
    with pytest.raises(InputError, match="segment"):
        Babysitter(trainer, SPACE, segment=0)
    for segments in (10**20, 2**31):  # past an int32 step counter: refused, not trained for ever
        with pytest.raises(InputError, match=f"segments must be at most .* step counters are int32\\), got {segments}"):
            sitter.train(segments)
        with pytest.raises(InputError, match="step counters are int32"):
            sitter.fork([{"lr": 0.1}], segments)
    assert len(sitter.nodes) == 1


CONFIG = """
[task]
name = "pbt_toy"
steps = 400

[babysit]
segment = 4
storage = "{db}"
metric = "Q"
mode = "max"

[babysit.hp]
h0 = 1.0
h1 = 0.0
"""


def test_cli_runs_a_command_file_and_resumes(tmp_path, capsys):
    cfg = tmp_path / "b.toml"
    cfg.write_text(CONFIG.format(db=tmp_path / "b.db"))
    cmds = tmp_path / "cmds.txt"
    cmds.write_text("train 2\nset h1=1.0\ntrain\nfork h0*=0.5 | h0=0.0 for 2\nadopt a\nshow\ntree\n")
    assert cli.main(["babysit", str(cfg), "--commands", str(cmds)]) == 0
    out = capsys.readouterr().out
    assert "started step 0" in out and "from step 8: h0=1.0, h1=1.0" in out and "step 12: " in out
    assert "  a: h0=0.5" in out and "adopted; step 20" in out and "<- set h1=1.0" in out
    cmds.write_text("rollback 8\nbest\n")
    assert cli.main(["babysit", str(cfg), "--commands", str(cmds)]) == 0
    out = capsys.readouterr().out
    assert "resumed step 20" in out and "rolled back; step 8" in out and "h1=0.0" in out
    cmds.write_text("train\nfrobnicate\ntrain\n")  # a script stops at its first bad command
    assert cli.main(["babysit", str(cfg), "--commands", str(cmds)]) == 2
    captured = capsys.readouterr()
    assert "unknown command 'frobnicate'" in captured.err and captured.out.count("babysit> train") == 1
    # The report of a babysitting run: its tree, and a figure of every branch.
    assert cli.main(["report", str(tmp_path / "b.db")]) == 0
    out = capsys.readouterr().out
    assert "babysitting run 'babysit'" in out and "├─ #" in out and "rollback to step 8" in out
    assert (tmp_path / "b-report" / "babysit.png").stat().st_size > 0


# pexpect forks a pseudo-terminal child that at once execs the jaxtune command: JAX's warning about
# forking a multithreaded process does not apply to a child that runs nothing of the parent's.
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_cli_prompt_in_a_real_terminal(tmp_path):
    pexpect = pytest.importorskip("pexpect")
    cfg = tmp_path / "b.toml"
    cfg.write_text(CONFIG.format(db=tmp_path / "b.db"))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXTUNE_CACHE_DIR": str(tmp_path / "cache")}
    jaxtune = os.path.join(os.path.dirname(sys.executable), "jaxtune")
    child = pexpect.spawn(jaxtune, ["babysit", str(cfg)], env=env, encoding="utf-8", timeout=120)
    try:
        child.expect("babysit> ")
        child.sendline("train 2")
        child.expect(r"step 8: Q=")
        child.expect("babysit> ")
        child.sendline("set h0=2.0")  # out of range: said, and the prompt comes back
        child.expect(r"error: h0: 2.0 is outside its range")
        child.expect("babysit> ")
        child.sendline("set h0*=0.5")
        child.expect(r"from step 8: h0=0.5, h1=0.0")
        child.expect("babysit> ")
        child.sendline("fork h1=1.0 | h1=0.5")
        child.expect(r"best: (a|b)")
        child.expect("babysit> ")
        child.sendline("adopt a")
        child.expect("adopted; step 12")
        child.expect("babysit> ")
        child.sendline("rollback 4")
        child.expect(r"rolled back; step 4")
        child.expect("babysit> ")
        child.sendline("quit")
        child.expect("stored in")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    again = pexpect.spawn(jaxtune, ["babysit", str(cfg)], env=env, encoding="utf-8", timeout=120)
    try:  # the same command resumes at the head: the rollback to step 4, its hyperparameters
        again.expect(r"resumed step 4: .*\[h0=1.0, h1=0.0\]")
        again.expect("babysit> ")
        again.sendline("tree")
        again.expect("rollback to step 4")
        again.expect("babysit> ")
        again.sendeof()
        again.expect(pexpect.EOF)
    finally:
        again.close()
    assert again.exitstatus == 0


def test_cli_refuses_a_commands_path_it_cannot_read(tmp_path, capsys):
    cfg = tmp_path / "b.toml"
    cfg.write_text(CONFIG.format(db=tmp_path / "b.db"))
    binary = tmp_path / "cmds.bin"
    binary.write_bytes(b"\xff\xfe train")
    for path, message in ((tmp_path, "is a directory"), (tmp_path / "none", "does not exist"), (binary, "UTF-8")):
        assert cli.main(["babysit", str(cfg), "--commands", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"jaxtune: error: --commands {str(path)!r}") and message in err
        assert "Traceback" not in err
    assert not (tmp_path / "b.db").exists()  # refused before the run started


def test_a_damaged_stored_state_is_one_clear_error(tmp_path):
    import sqlite3

    db = str(tmp_path / "d.db")
    sitter = babysit(make_trainer(steps=40), SPACE, {"lr": 0.02}, storage=db, name="d", segment=5)
    sitter.train(2)
    sitter.close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE nodes SET state = zeroblob(64) WHERE step = 5 AND state IS NOT NULL")
    again = babysit(make_trainer(steps=40), SPACE, {"lr": 0.02}, storage=db, name="d", segment=5)
    again.rollback(5)
    with pytest.raises(jt.StorageError, match=r"the stored state of node #1 \(step 5\) is damaged"):
        again.train(1)
    again.close()


def test_a_full_disk_during_a_session_is_one_line_and_the_session_resumes(tmp_path, capsys, monkeypatch):
    """The study file may not grow past a few pages (SQLite's own "database or disk is full", as on
    a full disk): the session ends with one line, exit 1, no traceback; with room again, a rerun
    resumes from the last node stored."""
    from jaxtune.study.storage import Storage

    cfg = tmp_path / "b.toml"
    cfg.write_text(CONFIG.format(db=tmp_path / "b.db"))
    cmds = tmp_path / "cmds.txt"
    cmds.write_text("train 2\n" * 40)
    connect = Storage._connect

    def small_disk(self, read_only):
        conn = connect(self, read_only)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 1}")
        return conn

    monkeypatch.setattr(Storage, "_connect", small_disk)
    assert cli.main(["babysit", str(cfg), "--commands", str(cmds)]) == 1
    err = capsys.readouterr().err
    assert "the disk is full" in err and "rerun the same command to resume" in err and "Traceback" not in err
    monkeypatch.undo()
    cmds.write_text("show\n")
    assert cli.main(["babysit", str(cfg), "--commands", str(cmds)]) == 0
    assert "resumed step" in capsys.readouterr().out
