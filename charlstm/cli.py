"""The command line: parse options, call the Python API (`charlstm.api`) or one module per command, print through `ui`.

The only place that turns errors into exit codes: a `UserError` becomes one red line on stderr and exit 1 (the
work failed) or 2 (usage), a click usage error the same one-line form with exit 2; see `charlstm.errors`.

Start-up imports no JAX: every command imports what it needs in its body, after its options and config are
checked, so --help, --version, shell completion and usage or config errors answer at once.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import typer

# typer vendors click and does not re-export its exception types
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from charlstm import __version__, events, ui
from charlstm.errors import EXIT_CODES, UsageError, UserError

F = TypeVar("F", bound=Callable[..., Any])


# --- typed choices: --help lists them, the parser rejects anything else (exit 2) ---------------------------


class Color(str, Enum):
    auto = "auto"
    always = "always"
    never = "never"


class Encoding(str, Enum):  # config.DataConfig.encoding
    utf8 = "utf-8"
    bytes = "bytes"


class Match(str, Enum):
    params = "params"
    hidden = "hidden"


class Show(str, Enum):  # what `inspect` can draw; which of them a run has depends on its cell
    forget = "forget"
    input = "input"
    output = "output"
    cell = "cell"
    update = "update"
    reset = "reset"
    hidden = "hidden"


CELLS = ("rnn", "lstm", "gru")  # config.ModelConfig.cell


# --- shell completion (kept JAX-free: completion runs the program once per TAB) ----------------------------


def _complete_runs(ctx: typer.Context, incomplete: str) -> list[str]:
    """Run names in --runs-dir (the runs/ default when not typed yet), and latest."""
    runs = Path(ctx.params.get("runs_dir") or "runs")
    try:
        names = sorted(p.name for p in runs.iterdir() if p.name != "latest" and (p / "config.yaml").is_file())
    except OSError:
        return []
    return [n for n in ["latest", *names] if n.startswith(incomplete)]


def _complete_checkpoints(ctx: typer.Context, incomplete: str) -> list[str]:
    """latest, best and the saved steps of the run given by --run (or runs/latest)."""
    from charlstm.training import rundir

    steps: list[str] = []
    try:
        run = rundir.resolve(ctx.params.get("run"), Path(ctx.params.get("runs_dir") or "runs"))
        steps = sorted((p.name for p in run.checkpoints.iterdir() if p.name.isdigit()), key=int)
    except (UserError, OSError):
        pass
    return [c for c in ["latest", "best", *steps] if c.startswith(incomplete)]


def _complete_configs(incomplete: str) -> list[str]:
    """Bundled config names, and YAML files beside what has been typed."""
    from charlstm import config as config_lib

    where = Path(incomplete).parent
    try:
        files = sorted(
            str(where / p.name) if str(where) != "." else p.name
            for p in where.iterdir()
            if p.suffix in (".yaml", ".yml")
        )
    except OSError:
        files = []
    return [c for c in [*config_lib.list_configs(), *files] if c.startswith(incomplete)]


def _complete_cells(incomplete: str) -> list[str]:
    """The next cell name of a comma-separated list."""
    done, _, last = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    return [prefix + c for c in CELLS if c.startswith(last) and c not in done.split(",")]


# --- option checks done by the parser ----------------------------------------------------------------------


def _checkpoint_value(value: str) -> str:
    from charlstm import api

    try:
        return api.parse_checkpoint(value)
    except UsageError as err:
        raise typer.BadParameter(f"{value!r}: use latest, best, or a step number") from err


def _cells_value(value: str) -> str:
    names = [s.strip().lower() for s in value.split(",") if s.strip()]
    bad = [n for n in names if n not in CELLS]
    if not names or bad:
        raise typer.BadParameter(f"{value!r}: a comma-separated list of {', '.join(CELLS)}")
    return value


def _version(value: bool) -> None:
    if value:
        print(f"charlstm {__version__}")
        raise typer.Exit(0)


# --- the app -----------------------------------------------------------------------------------------------

EXIT_EPILOG = (
    "Exit codes:\n" + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES) + "\n\n"
    "Environment: NO_COLOR turns colour off (as --color never); CHARLSTM_CACHE is the cache directory for "
    "downloads, encoded corpora and compiled programs (default ~/.cache/charlstm; set it empty to compile every time)."
)
CONFIG_EPILOG = (
    "Every config key, its value and what it does: charlstm config show [NAME] [--set KEY=VALUE ...] "
    "prints the resolved YAML."
)

app = typer.Typer(
    help="Train character-level LSTM / GRU / RNN language models on any text file, sample from them, and see "
    "why an LSTM beats a plain RNN on long-range dependencies.",
    epilog=EXIT_EPILOG,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global_options(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_version, help="Print the version and exit."
    ),
    color: Color = typer.Option(
        Color.auto,
        "--color",
        help="Colour in the output: auto (a terminal, unless NO_COLOR is set), always, or "
        "never. Charts and heatmaps use letters and bars without it.",
    ),
) -> None:
    """Options that come before the command name."""
    ui.set_color(color.value)


def user_errors(fn: F) -> F:
    """Turn UserError into one line and its exit code; Ctrl-C outside training exits 130 quietly."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            ui.error(err.message, err.hint)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            ui.error("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:  # `charlstm sample | head`: the reader left, nothing to report
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper  # type: ignore[return-value]


ConfigOpt = typer.Option(
    None,
    "--config",
    "-c",
    autocompletion=_complete_configs,
    help="YAML config file, or a bundled name (default, tiny, shakespeare, ...).",
)
SetOpt = typer.Option(
    [], "--set", "-s", metavar="KEY=VALUE", help="Override a config value, e.g. --set model.hidden=128 (repeatable)."
)
RunsDirOpt = typer.Option(Path("runs"), "--runs-dir", help="Directory holding runs.")
RunOpt = typer.Option(
    None,
    "--run",
    "-r",
    autocompletion=_complete_runs,
    help="Run directory or name (default: the newest run, runs/latest).",
)
CkptOpt = typer.Option(
    "latest",
    "--checkpoint",
    metavar="latest|best|STEP",
    callback=_checkpoint_value,
    autocompletion=_complete_checkpoints,
    help="Which checkpoint: the latest, the best (lowest validation loss), or a step number.",
)
JsonOpt = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


@app.command(epilog=CONFIG_EPILOG)
@user_errors
def train(
    corpus: str | None = typer.Argument(
        None, help="Text file to train on, or a corpus name (default: the bundled languages corpus)."
    ),
    config: str | None = ConfigOpt,
    set_: list[str] = SetOpt,
    steps: int | None = typer.Option(None, "--steps", help="Shortcut for --set train.steps=N."),
    encoding: Encoding | None = typer.Option(
        None, "--encoding", help="utf-8 (characters) or bytes (raw bytes, any file)."
    ),
    name: str | None = typer.Option(None, "--name", help="Run name (default <corpus>-<cell>-<timestamp>)."),
    runs_dir: Path = RunsDirOpt,
    resume: str | None = typer.Option(
        None,
        "--resume",
        metavar="[RUN]",
        autocompletion=_complete_runs,
        help="Continue a run (default: runs/latest) from its newest checkpoint.",
    ),
    init_from: str | None = typer.Option(
        None,
        "--init-from",
        metavar="RUN",
        autocompletion=_complete_runs,
        help="Fine-tune: a new run from RUN's weights and model section, with a fresh optimizer and schedule.",
    ),
    init_checkpoint: str | None = typer.Option(
        None,
        "--checkpoint",
        metavar="latest|best|STEP",
        help="With --init-from: which of its checkpoints (default latest).",
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
        envvar="JAX_COORDINATOR_ADDRESS",
        help="HOST:PORT of process 0: join a multi-process job (with --num-processes and --process-id).",
    ),
    num_processes: int | None = typer.Option(
        None, "--num-processes", envvar="JAX_NUM_PROCESSES", help="Number of processes in the job."
    ),
    process_id: int | None = typer.Option(
        None,
        "--process-id",
        envvar="JAX_PROCESS_ID",
        help="This process's number, 0..N-1 (0 prints and writes metrics).",
    ),
    dist_auto: bool = typer.Option(
        False, "--distributed", help="Join a multi-process job described by the cluster (SLURM, Open MPI, TPU pods)."
    ),
) -> None:
    """Train a model on CORPUS; progress live in the terminal, checkpoints in runs/<name>/."""
    from charlstm import api

    overrides = [
        *set_,
        *([f"train.steps={steps}"] if steps is not None else []),
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
    )
    if not main:  # process 0 reports for the job
        return
    if json_out:
        print(
            json.dumps(
                {
                    "run": str(summary.run_dir),
                    "steps": summary.steps,
                    "params": summary.params,
                    "final_val_loss": summary.final_val_loss,
                    "final_val_bpc": events.bits(summary.final_val_loss),
                    "best_val_loss": summary.best_val_loss,
                    "chars_per_s": summary.chars_per_s,
                    "seconds": summary.seconds,
                    "stopped_early": summary.stopped_early,
                    "prompt_check": summary.prompt_check.to_json() if summary.prompt_check else None,
                }
            ),
            file=results,
            flush=True,
        )
        return
    ui.table(
        "training summary",
        ["metric", "value"],
        [
            ("run", summary.run_dir),
            ("steps", summary.steps),
            ("params", f"{summary.params:,}"),
            ("final val loss (nats/char)", ui.fmt(summary.final_val_loss)),
            ("final val bits/char", ui.fmt(events.bits(summary.final_val_loss))),
            ("best val loss (nats/char)", ui.fmt(summary.best_val_loss)),
            ("train chars/s (median)", f"{summary.chars_per_s:,.0f}"),
            ("wall time", f"{summary.seconds:.1f} s"),
            *(
                [
                    (
                        "stopped early",
                        f"yes: no better val loss in {cfg.train.patience} evaluations (best kept: --checkpoint best)",
                    )
                ]
                if summary.stopped_early
                else []
            ),
        ],
        console=ui.err,
    )
    if summary.prompt_check is not None:
        from charlstm.evaluation import promptcheck

        check = summary.prompt_check
        ui.table(
            f"prompt check: {check.samples} samples at temperature 1 from a line start (and greedy)",
            *promptcheck.rows(check),
            console=ui.err,
        )
    ui.info(f'sample with: charlstm sample --run {summary.run_dir} --prompt "..."')


@app.command()
@user_errors
def sample(
    run: str | None = RunOpt,
    runs_dir: Path = RunsDirOpt,
    checkpoint: str = CkptOpt,
    prompt: str | None = typer.Option(None, "--prompt", "-p", help="Text to start from (default: a newline)."),
    prompt_file: Path | None = typer.Option(None, "--prompt-file", help="Read the prompt from a file."),
    length: int = typer.Option(500, "--length", "-n", help="Characters to generate per sample."),
    temperature: float = typer.Option(
        1.0, "--temperature", "-t", help="Softmax temperature (> 0); lower is more conservative."
    ),
    top_k: int = typer.Option(0, "--top-k", help="Sample among the k most likely characters (0: all)."),
    top_p: float = typer.Option(
        1.0, "--top-p", help="Nucleus sampling: smallest set with this much probability (1: all)."
    ),
    greedy: bool = typer.Option(False, "--greedy", help="Always pick the most likely character."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same text)."),
    num_samples: int = typer.Option(1, "--num-samples", help="Independent samples, generated as one batch."),
    skip_unknown: bool = typer.Option(False, "--skip-unknown", help="Drop prompt characters the model does not know."),
    line_start: bool = typer.Option(
        True, "--line-start/--mid-line", help="Read the prompt as the start of a line (after a newline) or as is."
    ),
    json_out: bool = typer.Option(
        False, "--json", help="One JSON object per sample and line on stdout: sample, prompt, text, seed, run, step."
    ),
) -> None:
    """Generate text from a trained run, streamed as it is produced."""
    if prompt is not None and prompt_file is not None:
        raise UsageError("--prompt and --prompt-file both given", "pass only one")
    if prompt_file is not None:
        try:
            prompt = prompt_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"cannot read prompt file {prompt_file}: {err}", "pass a UTF-8 text file") from None
    from charlstm import api

    model = api.load(run, checkpoint, runs_dir=runs_dir, on_warning=ui.warn)
    options: dict[str, Any] = dict(
        length=length,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        greedy=greedy,
        seed=seed,
        skip_unknown=skip_unknown,
        line_start=line_start,
    )
    if num_samples == 1 and not json_out:
        pieces = model.stream(prompt, **options)
        shown = next(pieces)  # the prompt as read
        with ui.spinner("compiling the sampler"):  # only the first piece waits for XLA, and only once per model
            first = next(pieces, "")
        sys.stdout.write(shown + first)
        sys.stdout.flush()
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
        return
    with ui.spinner(f"generating {num_samples} sample{'s' if num_samples > 1 else ''}"):
        texts = model.sample(prompt, num_samples=num_samples, **options)
    if json_out:
        shown = model.read_prompt(prompt, skip_unknown)
        for i, text in enumerate(texts):
            print(
                json.dumps(
                    {
                        "sample": i + 1,
                        "prompt": shown,
                        "text": text[len(shown) :],
                        "seed": seed,
                        "run": str(model.run_dir),
                        "step": model.step,
                    }
                )
            )
        return
    for i, text in enumerate(texts):
        ui.out.print(f"[dim]--- sample {i + 1}/{num_samples} ---[/]")
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


@app.command(name="eval")
@user_errors
def eval_(
    file: Path = typer.Argument(..., help="Text file to score."),
    run: str | None = RunOpt,
    runs_dir: Path = RunsDirOpt,
    checkpoint: str = CkptOpt,
    skip_unknown: bool = typer.Option(False, "--skip-unknown", help="Drop and count characters not in the vocabulary."),
    json_out: bool = JsonOpt,
) -> None:
    """Loss of a trained run on FILE, in nats/char and bits/char (state carried through the file)."""
    from charlstm import api

    model = api.load(run, checkpoint, runs_dir=runs_dir, on_warning=ui.warn)
    with ui.spinner(f"scoring {file}"):
        res = model.score(file, skip_unknown=skip_unknown)
    result = {
        "file": str(file),
        "step": model.step,
        "nats_per_char": res.nats_per_char,
        "bits_per_char": res.bits_per_char,
        "perplexity": res.perplexity,
        "chars_scored": res.chars_scored,
        "unknown_skipped": res.unknown_skipped,
    }
    if json_out:
        print(json.dumps(result))
        return
    ui.table(
        f"eval: {file}", ["metric", "value"], [(k, ui.fmt(v) if isinstance(v, float) else v) for k, v in result.items()]
    )


@app.command()
@user_errors
def export(
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="A directory (any model: safetensors weights, config, "
        "vocabulary and a PyTorch module), or a FILE.npz (plain LSTM/GRU/RNN).",
    ),
    run: str | None = RunOpt,
    runs_dir: Path = RunsDirOpt,
    checkpoint: str = CkptOpt,
) -> None:
    """Write the weights in PyTorch's layout and names: a directory that samples and scores with PyTorch alone
    (charlstm_torch.py inside), or a .npz for nn.LSTM/GRU/RNN."""
    from charlstm import api

    kind = api.export_kind(out)  # a wrong name is a usage error, before the run is loaded
    model = api.load(run, checkpoint, runs_dir=runs_dir, on_warning=ui.warn)
    arrays = model.export(out)
    m = model.config.model
    what = f"step {model.step}, {m.cell}{'-ln' if m.layer_norm else ''} {m.layers}x{m.hidden}"
    if kind == "npz":
        ui.info(f"wrote {out}: {len(arrays)} tensors, {what}")
        return
    ui.info(
        f"wrote {out}/: model.safetensors ({len(arrays)} tensors), config.json, vocab.json, charlstm_torch.py; {what}"
    )
    ui.info(f'sample with PyTorch: python {out / "charlstm_torch.py"} {out} --prompt "..."')


@app.command(name="compare-rnn", epilog=CONFIG_EPILOG)
@user_errors
def compare_rnn(
    corpus: str | None = typer.Argument(None, help="Text file to train on (default: the bundled languages corpus)."),
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        autocompletion=_complete_configs,
        help="YAML config file or bundled name (default: compare-rnn).",
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
        None, "--steps", help="Training steps per cell (shortcut for --set train.steps=N)."
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
        help="Write the curves (CSV), a summary (JSON) and the charts (PNG, needs matplotlib) here.",
    ),
    no_clip: bool = typer.Option(
        False, "--no-clip", help="Train without gradient clipping (watch an RNN's gradient norm explode)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the tables, no live chart or progress."),
) -> None:
    """Train an RNN and an LSTM (and a GRU) on the same data and show, measured, why the LSTM wins."""
    from charlstm import config as config_lib

    cfg = config_lib.load(config or "compare-rnn", list(set_) + ([f"train.steps={steps}"] if steps is not None else []))
    from charlstm import perf
    from charlstm.analysis import compare, plots

    perf.compile_cache()
    names = compare.parse_cells(cells)
    png = out is not None and plots.have_matplotlib()
    if out is not None and not png:
        ui.warn(
            "matplotlib is not installed: --out writes CSV/JSON only (pip install 'charlstm[plots]' for PNG charts)"
        )
    color = ui.color_on(ui.out)
    live = plots.LiveDisplay(ui.err, quiet=quiet, color=ui.color_on(ui.err))
    result = compare.run(cfg, corpus, names, match=match.value, clip=not no_clip, reporter=live)
    if not quiet:
        for text in plots.charts(result, width=min(ui.out.width, 110), height=18, color=color):
            plots.show(text, ui.out, color)
    ui.table("compare-rnn: same data, seed, batches and steps", *compare.summary_rows(result))
    cols, rows = compare.longrange_rows(result)
    if rows:
        chance = f"; chance {result.chance:.2f}" if result.chance else ""
        ui.table(f"language word by gap, validation split (accuracy, loss in nats/word{chance})", cols, rows)
    elif result.longrange_note:
        ui.info(result.longrange_note)
    for r in result.cells:
        if r.diverged:
            ui.warn(f"{r.spec.cell} diverged: {r.diverged}")
    if out is not None:
        written = compare.write_outputs(result, out, png=png)
        ui.info(f"wrote {len(written)} files to {out}: {', '.join(p.name for p in written)}")


@app.command(epilog=CONFIG_EPILOG)
@user_errors
def bench(
    config: str | None = ConfigOpt,
    set_: list[str] = SetOpt,
    steps: int = typer.Option(5, "--steps", help="Timed training steps per round (after compilation)."),
    rounds: int = typer.Option(5, "--rounds", help="Measurement rounds; speeds and ratios are medians over rounds."),
    json_out: bool = JsonOpt,
    vs_torch: bool = typer.Option(
        False, "--vs-torch", help="Also run the same model in PyTorch, alternating, and print the ratios."
    ),
) -> None:
    """Training and sampling speed, compile time (cold and cached), time to the first sampled character, memory
    and the fraction of the machine's matmul peak."""
    import dataclasses

    from charlstm import config as config_lib

    cfg = config_lib.load(config, set_)
    from charlstm.bench import bench as bench_lib

    res = bench_lib.run(cfg, steps=steps, rounds=rounds, vs_torch=vs_torch, log=ui.info)
    if json_out:
        print(json.dumps(dataclasses.asdict(res)))
        return
    ui.table("charlstm bench", ["metric", "value"], bench_lib.rows(res))


@app.command(name="inspect")
@user_errors
def inspect_(
    run: str | None = RunOpt,
    runs_dir: Path = RunsDirOpt,
    checkpoint: str = CkptOpt,
    text: str | None = typer.Option(None, "--text", help="The text to read."),
    file: Path | None = typer.Option(
        None, "--file", help="Read the text from a UTF-8 file (the bundled corpus adds place memory)."
    ),
    layer: int | None = typer.Option(None, "--layer", help="Layer to show, counted from 1 (default: the last)."),
    cell: list[int] = typer.Option([], "--cell", help="Show this cell, 0..hidden-1 (repeatable)."),
    top: int | None = typer.Option(
        None, "--top", help="Show the K cells that best track simple text properties (default 5)."
    ),
    show: Show | None = typer.Option(
        None,
        "--show",
        help="LSTM: forget, input, output, cell or hidden; GRU: "
        "update, reset or hidden; RNN: hidden. Default: cell (LSTM), hidden (others).",
    ),
    html: Path | None = typer.Option(None, "--html", help="Also write the view as a standalone HTML page."),
    max_chars: int = typer.Option(20000, "--max-chars", help="Read at most this many characters of the text."),
    display_chars: int = typer.Option(800, "--display-chars", help="Draw at most this many characters per cell."),
    skip_unknown: bool = typer.Option(False, "--skip-unknown", help="Drop characters not in the vocabulary."),
) -> None:
    """Watch the gates and memory cells read text: one coloured line per cell, gate saturation, place memory."""
    if display_chars < 1:
        raise UsageError(f"--display-chars must be at least 1 (got {display_chars})", "e.g. --display-chars 800")
    from charlstm import api
    from charlstm.analysis import heatmap, inspection

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
        skip_unknown=skip_unknown,
    )
    notes = [f"read the first {max_chars:,} characters of {file} (--max-chars)"] if source.truncated else []
    view = inspection.inspect_view(report, f"{model.run_dir.name}, step {model.step}", display_chars, notes)
    heatmap.print_view(ui.out, view, table=ui.table, color=ui.color_on(ui.out))
    if html is not None:
        try:
            heatmap.write_html(html, view)
        except OSError as err:
            raise UserError(
                f"cannot write {html}: {err.strerror}", "check the directory exists and is writable"
            ) from None
        ui.info(f"wrote {html}")


@app.command(name="runs")
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
    styles = {"running": "cyan", "finished": "green", "interrupted": "yellow", "failed": "red"}
    columns, rows = runs_lib.table_rows(found)
    rows = [[*map(escape, row[:-1]), f"[{styles[r.status]}]{escape(row[-1])}[/]"] for r, row in zip(found, rows)]
    ui.table(f"runs in {runs_dir}", columns, rows, left=("run", "corpus", "model", "status"))


@app.command()
@user_errors
def serve(
    run: str | None = typer.Option(
        None,
        "--run",
        "-r",
        autocompletion=_complete_runs,
        help="The run the page opens with (default: the newest, runs/latest).",
    ),
    runs_dir: Path = RunsDirOpt,
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to listen on. The page has no authentication: anything but loopback lets the network use it.",
    ),
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: any free port)."),
    open_: bool = typer.Option(False, "--open", help="Open the page in the web browser."),
) -> None:
    """A local web page: type, and watch each character colour the gates and memory cells and move the
    next-character guesses; sample with sliders; the runs' loss curves and configs. Needs the serve extra."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be in 0..65535 (got {port})", "e.g. --port 8000")
    from charlstm import serve as serve_lib

    serve_lib.require()
    from charlstm.serve import app as serve_app

    if not serve_app.is_loopback(host):
        ui.warn(f"listening on {host}: the page has no authentication, anyone who can reach it can use it")
    serve_app.serve(runs_dir, run, host, port, open_, log=ui.info)


class XAxis(str, Enum):
    steps = "steps"
    minutes = "minutes"


@app.command()
@user_errors
def plot(
    runs: list[str] = typer.Argument(
        None,
        metavar="[RUN]...",
        autocompletion=_complete_runs,
        help="Runs to draw: names in --runs-dir, or directories (default: the newest).",
    ),
    runs_dir: Path = RunsDirOpt,
    x: XAxis = typer.Option(XAxis.steps, "--x", help="The x axis: training steps, or minutes since each run started."),
    log_y: bool = typer.Option(False, "--log-y", help="Logarithmic loss axis."),
    smooth: float = typer.Option(0.6, "--smooth", help="EMA weight for the training loss: 0 (raw) to below 1."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Redraw as the runs train, until none is (or Ctrl-C)."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Also write the curves to FILE.csv, or the chart to "
        'FILE.png (needs matplotlib: pip install "charlstm[plots]").',
    ),
) -> None:
    """Training (smoothed) and validation loss of one or more runs, in the terminal; live with --follow."""
    if not 0.0 <= smooth < 1.0:
        raise UsageError(f"--smooth must be in [0, 1) (got {smooth:g})", "e.g. --smooth 0.9; 0 draws the raw loss")
    if out is not None and out.suffix.lower() not in (".csv", ".png"):
        raise UsageError(f"--out must end in .csv or .png (got {out.name})", "e.g. --out loss.csv")
    from charlstm.analysis import plots
    from charlstm.analysis import runs as runs_lib
    from charlstm.training import rundir

    if out is not None and out.suffix.lower() == ".png":
        plots.matplotlib_figure("write a .csv instead")  # no matplotlib: say so before drawing anything
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
        plots.show(draw(), ui.out, color)
    if out is not None:
        curves = [runs_lib.read_curves(r) for r in found]
        if out.suffix.lower() == ".csv":
            runs_lib.write_csv(curves, out, smooth)
        else:
            plots.save_runs_png(curves, out, x=x.value, log_y=log_y, smooth=smooth)
        ui.info(f"wrote {out}")


corpus_app = typer.Typer(help="List and download corpora.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")


@corpus_app.command("list")
@user_errors
def corpus_list() -> None:
    """Show the bundled and the downloadable corpora (and where the downloaded ones are)."""
    from charlstm.data import corpus as corpus_lib

    ui.table("corpora", ["", "where", "what"], corpus_lib.list_corpora())


@corpus_app.command("get")
@user_errors
def corpus_get(
    name: str = typer.Argument(..., help="Corpus name, e.g. tinyshakespeare."),
    url: str | None = typer.Option(
        None, "--url", help="Download from this URL (a mirror) instead; the checksum is still verified."
    ),
) -> None:
    """Download a corpus into the cache, verify its checksum and print its path."""
    from charlstm.data import download

    with ui.DownloadProgress(f"downloading {name}") as progress:
        path = download.get(name, url, progress=progress)
    ui.info(f"{name}: verified sha256, cached")
    print(path)


config_app = typer.Typer(help="Show configurations: every key, its value and what it does.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
@user_errors
def config_show(
    name: str | None = typer.Argument(
        None, autocompletion=_complete_configs, help="A bundled config name or a YAML file (default: default)."
    ),
    set_: list[str] = SetOpt,
) -> None:
    """Print the resolved config as YAML, each key with what it does: a starting point for your own file."""
    from charlstm import config as config_lib

    cfg = config_lib.load(name, set_)
    print(_commented_yaml(cfg, name or "default", set_), end="")


def _commented_yaml(cfg: Any, source: str, overrides: list[str]) -> str:
    """The config as YAML that loads back to the same values, every key followed by its description."""
    import yaml

    from charlstm import config as config_lib

    notes = {key: description for key, _, description in config_lib.describe()}
    lines = [f"# charlstm config {source}" + "".join(f" --set {o}" for o in overrides)]
    for section, values in cfg.model_dump().items():
        lines.append(f"{section}:")
        pairs = [
            (
                f"  {yaml.safe_dump({k: v}, default_flow_style=False, width=1 << 20).strip()}",
                notes.get(f"{section}.{k}", ""),
            )
            for k, v in values.items()
        ]
        pad = max(len(p) for p, _ in pairs)
        lines += [f"{p:<{pad}}  # {note}" if note else p for p, note in pairs]
    return "\n".join(lines) + "\n"


# --- entry point -------------------------------------------------------------------------------------------


def _optional_resume_value(argv: list[str]) -> list[str]:
    """`--resume` may stand alone (meaning runs/latest): give it its value so the parser sees one."""
    out = []
    for k, a in enumerate(argv):
        out.append(a)
        if a == "--resume" and (k + 1 == len(argv) or argv[k + 1].startswith("-")):
            out.append("latest")
    return out


def _usage_error(err: ClickException) -> int:
    """A click usage error (unknown option, bad value, missing argument) as the same one line as ours."""
    ctx = getattr(err, "ctx", None)
    ui.error(err.format_message(), f"see: {ctx.command_path} --help" if ctx is not None else "see: charlstm --help")
    return err.exit_code


def main() -> None:
    """Console-script entry point."""
    from charlstm import perf

    perf.tune_malloc()  # before JAX allocates anything: see charlstm/perf.py
    perf.deterministic_gpu()  # before JAX creates a GPU backend
    perf.compile_cache()  # environment variables only: JAX reads them if a command starts it
    try:
        code = app(args=_optional_resume_value(sys.argv[1:]), prog_name="charlstm", standalone_mode=False)
    except NoArgsIsHelpError as err:  # `charlstm` or `charlstm corpus` alone: the help, as a usage error
        err.show()
        code = err.exit_code
    except ClickException as err:
        code = _usage_error(err)
    except typer.Abort:
        code = 1
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
