"""Commands that look into runs: `inspect` (gates and memory cells reading text), `runs` (the list of runs) and
`plot` (loss curves)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

from charlstm import ui
from charlstm.cli._app import CkptOpt, RunOpt, RunsDirOpt, complete_runs, user_errors
from charlstm.errors import UsageError, UserError


class Show(str, Enum):  # what `inspect` can draw; which of them a run has depends on its cell
    forget = "forget"
    input = "input"
    output = "output"
    cell = "cell"
    update = "update"
    reset = "reset"
    hidden = "hidden"


class XAxis(str, Enum):
    steps = "steps"
    minutes = "minutes"


@user_errors
def inspect_(
    run: str | None = RunOpt,
    runs_dir: Path = RunsDirOpt,
    checkpoint: str = CkptOpt,
    text: str | None = typer.Option(None, "--text", metavar="TEXT", help="The text to read."),
    file: Path | None = typer.Option(
        None, "--file", metavar="FILE", help="Read the text from a UTF-8 file (a bundled corpus adds place memory)."
    ),
    layer: int | None = typer.Option(
        None, "--layer", metavar="N", show_default="the last", help="Layer to show, counted from 1."
    ),
    cell: list[int] = typer.Option([], "--cell", metavar="N", help="Show this cell, 0..hidden-1 (repeatable)."),
    top: int | None = typer.Option(
        None, "--top", metavar="K", show_default="5", help="Show the K cells that best track simple text properties."
    ),
    show: Show | None = typer.Option(
        None,
        "--show",
        show_default="cell (LSTM), hidden (others)",
        help="LSTM: forget, input, output, cell or hidden; GRU: update, reset or hidden; RNN: hidden.",
    ),
    html: Path | None = typer.Option(
        None, "--html", metavar="FILE", help="Also write the view as a standalone HTML page."
    ),
    max_chars: int = typer.Option(
        20000, "--max-chars", metavar="N", help="Read at most this many characters of the text."
    ),
    display_chars: int = typer.Option(
        800, "--display-chars", metavar="N", help="Draw at most this many characters per cell."
    ),
    skip_unknown: bool = typer.Option(
        True, "--skip-unknown", hidden=True, help="Kept for old scripts: characters not in the vocabulary are skipped."
    ),
) -> None:
    """Watch the gates and memory cells read text: one coloured line per cell, gate saturation, place memory."""
    if display_chars < 1:
        raise UsageError(f"--display-chars must be at least 1 (got {display_chars})", "e.g. --display-chars 800")
    from charlstm import api
    from charlstm.analysis import heatmap, inspection, inspection_view

    source = inspection.load_text(text, file, max_chars)
    model = api.load(run, checkpoint, runs_dir=runs_dir, on_warning=ui.warn)
    report = inspection.analyse(
        model.params,
        model.config.model,
        model.vocab,
        source.text,
        layer=layer,
        cells=cell,
        top=top,
        show=show.value if show else None,
        records=source.records,
    )
    notes = [f"read the first {max_chars:,} characters of {file} (--max-chars)"] if source.truncated else []
    view = inspection_view.inspect_view(report, f"{model.run_dir.name}, step {model.step}", display_chars, notes)
    heatmap.print_view(ui.out, view, table=ui.table, color=ui.color_on(ui.out))
    if html is not None:
        try:
            heatmap.write_html(html, view)
        except OSError as err:
            raise UserError(
                f"cannot write {html}: {err.strerror}", "check the directory exists and is writable"
            ) from None
        ui.info(f"wrote {html}")


@user_errors
def runs_(
    runs_dir: Path = RunsDirOpt,
    json_out: bool = typer.Option(False, "--json", help="One JSON list of runs on stdout, newest first."),
) -> None:
    """List the runs, newest first: model, progress, best and last validation loss, speed, wall time, status
    (running, finished, interrupted, failed)."""
    from rich.markup import escape

    from charlstm.analysis import runs as runs_lib

    found = runs_lib.list_runs(runs_dir)
    if json_out:
        print(json.dumps([r.to_json() for r in found]))
        return
    if not found:
        ui.info(f"no runs in {runs_dir} (train one with `charlstm train`)")
        return
    styles = {"running": "cyan", "finished": "green", "interrupted": "yellow", "failed": "red", "damaged": "red"}
    columns, rows = runs_lib.table_rows(found)
    rows = [[*map(escape, row[:-1]), f"[{styles[r.status]}]{escape(row[-1])}[/]"] for r, row in zip(found, rows)]
    ui.table(f"runs in {runs_dir}", columns, rows, left=("run", "corpus", "model", "status"))


@user_errors
def plot(
    runs: list[str] = typer.Argument(
        None,
        metavar="RUN",
        autocompletion=complete_runs,
        help="Runs to draw: names in --runs-dir, or directories (default: the newest).",
    ),
    runs_dir: Path = RunsDirOpt,
    x: XAxis = typer.Option(XAxis.steps, "--x", help="The x axis: training steps, or minutes since each run started."),
    log_y: bool = typer.Option(False, "--log-y", help="Logarithmic loss axis."),
    smooth: float = typer.Option(
        0.6, "--smooth", metavar="W", help="EMA weight for the training loss: 0 (raw) to below 1."
    ),
    follow: bool = typer.Option(False, "--follow", "-f", help="Redraw as the runs train, until none is (or Ctrl-C)."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        metavar="FILE",
        help="Also write the curves to FILE.csv, or the chart to "
        'FILE.png (needs matplotlib: pip install "charlstm[plots]").',
    ),
) -> None:
    """Training (smoothed) and validation loss of one or more runs, in the terminal; live with --follow."""
    if not 0.0 <= smooth < 1.0:
        raise UsageError(f"--smooth must be in [0, 1) (got {smooth:g})", "e.g. --smooth 0.9; 0 draws the raw loss")
    if out is not None and out.suffix.lower() not in (".csv", ".png"):
        raise UsageError(f"--out must end in .csv or .png (got {out.name})", "e.g. --out loss.csv")
    from charlstm.analysis import linechart, plots, png_charts
    from charlstm.analysis import runs as runs_lib
    from charlstm.training import rundir

    if out is not None and out.suffix.lower() == ".png":
        png_charts.matplotlib_figure("write a .csv instead")  # no matplotlib: say so before drawing anything
    found = runs_lib.resolve_all(runs or [], runs_dir)
    color = ui.color_on(ui.out)

    def draw() -> str:
        curves = [runs_lib.read_curves(r) for r in found]
        height = max(12, min(24, ui.out.height - 2)) if ui.out.is_terminal else 20
        return plots.runs_chart(
            curves,
            x=x.value,
            log_y=log_y,
            smooth=smooth,
            whole_run=follow,
            width=min(ui.out.width, 120),
            height=height,
            color=color,
        )

    def training() -> bool:
        return any(rundir.is_locked(r) for r in found)

    if follow and training():
        plots.follow(draw, training, ui.out, color)
    else:
        if follow:
            ui.info("--follow: no run is training now; drawing it as it is")
        linechart.show(draw(), ui.out, color)
    if out is not None:
        curves = [runs_lib.read_curves(r) for r in found]
        if out.suffix.lower() == ".csv":
            runs_lib.write_csv(curves, out, smooth)
        else:
            png_charts.save_runs_png(curves, out, x=x.value, log_y=log_y, smooth=smooth)
        ui.info(f"wrote {out}")
