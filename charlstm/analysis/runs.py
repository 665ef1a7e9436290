"""What a runs directory holds: a summary of every run (`charlstm runs`) and each run's loss curves (`charlstm plot`).

Reads only files (config.yaml, run.json, metrics.jsonl, the names in checkpoints/) and asks whether the run's
lock is held; it imports no JAX, so listing a hundred runs takes a fraction of a second.

A run's status is decided from what is on disk, in this order:

    running      a process holds the run's lock: it is training now
    finished     it reached train.steps: its newest checkpoint, or its last metric row, is at that step; or
                 train.patience stopped it (its last metric row says so; shown as "finished (stopped early)")
    failed       it stopped early without saving its last steps: the last metric row is a skipped
                 (non-finite) step, or metric rows go past the newest checkpoint (the process was killed or
                 crashed), or it has no checkpoint at all
    interrupted  it stopped early with every step its metrics record saved, as Ctrl-C and SIGTERM leave a run:
                 `charlstm train --resume RUN` continues it with nothing lost
    damaged      its config.yaml or metrics.jsonl cannot be read (the reason says which); the other runs are
                 listed as usual

Wall time is the clock from the run's creation to its last metric row: compilation is included, and so are
pauses between a stop and a `--resume`.
"""

from __future__ import annotations

import csv
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charlstm.errors import RunError, UserError
from charlstm.events import bits
from charlstm.training import rundir

STATUSES = ("running", "finished", "interrupted", "failed", "damaged")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"  # run.json's "created", in local time


@dataclass(frozen=True)
class RunSummary:
    """One row of `charlstm runs`. Losses are validation losses in nats/char; None where nothing was measured."""

    name: str
    path: Path
    corpus: str | None  # the corpus file the run was created with
    cell: str  # "lstm", "gru" or "rnn"
    layers: int
    hidden: int
    layer_norm: bool
    step: int  # the furthest step recorded, in metrics or as a checkpoint
    steps: int  # train.steps: the step the run trains to
    checkpoint: int | None  # the newest checkpoint's step
    best_val_loss: float | None
    last_val_loss: float | None
    chars_per_s: float | None  # median training speed over the logged steps
    wall_s: float | None
    created: float | None  # seconds since the epoch
    status: str  # one of STATUSES
    reason: str = ""  # why a run failed, in a few words

    @property
    def size(self) -> str:
        """The cell and its size as `cell layersxhidden`, e.g. "lstm 2x256" ("lstm-ln" when layer-normalised)."""
        return f"{self.cell}{'-ln' if self.layer_norm else ''} {self.layers}x{self.hidden}"

    def to_json(self) -> dict[str, Any]:
        """JSON-safe: a number that is not finite (from a hand-edited metrics file) is null."""
        return {
            "name": self.name,
            "path": str(self.path),
            "corpus": self.corpus,
            "cell": self.cell,
            "layers": self.layers,
            "hidden": self.hidden,
            "layer_norm": self.layer_norm,
            "step": self.step,
            "steps": self.steps,
            "checkpoint": self.checkpoint,
            "best_val_loss": _finite_or_none(self.best_val_loss),
            "best_val_bpc": _finite_or_none(bits(self.best_val_loss)),
            "last_val_loss": _finite_or_none(self.last_val_loss),
            "last_val_bpc": _finite_or_none(bits(self.last_val_loss)),
            "chars_per_s": _finite_or_none(self.chars_per_s),
            "wall_s": _finite_or_none(self.wall_s),
            "created": None if self.created is None else time.strftime(TIME_FORMAT, time.localtime(self.created)),
            "status": self.status,
            "reason": self.reason,
        }


@dataclass
class Curves:
    """A run's losses as logged: training loss per logged step, validation loss per evaluation, each with the
    minutes since the run was created (the x axis of `charlstm plot --x minutes`)."""

    name: str
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    minutes: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_minutes: list[float] = field(default_factory=list)
    total_steps: int = 0  # train.steps

    def x_values(self, x: str, val: bool) -> list[float]:
        """The x of each training point (with `val`, of each evaluation): its step, or with x="minutes" its
        minutes since the run was created."""
        if x == "minutes":
            return list(self.val_minutes if val else self.minutes)
        return [float(s) for s in (self.val_steps if val else self.steps)]


def checkpoint_steps(run: rundir.RunDir) -> list[int]:
    """The steps of the run's complete checkpoints, ascending (Orbax names a finished one by its step)."""
    try:
        return sorted(int(p.name) for p in run.checkpoints.iterdir() if p.name.isdigit() and p.is_dir())
    except OSError:
        return []


def created_time(run: rundir.RunDir) -> float | None:
    """When the run was created (run.json, written in local time), in seconds since the epoch."""
    stamp = run.read_info().get("created")
    try:
        return time.mktime(time.strptime(str(stamp), TIME_FORMAT))
    except (ValueError, OverflowError):
        return None


def _finite(x: object) -> bool:
    """A number a metric can be: not a boolean, not NaN or infinite, and small enough for a float."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an int past float's range
        return False


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and _finite(x) else None


def status_of(steps: int, records: Sequence[dict[str, Any]], ckpts: Sequence[int], locked: bool) -> tuple[str, str]:
    """(status, reason) by the rules in the module docstring, from the run's metric rows and checkpoint steps."""
    if locked:
        return "running", ""
    step_rows = [r for r in records if "loss" in r]
    last_metric = max((int(r.get("step", 0)) for r in records), default=0)
    newest = ckpts[-1] if ckpts else None
    if max(last_metric, newest or 0) >= steps:
        return "finished", ""
    if records and records[-1].get("stopped_early"):
        return "finished", "stopped early"
    if step_rows and (step_rows[-1].get("skipped") or not _finite(step_rows[-1].get("loss"))):
        return "failed", "non-finite loss"
    if newest is None:
        return "failed", "no checkpoint"
    if last_metric > newest:
        return "failed", "killed or crashed"
    return "interrupted", ""


def summarize(run: rundir.RunDir) -> RunSummary:
    """The summary of one run directory (it must hold a config.yaml)."""
    cfg = run.read_config()
    records = rundir.read_metrics(run.metrics_file)
    ckpts = checkpoint_steps(run)
    status, reason = status_of(cfg.train.steps, records, ckpts, rundir.is_locked(run))
    vals = [float(r["val_loss"]) for r in records if _finite(r.get("val_loss"))]
    speeds = [float(r["chars_per_s"]) for r in records if _finite(r.get("chars_per_s")) and not r.get("skipped")]
    created = created_time(run)
    times = [float(r["time"]) for r in records if _finite(r.get("time"))]
    start = created if created is not None else (times[0] if times else None)
    corpus = run.read_info().get("corpus")
    return RunSummary(
        name=run.path.name,
        path=run.path,
        corpus=None if corpus is None else str(corpus),
        cell=cfg.model.cell,
        layers=cfg.model.layers,
        hidden=cfg.model.hidden,
        layer_norm=cfg.model.layer_norm,
        step=max([int(r.get("step", 0)) for r in records] + ckpts + [0]),
        steps=cfg.train.steps,
        checkpoint=ckpts[-1] if ckpts else None,
        best_val_loss=min(vals) if vals else None,
        last_val_loss=vals[-1] if vals else None,
        chars_per_s=_finite_or_none(statistics.median(speeds)) if speeds else None,
        wall_s=_finite_or_none(times[-1] - start) if times and start is not None else None,
        created=created,
        status=status,
        reason=reason,
    )


def list_runs(runs_dir: Path) -> list[RunSummary]:
    """Every run in `runs_dir`, newest first (by creation time, then name). A run whose config or metrics
    cannot be read is listed as damaged with the reason, rather than hiding the rest."""
    if not runs_dir.is_dir():
        raise RunError(f"no runs directory {runs_dir}", "train a run with `charlstm train`, or pass --runs-dir DIR")
    out = []
    for path in sorted(runs_dir.iterdir()):
        if path.name == rundir.LATEST or path.is_symlink() or not (path / "config.yaml").is_file():
            continue
        run = rundir.RunDir(path)
        try:
            out.append(summarize(run))
        except UserError as err:
            out.append(
                RunSummary(
                    path.name,
                    path,
                    None,
                    "?",
                    0,
                    0,
                    False,
                    0,
                    0,
                    None,
                    None,
                    None,
                    None,
                    None,
                    created_time(run),
                    "damaged",
                    err.message,
                )
            )
    return sorted(out, key=lambda r: (r.created or 0.0, r.name), reverse=True)


def read_curves(run: rundir.RunDir) -> Curves:
    """The run's logged training and validation losses, with steps and minutes since its creation."""
    records = rundir.read_metrics(run.metrics_file)
    try:
        total = run.read_config().train.steps
    except UserError:
        total = 0
    times = [float(r["time"]) for r in records if _finite(r.get("time"))]
    start = created_time(run)
    start = start if start is not None else (times[0] if times else 0.0)
    c = Curves(run.path.name, total_steps=total)
    for r in records:
        minutes = (float(r["time"]) - start) / 60 if _finite(r.get("time")) else math.nan
        if "loss" in r and not r.get("skipped") and _finite(r["loss"]):
            c.steps.append(int(r["step"]))
            c.loss.append(float(r["loss"]))
            c.minutes.append(minutes)
        elif _finite(r.get("val_loss")):
            c.val_steps.append(int(r["step"]))
            c.val_loss.append(float(r["val_loss"]))
            c.val_minutes.append(minutes)
    return c


def ema(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average with TensorBoard's bias correction: the first points are not pulled toward 0.

    `weight` in [0, 1): 0 returns the values as they are; 0.9 averages over about the last ten points.
    """
    out, avg = [], 0.0
    for n, v in enumerate(values, start=1):
        avg = weight * avg + (1.0 - weight) * v
        out.append(avg / (1.0 - weight**n))
    return out


def write_csv(curves: Sequence[Curves], path: Path, smooth: float) -> None:
    """One row per logged point of every run: run, split (train|val), step, minutes, loss and, for training,
    the smoothed loss the chart draws."""
    try:
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["run", "split", "step", "minutes", "loss", "loss_smoothed"])
            for c in curves:
                for s, m, y, sm in zip(c.steps, c.minutes, c.loss, ema(c.loss, smooth)):
                    w.writerow([c.name, "train", s, _num(m), repr(y), repr(sm)])
                for s, m, y in zip(c.val_steps, c.val_minutes, c.val_loss):
                    w.writerow([c.name, "val", s, _num(m), repr(y), ""])
    except OSError as err:
        raise RunError(f"cannot write {path}: {err.strerror}", "choose another --out path") from None


def _num(x: float) -> str:
    return "" if not math.isfinite(x) else f"{x:.4f}"


def resolve_all(names: Sequence[str], runs_dir: Path) -> list[rundir.RunDir]:
    """Run arguments (names in `runs_dir`, paths, or latest) as run directories; none given means runs/latest."""
    found = [rundir.resolve(n, runs_dir) for n in (names or ["latest"])]
    return [rundir.RunDir(r.path.resolve()) if r.path.is_symlink() else r for r in found]


def duration(seconds: float | None) -> str:
    """12.3 s, 4 min 05 s, 2 h 03 min."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def table_rows(summaries: Sequence[RunSummary]) -> tuple[list[str], list[list[str]]]:
    """The columns and formatted rows of `charlstm runs` (status last)."""

    def loss(nats: float | None) -> str:
        return "—" if nats is None else f"{nats:.4f}/{bits(nats):.3f}"

    columns = [
        "run",
        "corpus",
        "model",
        "step",
        "best val nats/bits",
        "last val nats/bits",
        "chars/s",
        "wall",
        "status",
    ]
    rows = [
        [
            r.name,
            Path(r.corpus).stem if r.corpus else "—",
            r.size,
            f"{r.step:,}/{r.steps:,}",
            loss(r.best_val_loss),
            loss(r.last_val_loss),
            "—" if r.chars_per_s is None else f"{r.chars_per_s:,.0f}",
            duration(r.wall_s),
            f"{r.status} ({r.reason})" if r.reason else r.status,
        ]
        for r in summaries
    ]
    return columns, rows
