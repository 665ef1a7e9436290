"""Line charts in the terminal with plotext (inside rich), and as PNG with matplotlib: the charts of a
`compare-rnn` run and the loss curves of `charlstm plot`, all drawn by one function, `chart`.

plotext 6 draws on one master figure (`plotext.figure`): every chart here clears it, adds signals with
`figure.signal(...)` + `figure.draw(...)`, and turns `figure.build()` into a string, which rich shows with
`Text.from_ansi`. Log axes are drawn as log10 of the data on a linear axis with "1e-3"-style tick labels:
explicit limits and ticks are then exact, and the legend can be placed in data units.

matplotlib is optional (`pip install 'charlstm[plots]'`); only the PNG writers need it. This module imports no
JAX (`charlstm plot` starts in a fraction of a second).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import plotext
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from charlstm import events  # the training events, without `charlstm.training.loop` and its JAX
from charlstm.errors import UserError

if TYPE_CHECKING:
    from charlstm.analysis.compare import CellSpec, CompareResult, Curves
    from charlstm.analysis.runs import Curves as RunCurves

CELL_COLORS = {"rnn": 9, "lstm": 12, "gru": 10}  # 256-colour codes: bright red, blue, green
PLAIN_MARKERS = {"rnn": "r", "lstm": "l", "gru": "g"}  # without colour, the letter tells the cells apart
MPL_COLORS = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
MAX_POINTS = 300  # per series: more than a terminal row can show, few enough to draw in milliseconds


@dataclass(frozen=True)
class Series:
    cell: str
    xs: Sequence[float]
    ys: Sequence[float]
    label: str | None = None  # only labelled series enter the legend
    thin: bool = False  # the secondary curve of a cell (validation, or at initialisation)
    color: int | None = None  # 256-colour code; None: the cell's colour
    marker: str | None = None  # the letter drawn without colour; None: the cell's letter


def _finite(xs: Sequence[float], ys: Sequence[float], log: bool) -> tuple[list[float], list[float]]:
    """Drop non-finite points (and non-positive ones on a log axis), then log10 if asked."""
    pts = [(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(y) and (y > 0 or not log)]
    return [x for x, _ in pts], [math.log10(y) if log else y for _, y in pts]


def _bin_mean(xs: list[float], ys: list[float], n: int = MAX_POINTS) -> tuple[list[float], list[float]]:
    """Average into at most n bins: fewer points to draw, and noisy per-step losses become a readable line."""
    if len(xs) <= n:
        return xs, ys
    edges = [round(k * len(xs) / n) for k in range(n + 1)]
    bx = [sum(xs[a:b]) / (b - a) for a, b in zip(edges, edges[1:]) if b > a]
    by = [sum(ys[a:b]) / (b - a) for a, b in zip(edges, edges[1:]) if b > a]
    return bx, by


def _nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Round tick positions (1, 2 or 5 times a power of ten apart) within [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def _tick_label(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e5 else f"{v:.0e}"


def chart(
    series: Sequence[Series],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    width: int = 100,
    height: int = 20,
    log_y: bool = False,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    xticks: tuple[list[float], list[str]] | None = None,
    hline: tuple[float, str] | None = None,
    legend_at: str = "top right",
    color: bool = True,
) -> str:
    """One line chart as a string (ANSI-coloured with `color`). Thick lines: main curves; thin: secondary."""
    pts = [(s, *_bin_mean(*_finite(s.xs, s.ys, log_y))) for s in series]
    pts = [(s, x, y) for s, x, y in pts if x]
    fig = plotext.figure
    fig.clear()
    fig.theme("simple" if color else "colorless")  # "simple": no painted background, coloured signals
    plotext.terminal.limit(False, False)  # the size is ours to pick, also when stdout is not a terminal
    fig.plot_size(max(width, 30), max(height, 8))
    fig.title(title)
    fig.label(xlabel, "x")
    fig.label(ylabel, "y")
    if not pts:
        fig.draw(fig.text(0.5, 0.5, "no data yet"))
        fig.ruler("x").lim(0, 1)
        fig.ruler("y").lim(0, 1)
        return fig.build().string(colorless=not color)
    for s, xs, ys in pts:
        if color:
            pixel = s.color if s.color is not None else CELL_COLORS.get(s.cell, 15)
            mark = plotext.marker("braille" if s.thin else "hd", pixel=pixel)
        else:
            letter = s.marker or PLAIN_MARKERS.get(s.cell, s.cell[:1])
            mark = plotext.marker(letter.upper() if s.thin else letter)
        sig = fig.signal(xs, ys, marker=mark).lines()
        if s.label:
            sig.label(s.label)
        fig.draw(sig)
    all_x = [x for _, xs, _ in pts for x in xs]
    all_y = [y for _, _, ys in pts for y in ys] + ([math.log10(hline[0]) if log_y else hline[0]] if hline else [])
    x0, x1 = xlim or (min(all_x), max(all_x) if max(all_x) > min(all_x) else min(all_x) + 1)
    if log_y:  # whole decades, so every tick is a power of ten
        y0, y1 = math.floor(min(all_y)), math.ceil(max(all_y))
        y1 = y1 if y1 > y0 else y0 + 1
        stride = max(1, math.ceil((y1 - y0) / 6))
        ticks = list(range(y1, y0 - 1, -stride))[::-1]
        fig.ruler("y").ticks(ticks, [f"1e{t}" for t in ticks])
    else:
        y0, y1 = ylim or (min(all_y), max(all_y))
        y1 = y1 if y1 > y0 else y0 + 1
        ticks_y = _nice_ticks(y0, y1, 5)
        fig.ruler("y").ticks(ticks_y, [_tick_label(t) for t in ticks_y])
    fig.ruler("x").lim(x0, x1)
    fig.ruler("y").lim(y0, y1)
    if xticks:
        fig.ruler("x").ticks(*xticks)
    else:
        ticks_x = _nice_ticks(x0, x1, 7)
        fig.ruler("x").ticks(ticks_x, [_tick_label(t) for t in ticks_x])
    if hline:
        fig.line(
            math.log10(hline[0]) if log_y else hline[0], pixel=8 if color else None, style="dotted", label=hline[1]
        )
    corners = {
        "top right": (x1, y1, "right", "top"),
        "bottom left": (x0, y0, "left", "bottom"),
        "top left": (x0, y1, "left", "top"),
        "bottom right": (x1, y0, "right", "bottom"),
    }
    lx, ly, ha, va = corners[legend_at]
    fig.legend(x=lx, y=ly, relative=True, ha=ha, va=va)
    return fig.build().string(colorless=not color)


# --- the four charts of a comparison ------------------------------------------------------------------------


def loss_chart(curves: Mapping[str, Curves], steps: int, **kw: object) -> str:
    """Train (thick) and validation (thin) loss against steps, one colour per cell."""
    series = []
    for cell, c in curves.items():
        series.append(Series(cell, c.steps, c.loss, label=cell))
        series.append(Series(cell, c.val_steps, c.val_loss, thin=True))
    return chart(
        series,
        title="loss (thick: train, thin: validation)",
        xlabel="step",
        ylabel="nats/char",
        xlim=(0, steps),
        legend_at="top right",
        **kw,
    )  # type: ignore[arg-type]


def grad_norm_chart(result: CompareResult, **kw: object) -> str:
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
    )  # type: ignore[arg-type]


def gradflow_chart(result: CompareResult, **kw: object) -> str:
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
    )  # type: ignore[arg-type]


def longrange_chart(result: CompareResult, **kw: object) -> str | None:
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
    )  # type: ignore[arg-type]


def charts(result: CompareResult, width: int, height: int, color: bool) -> list[str]:
    """All charts of a finished comparison, as strings, in reading order."""
    kw = {"width": width, "height": height, "color": color}
    curves = {r.spec.cell: r.curves for r in result.cells}
    out = [loss_chart(curves, result.config.train.steps, **kw)]  # type: ignore[arg-type]
    lr = longrange_chart(result, **kw)  # type: ignore[arg-type]
    if lr is not None:
        out.append(lr)
    out += [gradflow_chart(result, **kw), grad_norm_chart(result, **kw)]  # type: ignore[arg-type]
    return out


def show(text: str, console: Console, color: bool) -> None:
    """Print a chart string: parsed from ANSI on a colour console, verbatim otherwise."""
    console.print(Text.from_ansi(text) if color else Text(text), soft_wrap=True, no_wrap=True, crop=False)


# --- loss curves of runs (`charlstm plot`) ------------------------------------------------------------------

RUN_COLORS = (12, 9, 10, 11, 13, 14, 208, 250)  # blue, red, green, yellow, magenta, cyan, orange, grey
RUN_LETTERS = "abcdefghijklmnopqrstuvwxyz"  # without colour: lowercase train, uppercase validation
MPL_RUN_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:olive", "tab:purple", "tab:cyan", "tab:orange", "tab:gray")
MPL_RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _xs(c: RunCurves, x: str, val: bool) -> list[float]:
    if x == "minutes":
        return list(c.val_minutes if val else c.minutes)
    return [float(s) for s in (c.val_steps if val else c.steps)]


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
        train_x, train_y = _drop_nan_x(_xs(c, x, False), ema(c.loss, smooth))
        val_x, val_y = _drop_nan_x(_xs(c, x, True), c.val_loss)
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

    Implements `compare.CompareReporter`. Redraws are throttled (a chart takes ~20 ms, a step ~100 ms). Without
    `color` the chart tells the cells apart by letters.
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
            self.console.print(f"training {sizes}; {steps} steps each, same seed and batches")
        if self.live_mode:
            self.live = Live(console=self.console, auto_refresh=False, transient=True)
            self.live.start()

    def _frame(self, cell: str, ev: events.Event, curves: Mapping[str, Curves]) -> RenderableType:
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

    def event(self, cell: str, ev: events.Event, curves: Mapping[str, Curves]) -> None:
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


# --- PNG ----------------------------------------------------------------------------------------------------


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def matplotlib_figure(instead: str) -> type:
    """matplotlib's Figure, or a UserError that says how to install it (`instead`: what else the user can do)."""
    try:
        from matplotlib.figure import Figure  # the object API: no pyplot state, no GUI backend
    except ImportError:
        raise UserError(
            "PNG charts need matplotlib, which is not installed",
            f'pip install "charlstm[plots]" (or matplotlib), or {instead}',
        ) from None
    return Figure


def save_runs_png(
    curves: Sequence[RunCurves], path: Path, *, x: str = "steps", log_y: bool = False, smooth: float = 0.6
) -> None:
    """The `runs_chart` as a PNG: raw training loss faint, smoothed solid, validation dashed with markers."""
    from charlstm.analysis.runs import ema

    fig = matplotlib_figure("write a .csv instead")(figsize=(9, 5))
    ax = fig.add_subplot()
    for k, c in enumerate(curves):
        col, mark = MPL_RUN_COLORS[k % len(MPL_RUN_COLORS)], MPL_RUN_MARKERS[k % len(MPL_RUN_MARKERS)]
        xs = _xs(c, x, False)
        ax.plot(xs, c.loss, color=col, alpha=0.25, lw=0.8)
        ax.plot(xs, ema(c.loss, smooth), color=col, lw=1.6, label=f"{c.name} train")
        ax.plot(_xs(c, x, True), c.val_loss, color=col, ls="--", marker=mark, ms=4, label=f"{c.name} validation")
    if log_y:
        ax.set_yscale("log")
    smoothed = f"EMA {smooth:g}" if smooth > 0 else "raw"
    ax.set(
        xlabel="step" if x == "steps" else "minutes since the run was created",
        ylabel="loss (nats/char)",
        title=f"training loss (faint: raw, solid: {smoothed}) and validation loss",
    )
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}", "choose another --out path") from None


def save_pngs(result: CompareResult, out: Path) -> list[Path]:
    """loss.png, longrange.png (if measured), gradflow.png and grad_norm.png in `out`."""
    Figure = matplotlib_figure("leave out --out")
    written = []

    def save(name: str, fig: Figure) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        written.append(out / name)

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    for r in result.cells:
        col = MPL_COLORS.get(r.spec.cell)
        ax.plot(r.curves.steps, r.curves.loss, color=col, alpha=0.35, lw=0.8)
        ax.plot(r.curves.val_steps, r.curves.val_loss, color=col, marker="o", ms=3, label=f"{r.spec.cell} (val)")
    ax.set(xlabel="step", ylabel="loss (nats/char)", title="train (faint) and validation loss")
    ax.legend()
    save("loss.png", fig)

    if any(r.longrange for r in result.cells):
        from charlstm.evaluation import longrange

        fig = Figure(figsize=(8, 4.5))
        ax = fig.add_subplot()
        labels = [longrange.bucket_label(lo, hi) for lo, hi in longrange.BUCKETS]
        for r in result.cells:
            if r.longrange:
                ax.plot(
                    labels,
                    [b.accuracy for b in r.longrange],
                    marker="o",
                    color=MPL_COLORS.get(r.spec.cell),
                    label=r.spec.cell,
                )
        if result.chance:
            ax.axhline(result.chance, color="gray", ls=":", label="chance")
        ax.set(xlabel="gap (characters)", ylabel="accuracy", ylim=(0, 1.02), title="language-word accuracy by gap")
        ax.legend()
        save("longrange.png", fig)

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    for r in result.cells:
        col = MPL_COLORS.get(r.spec.cell)
        ks = range(1, len(r.grad_final))
        ax.semilogy(ks, r.grad_init[1:], color=col, ls="--", lw=1, label=f"{r.spec.cell} at init")
        ax.semilogy(ks, r.grad_final[1:], color=col, lw=1.5, label=f"{r.spec.cell} trained")
    ax.set(xlabel="k (steps back)", ylabel="|d loss_T / d h_(T-k)|", title="gradient reaching back k steps")
    ax.legend()
    save("gradflow.png", fig)

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    for r in result.cells:
        ax.semilogy(r.curves.steps, r.curves.grad_norm, color=MPL_COLORS.get(r.spec.cell), lw=0.8, label=r.spec.cell)
    ax.set(xlabel="step", ylabel="global gradient norm", title="gradient norm per step (before clipping)")
    ax.legend()
    save("grad_norm.png", fig)
    return written
