"""Commands that use a trained run: `sample` (generate text), `eval` (score a file) and `export` (the weights for
PyTorch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from charlstm import ui
from charlstm.cli._app import CkptOpt, JsonOpt, RunOpt, RunsDirOpt, user_errors
from charlstm.errors import UsageError, UserError
from charlstm.evaluation import MIN_COPY


@user_errors
def sample(
    run: str | None = RunOpt,
    runs_dir: Path = RunsDirOpt,
    checkpoint: str = CkptOpt,
    prompt: str | None = typer.Option(
        None, "--prompt", "-p", metavar="TEXT", show_default="a newline", help="Text to start from."
    ),
    prompt_file: Path | None = typer.Option(None, "--prompt-file", metavar="FILE", help="Read the prompt from a file."),
    length: int = typer.Option(
        500,
        "--length",
        "-n",
        metavar="N",
        help="Characters to generate per sample (-n as in llama.cpp: how much to generate; --num-samples counts "
        "samples).",
    ),
    temperature: float = typer.Option(
        1.0, "--temperature", "-t", metavar="T", help="Softmax temperature (> 0); lower is more conservative."
    ),
    top_k: int = typer.Option(0, "--top-k", metavar="K", help="Sample among the K most likely characters (0: all)."),
    top_p: float = typer.Option(
        1.0, "--top-p", metavar="P", help="Nucleus sampling: the smallest set with this much probability (1: all)."
    ),
    greedy: bool = typer.Option(False, "--greedy", help="Always pick the most likely character."),
    seed: int = typer.Option(0, "--seed", metavar="N", help="Random seed, 0..4294967295 (same seed, same text)."),
    num_samples: int = typer.Option(
        1, "--num-samples", metavar="N", help="Independent samples, generated as one batch."
    ),
    stop: list[str] = typer.Option(
        [],
        "--stop",
        metavar="TEXT",
        show_default=False,
        help="End a sample where it first produces TEXT, which is left out (repeatable; escapes such as \\n\\n "
        "are read).",
    ),
    skip_unknown: bool = typer.Option(False, "--skip-unknown", help="Drop prompt characters the model does not know."),
    line_start: bool = typer.Option(
        True, "--line-start/--mid-line", help="Read the prompt as the start of a line (after a newline) or as is."
    ),
    json_out: bool = typer.Option(
        False,
        "--json",
        help="One JSON object per sample and line on stdout: sample, prompt, text, seed, run, step (and novelty).",
    ),
    novelty: bool = typer.Option(
        False,
        "--novelty",
        help="Mark the generated spans that occur verbatim in the run's training text (underlined, or [[...]] "
        "without colour), then say what share of the text they cover and where the longest comes from.",
    ),
    min_copy: int = typer.Option(
        MIN_COPY,
        "--min-copy",
        metavar="N",
        help="With --novelty: the shortest span counted, in characters (the default is measured in docs/novelty.md).",
    ),
    corpus: Path | None = typer.Option(
        None,
        "--corpus",
        metavar="FILE",
        show_default="the run's, from run.json",
        help="With --novelty: the file the run trained on, when it has moved.",
    ),
) -> None:
    """Generate text from a trained run, streamed as it is produced (with --novelty: printed once checked)."""
    if prompt is not None and prompt_file is not None:
        raise UsageError("--prompt and --prompt-file both given", "pass only one")
    if prompt_file is not None:
        from charlstm.data import corpus as corpus_lib  # not `corpus`: that is the --corpus option

        try:
            prompt = corpus_lib.read_bytes(prompt_file, "prompt file").decode("utf-8")
        except UnicodeDecodeError as err:
            raise UserError(
                f"prompt file {prompt_file} is not UTF-8 (byte offset {err.start})", "pass a UTF-8 text file"
            ) from None
    if novelty:
        from charlstm.evaluation import novelty as novelty_lib

        novelty_lib.check_min_copy(min_copy)
    elif corpus is not None:
        raise UsageError("--corpus names the training text for --novelty", "pass --novelty too, or leave out --corpus")
    from charlstm import api
    from charlstm.nn.sampling import SampleOptions, unescape

    model = api.load(run, checkpoint, runs_dir=runs_dir, on_warning=ui.warn)
    options = SampleOptions(
        length=length,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        greedy=greedy,
        seed=seed,
        num_samples=num_samples,
        stop=tuple(unescape(text) for text in stop),
    )
    reading: dict[str, Any] = dict(skip_unknown=skip_unknown, line_start=line_start)
    if novelty:
        _sample_novelty(model, prompt, options, reading, min_copy, corpus, json_out)
        return
    if num_samples == 1 and not json_out:
        pieces = model.stream(prompt, options, **reading)
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
        texts = model.sample(prompt, options, **reading)
    if json_out:
        shown = model.read_prompt(prompt, skip_unknown)
        for i, text in enumerate(texts):
            print(json.dumps(_json_row(model, i, shown, text[len(shown) :], seed)))
        return
    for i, text in enumerate(texts):
        ui.out.print(f"[dim]--- sample {i + 1}/{num_samples} ---[/]")
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _json_row(model: Any, i: int, prompt: str, text: str, seed: int) -> dict[str, Any]:
    """One line of `sample --json`: the i-th sample's prompt as read and generated text, and where it came from."""
    return {
        "sample": i + 1,
        "prompt": prompt,
        "text": text,
        "seed": seed,
        "run": str(model.run_dir),
        "step": model.step,
    }


def _sample_novelty(
    model: Any,
    prompt: str | None,
    options: Any,
    reading: dict[str, Any],
    min_copy: int,
    corpus: Path | None,
    json_out: bool,
) -> None:
    """`sample --novelty`: the samples with their copied spans marked, then one line on them all."""
    from rich.text import Text

    from charlstm.evaluation import novelty as novelty_lib

    with ui.spinner("finding the training text's index (built once per corpus)"):
        model.novelty_index(corpus)  # a missing or changed corpus fails before anything is generated
    n = options.num_samples
    with ui.spinner(f"generating {n} sample{'s' if n > 1 else ''} and checking for copies"):
        checked = model.sample(prompt, options, **reading, novelty=True, min_copy=min_copy, corpus=corpus)
    if json_out:
        for i, one in enumerate(checked):
            print(json.dumps(_json_row(model, i, one.prompt, one.text, options.seed) | {"novelty": one.to_json()}))
        return
    colour = ui.color_on(ui.out)
    for i, one in enumerate(checked):
        if n > 1:
            ui.out.print(f"[dim]--- sample {i + 1}/{n} ---[/]")
        if colour:
            shown = Text(one.prompt)
            for piece, copied in one.pieces():
                shown.append(piece, style="underline magenta" if copied else "")
            ui.out.print(shown, soft_wrap=True)
        else:
            sys.stdout.write(one.prompt + one.bracketed() + "\n")
            sys.stdout.flush()
    ui.out.print(Text(novelty_lib.summary_line(checked), style="bold"), soft_wrap=True)


@user_errors
def eval_(
    file: Path = typer.Argument(..., metavar="FILE", help="Text file to score."),
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


@user_errors
def export(
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        metavar="DIR|FILE.html|FILE.npz",
        help="A directory (any model: safetensors weights, config, vocabulary and a PyTorch module), a FILE.html "
        "(any model: one web page that generates text in a browser), or a FILE.npz (plain LSTM/GRU/RNN).",
    ),
    run: str | None = RunOpt,
    runs_dir: Path = RunsDirOpt,
    checkpoint: str = CkptOpt,
    force: bool = typer.Option(False, "--force", help="Replace the files of an earlier export at --out."),
) -> None:
    """Write the weights in PyTorch's layout and names: a directory that samples and scores with PyTorch alone
    (charlstm_torch.py inside), or a .npz for nn.LSTM/GRU/RNN."""
    from charlstm import api

    kind = api.check_export_path(out, force)  # a wrong or taken name fails before the run is loaded
    model = api.load(run, checkpoint, runs_dir=runs_dir, on_warning=ui.warn)
    arrays = model.export(out, overwrite=force)
    m = model.config.model
    what = f"step {model.step}, {m.cell}{'-ln' if m.layer_norm else ''} {m.layers}x{m.hidden}"
    if kind == "npz":
        ui.info(f"wrote {out}: {len(arrays)} tensors, {what}")
        return
    if kind == "html":
        ui.info(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), {what}: open it in a browser, no server needed")
        return
    ui.info(
        f"wrote {out}/: model.safetensors ({len(arrays)} tensors), config.json, vocab.json, charlstm_torch.py; {what}"
    )
    ui.info(f'sample with PyTorch: python {out / "charlstm_torch.py"} {out} --prompt "..."')
