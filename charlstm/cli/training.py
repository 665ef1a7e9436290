"""Training commands: `train` (one run, checkpoints in runs/<name>/) and `compare-rnn` (RNN, LSTM and GRU on the
same data, side by side)."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path

import typer

from charlstm import ui
from charlstm.cli._app import ConfigOpt, RunsDirOpt, SetOpt, complete_configs, complete_runs, user_errors
from charlstm.errors import UsageError


class Encoding(str, Enum):  # config.DataConfig.encoding
    utf8 = "utf-8"
    bytes = "bytes"


class Match(str, Enum):
    params = "params"
    hidden = "hidden"


CELLS = ("rnn", "lstm", "gru")  # config.ModelConfig.cell


def _complete_cells(incomplete: str) -> list[str]:
    """The next cell name of a comma-separated list."""
    done, _, last = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    return [prefix + c for c in CELLS if c.startswith(last) and c not in done.split(",")]


def _cells_value(value: str) -> str:
    names = [s.strip().lower() for s in value.split(",") if s.strip()]
    bad = [n for n in names if n not in CELLS]
    if not names or bad:
        raise typer.BadParameter(f"{value!r}: a comma-separated list of {', '.join(CELLS)}")
    return value


@user_errors
def train(
    corpus: str | None = typer.Argument(
        None,
        metavar="CORPUS",
        help="Text file to train on, or a corpus name (default: the bundled essay corpus).",
    ),
    config: str | None = ConfigOpt,
    set_: list[str] = SetOpt,
    steps: int | None = typer.Option(
        None,
        "--steps",
        metavar="N",
        show_default="the config's train.steps",
        help="Training steps: a shortcut for --set train.steps=N.",
    ),
    time_budget: str | None = typer.Option(
        None,
        "--time",
        metavar="DURATION",
        help="Train for this long (90s, 10m, 1h30m), start-up included: the steps are chosen from the measured "
        "step time, the learning rate annealed at the end (--set train.time=DURATION). Without --config, on your "
        "own text, the model is sized for the budget too (--config auto).",
    ),
    encoding: Encoding | None = typer.Option(
        None, "--encoding", help="utf-8 (characters) or bytes (raw bytes, any file)."
    ),
    name: str | None = typer.Option(
        None, "--name", metavar="NAME", show_default="CORPUS-CELL-TIMESTAMP", help="Run name."
    ),
    runs_dir: Path = RunsDirOpt,
    resume: str | None = typer.Option(
        None,
        "--resume",
        metavar="[RUN]",
        autocompletion=complete_runs,
        help="Continue a run (alone: runs/latest) from its newest checkpoint, with its own config (not --config).",
    ),
    init_from: str | None = typer.Option(
        None,
        "--init-from",
        metavar="RUN",
        autocompletion=complete_runs,
        help="Fine-tune: a new run from RUN's weights and model section, with a fresh optimizer and schedule.",
    ),
    init_checkpoint: str | None = typer.Option(
        None,
        "--checkpoint",
        metavar="latest|best|STEP",
        show_default="latest",
        help="With --init-from: which of its checkpoints.",
    ),
    extend_vocab: bool = typer.Option(
        False,
        "--extend-vocab",
        help="With --init-from: add the characters RUN lacks to the vocabulary (their weights start as at init).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary."),
    json_out: bool = typer.Option(False, "--json", help="Print the final summary as JSON on stdout (no table)."),
    coordinator: str | None = typer.Option(
        None,
        "--coordinator",
        metavar="HOST:PORT",
        envvar="JAX_COORDINATOR_ADDRESS",
        help="HOST:PORT of process 0: join a multi-process job (with --num-processes and --process-id).",
    ),
    num_processes: int | None = typer.Option(
        None, "--num-processes", metavar="N", envvar="JAX_NUM_PROCESSES", help="Number of processes in the job."
    ),
    process_id: int | None = typer.Option(
        None,
        "--process-id",
        metavar="I",
        envvar="JAX_PROCESS_ID",
        help="This process's number, 0..N-1 (0 prints and writes metrics).",
    ),
    dist_auto: bool = typer.Option(
        False, "--distributed", help="Join a multi-process job described by the cluster (SLURM, Open MPI, TPU pods)."
    ),
) -> None:
    """Train a model on CORPUS; progress live in the terminal, checkpoints in runs/NAME/."""
    from charlstm import api
    from charlstm.training import budget

    started = budget.process_start()
    if steps is not None and time_budget is not None:
        raise UsageError("--steps and --time both given", "--time chooses the steps; give one of the two")
    overrides = [
        *set_,
        *([f"train.steps={steps}"] if steps is not None else []),
        *([f"train.time={time_budget}"] if time_budget is not None else []),
        *([f"data.encoding={encoding.value}"] if encoding else []),
    ]
    if init_from is None and (init_checkpoint is not None or extend_vocab):
        raise UsageError(
            "--checkpoint and --extend-vocab go with --init-from", "e.g. --init-from RUN --checkpoint best"
        )
    which = api.parse_checkpoint(init_checkpoint or "latest")
    cfg, run = api.training_config(
        config,
        overrides,
        resume=resume,
        runs_dir=runs_dir,  # before JAX starts
        init_from=init_from,
        corpus=corpus,
    )

    from charlstm.training import distributed

    results = sys.stdout
    if distributed.initialize(coordinator, num_processes, process_id, auto=dist_auto):  # before JAX touches a device
        results = ui.native_stdout_to_stderr()  # gloo's C++ connection messages; --json still goes to stdout
    main = distributed.is_main()
    display = ui.TrainingDisplay(cfg.train.log_every, quiet=quiet or not main)
    summary = api.run_training(
        cfg,
        corpus,
        runs_dir=runs_dir,
        name=name,
        resume=run,
        reporter=display,
        init_from=init_from,
        checkpoint=which,
        extend_vocab=extend_vocab,
        started=started,
    )
    if not main:  # process 0 reports for the job
        return
    if json_out:
        print(json.dumps(summary.to_json()), file=results, flush=True)
        return
    ui.table("training summary", ["metric", "value"], summary.rows(), console=ui.err)
    if summary.prompt_check is not None:
        from charlstm.evaluation import promptcheck

        check = summary.prompt_check
        ui.table(
            f"prompt check: right of {check.samples} samples at temperature 1 from a line start (✗: greedy wrong)",
            *promptcheck.rows(check),
            console=ui.err,
        )
    ui.info(f'sample with: charlstm sample --run {summary.run_dir} --prompt "..."')


@user_errors
def compare_rnn(
    corpus: str | None = typer.Argument(
        None, metavar="CORPUS", help="Text file to train on (default: the bundled languages corpus)."
    ),
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        metavar="FILE|NAME",
        show_default="compare-rnn",
        autocompletion=complete_configs,
        help="YAML config file or bundled name.",
    ),
    set_: list[str] = SetOpt,
    cells: str = typer.Option(
        "rnn,lstm",
        "--cells",
        metavar="CELL,CELL...",
        callback=_cells_value,
        autocompletion=_complete_cells,
        help=f"Cells to train, comma-separated: {', '.join(CELLS)}.",
    ),
    steps: int | None = typer.Option(
        None,
        "--steps",
        metavar="N",
        show_default="the config's train.steps",
        help="The most training steps per cell; each cell stops earlier once it stops improving (a shortcut for "
        "--set train.steps=N).",
    ),
    time_each: str | None = typer.Option(
        None,
        "--time",
        metavar="DURATION",
        help="Give every cell this much training time (90s, 5m) instead of the same steps: a cheaper step "
        "buys more of them (--set train.time=DURATION).",
    ),
    match: Match = typer.Option(
        Match.params,
        "--match",
        help="params: size every cell to the config cell's parameter count; hidden: one width for all.",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        metavar="DIR",
        help="Write the curves (CSV), a summary (JSON) and the charts (PNG, needs matplotlib: pip install "
        '"charlstm[plots]") here.',
    ),
    no_clip: bool = typer.Option(
        False, "--no-clip", help="Train without gradient clipping (watch an RNN's gradient norm explode)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the tables, no live chart or progress."),
) -> None:
    """Train an RNN and an LSTM (and a GRU) on the same data and show, measured, why the LSTM wins. Each cell
    trains until it stops improving, at most --steps."""
    from charlstm import config as config_lib

    if steps is not None and time_each is not None:
        raise UsageError("--steps and --time both given", "--time gives every cell the same time; give one of the two")
    items = [*set_, *([f"train.steps={steps}"] if steps is not None else [])]
    items += [f"train.time={time_each}"] if time_each is not None else []
    cfg = config_lib.load(config or "compare-rnn", items)
    from charlstm import perf
    from charlstm.analysis import compare, compare_output, linechart, plots, png_charts

    perf.compile_cache()
    names = compare.parse_cells(cells)
    png = out is not None and png_charts.have_matplotlib()
    if out is not None and not png:
        ui.warn(
            "matplotlib is not installed: --out writes CSV/JSON only (pip install 'charlstm[plots]' for PNG charts)"
        )
    color = ui.color_on(ui.out)
    live = plots.LiveDisplay(ui.err, quiet=quiet, color=ui.color_on(ui.err))
    result = compare.run(cfg, corpus, names, match=match.value, clip=not no_clip, reporter=live)
    if not quiet:
        for text in plots.charts(result, width=min(ui.out.width, 110), height=18, color=color):
            linechart.show(text, ui.out, color)
    each = f"{cfg.train.time} of training each" if cfg.train.time else "each cell until it stops improving"
    ui.table(f"compare-rnn: same data, seed and batches; {each}", *compare_output.summary_rows(result))
    cols, rows = compare_output.longrange_rows(result)
    if rows:
        chance = f"; chance {result.chance:.2f}" if result.chance else ""
        ui.table(f"language word by gap, validation split (accuracy, loss in nats/word{chance})", cols, rows)
    elif result.longrange_note:
        ui.info(result.longrange_note)
    for r in result.cells:
        if r.diverged:
            ui.warn(f"{r.spec.cell} diverged: {r.diverged}")
    if out is not None:
        written = compare_output.write_outputs(result, out, png=png)
        ui.info(f"wrote {len(written)} files to {out}: {', '.join(p.name for p in written)}")
