"""The live view (``jaxtune report DB --serve``, ``jt.serve``): a sweep in another process watched in
a real Chromium tab; where a study stands (running, finished, timeout, interrupted, in progress);
clean errors (a port in use, no file, several studies, flags that write files)."""

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from browser import Browser

import jaxtune as jt
from jaxtune import cli
from jaxtune.analysis import live
from jaxtune.errors import InputError, MissingFileError

pytest.importorskip("matplotlib")

SPACE = jt.Space({"x1": jt.Float(-5.0, 10.0), "x2": jt.Float(0.0, 15.0)})

# A sweep of 3 rounds of 8 trials that, after each round, waits until the test has seen that round's
# trials in the browser (a file named for the round): the page is looked at while the sweep runs.
SWEEP = """
import os, sys, time
import jaxtune as jt
db, seen = sys.argv[1], sys.argv[2]
def wait(p):
    deadline = time.monotonic() + 120
    while not os.path.exists(f"{seen}-{p['round']}") and time.monotonic() < deadline:
        time.sleep(0.05)
space = jt.Space({"x1": jt.Float(-5.0, 10.0), "x2": jt.Float(0.0, 15.0)})
jt.tune(jt.tasks.branin, space, "coarse_to_fine", trials=8, rounds=3, metric="value", storage=db, progress=wait)
"""

PAGE = """[document.getElementById("jaxtune-live")?.dataset.state,
 document.querySelectorAll("table.sortable tbody tr").length, document.body?.innerText ?? ""]"""


def test_a_sweep_in_another_process_shows_in_chromium_as_it_runs_then_its_best(tmp_path):
    db, seen = tmp_path / "live.db", str(tmp_path / "seen")
    jt.Storage(str(db)).close()  # the study file before the sweep: the page waits for its study
    browser = Browser(str(tmp_path / "chrome"))
    sweep = None
    try:
        with jt.serve(db, port=0, interval=0.2, block=False) as view:
            browser.open(view.url)  # one tab, never navigated again: the page reloads itself
            states, counts = [], []
            sweep = subprocess.Popen([sys.executable, "-c", SWEEP, str(db), seen], stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                state, rows, text = browser.evaluate(PAGE) or (None, 0, "")
                if state and (not states or states[-1] != state):
                    states.append(state)
                if state == "running" and rows and rows % 8 == 0 and rows not in counts:
                    counts.append(rows)
                    open(f"{seen}-{rows // 8 - 1}", "w").close()  # let the sweep go on to its next round
                if state == "finished":
                    break
                time.sleep(0.1)
            _, err = sweep.communicate(timeout=60)
            assert sweep.returncode == 0, err
    finally:
        browser.close()
        if sweep is not None and sweep.poll() is None:
            sweep.kill()
    assert states[0] == "waiting" and states[-2:] == ["running", "finished"], states
    assert counts == [8, 16, 24]  # every round's trials appeared while the sweep ran
    best = jt.Result.load(db).best
    assert rows == 24 and f"best value {best['value']:.4g}" in text  # the banner's final best
    assert f"best trial (round {best['round']}, slot {best['slot']})" in text  # and the report's


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    db = tmp_path_factory.mktemp("live") / "s.db"
    jt.tune(jt.tasks.branin, SPACE, "random", trials=8, rounds=2, metric="value", storage=str(db), progress=False)
    return str(db)


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def test_the_page_says_where_the_study_stands(finished, tmp_path):
    finished = shutil.copy(finished, tmp_path / "s.db")  # this test changes it
    with jt.serve(finished, port=0, interval=0.1, block=False) as view:
        page, status = get(view.url), json.loads(get(view.url + "status.json"))
        assert status["state"] == "finished" and status["trials"] == 16 and status["version"] == 1
        assert 'id="jaxtune-live" data-state="finished"' in page and 'fetch("status.json"' in page
        assert re.search(r"finished at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: 16 trials stored; best value", page)
        with pytest.raises(urllib.error.HTTPError, match="404"):
            get(view.url + "other")
    store = jt.Storage(finished, lock="default")  # a run holds the study: running
    try:
        status, _ = live._render(finished, None, str(tmp_path), False)
        assert status["state"] == "running" and status["message"].startswith("running: 16 trials stored")
        sid = store.study_id("default")
        store.set_end(sid, None)  # as a run starts; then killed: no end is recorded
    finally:
        store.close()
    status, _ = live._render(finished, None, str(tmp_path), False)
    assert status["state"] == "ended" and "stopped before finishing (interrupted or killed)" in status["message"]
    with contextlib.closing(jt.Storage(finished)) as store:
        store.set_end(sid, "timeout")
        store.write_trials(sid, [], [(2, 0, 5, {"value": 3.25})])  # a population's lane, still training
    status, page = live._render(finished, None, str(tmp_path), False)
    assert status["state"] == "timeout" and "rerun the same sweep to resume" in status["message"]
    assert status["in_progress"] == 1 and "<h2>in progress: 1 trial still training</h2>" in page
    assert "<tr><td>2:0</td><td>5</td><td>3.25</td></tr>" in page
    assert jt.Result.load(finished).stopped == "timeout"  # and jaxtune report says so too


def test_bad_inputs_are_clean_errors(finished, tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=f"port {port} on 127.0.0.1 is in use"):
            jt.serve(finished, port=port, block=False)
        assert cli.main(["report", finished, "--serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in err and "Traceback" not in err
    with pytest.raises(MissingFileError, match="no storage file"):
        jt.serve(tmp_path / "none.db", port=0, block=False)
    with pytest.raises(InputError, match="interval"):
        jt.serve(finished, port=0, interval=0, block=False)
    two = tmp_path / "two.db"
    for name in ("a", "b"):
        jt.tune(jt.tasks.branin, SPACE, "random", trials=4, metric="value", storage=str(two), study=name,
                progress=False)  # fmt: skip
    with pytest.raises(InputError, match=r"holds studies \['a', 'b'\]; pass study=NAME"):
        jt.serve(two, port=0, block=False)
    assert cli.main(["report", finished, "--serve", "--csv", str(tmp_path / "t.csv")]) == 2
    assert "--serve shows the study live; --csv writes files" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["report", finished, "--serve", "--port", "70000"])
    assert "must be a port number in 0..65535" in capsys.readouterr().err


def test_the_cli_serves_until_ctrl_c(finished):
    before = sorted(os.listdir(os.path.dirname(finished)))
    proc = subprocess.Popen([sys.executable, "-m", "jaxtune.cli", "report", finished, "--serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        first = proc.stdout.readline()
        url = re.search(r"at (http://\S+) \(Ctrl-C stops it\)", first).group(1)
        assert "finished at" in proc.stdout.readline()  # the state, as it changes
        assert "best value" in get(url)
        proc.send_signal(2)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "stopped serving" in out and "Traceback" not in err
    assert sorted(os.listdir(os.path.dirname(finished))) == before  # a reader: nothing written beside the study


def test_a_missing_extra_is_a_clean_error_that_says_what_to_install(finished, tmp_path, monkeypatch, capsys):
    from jaxtune.errors import MissingDependencyError
    from jaxtune.study.orbax_export import save_orbax

    for module in ("matplotlib", "optuna", "tensorboardX", "orbax.checkpoint"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it fails
    commands = {"report": ["--serve", "--port", "0"],
                "tensorboard": ["--no-html", "--tensorboard", str(tmp_path / "t")],
                "optuna": ["--no-html", "--to-optuna", f"sqlite:///{tmp_path / 'o.db'}"]}  # fmt: skip
    for extra, flags in commands.items():
        assert cli.main(["report", finished, *flags]) == 2
        err = capsys.readouterr().err
        assert f"pip install 'jaxtune[{extra}]'" in err and "Traceback" not in err, err
    with pytest.raises(MissingDependencyError, match=r"pip install 'jaxtune\[orbax\]'"):
        save_orbax(tmp_path / "ckpt", {})
