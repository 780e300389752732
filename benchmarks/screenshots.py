"""The pictures of docs/studies.md, taken as a reader would see them: the live view of the README's
demo sweep while it runs (``jaxtune report DB --serve``), and optuna-dashboard on the same study
once it is written into Optuna (``Result.to_optuna``).

    python benchmarks/screenshots.py   # -> benchmarks/results/live_view.png, optuna_dashboard.png

Needs Chromium (headless), matplotlib, optuna and optuna-dashboard (``make test`` installs them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def screenshot(url: str, path: str, size: str, profile: str, wait_ms: int = 0) -> None:
    """A headless Chromium's picture of ``url`` (``wait_ms`` of page time first, for a page that
    draws with scripts after it loads)."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--screenshot={path}", f"--window-size={size}"]  # fmt: skip
    if wait_ms:
        flags.append(f"--virtual-time-budget={wait_ms}")
    subprocess.run([CHROMIUM, *flags, url], capture_output=True, timeout=120, check=True)
    print(f"wrote {path}")


def live_view(work: str) -> str:
    """Runs the demo in another process, photographs its live view mid-run; returns the study file."""
    import jaxtune as jt

    sweep = subprocess.Popen([sys.executable, "-m", "jaxtune.cli", "run", os.path.join(ROOT, "configs", "demo.toml")],
                             cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    db = os.path.join(work, "runs", "demo.db")
    while not os.path.exists(db):
        time.sleep(0.5)
    with jt.serve(db, port=0, interval=1.0, block=False) as view:
        while not (view.status.get("state") == "running" and view.status.get("trials", 0) >= 64):
            if sweep.poll() is not None:
                raise RuntimeError("the demo ended before its second round was stored")
            time.sleep(0.5)
        screenshot(view.url, os.path.join(RESULTS, "live_view.png"), "1100,900", os.path.join(work, "chrome"))
        print(f"live view: {view.status['message']}")
    if sweep.wait() != 0:
        raise RuntimeError("the demo failed")
    return db


def dashboard(db: str, work: str) -> None:
    """Writes the study into Optuna and photographs optuna-dashboard on it."""
    import optuna_dashboard

    import jaxtune as jt

    url = f"sqlite:///{os.path.join(work, 'optuna.db')}"
    study = jt.Result.load(db).to_optuna(url)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, optuna_dashboard.wsgi(url), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = f"http://127.0.0.1:{server.server_address[1]}/dashboard/studies/{study._study_id}"
        screenshot(page, os.path.join(RESULTS, "optuna_dashboard.png"), "1300,1000", os.path.join(work, "chrome2"),
                   wait_ms=10000)  # fmt: skip
    finally:
        server.shutdown()
        thread.join()


def main() -> None:
    if CHROMIUM is None:
        sys.exit("screenshots.py needs a headless Chromium (apt install chromium)")
    with tempfile.TemporaryDirectory() as work:
        db = live_view(work)
        dashboard(db, work)


if __name__ == "__main__":
    main()
