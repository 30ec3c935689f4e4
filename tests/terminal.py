"""A terminal for tests: one detached tmux session (80x24 unless told) on a private socket, read back with
capture-pane; every process its pane started is stopped by PID on exit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

WIDTH, HEIGHT = 80, 24
SESSION = "ser"
TMUX_CONFIG = "set -g remain-on-exit on\nset -g status off\nset -g history-limit 2000\n"
TMUX_TIMEOUT_S = 10.0
SCREEN_TIMEOUT_S = 15.0
POLL_S = 0.03


class Tmux:
    """One detached 80x24 tmux session on a private socket running ``command``; the pane stays after it exits."""

    def __init__(self, command: str, width: int = WIDTH, height: int = HEIGHT) -> None:
        self.width, self.height = width, height
        self.root = Path(tempfile.mkdtemp(prefix="sertmux-", dir="/tmp"))  # a socket path must stay short
        self.socket = self.root / "tmux.sock"
        self.config = self.root / "tmux.conf"
        self.config.write_text(TMUX_CONFIG)
        self.command = command
        self.env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8")
        self.env.pop("TMUX", None)

    def tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-u", "-S", str(self.socket), "-f", str(self.config), *args],
            env=self.env, capture_output=True, text=True, timeout=TMUX_TIMEOUT_S, check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def __enter__(self) -> Tmux:
        self.tmux("new-session", "-d", "-x", str(self.width), "-y", str(self.height), "-s", SESSION, self.command)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            for pid in self.children():
                os.kill(pid, signal.SIGKILL)
            subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], env=self.env, capture_output=True,
                           timeout=TMUX_TIMEOUT_S, check=False)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def send(self, *keys: str) -> None:
        """Type ``keys`` into the pane (tmux key names: "Enter", "C-c", or literal text)."""
        self.tmux("send-keys", "-t", SESSION, *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", SESSION)

    def pane(self, fmt: str) -> str:
        return self.tmux("display-message", "-p", "-t", SESSION, fmt).strip()

    def wait_for(self, what: str, check: Callable[[str], bool], timeout: float = SCREEN_TIMEOUT_S) -> str:
        """Poll the screen until ``check(screen)``; a redraw caught half-way is simply read again."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if check(screen):
                return screen
            time.sleep(POLL_S)
        raise AssertionError(f"no {what} on screen within {timeout} s; last screen:\n{screen}")

    def children(self) -> list[int]:
        """PIDs of the processes the pane's shell started (ser-live)."""
        try:
            shell = int(self.pane("#{pane_pid}"))
        except (AssertionError, ValueError):
            return []
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == shell:
                found.append(int(stat.parent.name))
        return found
