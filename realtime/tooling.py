"""What every ser-* command does around its work: console logging, and one line (no traceback) for a user mistake
or Ctrl-C, with the exit code that goes with it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from realtime.errors import UserError

EXIT_INTERRUPTED = 130
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def basic_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format=LOG_FORMAT)


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
