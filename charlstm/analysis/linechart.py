"""Line charts in the terminal with plotext: `chart` draws every chart of `compare-rnn` and `charlstm plot`, and
`show` prints one. Like heatmap.py for `inspect`, this is the generic drawing layer: series in, a string out.

plotext 6 draws on one master figure (`plotext.figure`): every chart here clears it, adds signals with
`figure.signal(...)` + `figure.draw(...)`, and turns `figure.build()` into a string, which rich shows with
`Text.from_ansi`. Log axes are drawn as log10 of the data on a linear axis with "1e-3"-style tick labels:
explicit limits and ticks are then exact, and the legend can be placed in data units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import plotext
from rich.console import Console
from rich.text import Text

CELL_COLORS = {"rnn": 9, "lstm": 12, "gru": 10}  # 256-colour codes: bright red, blue, green
PLAIN_MARKERS = {"rnn": "r", "lstm": "l", "gru": "g"}  # without colour, the letter tells the cells apart
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
    y0: float
    y1: float
    if log_y:  # whole decades, so every tick is a power of ten
        d0, d1 = math.floor(min(all_y)), math.ceil(max(all_y))
        d1 = d1 if d1 > d0 else d0 + 1
        stride = max(1, math.ceil((d1 - d0) / 6))
        ticks = list(range(d1, d0 - 1, -stride))[::-1]
        fig.ruler("y").ticks(ticks, [f"1e{t}" for t in ticks])
        y0, y1 = d0, d1
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


def show(text: str, console: Console, color: bool) -> None:
    """Print a chart string: parsed from ANSI on a colour console, verbatim otherwise."""
    console.print(Text.from_ansi(text) if color else Text(text), soft_wrap=True, no_wrap=True, crop=False)
