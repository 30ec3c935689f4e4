"""What every ser-* command does around its work: console logging, and one line (no traceback) for a user mistake
or Ctrl-C, with the exit code that goes with it."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence

from ser_live.realtime.errors import UserError

EXIT_INTERRUPTED = 130
EXIT_IO_ERROR = 1
EXIT_ORPHANED = 1
PARENT_POLL_S = 0.5  # how often a child process checks that its parent is still there
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` only where it says something: not to on/off flags, not to ``None`` defaults, and
    not where the help text already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or isinstance(action.default, bool):
            return text
        return super()._get_help_string(action) or text


def basic_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format=LOG_FORMAT)


def missing_modules(names: Sequence[str]) -> list[str]:
    """The modules of ``names`` this install cannot import (not installed, or blocked)."""
    missing = []
    for name in names:
        if name in sys.modules:
            if sys.modules[name] is None:
                missing.append(name)
        elif importlib.util.find_spec(name) is None:
            missing.append(name)
    return missing


def require_modules(names: Sequence[str], extra: str, what: str) -> None:
    """UserError in one line naming the extra to install when any of ``names`` is missing."""
    missing = missing_modules(names)
    if missing:
        raise UserError(f"{what} needs {', '.join(missing)}, which this install lacks: "
                        f"pip install 'ser-live[{extra}]'")


def run_tool(prog: str, work: Callable[[], int], interrupted: str = "interrupted") -> int:
    """``work()``'s exit code; a :class:`UserError` prints ``prog: error: message``, Ctrl-C ``prog: interrupted``."""
    try:
        return work()
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:  # the net under the checks: a file system failure nobody foresaw, in one line
        print(f"{prog}: error: {io_error_message(err)}", file=sys.stderr)
        return EXIT_IO_ERROR


def die_with(parent_pid: int, poll_s: float = PARENT_POLL_S) -> None:
    """Leave (``os._exit``) within ``poll_s`` once the process ``parent_pid`` is gone, however it ended (SIGKILL
    included): for child processes that ignore or handle signals themselves (``ser-batch`` workers, ``ser-train``'s
    fold processes), which would otherwise outlive their parent, holding memory and a core, for ever."""
    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(EXIT_ORPHANED)
            time.sleep(poll_s)

    threading.Thread(target=watch, name="ser-live-parent-watch", daemon=True).start()


def io_error_message(err: OSError) -> str:
    """One line for an unexpected OSError: what failed, on which path, and what to look at."""
    where = f" ({err.filename})" if err.filename else ""
    return (f"{err.strerror or type(err).__name__}{where}: check that the path exists, is writable and that the "
            "disk has space, then run again")


def check_number(
    flag: str,
    value: float | None,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """UserError naming ``flag`` unless ``value`` (None: not given, fine) is a finite number in the range, e.g.
    ``check_number("--hop", args.hop, 0, low_open=True)`` for hop > 0."""
    if value is None:
        return
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        if high is None:
            span = "" if low is None else f" {'>' if low_open else '>='} {low:g}"
        elif low is None:
            span = f" {'<' if high_open else '<='} {high:g}"
        else:
            span = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise UserError(f"{flag} must be a finite number{span}, got {value:g}")
