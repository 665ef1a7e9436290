"""User-facing errors, and the exit code each one gets.

Deep code raises a `UserError` for anything the user can fix (bad file, bad config, missing run); only the
CLI turns it into one red line and an exit code, and the Python API lets it propagate. Any other exception is
a bug and keeps its traceback.

Exit codes follow the usual conventions: 1 for a failure while doing the work (the corpus, run, checkpoint,
download or disk), 2 for a command line the tool cannot act on (a bad option value, a bad --set, an invalid
config), 128 + the signal number for an interrupted run (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CODES = (
    (0, "success"),
    (EXIT_FAILURE, "the work failed: corpus, run, checkpoint, download or disk"),
    (EXIT_USAGE, "usage: bad option or argument, bad --set, invalid config"),
    (130, "interrupted by Ctrl-C (SIGINT); training saves a checkpoint first"),
    (143, "stopped by SIGTERM; training saves a checkpoint first"),
)


class UserError(Exception):
    """A problem the user caused and can fix: `message` says what is wrong, `hint` how to fix it."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(UserError):
    """An option or argument value the command cannot act on (out of range, conflicting, unknown)."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """Invalid configuration file or override."""


class CorpusError(UserError):
    """Unreadable, empty or too small corpus, or a failed download."""


class RunError(UserError):
    """Missing or unusable run directory / checkpoint, or a run that cannot be written."""
