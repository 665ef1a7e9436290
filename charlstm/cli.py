"""The command line: parse options, call one function per command, print through `ui`.

The only place that catches user errors: a `UserError` becomes one red line on stderr and a non-zero exit.
"""

from __future__ import annotations

import codecs
import functools
import sys
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import typer

from charlstm import __version__
from charlstm import config as config_lib
from charlstm import ui
from charlstm.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])

_CONFIG_HELP = "\b\nConfig keys (set with --set key=value):\n" + "\n".join(
    f"  {k:<24} {d} (default {v})" for k, v, d in config_lib.describe()
)

app = typer.Typer(
    help="Train character-level LSTM / GRU / RNN language models on any text file, sample from them, and see "
    "why an LSTM beats a plain RNN on long-range dependencies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"charlstm {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global_options(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version, help="Print the version and exit."),
) -> None:
    """Options that come before the command name."""


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


ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file, or a bundled name (default, tiny, shakespeare).")
SetOpt = typer.Option([], "--set", "-s", help="Override a config value, e.g. --set model.hidden=128 (repeatable).")
RunsDirOpt = typer.Option(Path("runs"), "--runs-dir", help="Directory holding runs.")
RunOpt = typer.Option(None, "--run", "-r", help="Run directory or name (default: runs/latest).")
CkptOpt = typer.Option("latest", "--checkpoint", help="Which checkpoint: latest, best, or a step number.")


@app.command(epilog=_CONFIG_HELP)
@user_errors
def train(
    corpus: Optional[str] = typer.Argument(None, help="Text file to train on (default: the bundled corpora/languages.txt)."),
    config: Optional[str] = ConfigOpt,
    set_: list[str] = SetOpt,
    steps: Optional[int] = typer.Option(None, "--steps", help="Shortcut for --set train.steps=N."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="utf-8 (characters) or bytes (raw bytes, any file)."),
    name: Optional[str] = typer.Option(None, "--name", help="Run name (default <corpus>-<cell>-<timestamp>)."),
    runs_dir: Path = RunsDirOpt,
    resume: Optional[str] = typer.Option(None, "--resume", metavar="[RUN]", help="Continue a run (default: runs/latest) from its newest checkpoint."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary."),
    coordinator: Optional[str] = typer.Option(None, "--coordinator", envvar="JAX_COORDINATOR_ADDRESS", help="HOST:PORT of process 0: join a multi-process job (with --num-processes and --process-id)."),
    num_processes: Optional[int] = typer.Option(None, "--num-processes", envvar="JAX_NUM_PROCESSES", help="Number of processes in the job."),
    process_id: Optional[int] = typer.Option(None, "--process-id", envvar="JAX_PROCESS_ID", help="This process's number, 0..N-1 (0 prints and writes metrics)."),
    dist_auto: bool = typer.Option(False, "--distributed", help="Join a multi-process job described by the cluster (SLURM, Open MPI, TPU pods)."),
) -> None:
    """Train a model on CORPUS; progress live in the terminal, checkpoints in runs/<name>/."""
    from charlstm import distributed, rundir, runner

    if distributed.initialize(coordinator, num_processes, process_id, auto=dist_auto):  # before JAX touches a device
        ui.native_stdout_to_stderr()  # gloo's C++ connection messages: train has no results for stdout
    main = distributed.is_main()

    overrides = list(set_) + ([f"train.steps={steps}"] if steps is not None else []) + ([f"data.encoding={encoding}"] if encoding else [])
    run = None
    if resume is not None:
        run = rundir.resolve(resume, runs_dir)
        cfg = config_lib.load(run.config_file, overrides, saved=True)
    else:
        cfg = config_lib.load(config, overrides)
    display = ui.TrainingDisplay(cfg.train.log_every, quiet=quiet or not main)
    summary = runner.train_run(cfg, corpus, display, name=name, runs_dir=runs_dir, resume=run,
                               progress=ui.EncodeProgress(quiet=quiet))
    if not main:  # process 0 reports for the job
        return
    ui.table(
        "training summary", ["metric", "value"],
        [("run", summary.run_dir), ("steps", summary.steps), ("params", f"{summary.params:,}"),
         ("final val loss (nats/char)", ui.fmt(summary.final_val_loss)),
         ("final val bits/char", ui.fmt(runner.bits(summary.final_val_loss))),
         ("best val loss (nats/char)", ui.fmt(summary.best_val_loss)),
         ("train chars/s (median)", f"{summary.chars_per_s:,.0f}"), ("wall time", f"{summary.seconds:.1f} s")],
        console=ui.err,
    )
    ui.info(f"sample with: charlstm sample --run {summary.run_dir} --prompt \"...\"")


@app.command()
@user_errors
def sample(
    run: Optional[str] = RunOpt,
    runs_dir: Path = RunsDirOpt,
    checkpoint: str = CkptOpt,
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="Text to start from (default: a newline)."),
    prompt_file: Optional[Path] = typer.Option(None, "--prompt-file", help="Read the prompt from a file."),
    length: int = typer.Option(500, "--length", "-n", help="Characters to generate per sample."),
    temperature: float = typer.Option(1.0, "--temperature", "-t", help="Softmax temperature (> 0); lower is more conservative."),
    top_k: int = typer.Option(0, "--top-k", help="Sample among the k most likely characters (0: all)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling: smallest set with this much probability (1: all)."),
    greedy: bool = typer.Option(False, "--greedy", help="Always pick the most likely character."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same text)."),
    num_samples: int = typer.Option(1, "--num-samples", help="Independent samples, generated as one batch."),
    skip_unknown: bool = typer.Option(False, "--skip-unknown", help="Drop prompt characters the model does not know."),
    line_start: bool = typer.Option(True, "--line-start/--mid-line", help="Read the prompt as the start of a line (after a newline) or as is."),
) -> None:
    """Generate text from a trained run, streamed as it is produced."""
    from charlstm import checkpoint as ckpt
    from charlstm import sampling

    if prompt is not None and prompt_file is not None:
        raise UserError("--prompt and --prompt-file both given", "pass only one")
    if prompt_file is not None:
        try:
            prompt = prompt_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"cannot read prompt file {prompt_file}: {err}", "pass a UTF-8 text file") from None
    restored = ckpt.load_run(run, runs_dir, checkpoint, warn=ui.warn)
    vocab = restored.vocab
    opts = sampling.SampleOptions(length, temperature, top_k, top_p, greedy, seed, num_samples,
                                  newline_id=sampling.newline_id(vocab) if line_start else -1)
    opts.check(len(vocab))
    text = sampling.default_prompt(vocab) if prompt is None else prompt
    ids = sampling.encode_prompt(vocab, text, skip_unknown)
    shown_prompt = vocab.decode(ids)
    if num_samples == 1:  # stream: print each chunk as it is generated
        dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        sys.stdout.write(shown_prompt)
        for chunk in sampling.generate(restored.params, restored.config.model, ids, opts):
            piece = vocab.decode(chunk[0]) if vocab.encoding == "utf-8" else dec.decode(bytes(vocab.symbols[i] for i in chunk[0]))
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        texts = sampling.sample_text(restored.params, restored.config.model, vocab, shown_prompt, opts)
        for i, t in enumerate(texts):
            if not ui.is_piped():
                ui.err.print(f"[dim]--- sample {i + 1} ---[/]")
            sys.stdout.write(t + "\n")
    sys.stdout.flush()


@app.command(name="eval")
@user_errors
def eval_(
    file: Path = typer.Argument(..., help="Text file to score."),
    run: Optional[str] = RunOpt,
    runs_dir: Path = RunsDirOpt,
    checkpoint: str = CkptOpt,
    skip_unknown: bool = typer.Option(False, "--skip-unknown", help="Drop and count characters not in the vocabulary."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Loss of a trained run on FILE, in nats/char and bits/char (state carried through the file)."""
    import json

    from charlstm import checkpoint as ckpt
    from charlstm import evaluate

    restored = ckpt.load_run(run, runs_dir, checkpoint, warn=ui.warn)
    res = evaluate.evaluate_file(restored.params, restored.config.model, restored.vocab, file, skip_unknown)
    result = {"file": str(file), "step": restored.step, "nats_per_char": res.nats_per_char, "bits_per_char": res.bits_per_char,
              "perplexity": res.perplexity, "chars_scored": res.chars_scored, "unknown_skipped": res.unknown_skipped}
    if json_out:
        print(json.dumps(result))
        return
    ui.table(f"eval: {file}", ["metric", "value"], [(k, ui.fmt(v) if isinstance(v, float) else v) for k, v in result.items()])


@app.command()
@user_errors
def export(
    out: Path = typer.Option(..., "--out", "-o", help="Output .npz file."),
    run: Optional[str] = RunOpt,
    runs_dir: Path = RunsDirOpt,
    checkpoint: str = CkptOpt,
) -> None:
    """Write the weights in PyTorch's nn.LSTM/GRU/RNN layout and names (.npz), with the vocabulary."""
    from charlstm import checkpoint as ckpt
    from charlstm import export as export_lib

    if out.suffix != ".npz":
        raise UserError(f"--out must end in .npz (got {out.name})", "e.g. --out model.npz")
    restored = ckpt.load_run(run, runs_dir, checkpoint, warn=ui.warn)
    sd = export_lib.export_npz(restored.params, restored.config, restored.vocab, out)
    ui.info(f"wrote {out}: {len(sd)} tensors, step {restored.step}, cell {restored.config.model.cell}")


@app.command(name="compare-rnn", epilog=_CONFIG_HELP)
@user_errors
def compare_rnn(
    corpus: Optional[str] = typer.Argument(None, help="Text file to train on (default: the bundled corpora/languages.txt)."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML config file or bundled name (default: compare-rnn)."),
    set_: list[str] = SetOpt,
    cells: str = typer.Option("rnn,lstm", "--cells", help="Comma-separated cells to train: rnn, lstm, gru."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps per cell (shortcut for --set train.steps=N)."),
    match: str = typer.Option("params", "--match", help="params: size every cell to the config cell's parameter count; hidden: one width for all."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the curves (CSV), a summary (JSON) and the charts (PNG, needs matplotlib) here."),
    no_clip: bool = typer.Option(False, "--no-clip", help="Train without gradient clipping (watch an RNN's gradient norm explode)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the tables, no live chart or progress."),
) -> None:
    """Train an RNN and an LSTM (and a GRU) on the same data and show, measured, why the LSTM wins."""
    from charlstm import compare, plots

    names = compare.parse_cells(cells)
    cfg = config_lib.load(config or "compare-rnn", list(set_) + ([f"train.steps={steps}"] if steps is not None else []))
    png = out is not None and plots.have_matplotlib()
    if out is not None and not png:
        ui.warn("matplotlib is not installed: --out writes CSV/JSON only (pip install 'charlstm[plots]' for PNG charts)")
    result = compare.run(cfg, corpus, names, match=match, clip=not no_clip, reporter=plots.LiveDisplay(ui.err, quiet=quiet))
    color = ui.out.is_terminal
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


@app.command(epilog=_CONFIG_HELP)
@user_errors
def bench(
    config: Optional[str] = ConfigOpt,
    set_: list[str] = SetOpt,
    steps: int = typer.Option(5, "--steps", help="Timed training steps per round (after compilation)."),
    rounds: int = typer.Option(5, "--rounds", help="Measurement rounds; speeds and ratios are medians over rounds."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    vs_torch: bool = typer.Option(False, "--vs-torch", help="Also run the same model in PyTorch, alternating, and print the ratios."),
) -> None:
    """Training and sampling speed, compile time, memory and fraction of the machine's matmul peak."""
    import dataclasses
    import json

    from charlstm import bench as bench_lib

    cfg = config_lib.load(config, set_)
    res = bench_lib.run(cfg, steps=steps, rounds=rounds, vs_torch=vs_torch, log=ui.info)
    if json_out:
        print(json.dumps(dataclasses.asdict(res)))
        return
    ui.table("charlstm bench", ["metric", "value"], bench_lib.rows(res))


@app.command(name="inspect")
@user_errors
def inspect_(
    run: Optional[str] = RunOpt,
    runs_dir: Path = RunsDirOpt,
    checkpoint: str = CkptOpt,
    text: Optional[str] = typer.Option(None, "--text", help="The text to read."),
    file: Optional[Path] = typer.Option(None, "--file", help="Read the text from a UTF-8 file (the bundled corpus adds place memory)."),
    layer: Optional[int] = typer.Option(None, "--layer", help="Layer to show, counted from 1 (default: the last)."),
    cell: list[int] = typer.Option([], "--cell", help="Show this cell, 0..hidden-1 (repeatable)."),
    top: Optional[int] = typer.Option(None, "--top", help="Show the K cells that best track simple text properties (default 5)."),
    show: Optional[str] = typer.Option(None, "--show", help="LSTM: forget, input, output, cell or hidden; GRU: update, reset or hidden; RNN: hidden. Default: cell (LSTM), hidden (others)."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write the view as a standalone HTML page."),
    max_chars: int = typer.Option(20000, "--max-chars", help="Read at most this many characters of the text."),
    display_chars: int = typer.Option(800, "--display-chars", help="Draw at most this many characters per cell."),
    skip_unknown: bool = typer.Option(False, "--skip-unknown", help="Drop characters not in the vocabulary."),
) -> None:
    """Watch the gates and memory cells read text: one coloured line per cell, gate saturation, place memory."""
    from charlstm import checkpoint as ckpt
    from charlstm import heatmap, inspection, rundir

    source = inspection.load_text(text, file, max_chars)
    if display_chars < 1:
        raise UserError(f"--display-chars must be at least 1 (got {display_chars})", "e.g. --display-chars 800")
    restored = ckpt.load_run(run, runs_dir, checkpoint, warn=ui.warn)
    report = inspection.analyse(restored.params, restored.config.model, restored.vocab, source.text, layer=layer,
                                cells=cell, top=top, show=show, records=source.records, skip_unknown=skip_unknown)
    notes = [f"read the first {max_chars:,} characters of {file} (--max-chars)"] if source.truncated else []
    label = f"{rundir.resolve(run, runs_dir).path.name}, step {restored.step}"
    view = heatmap.inspect_view(report, label, display_chars, notes)
    heatmap.print_view(ui.out, view, table=ui.table)
    if html is not None:
        try:
            heatmap.write_html(html, view)
        except OSError as err:
            raise UserError(f"cannot write {html}: {err.strerror}", "check the directory exists and is writable") from None
        ui.info(f"wrote {html}")


corpus_app = typer.Typer(help="List and download corpora.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")


@corpus_app.command("list")
@user_errors
def corpus_list() -> None:
    """Show the bundled and the downloadable corpora (and where the downloaded ones are)."""
    from charlstm import corpus as corpus_lib

    ui.table("corpora", ["", "where", "what"], corpus_lib.list_corpora())


@corpus_app.command("get")
@user_errors
def corpus_get(
    name: str = typer.Argument(..., help="Corpus name, e.g. tinyshakespeare."),
    url: Optional[str] = typer.Option(None, "--url", help="Download from this URL (a mirror) instead; the checksum is still verified."),
) -> None:
    """Download a corpus into the cache, verify its checksum and print its path."""
    from charlstm import download

    path = download.get(name, url)
    ui.info(f"{name}: verified sha256, cached")
    print(path)


def _optional_resume_value(argv: list[str]) -> list[str]:
    """`--resume` may stand alone (meaning runs/latest): give it its value so the parser sees one."""
    out = []
    for k, a in enumerate(argv):
        out.append(a)
        if a == "--resume" and (k + 1 == len(argv) or argv[k + 1].startswith("-")):
            out.append("latest")
    return out


def main() -> None:
    """Console-script entry point."""
    from charlstm import perf

    perf.tune_malloc()  # before JAX allocates anything: see charlstm/perf.py
    perf.deterministic_gpu()  # before JAX creates a GPU backend
    app(args=_optional_resume_value(sys.argv[1:]), prog_name="charlstm")


if __name__ == "__main__":
    main()
