"""Shared test helpers: running the real CLI in a subprocess and checking its one-line user errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Options for a training run that finishes in seconds on a CPU (plus --runs-dir and --name).
TINY_TRAIN = [
    "--config",
    "tiny",
    "--set",
    "train.steps=4",
    "--set",
    "train.eval_every=2",
    "--set",
    "checkpoint.every=2",
]


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: CPU JAX, UTF-8 I/O, no forced colours."""
    env = dict(os.environ)
    # JAX's own cache settings would override the one under $CHARLSTM_CACHE (see conftest.py and charlstm.perf).
    for var in ("FORCE_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JAX_COMPILATION_CACHE_DIR"):
        env.pop(var, None)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONIOENCODING"] = "utf-8"
    # Run the working tree even when the package is not installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_cli(
    args: Sequence[str | os.PathLike[str]],
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 120,
    stdin_text: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m charlstm.cli ARGS` with stdout/stderr captured (so both are pipes, not a TTY).

    Output is decoded as UTF-8 without newline translation, so "\\r\\n" in generated text survives.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "charlstm.cli", *map(str, args)],
        cwd=cwd,
        env={**cli_env(), **(env or {})},
        input=None if stdin_text is None else stdin_text.encode("utf-8"),
        capture_output=True,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    )


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)


def assert_clean_error(proc: subprocess.CompletedProcess[str], *words: str, code: int) -> str:
    """A user error: exit `code` (1: the work failed, 2: usage; see charlstm.errors), no traceback, nothing on
    stdout, and stderr is exactly one line starting with "error:" that contains every one of `words`. Returns
    that line."""
    assert code != 0
    assert proc.returncode == code, describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    assert "\x1b" not in proc.stderr, "ANSI escape codes on a piped stderr\n" + describe(proc)
    assert proc.stdout == "", describe(proc)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, "expected exactly one line on stderr\n" + describe(proc)
    line = lines[0]
    assert line.startswith("error:"), describe(proc)
    for w in words:
        assert w in line, f"{w!r} not in the error line {line!r}"
    return line
