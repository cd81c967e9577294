"""The one exception type for problems the user can fix.

Raised anywhere; the CLI turns it into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations


class MlpackError(Exception):
    """A user-facing error: what went wrong, and what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message.rstrip(".")
        if self.hint:
            text += f"; {self.hint}"
        return " ".join(text.split())  # never more than one line


class InputError(MlpackError):
    """Bad input from the user: a file, an option, a name."""

    exit_code = 2
