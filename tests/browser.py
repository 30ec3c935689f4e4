"""Headless Chromium for the page tests, driven over the DevTools protocol with the websockets client the serve
extra already brings (no Selenium, no Playwright). ``.ci/run`` installs Debian's ``chromium``."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
START_TIMEOUT_S = 30.0
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
         "--autoplay-policy=no-user-gesture-required", "--remote-debugging-port=0")


def chromium_path() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("no Chromium found (apt-get install chromium; .ci/run installs it)")


class Browser:
    """One headless Chromium on ``url`` (its own profile in ``profile_dir``); ``evaluate(js)`` returns the value,
    ``screenshot(path)`` writes a PNG. Use as a context manager: the browser and its children are killed after."""

    def __init__(self, url: str, profile_dir: Path, extra_flags: Sequence[str] = (), size: str = "1100,680") -> None:
        self.profile_dir = profile_dir
        args = [chromium_path(), *FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={size}", *extra_flags, url]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self._ids = itertools.count(1)
        self._stack = contextlib.ExitStack()
        self.ws: Any = None

    def __enter__(self) -> Browser:
        port_file = self.profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"Chromium did not start (exit {self.proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        page = None
        while page is None and time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                page = next((t for t in json.load(r) if t.get("type") == "page"), None)
            time.sleep(0.1)
        assert page is not None, "Chromium opened no page"
        self.ws = self._stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        mid = next(self._ids)
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=30))
            if reply.get("id") == mid:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0) -> Any:
        """Poll ``expression`` until it is truthy (an exception counts as not yet: the page may still load)."""
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except AssertionError as err:
                value, last = None, err
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout_s:g} s waiting for {expression} (last error: {last})")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path
