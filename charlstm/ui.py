"""Everything the user sees: the rich consoles, the live training display, tables and the error line.

Diagnostics go to stderr; stdout carries only results (samples, JSON), so piping works. Colour follows
`--color` (see `set_color`) and the NO_COLOR convention; whatever colour shows is also said in words, letters or
markers, so nothing depends on it.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Literal, TextIO

from rich.color import ColorSystem
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from charlstm import events


def new_consoles() -> tuple[Console, Console]:
    """The two consoles, as a process starting now makes them: stdout for results, stderr for progress,
    messages and errors. Each reads the terminal and the environment (NO_COLOR, COLUMNS, ...) when made."""
    return Console(highlight=False), Console(stderr=True, highlight=False)


out, err = new_consoles()

ColorMode = Literal["auto", "always", "never"]


def set_color(mode: ColorMode) -> None:
    """`--color`: "auto" colours a terminal unless NO_COLOR is set (rich's own rule), "always" colours even a
    pipe or a file (and overrides NO_COLOR), "never" writes no colour codes at all.

    The consoles are changed in place: displays made earlier hold references to them.
    """
    for console in (out, err):
        if mode == "always":
            console.no_color = False
            console._color_system = console._color_system or ColorSystem.TRUECOLOR  # rich has no public setter
        elif mode == "never":
            console._color_system = None


def color_on(console: Console) -> bool:
    """Whether `console` shows colours; charts and heatmaps draw letters and shades instead when it does not."""
    return console.color_system is not None and not console.no_color


def error(message: str, hint: str = "") -> None:
    """The one red line a user error gets."""
    text = f"[bold red]error:[/] {escape(message)}"
    if hint:
        text += f" [dim]— {escape(hint)}[/]"
    err.print(text, soft_wrap=True)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def info(message: str) -> None:
    err.print(escape(message), soft_wrap=True)


def fmt(x: float | None, digits: int = 4) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def curriculum_line(stages: object) -> str:
    """A `data.curriculum` in words ("" when the whole text is read from the start). The validation loss is
    measured on the whole split, so while a stage reads only the easy part it is high, and the line says why."""
    if not isinstance(stages, list) or all(share >= 1 for _, share in stages):
        return ""
    reads = [f"{'all' if share >= 1 else f'the first {share:.0%}'} of the text from step {s:,}" for s, share in stages]
    return "curriculum: " + ", ".join(reads) + " (until it reads all of it, the validation loss stays high)"


@contextlib.contextmanager
def spinner(message: str, console: Console | None = None, quiet: bool = False) -> Iterator[None]:
    """A spinner with `message` on a terminal while the block runs (XLA compiling, a long file scored); nothing
    on a pipe, where it could only add noise to a log."""
    console = console or err
    if quiet or not console.is_terminal:
        yield
        return
    with console.status(escape(message), spinner="dots"):
        yield


class TrainingDisplay:
    """A live progress bar (step/total, losses, chars/s, ETA) on a terminal; plain log lines otherwise.

    Until the first step has run, a spinner says that the training step is being compiled. `encoding` is the
    progress callback for reading a large corpus (`encoded.Progress`).
    """

    def __init__(self, log_every: int = 10, console: Console | None = None, quiet: bool = False) -> None:
        self.console, self.log_every, self.quiet = console or err, log_every, quiet
        self.live = self.console.is_terminal and not quiet
        self.progress: Progress | None = None
        self.task: Any = None
        self.val: float | None = None
        self.compiling: Any = None  # the spinner shown until the first step
        self.deadline: float | None = None  # a time budget's end, on the time.monotonic() clock
        self.encoding = EncodeProgress(self.console, quiet=quiet)

    def start(self, info: dict[str, object]) -> None:
        if not self.quiet:
            self.console.print(
                f"[bold]{info['cell']}[/] {info['layers']}x{info['hidden']} · {info['params']:,} params · "
                f"vocab {info['vocab']} · "
                f"{info['train_chars']:,} train / {info['val_chars']:,} val chars · "
                f"run [cyan]{escape(str(info['run']))}[/]"
                + (f" · {escape(str(info['devices']))}" if info.get("devices") else "")
            )
            if stages := curriculum_line(info.get("curriculum")):
                self.console.print(stages)
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "loss [cyan]{task.fields[loss]}[/] · val [magenta]{task.fields[val]}[/] · "
                    "{task.fields[cps]} chars/s"
                ),
                TimeElapsedColumn(),
                *(
                    [TextColumn("{task.fields[left]} left of the budget")]
                    if info.get("steps") is None
                    else [TextColumn("ETA"), TimeRemainingColumn()]
                ),
                console=self.console,
                transient=False,
            )
            steps = info.get("steps")
            self.task = self.progress.add_task(
                "train",
                total=None if steps is None else int(steps),  # type: ignore[call-overload]  # info's values are objects
                completed=int(info["start_step"]),  # type: ignore[call-overload]  # info's values are objects
                loss="—",
                val="—",
                cps="—",
                left="—",
            )
            # One live display at a time: the bar starts when the spinner stops, at the first step.
            self.compiling = self.console.status("compiling the training step (the first step only)", spinner="dots")
            self.compiling.start()

    def _first_step_done(self) -> None:
        if self.compiling is not None:
            self.compiling.stop()
            self.compiling = None
            if self.progress:
                self.progress.start()

    def event(self, ev: events.Event) -> None:
        self._first_step_done()
        if isinstance(ev, events.EvalEvent):
            self.val = ev.val_loss
            line = f"step {ev.step}: val loss {ev.val_loss:.4f} nats/char ({ev.bits_per_char:.3f} bits/char)"
            if ev.raw_val_loss is not None:
                line += f" · averaged weights; raw weights {ev.raw_val_loss:.4f}"
            if not self.quiet:
                self.console.print(line)
            if self.progress:
                self.progress.update(self.task, val=fmt(ev.val_loss))
            return
        if self.progress:
            left = "—" if self.deadline is None else _minutes(self.deadline - time.monotonic())
            self.progress.update(
                self.task, completed=ev.step, loss=fmt(ev.loss), cps=f"{ev.chars_per_s:,.0f}", left=left
            )
        elif not self.quiet and ev.step % self.log_every == 0:
            self.console.print(
                f"step {ev.step}: loss {ev.loss:.4f} · grad norm {ev.grad_norm:.2f} · lr {ev.lr:.2e} · "
                f"{ev.chars_per_s:,.0f} chars/s"
            )
        if ev.skipped:
            warn(f"step {ev.step}: non-finite loss or gradient, update skipped")

    def plan(self, steps: int, deadline: float) -> None:
        """A time budget's steps, once fitted, and its end (`time.monotonic()`)."""
        self.deadline = deadline
        if self.progress:
            self.progress.update(self.task, total=steps)

    def sample(self, step: int, text: str) -> None:
        if not self.quiet:
            self.console.print(f"[dim]sample at step {step}:[/]\n{escape(text)}\n", soft_wrap=True)

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(escape(text), soft_wrap=True)

    def stop(self) -> None:
        self._first_step_done()
        if self.progress:
            self.progress.stop()
            self.progress = None


def _minutes(seconds: float) -> str:
    m, s = divmod(max(0, round(seconds)), 60)
    return f"{m}:{s:02d}"


class EncodeProgress:
    """Progress of hashing and encoding a large corpus (an `encoded.Progress` callback): a bar per phase on a
    terminal, a line at the start and the end otherwise."""

    LABELS = {"hashing": "checking corpus", "encoding": "encoding corpus", "ordering": "numbering ids"}

    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        self.console, self.quiet = console or err, quiet
        self.progress: Progress | None = None
        self.task: Any = None
        self.phase = ""
        self.t0: float | None = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.quiet:
            return
        self.t0 = self.t0 or time.perf_counter()
        if phase in ("done", "reused"):
            self._finish()
            if phase == "reused":
                self.console.print(f"corpus ({total / 1e6:,.1f} MB): using its encoding cached by an earlier run")
            else:
                seconds = max(time.perf_counter() - self.t0, 1e-9)
                self.console.print(
                    f"corpus ({total / 1e6:,.1f} MB): encoded in {seconds:.1f} s "
                    f"({total / 1e6 / seconds:,.0f} MB/s) and cached for later runs"
                )
            return
        if phase != self.phase:
            self._finish()
            self.phase = phase
            label = self.LABELS.get(phase, phase)
            if self.console.is_terminal:
                self.progress = _bytes_bar(f"[bold]{label}", self.console)
                self.task = self.progress.add_task(label, total=total)
            elif phase == "encoding":
                self.console.print(f"{label} ({total / 1e6:,.1f} MB) into the cache, once: later runs reuse it")
        if self.progress:
            self.progress.update(self.task, completed=done, total=total)

    def _finish(self) -> None:
        if self.progress:
            self.progress.stop()
            self.progress = None


def _bytes_bar(label: str, console: Console) -> Progress:
    """A started, transient bar over bytes: done and total size, speed, time left."""
    bar = Progress(
        TextColumn(label),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    bar.start()
    return bar


class DownloadProgress:
    """The progress of a download (a `download.get` callback): a bar with size, speed and time left on a
    terminal, nothing on a pipe."""

    def __init__(self, label: str, console: Console | None = None) -> None:
        self.label, self.console = label, console or err
        self.progress: Progress | None = None
        self.task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.console.is_terminal:
            return
        if self.progress is None:
            self.progress = _bytes_bar(f"[bold]{escape(self.label)}", self.console)
            self.task = self.progress.add_task(self.label, total=total)
        self.progress.update(self.task, completed=done, total=total)

    def __enter__(self) -> DownloadProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def table(
    title: str,
    columns: Iterable[str],
    rows: Iterable[Iterable[object]],
    console: Console | None = None,
    left: Iterable[str] = (),
) -> None:
    """A simple rich table of already-formatted values (on stdout unless `console` says otherwise). Numbers are
    right-aligned; the columns named in `left` (and a few usual label columns) are left-aligned."""
    console = console or out
    t = Table(title=title, title_justify="left")
    left_aligned = {"", "key", "metric", "cell", "recipe", *left}
    for c in columns:
        # A narrow terminal (or a pipe, 80 columns) wraps a long value instead of cutting a path short.
        t.add_column(c, justify="left" if c in left_aligned else "right", overflow="fold")
    for r in rows:
        t.add_row(*(str(v) for v in r))
    console.print(t)


def native_stdout_to_stderr() -> TextIO:
    """Point file descriptor 1 at stderr, so that messages native libraries print (gloo announces its
    connections on C++'s stdout) stay with the diagnostics; returns a stream to the real stdout, for results."""
    sys.stdout.flush()
    results = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return results
