"""The Python API: load a trained run and sample, stream, score or export it; or train a new one.

    from pathlib import Path

    import charlstm

    model = charlstm.load()                             # runs/latest, its latest checkpoint
    print(model.sample("The ", length=200, seed=1)[0])
    for piece in model.stream("Once upon", length=1000):
        print(piece, end="", flush=True)
    print(model.score(Path("held-out.txt")).bits_per_char)  # a Path is read as a file, a str scored as text

The command line's `train`, `sample`, `eval` and `export` call these same functions, so a seed gives the same
text in both. Problems the caller can fix are raised as `charlstm.UserError` subclasses (never `sys.exit`);
nothing is printed unless `train(progress=True)` asks for the live display. JAX is imported by the first
call that needs it, not by `import charlstm`.
"""

from __future__ import annotations

import codecs
import os
import time as _time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from charlstm import events, perf
from charlstm.config import Config
from charlstm.data.corpus import Vocab
from charlstm.errors import UsageError, UserError
from charlstm.evaluation import novelty as novelty_lib
from charlstm.training import rundir
from charlstm.training.configure import Overrides, override_items
from charlstm.training.configure import training_config as training_config  # part of the API: train's first half

if TYPE_CHECKING:  # these import JAX
    import numpy as np

    from charlstm.evaluation import scoring
    from charlstm.nn import sampling
    from charlstm.training import checkpoint, runner, sizing
    from charlstm.training.recorder import TrainReporter


def _start_jax() -> None:
    """Process settings that must come before JAX compiles anything (see `charlstm.perf`)."""
    perf.deterministic_gpu()
    perf.compile_cache()


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


class Model:
    """One checkpoint of a trained run, ready to sample, score and export. Made by `load` and `train`.

    Compiled samplers are kept for the life of the process: a second `sample` or `stream` call with the same
    options runs without compiling, whatever its seed (a prompt of another length compiles the prompt reader
    again, and a length under 512 or another num_samples compiles for that shape).
    """

    def __init__(self, restored: checkpoint.Restored, run_dir: Path, summary: runner.Summary | None = None) -> None:
        self._restored = restored
        self.run_dir = run_dir  # the run's directory (runs/latest resolved to the run it names)
        self.summary = summary  # the training summary, when `train` made this model
        self._indexes: dict[str, novelty_lib.Index] = {}  # the training text's index, by --corpus ("": its own)

    @property
    def config(self) -> Config:
        """The run's resolved configuration (`config.model.hidden` etc.)."""
        return self._restored.config

    @property
    def vocab(self) -> Vocab:
        """The characters (or bytes) the model knows, in id order."""
        return self._restored.vocab

    @property
    def step(self) -> int:
        """The training step of the loaded checkpoint."""
        return self._restored.step

    @property
    def val_loss(self) -> float | None:
        """The validation loss (nats per character) recorded with the checkpoint, if any."""
        return self._restored.val_loss

    @property
    def params(self) -> Any:
        """The parameter pytree used for sampling and scoring (the weight average with optim.ema)."""
        return self._restored.params

    def __repr__(self) -> str:
        m = self.config.model
        return (
            f"Model(run={str(self.run_dir)!r}, step={self.step}, {m.cell} {m.layers}x{m.hidden}, "
            f"vocab {len(self.vocab)})"
        )

    # --- generating ---------------------------------------------------------------------------------------

    def read_prompt(self, prompt: str | None = None, skip_unknown: bool = False) -> str:
        """The prompt as the model reads it: a newline when None, characters it does not know dropped with
        `skip_unknown` (else a UsageError names them)."""
        return self.vocab.decode(self._prompt_ids(prompt, skip_unknown))

    @overload
    def sample(
        self,
        prompt: str | None = None,
        options: sampling.SampleOptions | None = None,
        *,
        skip_unknown: bool = False,
        line_start: bool = True,
        novelty: Literal[False] = False,
        min_copy: int = novelty_lib.MIN_COPY,
        corpus: str | os.PathLike[str] | None = None,
        **changes: Any,
    ) -> list[str]: ...
    @overload
    def sample(
        self,
        prompt: str | None = None,
        options: sampling.SampleOptions | None = None,
        *,
        skip_unknown: bool = False,
        line_start: bool = True,
        novelty: Literal[True],
        min_copy: int = novelty_lib.MIN_COPY,
        corpus: str | os.PathLike[str] | None = None,
        **changes: Any,
    ) -> list[novelty_lib.Novelty]: ...
    @overload
    def sample(
        self,
        prompt: str | None = None,
        options: sampling.SampleOptions | None = None,
        *,
        skip_unknown: bool = False,
        line_start: bool = True,
        novelty: bool,
        min_copy: int = novelty_lib.MIN_COPY,
        corpus: str | os.PathLike[str] | None = None,
        **changes: Any,
    ) -> list[str] | list[novelty_lib.Novelty]: ...
    def sample(
        self,
        prompt: str | None = None,
        options: sampling.SampleOptions | None = None,
        *,
        skip_unknown: bool = False,
        line_start: bool = True,
        novelty: bool = False,
        min_copy: int = novelty_lib.MIN_COPY,
        corpus: str | os.PathLike[str] | None = None,
        **changes: Any,
    ) -> list[str] | list[novelty_lib.Novelty]:
        """Generate `num_samples` texts of `length` characters after `prompt`, all in one batch.

        `options` (a `charlstm.SampleOptions`: length, temperature, top_k, top_p, greedy, seed, num_samples) say
        how to draw; keyword arguments change single fields of it, e.g. `model.sample("The ", length=200,
        seed=1)`. Always a list, one string per sample (`model.sample("The ")[0]` for one), each starting with
        the prompt as read (see `read_prompt`). The same seed and options give the same text, here, from
        `charlstm sample` and from `charlstm serve`. With `line_start` the model reads the prompt as the start
        of a line; `skip_unknown` drops prompt characters it does not know (else a UsageError names them).

        With `novelty`, each sample comes back checked against the training text (see `novelty`): a
        `Novelty` with `.sample` (the text), `.spans` (copied spans of `min_copy`+ characters of the generated
        part), `.share` and `.longest`.
        """
        if novelty:
            index = self.novelty_index(corpus)  # a missing or changed training text fails before sampling
            novelty_lib.check_min_copy(min_copy)
        ids = self._prompt_ids(prompt, skip_unknown)
        opts = self._options(options, changes, line_start)
        from charlstm.nn import sampling

        shown = self.vocab.decode(ids)
        samples = [_Sample(self.vocab, opts.stop) for _ in range(opts.num_samples)]
        for chunk in sampling.generate(self.params, self.config.model, ids, opts):
            for one, row in zip(samples, chunk, strict=True):
                one.add(row)
            if all(one.stopped for one in samples):
                break
        for one in samples:
            one.finish()
        texts = [shown + "".join(one.text) for one in samples]
        if novelty:
            return [novelty_lib.check(index, text, shown, min_copy) for text in texts]
        return texts

    def novelty(
        self,
        sample: str,
        *,
        prompt: str = "",
        min_copy: int = novelty_lib.MIN_COPY,
        corpus: str | os.PathLike[str] | None = None,
    ) -> novelty_lib.Novelty:
        """Which spans of `sample` (after `prompt`, which it starts with) occur verbatim in the run's training text:
        every span of at least `min_copy` characters, with where it occurs in the corpus, and the share of the
        generated characters they cover. `corpus`: the file the run trained on, when it is no longer where
        run.json says (a changed file is a CorpusError). See `charlstm.evaluation.novelty`."""
        return novelty_lib.check(self.novelty_index(corpus), sample, prompt, min_copy)

    def novelty_index(self, corpus: str | os.PathLike[str] | None = None) -> novelty_lib.Index:
        """The index of the run's training split (the first 1 - data.val_fraction of its corpus), from the cache,
        built there on first use; kept for the life of this Model."""
        key = "" if corpus is None else str(corpus)
        if key not in self._indexes:
            info = rundir.RunDir(self.run_dir).read_info()
            path = Path(corpus) if corpus is not None else Path(str(info.get("corpus", "")))
            digest = info.get("corpus_sha256")
            index = novelty_lib.load(
                path,
                self.vocab.encoding,
                self.config.data.val_fraction,
                digest=str(digest) if digest else None,
                vocab=self.vocab,
            )
            assert index is not None  # built when missing
            self._indexes[key] = index
        return self._indexes[key]

    def stream(
        self,
        prompt: str | None = None,
        options: sampling.SampleOptions | None = None,
        *,
        skip_unknown: bool = False,
        line_start: bool = True,
        **changes: Any,
    ) -> Iterator[str]:
        """One sample (`options.num_samples` must be 1), yielded as it is generated: first the prompt as read,
        then pieces of up to 512 characters. Joined, the pieces are `sample(...)[0]` with the same arguments.
        Options are checked here, before the first piece is asked for."""
        ids = self._prompt_ids(prompt, skip_unknown)
        opts = self._options(options, changes, line_start)
        if opts.num_samples != 1:
            raise UsageError(f"stream generates one sample (num_samples={opts.num_samples})", "use sample()")
        return self._stream(ids, opts)

    def _stream(self, ids: np.ndarray, opts: sampling.SampleOptions) -> Iterator[str]:
        from charlstm.nn import sampling

        yield self.vocab.decode(ids)
        one = _Sample(self.vocab, opts.stop)
        for chunk in sampling.generate(self.params, self.config.model, ids, opts):
            piece = one.add(chunk[0])
            if piece:
                yield piece
            if one.stopped:
                return
        tail = one.finish()
        if tail:
            yield tail

    def _prompt_ids(self, prompt: str | None, skip_unknown: bool) -> np.ndarray:
        from charlstm.nn import sampling

        text = sampling.default_prompt(self.vocab) if prompt is None else prompt
        return sampling.encode_prompt(self.vocab, text, skip_unknown)

    def _options(
        self, options: sampling.SampleOptions | None, changes: dict[str, Any], line_start: bool
    ) -> sampling.SampleOptions:
        """`options` with `changes`, reading the prompt after a newline when `line_start`; checked."""
        import dataclasses

        from charlstm.nn import sampling

        unknown = sorted(set(changes) - set(sampling.SampleOptions.FIELDS))
        if unknown:
            raise TypeError(
                f"unknown sampling option(s) {unknown}: SampleOptions has {list(sampling.SampleOptions.FIELDS)}"
            )
        newline = sampling.newline_id(self.vocab) if line_start else -1
        opts = dataclasses.replace(options or sampling.SampleOptions(), **changes, newline_id=newline)
        opts.check(len(self.vocab))
        opts = dataclasses.replace(opts, stop=tuple(opts.stop))
        from charlstm.data import corpus

        for stop in opts.stop:
            missing = "".join(sorted({stop[k] for k in corpus.unknown_positions(self.vocab, stop)}))
            if missing:
                raise UsageError(
                    f"the stop {stop!r} can never be generated: {missing!r} not in the run's vocabulary",
                    "pass a stop made of characters the model knows",
                )
        return opts

    # --- scoring and export -------------------------------------------------------------------------------

    def score(self, text_or_path: str | os.PathLike[str], *, skip_unknown: bool = False) -> scoring.EvalResult:
        """The model's loss on a text, read as one stream with the state carried through it.

        A `str` is the text itself (one that names an existing file is refused as a likely mistake); a path
        (`pathlib.Path`, any `os.PathLike`) names a file to read. The result
        has `nats_per_char`, `bits_per_char`, `perplexity`, `chars_scored` and `unknown_skipped` (characters
        outside the vocabulary, an error unless `skip_unknown`).
        """
        from charlstm.evaluation import scoring

        model_cfg = self.config.model
        if isinstance(text_or_path, os.PathLike):
            return scoring.score_file(self.params, model_cfg, self.vocab, Path(text_or_path), skip_unknown)
        if not isinstance(text_or_path, str):
            raise UsageError(
                f"score() takes a str (the text) or a path, not {type(text_or_path).__name__}",
                "pass the text, or pathlib.Path(file)",
            )
        if "\n" not in text_or_path and len(text_or_path) < 4096 and os.path.isfile(text_or_path):
            # Almost surely meant as a file: scoring the name itself would quietly give a meaningless number.
            raise UsageError(
                f"score() got the str {text_or_path!r}, which names a file",
                f"pass pathlib.Path({text_or_path!r}) to score the file",
            )
        return scoring.score_text(self.params, model_cfg, self.vocab, text_or_path, skip_unknown)

    def export(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> dict[str, np.ndarray]:
        """Write the weights in PyTorch's layout and names; returns the arrays written, by name.

        A directory `path` gets model.safetensors, config.json, vocab.json and charlstm_torch.py, a PyTorch
        module for every cell (`charlstm_torch.load(path)` samples and scores without charlstm); a `path` ending
        in .npz gets one file in nn.LSTM/GRU/RNN's layout, with the vocabulary and config (plain cells only); one
        ending in .html a web page that generates text in a browser (any cell; `charlstm.nn.webpage`).
        See `charlstm.nn.export`. Files of an earlier export there are a UserError unless `overwrite`.
        """
        from charlstm.nn import export, webpage

        out = Path(path)
        check_export_path(out, overwrite)
        if export_kind(out) == "npz":
            return export.export_npz(self.params, self.config, self.vocab, out)
        if export_kind(out) == "html":
            about = f"trained {self.step} steps in charlstm run {self.run_dir.name}"
            return webpage.export_html(self.params, self.config, self.vocab, out, about)
        return export.export_dir(self.params, self.config, self.vocab, out)


def export_kind(path: str | os.PathLike[str]) -> str:
    """ "npz" or "html" for a path ending so, "dir" for a directory (an existing one, or a name without a
    suffix); anything else, such as model.pt, is a UsageError."""
    out = Path(path)
    if out.suffix in (".npz", ".html"):
        return out.suffix[1:]
    if out.is_dir() or (out.suffix == "" and not out.exists()):
        return "dir"
    raise UsageError(
        f"the export path must be a directory or end in .npz or .html (got {out.name})",
        "e.g. --out model (a directory with a PyTorch module), --out model.html (a web page) or --out model.npz",
    )


def check_export_path(path: str | os.PathLike[str], overwrite: bool = False) -> str:
    """`export_kind` of `path`, refusing to replace what an earlier export (or anything else) left there unless
    `overwrite`: an export never destroys files without being asked to."""
    out = Path(path)
    kind = export_kind(out)  # a wrong name is a usage error before anything heavy is imported
    if kind in ("npz", "html"):
        taken = [out] if out.exists() else []
    elif out.is_dir():
        from charlstm.nn.export import TORCH_FILES

        taken = [out / f for f in TORCH_FILES if (out / f).exists()]
    else:
        taken = []
    if taken and not overwrite:
        names = ", ".join(str(t) for t in taken[:2]) + (f" and {len(taken) - 2} more" if len(taken) > 2 else "")
        raise UserError(f"the export would overwrite {names}", "pass --force to replace them, or choose another --out")
    return kind


class _Sample:
    """One sample's text, added chunk of ids by chunk: decoded (a byte-level model's multi-byte characters may
    straddle two chunks) and cut where it first completes one of `stops`."""

    def __init__(self, vocab: Vocab, stops: tuple[str, ...]) -> None:
        from charlstm.nn import sampling

        self.decoder = _Decoder(vocab)
        self.scan = sampling.StopScan(stops)
        self.text: list[str] = []

    @property
    def stopped(self) -> bool:
        return self.scan.done

    def add(self, ids: Any) -> str:
        """Decode `ids`; returns the new text that is safe to show."""
        piece = self.scan.feed(self.decoder.decode(ids))
        self.text.append(piece)
        return piece

    def finish(self) -> str:
        """End the sample; returns the text `add` had not returned yet."""
        tail = self.scan.feed(self.decoder.decode([], final=True)) + self.scan.flush()
        self.text.append(tail)
        return tail


class _Decoder:
    """Ids to text, piece by piece: a byte-level model's multi-byte characters may straddle two pieces."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self.bytes = codecs.getincrementaldecoder("utf-8")(errors="replace") if vocab.encoding == "bytes" else None

    def decode(self, ids: Any, final: bool = False) -> str:
        if self.bytes is None:
            return self.vocab.decode(ids) if len(ids) else ""
        return self.bytes.decode(bytes(self.vocab.symbols[int(i)] for i in ids), final=final)


# --- loading and training ---------------------------------------------------------------------------------


def load(
    run: str | os.PathLike[str] | None = None,
    checkpoint: str | int = "latest",
    *,
    runs_dir: str | os.PathLike[str] = "runs",
    on_warning: Callable[[str], None] | None = None,
) -> Model:
    """Load a trained run: `run` is a run directory or a run name in `runs_dir` (None: runs/latest, the newest
    run); `checkpoint` is "latest", "best" (lowest validation loss) or a step number.

    A damaged checkpoint is skipped for the previous one with a warning (`on_warning`, default: Python's
    `warnings`). Raises `RunError` when there is no such run or no loadable checkpoint.
    """
    which = parse_checkpoint(checkpoint)
    _start_jax()
    from charlstm.training import checkpoint as ckpt

    runs = Path(runs_dir)
    restored = ckpt.load_run(None if run is None else str(run), runs, which, warn=on_warning or _warn)
    return Model(restored, _run_path(run, runs))


def parse_checkpoint(value: str | int) -> str:
    """ "latest", "best" or a step number (int or digits) -> the form `checkpoint.load_run` takes."""
    text = str(value).strip()
    if text in ("latest", "best") or (text.isdigit() and not isinstance(value, bool)):
        return text
    raise UsageError(f"unknown checkpoint {value!r}", "use latest, best, or a step number")


def _run_path(run: str | os.PathLike[str] | None, runs_dir: Path) -> Path:
    """The run directory, with runs/latest followed to the run it names."""
    path = rundir.resolve(None if run is None else str(run), runs_dir).path
    return path.resolve() if path.is_symlink() else path


def run_training(
    cfg: Config,
    corpus: str | os.PathLike[str] | None = None,
    *,
    runs_dir: str | os.PathLike[str] = "runs",
    name: str | None = None,
    resume: rundir.RunDir | None = None,
    reporter: TrainReporter | None = None,
    init_from: str | os.PathLike[str] | None = None,
    checkpoint: str | int = "latest",
    extend_vocab: bool = False,
    started: float | None = None,
) -> runner.Summary:
    """Train with a resolved config (`training_config`) and return the summary; the second half of `train`.

    `init_from`: start from that run's `checkpoint` (fine-tuning; `cfg` from `training_config(init_from=...)`),
    with `extend_vocab` growing the vocabulary for characters the run does not know. `reporter` sees every
    event (see `TrainReporter`; `ui.TrainingDisplay` is the live display); it may also have an
    `encoding(phase, done, total)` method for the progress of encoding a large corpus. A `train.time` budget
    counts from `started` (`time.monotonic()`; default: this call).
    """
    which = parse_checkpoint(checkpoint)
    if name is not None:
        rundir.check_name(name)  # before the corpus is read: a bad name is a usage error, found at once
    if extend_vocab and init_from is None:
        raise UsageError("extend_vocab needs init_from", "--extend-vocab grows the vocabulary of the --init-from run")
    source = None if init_from is None else rundir.resolve(str(init_from), Path(runs_dir))
    _start_jax()
    from charlstm.training import finetune, runner

    reporter = reporter or events.Silent()
    init = None if source is None else finetune.Init(source, which, extend_vocab)
    return runner.train_run(
        cfg,
        None if corpus is None else str(corpus),
        reporter,
        name=name,
        runs_dir=Path(runs_dir),
        resume=resume,
        progress=getattr(reporter, "encoding", None),
        init=init,
        started=started,
    )


def auto_size(
    corpus: str | os.PathLike[str] | None,
    time: str | float,
    config: str | os.PathLike[str] | None = None,
    overrides: Overrides = None,
    *,
    log: Callable[[str], None] | None = None,
) -> tuple[Config, sizing.Choice | None]:
    """The config `train(corpus, config, overrides, time=time)` would train with on this machine, without
    training: with `model.auto_size` (`config` "auto", or None on a corpus that is not bundled) the size chosen
    for the budget, and the choice with its reasons (a short timing of each candidate size, kept in the charlstm
    cache); otherwise `config` as it is, and None."""
    started = _time.monotonic()
    items = override_items(overrides) + [f"train.time={time}"]
    cfg, _ = training_config(config, items, corpus=corpus)
    if not cfg.model.auto_size:
        return cfg, None
    _start_jax()
    from charlstm import config as config_lib
    from charlstm.data import corpus as corpus_lib
    from charlstm.training import runner, sizing

    vocab, train_ids, _ = runner.prepare_data(cfg, corpus_lib.resolve(None if corpus is None else str(corpus)))
    seconds = config_lib.parse_duration(str(cfg.train.time))
    choice = sizing.choose(cfg, len(train_ids), len(vocab), seconds, started, log=log or (lambda msg: None))
    return choice.config, choice


def train(
    corpus: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    overrides: Overrides = None,
    *,
    runs_dir: str | os.PathLike[str] = "runs",
    name: str | None = None,
    resume: str | os.PathLike[str] | None = None,
    progress: bool = True,
    init_from: str | os.PathLike[str] | None = None,
    checkpoint: str | int = "latest",
    extend_vocab: bool = False,
    time: str | float | None = None,
) -> Model:
    """Train a model on `corpus` (a text file, a bundled or downloaded corpus name; None: the bundled
    essay corpus) and return it loaded at its final checkpoint, with the training summary in `.summary`.

    `config` is a YAML file or a bundled name (default, tiny, shakespeare, ...; None: the config named after a
    bundled corpus, else default, and with `resume` the run's own config, so giving both is a UsageError);
    `overrides` set single keys, e.g. {"model.hidden": 128, "train.steps": 500} (`charlstm config show` lists
    them). The run is written to
    `runs_dir/name` (default name: <corpus>-<cell>-<time>) and becomes runs/latest; `resume` continues a run
    to its `train.steps` instead. `init_from` starts a new run from that run's `checkpoint` ("latest", "best" or
    a step): its model and weights, a fresh optimizer and schedule (fine-tuning); `extend_vocab` adds the
    corpus's characters the run lacks (else a CorpusError names them). `progress` shows the live display on
    stderr, as `charlstm train` does. `time` ("10m", "1h30m" or seconds) trains to that budget, counted from this
    call, instead of `train.steps` (`train.time`).
    Ctrl-C stops after the current step and saves a checkpoint, then raises `runner.Interrupted`.
    """
    started = _time.monotonic()
    items = override_items(overrides) + ([f"train.time={time}"] if time is not None else [])
    cfg, run = training_config(config, items, resume=resume, runs_dir=runs_dir, init_from=init_from, corpus=corpus)
    reporter: TrainReporter
    if progress:
        from charlstm import ui

        reporter = ui.TrainingDisplay(cfg.train.log_every)
    else:
        reporter = events.Silent()
    summary = run_training(
        cfg,
        corpus,
        runs_dir=runs_dir,
        name=name,
        resume=run,
        reporter=reporter,
        init_from=init_from,
        checkpoint=checkpoint,
        extend_vocab=extend_vocab,
        started=started,
    )
    model = load(summary.run_dir, "latest", runs_dir=runs_dir)
    model.summary = summary
    return model
