"""The process table from /proc (Linux), for tests that child processes go when their parent goes."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

POLL_S = 0.1


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the name: state, ppid, ...
        except (OSError, IndexError):
            continue  # a process that ended while we looked
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    """``pid`` exists and has not ended (a zombie, ended but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pids: Iterable[int], timeout_s: float = 10.0) -> list[int]:
    """Wait up to ``timeout_s`` for every pid to be gone; the ones still alive then."""
    pids = list(pids)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(POLL_S)
    return [p for p in pids if alive(p)]
