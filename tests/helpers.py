"""Shared test helpers: running the real CLI (in this process, or in a process of its own), checking its one-line
user errors, and a training reporter that records what it is told."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from charlstm import events

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

# Variables that force colour or a terminal: a user's shell rarely sets them, so the CLI runs without them.
_FORCING = ("FORCE_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: CPU JAX, UTF-8 I/O, no forced colours."""
    env = dict(os.environ)
    # JAX's own cache settings would override the one under $CHARLSTM_CACHE (see conftest.py and charlstm.perf).
    for var in (*_FORCING, "JAX_COMPILATION_CACHE_DIR"):
        env.pop(var, None)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONIOENCODING"] = "utf-8"
    # Run the working tree even when the package is not installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class _Timeout(BaseException):
    """A `run_cli` call ran past its timeout (a BaseException: the CLI's own handlers do not catch it)."""


def _alarm(signum: int, frame: object) -> None:
    raise _Timeout("the command ran past its timeout")


@contextlib.contextmanager
def _captured_fd(fd: int) -> Iterator[tempfile._TemporaryFileWrapper[bytes]]:
    """What native code writes to file descriptor `fd` while the block runs, in a temporary file."""
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(fd)
        os.dup2(sink.fileno(), fd)
        try:
            yield sink
        finally:
            os.dup2(saved, fd)
            os.close(saved)


def run_cli(
    args: Sequence[str | os.PathLike[str]],
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 300,
    stdin_text: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `charlstm ARGS` in this process, as the console script runs it (`charlstm.cli.main`), with stdout and
    stderr captured as pipes (not a TTY), `env` added to the environment and `cwd` as the working directory.

    What a new process would start afresh starts afresh: the consoles are made anew (so NO_COLOR, FORCE_COLOR and
    COLUMNS in `env` act), Python's default warning filters apply, and what native code writes to file descriptors
    1 and 2 is captured too. An exception that escapes `main` is a traceback on stderr and exit 1, as Python
    gives; a run past `timeout` seconds is stopped by an alarm (`_Timeout` escapes). The process's malloc
    settings are left alone (CHARLSTM_MALLOC_TUNING=0). Not for what only a process of its own shows (signals,
    start-up, settings read when JAX starts, such as XLA_FLAGS or the compilation cache): `run_cli_process` runs
    those. Output is decoded as UTF-8 without newline translation, so "\\r\\n" in generated text survives.
    """
    assert threading.current_thread() is threading.main_thread(), "run_cli changes process state: main thread only"
    from charlstm import cli, ui

    argv = ["charlstm", *map(str, args)]
    out, err = io.BytesIO(), io.BytesIO()
    # Text streams over the byte buffers, detached (not closed) at the end so that the buffers stay readable.
    stdout = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", newline="", write_through=True)
    previous: Any = signal.getsignal(signal.SIGALRM)
    saved = (sys.argv, sys.stdin, sys.stdout, sys.stderr, os.getcwd(), dict(os.environ), ui.out, ui.err)
    code: int = 0
    try:
        for var in _FORCING:
            os.environ.pop(var, None)
        os.environ.update({"CHARLSTM_MALLOC_TUNING": "0", **(env or {})})
        sys.argv = argv
        sys.stdin = io.TextIOWrapper(io.BytesIO((stdin_text or "").encode("utf-8")), encoding="utf-8")
        sys.stdout, sys.stderr = stdout, stderr
        if cwd is not None:
            os.chdir(cwd)
        ui.out, ui.err = ui.new_consoles()
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        with _captured_fd(1) as native_out, _captured_fd(2) as native_err, warnings.catch_warnings():
            warnings.resetwarnings()  # Python's defaults, not pytest's: a warning shows on stderr as a user sees it
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            try:
                cli.main()
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except _Timeout:
                raise
            except Exception:
                stderr.write(traceback.format_exc())
                code = 1
            stdout.flush()
            stderr.flush()
            native_out.seek(0)
            native_err.seek(0)
            out.write(native_out.read())
            err.write(native_err.read())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        sys.argv, sys.stdin, sys.stdout, sys.stderr = saved[:4]
        os.chdir(saved[4])
        os.environ.clear()
        os.environ.update(saved[5])
        ui.out, ui.err = saved[6], saved[7]
        stdout.detach()
        stderr.detach()
    return subprocess.CompletedProcess(
        argv, code, out.getvalue().decode("utf-8"), err.getvalue().decode("utf-8", errors="replace")
    )


def run_cli_process(
    args: Sequence[str | os.PathLike[str]],
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 120,
    stdin_text: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m charlstm.cli ARGS` as a process of its own, with stdout/stderr captured (so both are pipes,
    not a TTY): for what `run_cli` cannot show (start-up, signals, settings read when JAX starts).

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


class Reporter(events.Silent):
    """A training reporter that shows nothing and keeps what it is told: the events, samples and messages."""

    def __init__(self) -> None:
        self.events: list[events.Event] = []
        self.samples: list[tuple[int, str]] = []
        self.messages: list[str] = []

    def event(self, ev: events.Event) -> None:
        self.events.append(ev)

    def sample(self, step: int, text: str) -> None:
        self.samples.append((step, text))

    def message(self, text: str) -> None:
        self.messages.append(text)


def cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    """`text` up to where it first completes one of `stops` (the whole text when none occurs), by the same
    `StopScan` the sampler streams through, fed in one piece."""
    from charlstm.nn.sampling import StopScan

    scan = StopScan(stops)
    return scan.feed(text) + scan.flush()
