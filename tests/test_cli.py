import os
import subprocess
import sys

import pytest

from jaxtune import cli

CONFIG = """
[task]
name = "branin"

[tune]
strategy = "coarse_to_fine"
trials = 64
rounds = 3
seed = 0
storage = "{db}"
study = "b"

[strategy]
top_fraction = 0.2
"""


def write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_run_then_report_then_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JAXTUNE_CACHE_DIR", str(tmp_path / "cache"))
    db = tmp_path / "runs" / "b.db"
    cfg = write(tmp_path, CONFIG.format(db=db))
    # --plot into a folder that does not exist yet (as `make demo` on a fresh clone): it is made.
    assert cli.main(["run", cfg, "--plot", str(tmp_path / "figs" / "fig.png")]) == 0
    out = capsys.readouterr()
    assert "192 trials in 3 rounds" in out.out and "best trial" in out.out and str(db) in out.out
    assert "round 2 (3/3)" in out.err
    assert (tmp_path / "figs" / "fig.png").stat().st_size > 0
    assert cli.main(["report", str(db), "--csv", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    assert "192 trials" in out and "which hyperparameters mattered" in out
    assert f"report: {tmp_path / 'runs' / 'b-report' / 'index.html'}" in out  # beside the storage by default
    assert (tmp_path / "runs" / "b-report" / "parameters.png").stat().st_size > 0
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 193
    assert cli.main(["run", cfg, "--rounds", "4"]) == 0  # resumes: only round 4 runs
    out = capsys.readouterr()
    assert "256 trials in 4 rounds" in out.out and "round 3 (4/4)" in out.err and "round 2 (3/4)" not in out.err


@pytest.mark.parametrize(
    "text, message",
    [
        ("[task]\nname = 'nope'\n", "unknown task 'nope'"),
        ("[tune]\ntrials = 4\n", "needs a [task] section"),
        ("[task]\nname = 'branin'\n[tune]\ntrails = 4\n", "unknown key(s) ['trails']"),
        ("[task]\nname = 'branin'\n[tune]\nstrategy = 'annealing'\n", "unknown strategy 'annealing'"),
        (
            "[task]\nname = 'branin'\n[space.x1]\ntype = 'float'\nlow = 0.0\nhigh = 1.0\nscale = 'log'\n",
            "scale='log' needs low > 0",
        ),
        ("[task]\nname = 'branin'\n[space.x1]\ntype = 'normal'\n", "type must be one of"),
        ("[task]\nname = 'branin'\n[tune]\ntrials = 0\n", "[tune] trials must be an int in [1, 16777216], got 0"),
        ("[task\nname = 'x'", "invalid TOML"),
        ("[task]\nname = 'mnist1d_mlp'\nsteps = -5\n", "steps must be an int in [1, 2147483647], got -5"),
        ("[task]\nname = 'mnist1d_mlp'\nhidden = 0\n", "hidden (the MLP's width) must be an int >= 1, got 0"),
        ("[task]\nname = 'branin'\n[space.x1]\ntype = 'int'\nlow = 0\nhigh = 3000000000\n", "fit in int32"),
        ("[task]\nname = 'branin'\n[space.x1]\ntype = 'float'\nlow = -1e300\nhigh = 1.0\n", "fit in float32"),
        ("[task]\nname = 'branin'\n[space.x1]\ntype = 'float'\nlow = 0.0\nhigh = 1.0\nstatic = 'no'\n", "static must"),
        (
            "[task]\nname = 'branin'\n[tune]\nseed = 4294967296\n",
            "[tune] seed must be an int in [0, 4294967295], got 4294967296",
        ),
        (
            "[task]\nname = 'branin'\n[tune]\ntrials = 1000000000\n",
            "trials must be an int in [1, 16777216], got 1000000000",
        ),
        ("[task]\nname = 'branin'\n[tune]\ntimeout = '5 minutes'\n", "timeout must be a positive duration"),
        ("[task]\nname = 'branin'\n[tune]\nselect = 'best'\n", "[tune] select must be one of 'final', 'best_step'"),
        ("[task]\nname = 'branin'\n[strategy]\ntop_fraction = 2.0\n", "top_fraction must be in (0, 1]"),
        ("[task]\nname = 'branin'\n[strategy]\ntop = 2.0\n", "has no option(s) ['top']"),
        ("[task]\nname = 'branin'\n[space]\n", "[space] must hold at least one"),
        ("[task]\nname = 'branin'\n[tune]\nconstraints = 'value < 1'\n", "[tune] constraints must be a list"),
        ("[task]\nname = 'branin'\n[tune]\nconstraints = ['value << 1']\n", "is not 'NAME OP NUMBER'"),
        ("[task]\nname = 'branin'\n[tune]\nconstraints = ['loss < 1']\n", "'loss' is neither a metric"),
    ],
)
def test_config_errors_are_clear_and_exit_2(tmp_path, capsys, text, message):
    assert cli.main(["run", write(tmp_path, text)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxtune: error: ") and message in err and "Traceback" not in err


def test_every_problem_of_a_config_is_reported_at_once(tmp_path, capsys):
    text = (
        "[task]\nname = 'branin'\nsize = 3\n"
        "[tune]\ntrials = 0\nmode = 'up'\n"
        "[strategy]\ntop_fraction = 2.0\n"
        "[space.x1]\ntype = 'float'\nlow = 0.0\nhigh = 1.0\nscale = 'log'\n"
        "[space.x2]\ntype = 'normal'\n"
    )
    (tmp_path / "a_file").write_text("")
    plot = str(tmp_path / "a_file" / "fig.png")  # a folder that cannot be made
    assert cli.main(["run", write(tmp_path, text), "--plot", plot]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxtune: error: 7 problems in the config:\n")
    for part in ("has no option(s) ['size']", "trials must be", "mode must be", "top_fraction", "[space.x1]",
                 "[space.x2] type must be", "--plot"):  # fmt: skip
        assert part in err, part


def test_a_bug_is_not_disguised_as_a_config_error(tmp_path, capsys, monkeypatch):
    """Only errors about the input get the one-line treatment; anything else keeps its traceback."""
    import jaxtune as jt

    def broken(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(jt, "tune", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        cli.main(["run", write(tmp_path, "[task]\nname = 'branin'\n"), "--quiet"])


def test_timeout_stops_at_a_safe_point_and_a_rerun_resumes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JAXTUNE_CACHE_DIR", "none")
    cfg = write(tmp_path, CONFIG.format(db=tmp_path / "t.db"))
    assert cli.main(["run", cfg, "--timeout", "0.001s"]) == 0
    out = capsys.readouterr()
    assert "stopped by timeout" in out.out and "stopped after timeout=0.001 s" in out.err
    assert cli.main(["run", cfg]) == 0
    assert "192 trials in 3 rounds" in capsys.readouterr().out


def test_missing_files(tmp_path, capsys):
    assert cli.main(["run", str(tmp_path / "none.toml")]) == 2
    assert cli.main(["report", str(tmp_path / "none.db")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_console_script_runs_as_a_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jaxtune.cli", "tasks"], capture_output=True, text=True, check=True)
    assert "mnist1d_mlp" in proc.stdout.split()
    # Each task shows its options and default space.
    assert "options: steps=500, batch_size=32, conv='patches'" in proc.stdout
    assert "b1: float reverse_log [0.8, 0.999]" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "jaxtune.cli", "run", str(tmp_path / "x.toml")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_rerun_loads_compiled_programs_from_the_persistent_cache(tmp_path):
    """The CLI turns on JAX's persistent compilation cache: a second process compiles nothing big."""
    cfg = write(tmp_path, "[task]\nname = 'mnist1d_mlp'\nsteps = 5\nhidden = 16\n[tune]\ntrials = 2\n")
    script = (
        "import jax, json, sys\n"
        "from jaxtune import cli\n"
        "events = {}\n"
        "jax.monitoring.register_event_listener(lambda e, **k: events.__setitem__(e, events.get(e, 0) + 1))\n"
        "assert cli.main(['run', sys.argv[1], '--quiet']) == 0\n"
        "print(json.dumps(events))\n"
    )
    # Every program cached, however fast it compiled on a busy machine (JAX's own variable; the CLI's
    # 0.5 s threshold would make which programs are kept depend on the load).
    env = {**__import__("os").environ, "JAXTUNE_CACHE_DIR": str(tmp_path / "cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # fmt: skip
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", script, cfg], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(__import__("json").loads(proc.stdout.strip().splitlines()[-1]))
    assert any((tmp_path / "cache").iterdir())
    assert runs[0].get("/jax/compilation_cache/cache_hits", 0) == 0
    # The sweep's program (and whatever else took over the threshold to compile) is loaded.
    assert runs[1].get("/jax/compilation_cache/cache_hits", 0) >= 1
    assert runs[1].get("/jax/compilation_cache/cache_misses", 0) < runs[0].get("/jax/compilation_cache/cache_misses", 1)


@pytest.mark.parametrize("name", ["demo.toml", "halving.toml", "asha.toml", "pbt.toml", "conditional.toml"])
def test_shipped_configs_are_valid(name):
    import os

    import jaxtune as jt
    from jaxtune.schedulers import is_scheduler, make_scheduler
    from jaxtune.strategies import make_strategy

    cfg = cli.load_config(os.path.join(os.path.dirname(__file__), "..", "configs", name))
    task_options = {k: v for k, v in cfg["task"].items() if k != "name"}
    space = cli.check_config(cfg, cfg["tune"])  # None: the task's default space
    assert cfg["task"]["name"] in jt.tasks.TASKS
    strategy, options = cfg["tune"]["strategy"], cfg.get("strategy", {})
    if is_scheduler(strategy):
        from jaxtune.tasks import TOY_PBT_SPACE, classify

        space = space or (TOY_PBT_SPACE if cfg["task"]["name"] == "pbt_toy" else classify.default_space())
        built = make_scheduler(strategy, space, cfg["tune"]["trials"], task_options["steps"], **options)
        assert built.num_lanes == cfg["tune"]["trials"]
    else:
        built = make_strategy(strategy, space, cfg["tune"]["trials"], **options)
        assert built.num_trials == cfg["tune"]["trials"]


def test_pbt_runs_from_the_command_line(tmp_path, capsys, monkeypatch):
    import os

    monkeypatch.setenv("JAXTUNE_CACHE_DIR", "none")
    cfg = os.path.join(os.path.dirname(__file__), "..", "configs", "pbt.toml")
    db = str(tmp_path / "pbt.db")
    assert cli.main(["run", cfg, "--storage", db, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "selecting on Q (max)" in out and "best so far by round" not in out  # segments are no rounds
    best = __import__("jaxtune").Result.load(db).best
    assert best["value"] > 1.19
    # The winner, replayed along its lineage, exported as arrays; its Q is reproduced.
    out = str(tmp_path / "best.npz")
    assert cli.main(["export", db, cfg, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert f"replayed Q: {best['value']:.6g} (stored {best['value']:.6g})" in printed
    import numpy as np

    assert np.load(out)["['theta']"].shape == (2,)
    # Any stored trial, into a folder not made yet, the .npz numpy adds said as it is written.
    trial = __import__("jaxtune").Result.load(db).trials[0]
    out = tmp_path / "exports" / "first"
    assert cli.main(["export", db, cfg, "--trial", f"{trial['round']}:{trial['slot']}", "--out", str(out)]) == 0
    assert f"state: {out}.npz" in capsys.readouterr().out and (tmp_path / "exports" / "first.npz").exists()
    # A config that builds another objective (another task option) is refused, as a resume would be.
    with open(cfg) as f:
        other = write(tmp_path, f.read().replace("steps = 400", "steps = 800"), "other.toml")
    assert cli.main(["export", db, other, "--out", str(tmp_path / "x.npz")]) == 2
    assert "another objective than the study's (objective setting steps" in capsys.readouterr().err
    assert cli.main(["export", db, cfg, "--trial", "99:99"]) == 2
    assert "--trial '99:99' is not a stored trial" in capsys.readouterr().err


def test_bad_cpu_device_count_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JAXTUNE_CPU_DEVICES", "two")
    assert cli.main(["run", write(tmp_path, CONFIG.format(db=tmp_path / "x.db"))]) == 2
    err = capsys.readouterr().err
    assert "JAXTUNE_CPU_DEVICES must be 'auto' or an integer in [1, " in err and "got 'two'" in err
    assert not (tmp_path / "x.db").exists()  # nothing ran


def test_successive_halving_without_a_budget_is_a_clear_error(tmp_path, capsys):
    cfg = "[task]\nname = 'branin'\n[tune]\nstrategy = 'successive_halving'\ntrials = 9\n"
    assert cli.main(["run", write(tmp_path, cfg)]) == 2
    assert "fidelity 'steps' is not in the space" in capsys.readouterr().err


def test_a_config_can_mask_a_width(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JAXTUNE_CACHE_DIR", "none")
    text = (
        "[task]\nname = 'mnist1d_mlp'\nsteps = 4\n[tune]\ntrials = 4\nstrategy = 'random'\n"
        "[space.hidden]\ntype = 'int'\nlow = 8\nhigh = 40\nscale = 'log'\nmasked = true\n"
        "[space.lr]\ntype = 'float'\nlow = 0.001\nhigh = 0.1\nscale = 'log'\n"
    )
    assert cli.main(["run", write(tmp_path, text), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "4 trials in 1 round," in out and "hidden=" in out


def test_a_space_parameter_the_task_never_reads_is_a_config_error(tmp_path, capsys):
    """A typo in a [space] name (`x3` for a task of x1, x2) stops the CLI before anything compiles."""
    text = (
        "[task]\nname = 'branin'\n[tune]\ntrials = 4\n"
        "[space.x1]\ntype = 'float'\nlow = -5.0\nhigh = 10.0\n"
        "[space.x2]\ntype = 'float'\nlow = 0.0\nhigh = 15.0\n"
        "[space.x3]\ntype = 'float'\nlow = 0.0\nhigh = 1.0\n"
    )
    db = tmp_path / "typo.db"
    assert cli.main(["run", write(tmp_path, text), "--storage", str(db), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxtune: error: [space] parameter(s) ['x3'] are never read by task 'branin'")
    assert "its parameters are ['x1', 'x2']" in err and "Traceback" not in err
    assert not db.exists()  # refused before the study was made


def test_sigterm_is_handled_like_ctrl_c_and_a_rerun_resumes(tmp_path):
    """kill (SIGTERM) mid-sweep: the resume hint, exit 143, every stored trial kept; a rerun finishes."""
    import signal
    import sqlite3
    import time

    db = tmp_path / "t.db"
    text = "[task]\nname = 'branin'\n[tune]\nstrategy = 'random'\ntrials = 64\nrounds = 2000\n"
    cfg = write(tmp_path, text + f"storage = '{db}'\n")
    env = {**os.environ, "JAXTUNE_CACHE_DIR": "none"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxtune.cli", "run", cfg, "--quiet"], stderr=subprocess.PIPE, text=True, env=env
    )

    def stored() -> int:
        try:
            with sqlite3.connect(db) as conn:
                return conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        except sqlite3.Error:
            return 0

    try:
        deadline = time.monotonic() + 120
        while stored() < 64 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # no-op once it has exited; never leave it running into the next test
        proc.wait()
    assert proc.returncode == 143, err
    n = stored()
    assert f"jaxtune: terminated; the {n} trials this run finished are stored: rerun the same command to resume" in err
    assert "Traceback" not in err
    assert 64 <= n < 64 * 2000


SLOW_MODULE = """
import jax

import jaxtune as jt

space = jt.Space({"x": jt.Float(0.0, 1.0)})


def objective(hp, key):  # one compiled program that runs for minutes
    inner = lambda i, v: jax.lax.fori_loop(0, 50, lambda j, w: w * 0.999999 + 1e-9, v)  # noqa: E731
    return {"loss": jax.lax.fori_loop(0, 2_000_000_000, inner, hp["x"])}


task = jt.tasks.Task("slow", objective, space, "loss", "min")
"""


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_a_signal_inside_a_long_compiled_program_ends_the_process_within_seconds(tmp_path, signum):
    """The program runs for minutes; the process must end within seconds of the signal (not when
    the program ends), and say only what is true: no trial of the run had finished."""
    import signal
    import time

    (tmp_path / "slowmod.py").write_text(SLOW_MODULE)
    cfg = write(tmp_path, f"[task]\nobjective = 'slowmod:task'\n[tune]\ntrials = 2\nstorage = '{tmp_path / 's.db'}'\n")
    env = {**os.environ, "JAXTUNE_CACHE_DIR": "none"}
    proc = subprocess.Popen([sys.executable, "-m", "jaxtune.cli", "run", cfg], cwd=tmp_path, stderr=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip
    try:
        seen = ""
        while "compiling 1 program" not in seen and proc.poll() is None:
            seen += proc.stderr.readline()
        time.sleep(4)  # compiled by now (a tiny loop) and running
        assert proc.poll() is None, seen
        proc.send_signal(getattr(signal, signum))
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        waited = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert waited < 15, waited
    assert proc.returncode == (143 if signum == "SIGTERM" else 130), seen + err
    assert "no trial of this run had finished" in err and "are stored" not in err and "Traceback" not in err


def test_a_signal_swallowed_where_it_landed_stops_the_run_at_the_next_safe_point(tmp_path, capsys, monkeypatch):
    """A signal handler's raise inside a destructor or gc callback is dropped by Python (CI met one in
    jax's gc callback and ran on); the run must still stop at its next safe point, quietly, with 143."""
    import signal
    import sqlite3

    class Swallows:
        def __del__(self):
            signal.raise_signal(signal.SIGTERM)  # the handler's raise happens here and is dropped

    db = tmp_path / "t.db"
    text = "[task]\nname = 'branin'\n[tune]\nstrategy = 'random'\ntrials = 8\nrounds = 50\n"
    cfg = write(tmp_path, text + f"storage = '{db}'\n")
    real = cli.run.main

    def run_then_swallow(args):
        Swallows()  # dropped at once: its __del__ runs before the sweep starts
        return real(args)

    monkeypatch.setattr(cli.run, "main", run_then_swallow)  # the parser binds cli.run.main when main builds it
    assert cli.main(["run", cfg, "--quiet"]) == 143
    monkeypatch.setattr(cli.run, "main", real)
    err = capsys.readouterr().err
    assert "jaxtune: terminated; the " in err and "this run finished are stored" in err and "Traceback" not in err
    with sqlite3.connect(db) as conn:
        assert 8 <= conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0] < 8 * 50  # stopped after a chunk
    assert cli.main(["run", cfg, "--quiet"]) == 0  # nothing left signalled: a rerun finishes
