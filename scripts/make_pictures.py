"""Regenerate the pictures in docs/images/: run a charlstm command in this process and save what its terminal
showed as an SVG (rich's console recording), so every picture is the tool's own output.

    python scripts/make_pictures.py train   [charlstm train options]        -> docs/images/train.svg
    python scripts/make_pictures.py compare [charlstm compare-rnn options]  -> docs/images/compare-rnn.svg
    python scripts/make_pictures.py inspect [charlstm inspect options]      -> docs/images/inspect.svg

The command runs exactly as `charlstm ...` would on a 100-column terminal; the live parts (progress bar, live
chart) are replayed the way a terminal would show them, so the picture is the final screen. Options after the
picture name go to the command, e.g. `python scripts/make_pictures.py compare --steps 1500`.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from rich.console import ColorSystem, Console
from rich.segment import ControlType, Segment
from rich.text import Text

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
WIDTH, HEIGHT = 100, 40

# What each picture runs (after `charlstm`), before the options given on the command line.
PICTURES = {
    "train": ("train.svg", "charlstm train", ["train"]),
    "compare": ("compare-rnn.svg", "charlstm compare-rnn", ["compare-rnn"]),
    "inspect": (
        "inspect.svg",
        'charlstm inspect --text "I went to Jammu. ..." --top 3',
        [
            "inspect",
            "--text",
            "I went to Jammu. It was fun. It was fun. It was fun. I don't speak Kashmiri.\n"
            "I went to Kerala. It was fun. I don't speak Malayalam.\n",
            "--top",
            "3",
        ],
    ),
}


def record(console: Console) -> None:
    """Make one of charlstm's consoles a recording 100-column colour terminal (they are module-level objects,
    and the training display holds a reference, so they are changed in place rather than replaced)."""
    console.record = True
    console._force_terminal = True
    console._color_system = ColorSystem.TRUECOLOR
    console.width, console.height = WIDTH, HEIGHT


def screen(segments: list[Segment]) -> list[list[Segment]]:
    """Replay recorded segments, cursor movements included, and return the lines left on the screen."""
    lines: list[list[Segment]] = [[]]
    row = 0
    for seg in segments:
        if seg.control:
            for code in seg.control:
                kind = code[0]
                if kind == ControlType.CURSOR_UP:
                    row = max(0, row - (code[1] if len(code) > 1 else 1))
                elif kind == ControlType.ERASE_IN_LINE:
                    lines[row] = []
            continue
        parts = seg.text.split("\n")
        for k, part in enumerate(parts):
            if k:
                row += 1
                if row == len(lines):
                    lines.append([])
            if part:
                lines[row].append(Segment(part, seg.style))
    while lines and not lines[-1]:
        lines.pop()
    return lines


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in PICTURES:
        sys.exit(f"usage: python scripts/make_pictures.py {{{'|'.join(PICTURES)}}} [options]")
    filename, title, args = PICTURES[argv[0]]
    from charlstm import perf

    perf.tune_malloc()  # as `charlstm` does, before JAX allocates anything
    from charlstm import ui
    from charlstm.cli import _optional_resume_value, app

    for console in (ui.err, ui.out):
        record(console)
    try:
        app(args=_optional_resume_value(args + argv[1:]), prog_name="charlstm", standalone_mode=False)
    finally:
        shown = screen(list(ui.err._record_buffer)) + screen(list(ui.out._record_buffer))
        picture = Console(record=True, width=WIDTH, file=io.StringIO(), force_terminal=True, color_system="truecolor")
        for line in shown:  # long lines wrap at the last column, as a terminal wraps them
            text = Text.assemble(*((s.text, s.style) for s in line))
            for part in text.divide(range(WIDTH, len(text), WIDTH)) if len(text) > WIDTH else [text]:
                picture.print(part, soft_wrap=True)
        IMAGES.mkdir(parents=True, exist_ok=True)
        picture.save_svg(str(IMAGES / filename), title=" ".join([title, *argv[1:]]))
        print(f"wrote {IMAGES / filename} ({len(shown)} lines)", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
