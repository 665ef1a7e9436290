"""Regenerate the pictures in docs/images/: run a charlstm command in this process and save what its terminal
showed as an SVG (rich's console recording), so every picture is the tool's own output.

    python scripts/make_pictures.py train   [charlstm train options]        -> docs/images/train.svg
    python scripts/make_pictures.py compare [charlstm compare-rnn options]  -> docs/images/compare-rnn.svg
    python scripts/make_pictures.py inspect [charlstm inspect options]      -> docs/images/inspect.svg

The command runs exactly as `charlstm ...` would on a 100-column terminal; the live parts (progress bar, live
chart) are replayed the way a terminal would show them, so the picture is the final screen. Options after the
picture name go to the command, e.g. `python scripts/make_pictures.py compare --steps 1500`; `--images DIR`
before the name writes the picture to DIR instead of docs/images.

Run it from a scratch directory, so that runs go to ./runs and show as runs/NAME: a picture that would show a
path of this machine (the working directory, the home or the temporary directory) is refused.
"""

from __future__ import annotations

import io
import sys
import tempfile
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
        'charlstm inspect --text "Jammu is a beautiful place. ..." --top 3',
        [
            "inspect",
            "--text",
            "Jammu is a beautiful place. I went there last year, but I couldn't enjoy it because I don't understand"
            " the Kashmiri language.\nI went to Kerala. A room cost Rs. 1,200 a night. I don't speak Malayalam.\n",
            "--top",
            "3",
        ],
    ),
}


def record(console: Console) -> None:
    """Make one of charlstm's consoles a recording 100-column colour terminal (they are module-level objects,
    and the training display holds a reference, so they are changed in place rather than replaced)."""
    console.record = True
    del console._record_buffer[:]  # this picture only, even after another in the same process
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


def machine_paths(text: str) -> list[str]:
    """The absolute paths of this machine that `text` shows: the working directory, the home, the temporary one."""
    places = {str(Path.cwd()), str(Path.home()), tempfile.gettempdir(), str(Path(tempfile.gettempdir()).resolve())}
    return sorted(p for p in places if len(p) > 1 and p in text)


def main(argv: list[str]) -> int:
    """Make one picture; returns the command's exit code (the picture is written whatever it is)."""
    images = IMAGES
    if argv[:1] == ["--images"] and len(argv) > 1:
        images, argv = Path(argv[1]), argv[2:]
    if not argv or argv[0] not in PICTURES:
        sys.exit(f"usage: python scripts/make_pictures.py [--images DIR] {{{'|'.join(PICTURES)}}} [options]")
    filename, title, args = PICTURES[argv[0]]
    from charlstm import cli, ui

    for console in (ui.err, ui.out):
        record(console)
    try:
        code = cli.run(args + argv[1:])  # as `charlstm ...` runs it, malloc settings included
    finally:
        shown = screen(list(ui.err._record_buffer)) + screen(list(ui.out._record_buffer))
        picture = Console(record=True, width=WIDTH, file=io.StringIO(), force_terminal=True, color_system="truecolor")
        for line in shown:  # long lines wrap at the last column, as a terminal wraps them
            text = Text.assemble(*((s.text, s.style) for s in line))
            for part in text.divide(range(WIDTH, len(text), WIDTH)) if len(text) > WIDTH else [text]:
                picture.print(part, soft_wrap=True)
        found = machine_paths(picture.export_text(clear=False))
        if found:
            sys.exit(f"error: the picture would show {', '.join(found)}: run from a scratch directory, with ./runs")
        images.mkdir(parents=True, exist_ok=True)
        picture.save_svg(str(images / filename), title=" ".join([title, *argv[1:]]))
        print(f"wrote {images / filename} ({len(shown)} lines)", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
