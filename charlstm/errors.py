"""User-facing errors.

Deep code raises `UserError` for anything the user can fix (bad file, bad config, missing run); only the
CLI turns it into one red line and a non-zero exit. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user caused and can fix: `message` says what is wrong, `hint` how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(UserError):
    """Invalid configuration file or override."""


class CorpusError(UserError):
    """Unreadable, empty or too small corpus."""


class RunError(UserError):
    """Missing or unusable run directory / checkpoint."""
