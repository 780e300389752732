"""A live view of a stored study: its HTML report served on localhost, rebuilt as the sweep writes.

``jaxtune report DB --serve`` and :func:`serve`. A thread watches the database (the file and its
write-ahead log); when either changes it reads the study read-only (a WAL reader never blocks the
sweep that writes) and rebuilds the report (:func:`jaxtune.analysis.report.html`, or a babysitting
run's tree); the page asks the server every few seconds whether there is a newer one and reloads
when there is. A banner says where the study stands: running (a process on this machine holds its
lock), finished, stopped by its timeout, or stopped without finishing (interrupted or killed).
A population's lanes still training show as "in progress" with their latest curve point.
"""

from __future__ import annotations

import datetime
import html as escape
import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from jaxtune.errors import InputError, JaxtuneError, MissingFileError

__all__ = ["LiveReport", "serve"]

_BANNER = """<div id="jaxtune-live" data-state="{state}" data-version="{version}" style="position: sticky; top: 0;
 background: {colour}; border: 1px solid #ccc; padding: 0.5em 0.8em; margin-bottom: 1em; font-size: 0.95em;">
<b>live view</b>: <span class="state">{message}</span> <span style="color: #666;">(read {when}; this page reloads
when the study changes)</span></div>
"""

_POLL = """<script>
// The live view: ask the server whether the study changed; reload when it has.
(() => {{
  const live = document.getElementById("jaxtune-live");
  const poll = async () => {{
    try {{
      const r = await fetch("status.json", {{ cache: "no-store" }});
      const s = await r.json();
      if (String(s.version) !== live.dataset.version) {{ location.reload(); return; }}
    }} catch (e) {{
      live.querySelector(".state").textContent = "the live view's server has stopped; this is its last page";
      return;
    }}
    setTimeout(poll, {ms});
  }};
  setTimeout(poll, {ms});
}})();
</script>
"""

_COLOURS = {"running": "#fff6d5", "open": "#fff6d5", "finished": "#e4f3e4"}


class LiveReport:
    """A stored study's report, served at :attr:`url` and rebuilt as the study changes.

    Made by :func:`serve` (see there for the arguments); serves from background threads until
    :meth:`close` (or the end of a ``with`` block).

    Attributes:
      url: the page's address (``http://HOST:PORT/``).
      status: the latest status, as ``/status.json`` serves it: ``version`` (one more per
        rebuild), ``state`` (``"waiting"``, ``"running"``, ``"finished"``, ``"timeout"``,
        ``"ended"``; a babysitting run ``"open"`` or ``"closed"``), ``message``, ``trials``,
        ``best`` (the selected trial's value, or None) and ``in_progress`` (trials with curve
        points but no final result yet).
    """

    def __init__(self, storage: str | os.PathLike, study: str | None = None, *, host: str = "127.0.0.1",
                 port: int = 8000, interval: float = 2.0, show_test: bool = False):  # fmt: skip
        self.path, self.study, self.show_test = os.fspath(storage), study, show_test
        if not isinstance(interval, (int, float)) or not interval > 0:
            raise InputError(f"interval must be a number of seconds > 0, got {interval!r}")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise InputError(f"port must be an integer in 0..65535 (0: any free port), got {port!r}")
        if not os.path.isfile(self.path):
            raise MissingFileError(f"no storage file at {self.path!r}: start the sweep first (it makes the file)")
        from jaxtune.analysis import figures

        figures.pyplot()  # the report's figures need matplotlib: say so now, not on the first request
        self.interval = float(interval)
        self._folder = tempfile.mkdtemp(prefix="jaxtune-live-")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._seen: Any = None
        self.status: dict[str, Any] = {"version": 0}
        self._page = b""
        self.server = _bind(host, port, self)
        try:
            self._rebuild(_signature(self.path, None))  # a bad study name is an error before anything is served
        except BaseException:
            self.close()
            raise
        bound_host, bound_port = self.server.server_address[:2]
        self.url = f"http://{bound_host}:{bound_port}/"
        self._threads = [threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                          daemon=True, name="jaxtune-live-http"),
                         threading.Thread(target=self._watch, daemon=True, name="jaxtune-live-watch")]  # fmt: skip
        for t in self._threads:
            t.start()

    def _watch(self) -> None:
        """Rebuilds the page when the database changes, at most every ``interval`` seconds and never
        more than a third of the time (a big study's figures take a while: the sweep keeps the CPU)."""
        delay = self.interval
        while not self._stop.wait(delay):
            signature = _signature(self.path, self.status.get("study"))
            if signature == self._seen:
                delay = self.interval
                continue
            start = time.perf_counter()
            try:
                self._rebuild(signature)
            except (JaxtuneError, OSError, sqlite3.Error) as e:  # a vanished or locked file: try again later
                self.status = {**self.status, "error": str(e)}
            delay = max(self.interval, 2 * (time.perf_counter() - start))

    def _rebuild(self, signature: Any) -> None:
        """Reads the study and renders its page (the study's own report, with the live banner)."""
        status, body = _render(self.path, self.study, self._folder, self.show_test)
        status["version"] = self.status["version"] + 1
        status["read"] = datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S UTC")
        banner = _BANNER.format(
            state=status["state"], version=status["version"], message=escape.escape(status["message"]),
            when=status["read"], colour=_COLOURS.get(status["state"], "#eeeeee"),
        )  # fmt: skip
        page = re.sub(r"<body[^>]*>", lambda m: m.group(0) + "\n" + banner, body, count=1)
        page = page.replace("</body>", _POLL.format(ms=int(self.interval * 1000)) + "</body>", 1)
        with self._lock:
            self._page, self.status, self._seen = page.encode(), status, signature

    def page(self) -> bytes:
        """The current page (HTML, UTF-8)."""
        with self._lock:
            return self._page

    def wait(self) -> None:
        """Blocks until :meth:`close` (from another thread) or Ctrl-C."""
        while not self._stop.wait(0.5):
            pass

    def close(self) -> None:
        """Stops serving and watching, and removes the page's scratch folder."""
        self._stop.set()
        if getattr(self, "_threads", None):  # serving: stop the loop, and let a rebuild under way end
            self.server.shutdown()
            for t in self._threads:
                if t is not threading.current_thread():
                    t.join()
        self.server.server_close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> LiveReport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve(storage: str | os.PathLike, study: str | None = None, *, port: int = 8000, host: str = "127.0.0.1",
          interval: float = 2.0, show_test: bool = False, block: bool = True) -> LiveReport:  # fmt: skip
    """Serves study ``study`` of ``storage`` (the only one in the file if None) as a live HTML report.

    The page is the study's report (``jaxtune report``'s) under a banner that says where the study
    stands; it reloads itself when the sweep stores more (trials, a population's segments, a
    babysitting run's nodes), and says when the study finishes. Run it beside a sweep, in another
    process or terminal: it only reads the database.

    Args:
      storage: the study's SQLite file (it must exist: a sweep makes it as it starts).
      study: the study's name; None for the file's only study (or the first one stored, once a
        sweep that has just made the file stores it).
      port: the TCP port; 0 takes any free one (:attr:`LiveReport.url` says which).
      host: the address to listen on; the default serves this machine only.
      interval: seconds between looks at the database (and the page's questions to the server).
      show_test: show held-out (test) metrics in the trials table too.
      block: serve until Ctrl-C (then close); False returns at once, serving from background
        threads until :meth:`LiveReport.close` (a notebook's way).

    Returns:
      The :class:`LiveReport` (its ``url`` and ``status``).

    Raises:
      InputError: the port is in use or not a port, or the file holds several studies and
        ``study`` is None; MissingFileError: no file at ``storage``; MissingDependencyError: no
        matplotlib (``pip install 'jaxtune[report]'``).
    """
    live = LiveReport(storage, study, host=host, port=port, interval=interval, show_test=show_test)
    if block:
        try:
            live.wait()
        except KeyboardInterrupt:
            pass
        finally:
            live.close()
    return live


def _bind(host: str, port: int, live: LiveReport) -> ThreadingHTTPServer:
    """The HTTP server of ``live``: ``/`` the page, ``/status.json`` its status."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            route = self.path.split("?", 1)[0]
            if route in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", live.page())
            elif route == "/status.json":
                self._send(200, "application/json", json.dumps(live.status).encode())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: the live view serves / and /status.json")

        def _send(self, code: int, kind: str, data: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # a request is not news
            pass

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        import errno

        if e.errno == errno.EADDRINUSE:
            raise InputError(f"port {port} on {host} is in use (another live view or server?); pass another "
                             "--port, or --port 0 for any free one") from None  # fmt: skip
        raise InputError(f"cannot serve on {host}:{port} ({e.strerror or e})") from None
    server.daemon_threads = True
    return server


def _signature(path: str, study: str | None) -> tuple:
    """What changes when the study does: the database's and its write-ahead log's size and time,
    and whether a process runs the study now."""
    from jaxtune.study.sqlite_files import study_running

    def stat(p):
        try:
            st = os.stat(p)
            return st.st_mtime_ns, st.st_size
        except OSError:
            return None

    return stat(path), stat(path + "-wal"), study is not None and study_running(path, study)


def _render(path: str, study: str | None, folder: str, show_test: bool) -> tuple[dict[str, Any], str]:
    """``(status, page)`` of the study as stored now."""
    from jaxtune.analysis import report
    from jaxtune.result import Result
    from jaxtune.study.sqlite_files import study_running
    from jaxtune.study.storage import Storage

    store = Storage(path, read_only=True)
    try:
        names = store.study_names()
        if study is None and len(names) > 1:
            raise InputError(f"{path!r} holds studies {names}; pass study=NAME (--study NAME) to pick one")
        name = study if study is not None else (names[0] if names else None)
        if name not in names:
            status = {
                "state": "waiting",
                "study": name,
                "trials": 0,
                "best": None,
                "in_progress": 0,
                "message": f"waiting for a sweep to store {'a study' if name is None else repr(name)} in {path}",
            }
            return status, _waiting_page(status["message"])  # fmt: skip
        kind = (store.study_config(name) or {}).get("kind")
        sid = store.study_id(name)
        end = store.end(sid)
        if kind == "babysit":
            nodes = store.conn.execute("SELECT COUNT(*) FROM nodes WHERE study_id = ?", (sid,)).fetchone()[0]
    finally:
        store.close()
    running = study_running(path, name)
    if kind == "babysit":
        report.babysit_report(path, name, folder)
        state = "open" if running else "closed"
        message = (f"babysitting run {name!r}: {nodes} nodes; "
                   + ("a session has it open" if running else "no session has it open"))  # fmt: skip
        status = {"state": state, "study": name, "trials": nodes, "best": None, "in_progress": 0, "message": message}
        with open(os.path.join(folder, "index.html"), encoding="utf-8") as f:
            return status, f.read()
    result = Result.load(path, name)
    best, done = result.best, {(t["round"], t["slot"]) for t in result.trials}
    going = sorted(k for k in result.curves if k not in done)  # a population's lanes still training
    state = "running" if running else (end[0] if end else "ended")
    status = {"state": state, "study": name, "trials": len(result), "best": None if best is None else best["value"],
              "in_progress": len(going)}  # fmt: skip
    status["message"] = _message(result, status, end)
    if not result.trials:  # nothing to draw yet: the summary alone
        return status, _waiting_page(f"study {name!r}: no trial stored yet", report.summary(result))
    with open(report.html(result, folder, show_test=show_test), encoding="utf-8") as f:
        page = f.read()
    return status, page.replace("\n<pre>", _in_progress(result, going) + "\n<pre>", 1)


def _message(result, status: dict[str, Any], end: tuple[str, str] | None) -> str:
    """The banner's words for the study's state."""
    stored = f"{status['trials']} trial{'s' if status['trials'] != 1 else ''} stored"
    best = "" if status["best"] is None else f"; best {result.metric} {status['best']:.4g}"
    going = f", {status['in_progress']} in progress" if status["in_progress"] else ""
    if status["state"] == "running":
        return f"running: {stored}{going}{best}"
    if status["state"] == "finished":
        return f"finished at {end[1]} UTC: {stored}{best}"
    if status["state"] == "timeout":
        return f"stopped by its timeout at {end[1]} UTC: {stored}{best}; rerun the same sweep to resume"
    return (f"not running: {stored}{best}; its last run stopped before finishing (interrupted or killed), or runs "
            "on another machine; rerun the same sweep to resume")  # fmt: skip


def _in_progress(result, going: list[tuple[int, int]]) -> str:
    """A table of the trials ``going`` (still training: a population's lanes): their latest curve point."""
    if not going:
        return ""
    rows = []
    for key in going:
        step, metrics = result.curves[key][-1]
        value = metrics.get(result.metric)
        cells = (f"{key[0]}:{key[1]}", step, "" if value is None else f"{value:.4g}")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    trials = f"{len(going)} trial{'s' if len(going) != 1 else ''}"
    return (f"\n<h2>in progress: {trials} still training</h2><table><thead><tr><th>trial</th><th>step</th>"
            f"<th>{escape.escape(result.metric)}</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")  # fmt: skip


def _waiting_page(message: str, summary: str = "") -> str:
    """The page before a sweep has stored its study or its first trials."""
    text = escape.escape(message)
    more = f"<pre>{escape.escape(summary)}</pre>" if summary else ""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>jaxtune: {text}</title></head>'
        f'<body style="font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px;">\n'
        f"<h1>jaxtune live view</h1><p>{text}</p>{more}\n</body></html>"
    )
