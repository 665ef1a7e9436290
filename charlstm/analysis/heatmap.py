"""Text heatmaps: each character's background coloured by a value, in the terminal (rich) and as HTML.

The view is generic (it knows nothing about LSTMs): a `Row` is a title, a sequence of (glyph, value) units
and a `Scale`. `charlstm.analysis.inspection_view` builds rows from recorded gate and cell traces; this module only
maps values to colours, wraps the units to a width counted in terminal cells, prints them and writes HTML.

Width is counted with rich's `cell_len`, so CJK characters and emoji take two columns and combining marks
none; control characters are replaced by visible stand-ins (a newline shows as "↵" and ends the line),
because an invisible character cannot show a colour and a raw one would break the layout.

Without colour (NO_COLOR, --color never, a pipe) every line of text gets a line of bars under it instead, one
bar per column, its height the value from the low end (▁) to the high end (█).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.cells import cell_len
from rich.color import Color
from rich.console import Console
from rich.style import Style
from rich.text import Text

RGB = tuple[int, int, int]

Unit = tuple[str, float]  # (glyph as shown, value)

# A diverging blue - near-white - red scale (ColorBrewer RdBu's ends and middle): equal steps away from the
# midpoint read as equally strong either way, and the sign is the hue.
NEGATIVE: RGB = (33, 102, 172)
MIDDLE: RGB = (247, 247, 247)
POSITIVE: RGB = (178, 24, 43)

LEVELS = "▁▂▃▄▅▆▇█"  # the bars drawn under the text without colour: low end to high end
NEWLINE_GLYPH = "↵"
_SPECIAL = {"\n": NEWLINE_GLYPH, "\t": "⇥", "\r": "␍", "\x7f": "␡"}


@dataclass(frozen=True)
class Scale:
    """Maps values to colours: `lo` -> blue, `mid` -> white, `hi` -> red, linear on each side, clamped.

    The two halves are scaled separately, so an asymmetric range (e.g. gates on [0, 1] centred at 0.5, or a
    cell state on [-m, +m]) still puts the midpoint at white.
    """

    lo: float
    mid: float
    hi: float
    label: str = ""

    def unit(self, value: float) -> float:
        """`value` as a position in [-1, 1] (0 at `mid`); NaN and degenerate halves give 0."""
        if not math.isfinite(value):
            return 0.0 if math.isnan(value) else math.copysign(1.0, value)
        span = (self.hi - self.mid) if value >= self.mid else (self.mid - self.lo)
        if span <= 0:
            return 0.0
        return max(-1.0, min(1.0, (value - self.mid) / span))

    def color(self, value: float) -> RGB:
        return diverging(self.unit(value))


def diverging(t: float) -> RGB:
    """Colour of a position t in [-1, 1] on the blue-white-red scale (clamped)."""
    t = max(-1.0, min(1.0, t))
    end = POSITIVE if t >= 0 else NEGATIVE
    a = abs(t)
    return tuple(round(m + (e - m) * a) for m, e in zip(MIDDLE, end))  # type: ignore[return-value]  # 3 channels


def text_color(bg: RGB) -> RGB:
    """Black or white, whichever reads better on `bg` (relative luminance, sRGB weights)."""
    lum = 0.2126 * bg[0] + 0.7152 * bg[1] + 0.0722 * bg[2]
    return (0, 0, 0) if lum > 128 else (255, 255, 255)


def hex_color(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def glyph(ch: str) -> str:
    """What to draw for one character: control characters become visible symbols (U+2400 block)."""
    if ch in _SPECIAL:
        return _SPECIAL[ch]
    if len(ch) == 1 and ord(ch) < 0x20:
        return chr(0x2400 + ord(ch))
    return ch


def width_of(g: str) -> int:
    """Terminal columns a glyph takes (2 for wide CJK/emoji, 0 for combining marks)."""
    return cell_len(g)


@dataclass
class Row:
    """One heatmap line: a title and the text's units under one scale."""

    title: str
    units: Sequence[Unit]
    scale: Scale


@dataclass
class View:
    """A whole page: header lines, legend scales, heatmap rows, notes and tables (title, columns, rows)."""

    title: str
    header: list[str] = field(default_factory=list)
    legends: list[tuple[str, str, str]] = field(default_factory=list)  # (low end, high end, description)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)


# --- wrapping ----------------------------------------------------------------------------------------------


def _tokens(units: Sequence[Unit]) -> Iterable[list[Unit]]:
    """Words with their trailing spaces, and each newline unit on its own (it ends a line)."""
    token: list[Unit] = []
    seen_space = False
    for u in units:
        if u[0] == NEWLINE_GLYPH:
            if token:
                yield token
            yield [u]
            token, seen_space = [], False
            continue
        is_space = u[0].isspace()
        if token and seen_space and not is_space:  # a new word starts after spaces
            yield token
            token, seen_space = [], False
        token.append(u)
        seen_space = seen_space or is_space
    if token:
        yield token


def wrap(units: Sequence[Unit], width: int) -> list[list[Unit]]:
    """Break units into lines of at most `width` terminal columns (width >= 2, so any glyph fits).

    Words move to the next line whole when they fit there; longer words are broken between characters. A
    newline glyph ends its line. Spaces are kept (each carries a value and a colour), so nothing is dropped:
    the concatenated lines are exactly the input.
    """
    width = max(2, width)
    lines: list[list[Unit]] = []
    line: list[Unit] = []
    used = 0
    for token in _tokens(units):
        tw = sum(width_of(g) for g, _ in token)
        if line and used + tw > width and tw <= width:
            lines.append(line)
            line, used = [], 0
        for u in token:
            w = width_of(u[0])
            if line and used + w > width:
                lines.append(line)
                line, used = [], 0
            line.append(u)
            used += w
        if token[-1][0] == NEWLINE_GLYPH:
            lines.append(line)
            line, used = [], 0
    if line:
        lines.append(line)
    return lines


# --- terminal ----------------------------------------------------------------------------------------------


def _style(scale: Scale, value: float) -> Style:
    bg = scale.color(value)
    return Style(color=Color.from_rgb(*text_color(bg)), bgcolor=Color.from_rgb(*bg))


def render_line(line: Sequence[Unit], scale: Scale) -> Text:
    text = Text(no_wrap=True, overflow="ignore", end="")
    for g, v in line:
        text.append(g, _style(scale, v))
    return text


def level(t: float) -> str:
    """The bar for a position t in [-1, 1] (clamped; NaN counts as the middle)."""
    t = 0.0 if math.isnan(t) else max(-1.0, min(1.0, t))
    return LEVELS[min(len(LEVELS) - 1, int((t + 1.0) / 2.0 * len(LEVELS)))]


def render_bars(line: Sequence[Unit], scale: Scale) -> Text:
    """The line of bars under a line of text: as many bars per unit as the columns its glyph takes."""
    return Text("".join(level(scale.unit(v)) * width_of(g) for g, v in line), no_wrap=True, overflow="ignore", end="")


def render(row: Row, width: int, color: bool = True) -> list[Text]:
    """The row's units as wrapped rich Text lines, each at most `width` columns: coloured, or without colour
    each line of text followed by its line of bars."""
    lines = wrap(row.units, width)
    if color:
        return [render_line(line, row.scale) for line in lines]
    plain = [
        [Text("".join(g for g, _ in line), no_wrap=True, overflow="ignore", end=""), render_bars(line, row.scale)]
        for line in lines
    ]
    return [t for pair in plain for t in pair]


def legend(lo: str, hi: str, description: str, swatches: int = 21, color: bool = True) -> Text:
    """`lo ████ hi  description`: the colour bar from the low end through the middle to the high end (without
    colour, the bars from lowest to highest)."""
    text = Text(f"{lo} ", no_wrap=True, end="")
    if not color:
        text.append(f"{LEVELS} {hi}  {description} (bar height under each character)")
        return text
    for k in range(swatches):
        t = -1.0 + 2.0 * k / (swatches - 1)
        text.append("█", Style(color=Color.from_rgb(*diverging(t))))
    text.append(f" {hi}  {description}")
    return text


def print_view(
    console: Console,
    view: View,
    width: int | None = None,
    table: Callable[[str, list[str], list[list[str]]], None] | None = None,
    color: bool | None = None,
) -> None:
    """Header, legends, every row (title line, then the wrapped heatmap), the tables (through `table`, the
    caller's table printer, if given) and the notes, on `console`. `color` defaults to whether the console
    shows colours."""
    width = max(2, width or console.width)
    if color is None:
        color = console.color_system is not None and not console.no_color
    for line in view.header:
        console.print(Text(line), soft_wrap=True)
    for lo, hi, desc in view.legends:
        console.print(legend(lo, hi, desc, color=color), soft_wrap=True)
    for row in view.rows:
        console.print()
        console.print(Text(row.title, style="bold"), soft_wrap=True)
        for rendered in render(row, width, color):
            console.print(rendered, soft_wrap=True)
    if table is not None:
        for title, columns, rows in view.tables:
            table(title, columns, rows)
    for note in view.notes:
        console.print(Text(note, style="dim"), soft_wrap=True)


# --- HTML --------------------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:80em;color:#222}
.heat{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-all;line-height:1.5}
.heat span{padding:1px 0}
.bar{display:inline-block;width:16em;height:1em;vertical-align:middle;border:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}.note{color:#666}h2{font-size:1.05em;margin-top:1.5em}"""


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def html_row(row: Row) -> str:
    """One heatmap as a <div> of <span>s, each with its colour and its value as a tooltip."""
    parts = []
    for g, v in row.units:
        bg = row.scale.color(v)
        tip = f"{row.scale.label} = {v:.3f}" if row.scale.label else f"{v:.3f}"
        style = f"background:{hex_color(bg)};color:{hex_color(text_color(bg))}"
        parts.append(f'<span style="{style}" title="{_esc(tip)}">{_esc(g)}</span>')
        if g == NEWLINE_GLYPH:
            parts.append("<br>")
    return f'<h2>{_esc(row.title)}</h2>\n<div class="heat">{"".join(parts)}</div>'


def _bar() -> str:
    stops = ", ".join(hex_color(diverging(t)) for t in (-1.0, -0.5, 0.0, 0.5, 1.0))
    return f'<span class="bar" style="background:linear-gradient(to right, {stops})"></span>'


def to_html(view: View) -> str:
    """A standalone HTML page (inline CSS, no scripts) of the view; every piece of text is escaped."""
    body = [f"<h1>{_esc(view.title)}</h1>"]
    body += [f"<p>{_esc(line)}</p>" for line in view.header]
    body += [f"<p>{_esc(lo)} {_bar()} {_esc(hi)} &nbsp; {_esc(desc)}</p>" for lo, hi, desc in view.legends]
    body += [html_row(row) for row in view.rows]
    body += [f'<p class="note">{_esc(n)}</p>' for n in view.notes]
    for title, columns, rows in view.tables:
        head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
        cells = "".join("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in r) + "</tr>" for r in rows)
        body.append(f"<h2>{_esc(title)}</h2>\n<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_esc(view.title)}</title>\n'
        f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def write_html(path: Path, view: View) -> None:
    """Write `to_html(view)` as UTF-8 (raises OSError for the caller to report)."""
    Path(path).write_bytes(to_html(view).encode("utf-8"))
