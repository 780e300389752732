"""Every driver across processes (jax.distributed, two local CPU processes of two devices each):
lanes sharded over every process's devices, process 0 writing the study, every process returning
the same result, and a kill -9 of the whole job resumed; and the rounds driver across two processes
equal to one process."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import jaxtune as jt

# Two-process jobs take ~25 s each on two cores: `make test` leaves them to .ci/run, which runs
# this file with JAXTUNE_PROCESSES=1 after the suite (as it runs the README's slow blocks).
pytestmark = pytest.mark.skipif(not os.environ.get("JAXTUNE_PROCESSES"),
                                reason="two-process jobs: .ci/run runs them (JAXTUNE_PROCESSES=1)")  # fmt: skip

SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import jax
    pid, port, storage, name, kill_at = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    if pid >= 0:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=pid)
        assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
    sys.path.insert(0, "tests")
    import jaxtune as jt
    import jaxtune.drivers.population as population
    from conftest import SPACE, make_trainer
    from jaxtune.execute.population import Population

    population._Checkpoints.RATIO = 0  # a checkpoint at every boundary
    calls, train = [], Population.train

    def counted(self, *args, **kwargs):
        calls.append(1)
        if pid == 0 and len(calls) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of the run
        return train(self, *args, **kwargs)

    Population.train = counted
    lr_b1 = jt.Space({"lr": SPACE.params["lr"], "b1": SPACE.params["b1"]})
    budget = jt.Space({"steps": jt.Int(4, 36, scale="log", static=True), **lr_b1.params})
    options, space, steps, sizes = {
        "pbt": ({"segment": 6}, lr_b1, 24, dict(trials=4)),
        "asha": ({"min_steps": 4, "eta": 3, "configs": 8}, lr_b1, 24, dict(trials=4)),
        "hyperband": (None, budget, 36, dict(trials=9, rounds=4)),
    }[name]
    r = jt.tune(make_trainer(steps=steps), space, name, metric="val_loss", progress=False, storage=storage,
                strategy_options=options, **sizes)
    print(json.dumps({"trials": sorted((t["round"], t["slot"], t["metrics"]["val_loss"]) for t in r.trials),
                      "trained": len(calls)}))
""")


def _port() -> str:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return str(s.getsockname()[1])


def _start(pid: int, port: str, db: str, name: str, kill_at: int = 0) -> subprocess.Popen:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(pid), port, db, name, str(kill_at)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root)  # fmt: skip


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["pbt", "hyperband"])  # the population and halving drivers (asha: the same path)
def test_a_driver_runs_across_processes_and_a_killed_job_resumes(tmp_path, name):
    """Two processes train the sweep's lanes on all four devices; process 0 is killed with -9 in the
    middle (process 1, left waiting in a collective, is killed too: the whole job); rerun, the job
    resumes at its last stored checkpoint and ends as one uninterrupted process does (float32
    tolerance: four devices against two), each process returning the same trials, each stored once."""
    db, port = str(tmp_path / "job.db"), _port()
    alone = _start(-1, "0", str(tmp_path / "alone.db"), name)
    job = [_start(pid, port, db, name, kill_at=3) for pid in (0, 1)]
    _, err = job[0].communicate(timeout=300)
    assert job[0].returncode == -signal.SIGKILL, err[-3000:]
    time.sleep(1)
    job[1].kill()
    job[1].communicate()
    stored = len(jt.Result.load(db)) if os.path.exists(db) else 0
    port = _port()
    again = [_result(p) for p in [_start(pid, port, db, name) for pid in (0, 1)]]
    reference = _result(alone)
    assert again[0] == again[1]  # every process holds every result
    assert [t[:2] for t in again[0]["trials"]] == [t[:2] for t in reference["trials"]]
    np.testing.assert_allclose([t[2] for t in again[0]["trials"]], [t[2] for t in reference["trials"]], rtol=1e-4)
    assert again[0]["trained"] < reference["trained"]  # it resumed: what was trained before the kill is not again
    assert stored < len(jt.Result.load(db)) == len(reference["trials"])  # process 0 wrote each trial once


def test_the_rounds_driver_in_two_processes_equals_one_process(tmp_path):
    """Multi-host as two local processes (jax.distributed, gloo collectives), 2 CPU devices each."""
    import json
    import socket

    script = textwrap.dedent("""
        import json, sys
        import jax
        pid, port, storage, rounds = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
        if pid >= 0:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=pid)
            assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
        sys.path.insert(0, "tests")
        import jaxtune as jt
        from conftest import SPACE, quad_objective
        r = jt.tune(quad_objective, SPACE, "coarse_to_fine", trials=6, rounds=rounds, metric="loss",
                    progress=False, storage=storage)
        print(json.dumps(sorted((t["round"], t["slot"], t["metrics"]["loss"]) for t in r.trials)))
    """)
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = str(s.getsockname()[1])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")

    def run(rounds):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(pid), port, str(tmp_path / db), str(rounds)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=root,
            )
            # Both processes of the distributed run name one file; -1: one process alone, for reference.
            for pid, db in ((0, "sweep.db"), (1, "sweep.db"), (-1, "alone.db"))
        ]
        outs = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, stderr[-2000:]
            outs.append(json.loads(stdout.strip().splitlines()[-1]))
        return outs

    outs = run(2)
    assert len(outs[0]) == 12
    np.testing.assert_allclose(np.asarray(outs[0]), np.asarray(outs[2]), rtol=1e-5)
    assert outs[0] == outs[1]  # every process holds every result
    # One file, written by process 0 only: it holds each trial once.
    assert len(jt.Result.load(str(tmp_path / "sweep.db"))) == 12
    # A resumed distributed run: process 1 learns what is stored from process 0, so both run
    # only the new round, and both return all of it.
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = str(s.getsockname()[1])
    outs = run(3)
    assert len(outs[0]) == 18 and outs[0] == outs[1]
    np.testing.assert_allclose(np.asarray(outs[0]), np.asarray(outs[2]), rtol=1e-5)
    assert len(jt.Result.load(str(tmp_path / "sweep.db"))) == 18
