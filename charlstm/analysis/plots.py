"""The charts of `compare-rnn` and `charlstm plot` in the terminal, drawn with `linechart.chart`: a comparison's
loss, accuracy-by-gap, gradient-distance and gradient-norm charts, the loss curves of runs, and the live
displays that redraw them while cells or runs train. The same charts as PNG are `png_charts`'s.

This module imports no JAX (`charlstm plot` starts in a fraction of a second).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypedDict, Unpack

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from charlstm import events  # the training events, without `charlstm.training.loop` and its JAX
from charlstm.analysis.linechart import Series, chart, show

if TYPE_CHECKING:
    from charlstm.analysis.compare import CellCurves, CompareResult
    from charlstm.analysis.compare_sizing import CellSpec
    from charlstm.analysis.runs import Curves as RunCurves


# --- the four charts of a comparison ------------------------------------------------------------------------


class Frame(TypedDict):
    """The size and colour every chart of a comparison is drawn with."""

    width: int
    height: int
    color: bool


def loss_chart(curves: Mapping[str, CellCurves], steps: int, **kw: Unpack[Frame]) -> str:
    """Train (thick) and validation (thin) loss against steps (up to `steps`; 0: the most any cell took), one
    colour per cell."""
    series = []
    for cell, c in curves.items():
        series.append(Series(cell, c.steps, c.loss, label=cell))
        series.append(Series(cell, c.val_steps, c.val_loss, thin=True))
    return chart(
        series,
        title="loss (thick: train, thin: validation)",
        xlabel="step",
        ylabel="nats/char",
        xlim=(0, steps or max((c.steps[-1] for c in curves.values() if c.steps), default=1)),
        legend_at="top right",
        **kw,
    )


def grad_norm_chart(result: CompareResult, **kw: Unpack[Frame]) -> str:
    """The global gradient norm (before clipping) at every training step, log scale."""
    series = [Series(r.spec.cell, r.curves.steps, r.curves.grad_norm, label=r.spec.cell) for r in result.cells]
    clip = result.config.optim.clip_norm if result.clip else 0.0
    title = f"gradient norm per step ({f'clipped at {clip:g}' if clip > 0 else 'no clipping'}), log scale"
    return chart(
        series,
        title=title,
        xlabel="step",
        ylabel="global grad norm",
        log_y=True,
        xlim=(0, result.config.train.steps),
        legend_at="top right",
        **kw,
    )


def gradflow_chart(result: CompareResult, **kw: Unpack[Frame]) -> str:
    """|| d loss_T / d h_{T-k} || against k: thin at initialisation, thick after training, log scale."""
    series = []
    for r in result.cells:
        ks = list(range(len(r.grad_final)))
        series.append(Series(r.spec.cell, ks[1:], list(r.grad_final[1:]), label=r.spec.cell))
        series.append(Series(r.spec.cell, ks[1:], list(r.grad_init[1:]), thin=True))
    return chart(
        series,
        title="|d loss_T / d h_(T-k)| (thick: trained, thin: at init), log scale",
        xlabel="k (steps back)",
        ylabel="grad norm",
        log_y=True,
        legend_at="bottom left",
        **kw,
    )


def longrange_chart(result: CompareResult, **kw: Unpack[Frame]) -> str | None:
    """Language-word accuracy by gap bucket per cell, with chance as a dotted line (None if not measured)."""
    measured = [r for r in result.cells if r.longrange]
    if not measured:
        return None
    from charlstm.evaluation import longrange  # needs JAX; only a finished comparison gets here

    labels = [longrange.bucket_label(lo, hi) for lo, hi in longrange.BUCKETS]
    series = []
    for r in measured:
        pts = [(k + 1, b.accuracy) for k, b in enumerate(r.longrange or []) if b.count]
        series.append(Series(r.spec.cell, [x for x, _ in pts], [y for _, y in pts], label=r.spec.cell))
    # Two spare slots on the right hold the legend, clear of the data.
    return chart(
        series,
        title="language-word accuracy by gap (characters between place and language)",
        xlabel="gap",
        ylabel="accuracy",
        xlim=(0.5, len(labels) + 2),
        ylim=(0.0, 1.0),
        xticks=(list(range(1, len(labels) + 1)), labels),
        hline=(result.chance, "chance") if result.chance else None,
        legend_at="top right",
        **kw,
    )


def charts(result: CompareResult, width: int, height: int, color: bool) -> list[str]:
    """All charts of a finished comparison, as strings, in reading order."""
    kw = Frame(width=width, height=height, color=color)
    curves = {r.spec.cell: r.curves for r in result.cells}
    steps = 0 if result.config.train.time else result.config.train.steps  # equal time: each cell its own steps
    out = [loss_chart(curves, steps, **kw)]
    by_gap = longrange_chart(result, **kw)
    if by_gap is not None:
        out.append(by_gap)
    out += [gradflow_chart(result, **kw), grad_norm_chart(result, **kw)]
    return out


# --- loss curves of runs (`charlstm plot`) ------------------------------------------------------------------

RUN_COLORS = (12, 9, 10, 11, 13, 14, 208, 250)  # blue, red, green, yellow, magenta, cyan, orange, grey
RUN_LETTERS = "abcdefghijklmnopqrstuvwxyz"  # without colour: lowercase train, uppercase validation


def _drop_nan_x(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    pts = [(a, b) for a, b in zip(xs, ys) if math.isfinite(a)]
    return [a for a, _ in pts], [b for _, b in pts]


def runs_chart(
    curves: Sequence[RunCurves],
    *,
    x: str = "steps",
    log_y: bool = False,
    smooth: float = 0.6,
    whole_run: bool = False,
    width: int = 100,
    height: int = 20,
    color: bool = True,
) -> str:
    """Training loss (smoothed, thick) and validation loss (thin) of several runs, one colour and letter each,
    against steps or minutes since each run was created. `whole_run`: the step axis spans train.steps, so that
    a run in progress grows to the right (else it spans the steps recorded)."""
    from charlstm.analysis.runs import ema

    series = []
    for k, c in enumerate(curves):
        pixel, letter = RUN_COLORS[k % len(RUN_COLORS)], RUN_LETTERS[k % len(RUN_LETTERS)]
        train_x, train_y = _drop_nan_x(c.x_values(x, False), ema(c.loss, smooth))
        val_x, val_y = _drop_nan_x(c.x_values(x, True), c.val_loss)
        series.append(Series(c.name, train_x, train_y, label=c.name, color=pixel, marker=letter))
        series.append(Series(c.name, val_x, val_y, thin=True, color=pixel, marker=letter.upper()))
    smoothed = f"EMA {smooth:g}" if smooth > 0 else "raw"
    key = "thick" if color else "lowercase"
    title = f"loss ({key}: train, {smoothed}; {'thin' if color else 'uppercase'}: validation)"
    total = max((c.total_steps for c in curves), default=0)
    xlim = (0.0, float(total)) if whole_run and x == "steps" and total > 0 else None
    return chart(
        series,
        title=title,
        xlabel="step" if x == "steps" else "minutes",
        ylabel="nats/char",
        log_y=log_y,
        xlim=xlim,
        width=width,
        height=height,
        color=color,
    )


def follow(
    draw: Callable[[], str], active: Callable[[], bool], console: Console, color: bool, poll_s: float = 1.0
) -> None:
    """Redraw the chart `draw()` returns every `poll_s` seconds while `active()` (a run is training), then a last
    time. On a terminal it refreshes in place; elsewhere only the final chart is printed. Ctrl-C stops following
    and leaves the chart as it was last drawn."""

    def frame() -> Text:
        text = draw()
        return Text.from_ansi(text) if color else Text(text)

    if not console.is_terminal:
        try:
            while active():
                time.sleep(poll_s)
        except KeyboardInterrupt:
            pass
        show(draw(), console, color)
        return
    with Live(frame(), console=console, auto_refresh=False, transient=False) as live:
        try:
            while active():
                time.sleep(poll_s)
                live.update(frame(), refresh=True)
        except KeyboardInterrupt:
            pass
        live.update(frame(), refresh=True)  # the rows written between the last poll and the end


# --- the live display ---------------------------------------------------------------------------------------


class LiveDisplay:
    """While cells train: a live loss chart on a terminal; plain progress lines otherwise; nothing if quiet.

    Implements `compare.CompareReporter`. Redraws are throttled to one per `every_s` seconds (and one per
    evaluation), so drawing takes a small share of the training time. Without `color` the chart tells the
    cells apart by letters.
    """

    def __init__(
        self, console: Console, quiet: bool = False, every_s: float = 0.5, log_every: int = 100, color: bool = True
    ) -> None:
        self.console, self.quiet, self.every_s, self.log_every = console, quiet, every_s, log_every
        self.color = color
        self.live_mode = console.is_terminal and not quiet
        self.live: Live | None = None
        self.plan: list[CellSpec] = []
        self.steps = 0
        self.last_draw = 0.0

    def start(self, plan: list[CellSpec], steps: int) -> None:
        self.plan, self.steps = plan, steps
        if not self.quiet:
            sizes = ", ".join(f"{s.cell} {s.hidden} hidden ({s.params:,} params)" for s in plan)
            each = f"each until it stops improving (at most {steps} steps)" if steps else "the same training time each"
            self.console.print(f"training {sizes}; same seed and batches, {each}")
        if self.live_mode:
            self.live = Live(console=self.console, auto_refresh=False, transient=True)
            self.live.start()

    def _frame(self, cell: str, ev: events.Event, curves: Mapping[str, CellCurves]) -> RenderableType:
        index = next((k for k, s in enumerate(self.plan) if s.cell == cell), 0) + 1
        c = curves[cell]
        val = f" · val {c.val_loss[-1]:.4f}" if c.val_loss else ""
        cps = f" · {c.chars_per_s[-1]:,.0f} chars/s" if c.chars_per_s else ""
        head = Text.from_markup(
            f"[bold]{escape(cell)}[/] ({index}/{len(self.plan)}) step {ev.step}/{self.steps}"
            f" · loss {c.loss[-1]:.4f}{val}{cps}"
            if c.loss
            else f"[bold]{escape(cell)}[/]"
        )
        width = max(40, self.console.width - 1)
        height = max(10, min(22, self.console.height - 3))
        chart_text = loss_chart(curves, self.steps, width=width, height=height, color=self.color)
        return Group(head, Text.from_ansi(chart_text) if self.color else Text(chart_text))

    def event(self, cell: str, ev: events.Event, curves: Mapping[str, CellCurves]) -> None:
        if self.quiet:
            return
        if isinstance(ev, events.StepEvent) and ev.skipped:
            self.message(f"{cell} step {ev.step}: non-finite loss or gradient, update skipped")
        if self.live is not None:
            now = time.perf_counter()
            if now - self.last_draw >= self.every_s or isinstance(ev, events.EvalEvent):
                self.live.update(self._frame(cell, ev, curves), refresh=True)
                self.last_draw = time.perf_counter()
        elif isinstance(ev, events.EvalEvent):
            c = curves[cell]
            self.console.print(
                f"{cell} step {ev.step}: loss {c.loss[-1]:.4f} · val loss {ev.val_loss:.4f} nats/char "
                f"({ev.bits_per_char:.3f} bits/char)"
            )

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(escape(text), soft_wrap=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
