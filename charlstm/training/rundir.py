"""The on-disk layout of a run, and nothing else:

runs/<name>/config.yaml      resolved config          runs/<name>/vocab.json    the vocabulary
runs/<name>/run.json         corpus and timestamps    runs/<name>/metrics.jsonl one JSON object per log
runs/<name>/checkpoints/     Orbax checkpoints        runs/<name>/.lock         held by the training process
runs/<name>/.lock.pid        its pid, for messages    runs/<name>/tb/           TensorBoard events (optional)
runs/latest -> <name>        the newest run
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from charlstm import config as config_lib
from charlstm.config import Config
from charlstm.data.corpus import Vocab
from charlstm.errors import ConfigError, RunError, UsageError

LATEST = "latest"
DISK_HINT = "free disk space or fix permissions"


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def vocab_file(self) -> Path:
        return self.path / "vocab.json"

    @property
    def info_file(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    @property
    def prompt_check_file(self) -> Path:
        return self.path / "prompt_check.json"

    @property
    def budget_file(self) -> Path:
        return self.path / "budget.json"

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    @property
    def lock_pid_file(self) -> Path:
        return self.path / ".lock.pid"

    def read_config(self) -> Config:
        """The run's own config; a file that cannot be read or validated is a damaged run (RunError, exit 1),
        not a usage error: the user typed nothing wrong."""
        try:
            return config_lib.from_saved(config_lib.read_yaml(self.config_file))
        except ConfigError as err:
            raise RunError(
                f"run {self.path} has a damaged config.yaml: {err.message}",
                "restore it from a backup, or train a new run",
            ) from None

    def write_config(self, cfg: Config) -> None:
        _write_atomic(self.config_file, config_lib.to_yaml(cfg))

    def read_vocab(self) -> Vocab:
        try:
            return Vocab.from_json(self.vocab_file.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise RunError(
                f"cannot read the vocabulary of run {self.path}: {err}", "the run directory is damaged"
            ) from None

    def read_info(self) -> dict[str, Any]:
        """run.json's fields; an unreadable file reads as none (it only describes the run)."""
        try:
            info = json.loads(self.info_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}


def default_name(corpus: Path, cell: str) -> str:
    # A corpus named .notes.txt must not make a hidden run (check_name refuses a leading dot).
    return f"{corpus.stem.lstrip('.') or 'corpus'}-{cell}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_name(name: str) -> str:
    """A run name is one plain entry of the runs directory: anything else would write outside it (../x, /abs),
    be the directory itself (.), or hide among its own files (.lock-like names, latest)."""
    bad = ""
    if not name:
        bad = "is empty"
    elif "/" in name or "\\" in name or name in (".", ".."):
        bad = "is a path, not a name"
    elif name.startswith("."):
        bad = "starts with a dot"
    elif name == LATEST:
        bad = "is reserved for the link to the newest run"
    elif not name.isprintable():
        bad = "has a control character or invalid Unicode"
    elif len(name.encode("utf-8")) > 200:
        bad = "is longer than 200 bytes"
    if bad:
        raise UsageError(
            f"run name {name!r} {bad}", "pass a plain name such as --name my-run; --runs-dir chooses the directory"
        )
    return name


def write_json(path: Path, data: object) -> None:
    """Write `data` as JSON, atomically (a reader never sees half a file)."""
    _write_atomic(path, json.dumps(data, indent=1))


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename; a failed write (a full disk) leaves the old file and no
    temporary behind, and is a RunError."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise RunError(f"cannot write {path}: {err.strerror or err}", DISK_HINT) from None


def create(
    runs_dir: Path, name: str, cfg: Config, vocab: Vocab, corpus: Path, info: dict[str, Any] | None = None
) -> RunDir:
    """Make a new run directory with its config, vocabulary and info (plus `info`, e.g. the run a fine-tuning
    run starts from), and point `latest` at it."""
    run = RunDir(runs_dir / check_name(name))
    if run.checkpoints.exists() and any(run.checkpoints.iterdir()):
        raise RunError(
            f"run '{name}' already exists in {runs_dir}", f"resume it with --resume {run.path}, or pick another --name"
        )
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(
            f"cannot write run directory {run.path}: {err.strerror}",
            "check free space and permissions, or pass --runs-dir",
        ) from None
    run.write_config(cfg)
    _write_atomic(run.vocab_file, vocab.to_json())
    about = {"corpus": str(corpus.resolve()), "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **(info or {})}
    _write_atomic(run.info_file, json.dumps(about, indent=1))
    point_latest(runs_dir, name)
    return run


def point_latest(runs_dir: Path, name: str) -> None:
    """Make runs/latest a symlink to `name` (replaced atomically); a plain text file where links fail."""
    link = runs_dir / LATEST
    tmp = runs_dir / f".{LATEST}.tmp"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        _write_atomic(link, name)


def resolve(run: str | Path | None, runs_dir: Path = Path("runs")) -> RunDir:
    """A --run argument (path, run name, or None for runs/latest) -> an existing run directory."""
    if run is None or str(run) in ("", LATEST):
        link = runs_dir / LATEST
        if link.is_file():  # the text-file fallback of point_latest
            path = runs_dir / link.read_text(encoding="utf-8").strip()
        elif link.is_symlink() and not link.exists():
            raise RunError(f"{link} points to a run that no longer exists", "train a new run, or pass --run DIR")
        elif not link.exists():
            raise RunError(
                f"no trained run found ({link} does not exist)", "train one with `charlstm train`, or pass --run DIR"
            )
        else:
            path = link.resolve()
    else:
        path = Path(run)
        if not path.exists() and (runs_dir / str(run)).exists():
            path = runs_dir / str(run)
    if not path.is_dir():
        raise RunError(f"run not found: {path}", "pass a run directory such as runs/<name>, or train one first")
    if not (path / "config.yaml").is_file():
        raise RunError(f"{path} is not a charlstm run (no config.yaml)", "pass a directory made by `charlstm train`")
    return RunDir(path)


class MetricsLog:
    """Appends one JSON object per line; on resume, drops lines past the step the run resumes from.

    A failed write (a full disk) is a RunError saying how to go on: the checkpoints saved so far are intact.
    """

    def __init__(self, path: Path, resume_step: int = 0) -> None:
        self.path = path
        if resume_step and path.exists():
            kept = [ln for ln in _read_lines(path) if ln.strip() and _step_of(ln) <= resume_step]
            _write_atomic(path, "".join(ln + "\n" for ln in kept))
        try:
            if not resume_step:
                path.write_text("", encoding="utf-8")
            self._fh = path.open("a", encoding="utf-8")
        except OSError as err:
            raise self._failed(err) from None

    def write(self, record: dict[str, Any]) -> None:
        try:
            self._fh.write(json.dumps(record) + "\n")
            self._fh.flush()
        except OSError as err:
            raise self._failed(err) from None

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError:  # the write that failed already said so; the buffered line is lost with it
            pass

    def _failed(self, err: OSError) -> RunError:
        run = self.path.parent
        return RunError(
            f"cannot write {self.path}: {err.strerror or err}",
            f"{DISK_HINT}, then continue with: charlstm train --resume {run} (saved checkpoints are intact)",
        )


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise RunError(f"cannot read {path}: {err.strerror or err}", "check the file's permissions") from None


def _record(line: str) -> dict[str, Any] | None:
    """A metrics line as its record: a JSON object with a whole-number step; None for anything else."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    step = rec.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return None
    return rec


def _step_of(line: str) -> int:
    rec = _record(line)
    return 1 << 62 if rec is None else rec["step"]  # a torn or foreign line: dropped on resume


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics file. A torn last line (a killed process was writing it) is left out; any
    other line that is not a record means the file was damaged, a RunError naming the line."""
    if not path.exists():
        return []
    lines = _read_lines(path)
    last = max((n for n, ln in enumerate(lines) if ln.strip()), default=-1)
    out = []
    for n, ln in enumerate(lines):
        if not ln.strip():
            continue
        rec = _record(ln)
        if rec is None:
            if n == last and not _is_json(ln):
                continue
            raise RunError(
                f"{path} is damaged: line {n + 1} is not a metrics record ({ln[:40]!r})",
                "delete that line, or restore the file from a backup",
            )
        out.append(rec)
    return out


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


class Lock:
    """One training process per run directory.

    An OS file lock (`filelock`: flock on Unix) on runs/<name>/.lock: the kernel drops it when its process exits,
    however it dies, so a killed trainer never leaves its run locked and a reused PID cannot keep it locked. The
    lock file stays on release (deleting it would let two processes lock two different files). The holder's PID
    goes in a side file, only to name it in the message a second trainer gets.
    """

    def __init__(self, run: RunDir) -> None:
        self.run = run
        # timeout=0: a second trainer fails at once instead of waiting; not thread-local, as the process holds it.
        self._lock = filelock.FileLock(run.lock_file, timeout=0, thread_local=False)

    def __enter__(self) -> Lock:
        fix = "check permissions and free space"
        try:
            self._lock.acquire()
        except filelock.Timeout:
            holder = _holder_pid(self.run)
            by = f"process {holder}" if holder else "another process"
            raise RunError(
                f"run {self.run.path} is being trained by {by}", "wait for it to finish, or stop it first"
            ) from None
        except OSError as err:
            raise RunError(f"cannot lock run directory {self.run.path}: {err.strerror}", fix) from None
        try:
            _write_atomic(self.run.lock_pid_file, str(os.getpid()))
        except RunError:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        # The PID file goes first: once the lock is released it may already be the next holder's.
        self.run.lock_pid_file.unlink(missing_ok=True)
        self._lock.release()


def is_locked(run: RunDir) -> bool:
    """Whether a process (this one included) is training `run` now."""
    if not run.lock_file.exists():
        return False
    probe = filelock.FileLock(run.lock_file, timeout=0, thread_local=False)
    try:
        probe.acquire()
    except filelock.Timeout:
        return True
    probe.release()
    return False


def _holder_pid(run: RunDir) -> int | None:
    try:
        return int(run.lock_pid_file.read_text().strip())
    except (OSError, ValueError):  # the holder has not written it yet
        return None
