"""User-facing errors: one line that names the problem and the fix, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix. ``str(err)`` is the one-line message; ``exit_code`` is for CLIs."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
