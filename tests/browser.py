"""A headless Chromium driven over the DevTools protocol on a pipe (no websocket, no extra package).

``--remote-debugging-pipe``: Chromium reads commands from file descriptor 3 and writes replies and
events to 4, each a JSON message ended by a NUL byte. Enough of the protocol to open a page and
read it while it runs its own scripts (a live view reloading itself).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time

import pytest


def chromium() -> str:
    """The Chromium executable; the test skips without one (fails when CI says it must be there)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("JAXTUNE_REQUIRE_CHROMIUM"):
            pytest.fail("JAXTUNE_REQUIRE_CHROMIUM is set but no chromium is installed")
        pytest.skip("no headless chromium here (CI installs it)")
    return found


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


class Browser:
    """One headless Chromium with one tab, driven over its DevTools pipe."""

    def __init__(self, profile: str):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Chromium's ends above 4, so that moving them to 3 and 4 cannot overwrite one with the other.
        low = (to_chrome_r, from_chrome_w)
        to_chrome_r, from_chrome_w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in low)
        for fd in low:
            os.close(fd)

        # Chromium's ends must be descriptors 3 and 4: a small Python moves them there and execs it
        # (no preexec_fn, which would fork a multithreaded JAX process the unsafe way).
        move = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); " \
               "os.execv(sys.argv[3], sys.argv[3:])"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", move, str(to_chrome_r), str(from_chrome_w), chromium(), *FLAGS,
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(to_chrome_r, from_chrome_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer, self._id, self.session = b"", 0, None

    def call(self, method: str, timeout: float = 30, **params):
        """Sends one command (to the tab, once :meth:`open` attached it) and returns its result."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_chrome, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:  # events (no id) and other replies are skipped
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise TimeoutError(f"chromium did not answer {method} within {timeout} s")

    def open(self, url: str) -> None:
        """Opens ``url`` in a new tab and attaches to it."""
        target = self.call("Target.createTarget", url=url)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the tab (None while the page is between loads)."""
        try:
            result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        except RuntimeError as e:
            if "context" in str(e).lower():  # the page reloaded while it was asked
                return None
            raise
        return result.get("result", {}).get("value")

    def close(self) -> None:
        """Ends Chromium."""
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        self.proc.kill()
        self.proc.wait(timeout=30)
