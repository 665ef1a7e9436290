"""Driving one training run: corpus -> run directory -> training loop, with metrics, checkpoints and signals.

`train_run` is what `charlstm train` calls. It reports through a `TrainReporter` (the live display in `ui`, or
anything with the same methods), so it can run headless in tests and in `compare-rnn`.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlstm import config, events
from charlstm.config import Config
from charlstm.data import batches, corpus, encoded
from charlstm.errors import RunError, UsageError, UserError
from charlstm.evaluation import novelty, promptcheck
from charlstm.nn import model, sampling
from charlstm.training import budget as budget_lib
from charlstm.training import checkpoint, distributed, finetune, loop, rundir, signals, sizing, tensorboard
from charlstm.training.recorder import Recorder, TrainReporter, sample_text


@dataclass(frozen=True)
class Summary:
    run_dir: Path
    steps: int
    final_val_loss: float | None
    best_val_loss: float | None
    params: int
    seconds: float
    chars_per_s: float
    interrupted: int = 0  # the signal number that stopped training, 0 if it finished
    stopped_early: bool = False  # train.patience stopped it before train.steps
    prompt_check: promptcheck.PromptCheck | None = None  # on an annotated corpus, with train.prompt_check
    budget: str | None = None  # with train.time: what was chosen and why, in one line (budget.summary_line)
    patience: int = 0  # train.patience, which stopped it when stopped_early
    copied: novelty.Novelty | None = None  # the last evaluation's sample checked against the training text

    def to_json(self) -> dict[str, object]:
        """The summary as `charlstm train --json` prints it."""
        return {
            "run": str(self.run_dir),
            "steps": self.steps,
            "params": self.params,
            "final_val_loss": self.final_val_loss,
            "final_val_bpc": events.bits(self.final_val_loss),
            "best_val_loss": self.best_val_loss,
            "chars_per_s": self.chars_per_s,
            "seconds": self.seconds,
            "stopped_early": self.stopped_early,
            "budget": self.budget,
            "prompt_check": self.prompt_check.to_json() if self.prompt_check else None,
            "copied": self.copied.to_json() if self.copied else None,
        }

    def rows(self) -> list[tuple[str, str]]:
        """(metric, value) rows of the summary table."""

        def fmt(x: float | None) -> str:
            return "—" if x is None or math.isnan(x) else f"{x:.4f}"

        rows = [
            ("run", str(self.run_dir)),
            ("steps", str(self.steps)),
            ("params", f"{self.params:,}"),
            ("final val loss (nats/char)", fmt(self.final_val_loss)),
            ("final val bits/char", fmt(events.bits(self.final_val_loss))),
            ("best val loss (nats/char)", fmt(self.best_val_loss)),
            ("train chars/s (median)", f"{self.chars_per_s:,.0f}"),
            ("wall time", f"{self.seconds:.1f} s"),
        ]
        if self.copied is not None:
            rows.append(("copied in the last sample", copied_row(self.copied)))
        if self.budget:
            rows.append(("time budget", self.budget))
        if self.stopped_early:
            why = f"no better val loss in {self.patience} evaluations (best kept: --checkpoint best)"
            rows.append(("stopped early", f"yes: {why}"))
        return rows


def copied_row(checked: novelty.Novelty) -> str:
    """The summary's line on the last sample's copies: over-fitting shows as a growing share."""
    text = f"{checked.share:.1%} of {len(checked.text):,} chars in spans of {checked.min_copy}+"
    longest = checked.longest
    return text + (f"; longest {longest.length} chars, corpus line {longest.corpus_line:,}" if longest else "")


class Interrupted(UserError):
    """Training stopped by SIGINT/SIGTERM after saving; exit code 128 + signal."""

    def __init__(self, signum: int, run: Path, step: int, processes: int = 1) -> None:
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        more = f", in all {processes} processes with their distributed options" if processes > 1 else ""
        super().__init__(
            f"{name}: training stopped at step {step}, checkpoint saved in {run}",
            f"resume with: charlstm train --resume {run}{more}",
        )
        self.exit_code = 128 + signum


@dataclass(frozen=True)
class _Corpus:
    """The prepared corpus of a run, the same in every process."""

    path: Path
    vocab: corpus.Vocab
    train_ids: np.ndarray
    val_ids: np.ndarray


@dataclass(frozen=True)
class _Job:
    """What every step of training a locked run directory reads."""

    cfg: Config
    run: rundir.RunDir
    ckpt: checkpoint.Checkpointer
    layout: distributed.Layout
    reporter: TrainReporter
    resuming: bool  # continuing an existing run directory (--resume)
    started: float  # time.monotonic() when the command started: a time budget counts from there


@dataclass(frozen=True)
class _Ending:
    """How the loop ended: the final state (saved), the seconds it took and the signal that stopped it (0: none)."""

    state: loop.TrainState
    seconds: float
    signum: int
    stopped_early: bool
    budget: budget_lib.Budget | None = None

    @property
    def step(self) -> int:
        return int(self.state.step)


def prepare_data(
    cfg: Config, corpus_path: Path, vocab: corpus.Vocab | None = None, progress: encoded.Progress | None = None
) -> tuple[corpus.Vocab, np.ndarray, np.ndarray]:
    """Read and split the corpus; reject one too small for a training and a validation batch.

    Large files go through the encoded cache and come back memory-mapped (see `encoded`).
    """
    vocab, ids = encoded.load_any_size(corpus_path, cfg.data.encoding, vocab, progress)
    tr, va = corpus.split(ids, cfg.data.val_fraction)
    corpus.check_size(len(tr), len(va), cfg.data.batch_size, cfg.data.seq_len, cfg.data.val_fraction)
    return vocab, tr, va


def train_run(
    cfg: Config,
    corpus_arg: str | Path | None,
    reporter: TrainReporter,
    *,
    name: str | None = None,
    runs_dir: Path = Path("runs"),
    resume: rundir.RunDir | None = None,
    progress: encoded.Progress | None = None,
    init: finetune.Init | None = None,
    started: float | None = None,
) -> Summary:
    """Start a run, or continue `resume` (whose config the caller loaded, overrides applied), to `cfg.train.steps`
    or, with `cfg.train.time`, to the steps that fit that budget counted from `started` (`time.monotonic()`;
    default: now).

    `init`: a new run starts from that run's weights (fine-tuning; `cfg.model` must be that run's, see
    `api.training_config`). Every process of a multi-process job calls this with the same arguments; process 0
    owns the run directory (creation, lock, metrics, samples) and the others follow it. `progress` sees corpus
    encoding.
    """
    started = time.monotonic() if started is None else started
    if cfg.train.tensorboard:
        tensorboard.check_available()
    if cfg.train.time is not None and distributed.process_count() > 1:
        raise UsageError(
            "train.time is for one process: the processes of a job would time their steps apart",
            "give the job a number of steps (--steps N) instead of a time budget",
        )
    layout = _devices(cfg)
    progress = progress if layout.is_main else None
    if resume is not None:
        run = resume
        data, source = _reread(cfg, run, corpus_arg, progress)
    else:
        data, source, info = _prepare_new(cfg, corpus_arg, progress, init)
        if cfg.model.auto_size:
            choice = _auto_size(cfg, data, started, reporter)
            cfg, info = choice.config, {**info, "auto_size": choice.record()}
        run = _create_run_dir(cfg, data, info, name, runs_dir, layout.is_main)
    distributed.check_same(
        f"{data.vocab.to_json()} {len(data.train_ids)} {len(data.val_ids)}",
        "corpus (vocabulary or length)",
        "give every process the same file (a shared file system or identical copies)",
    )

    lock: contextlib.AbstractContextManager[object] = rundir.Lock(run) if layout.is_main else contextlib.nullcontext()
    distributed.together(lock.__enter__, "locking the run directory")
    try:
        ckpt = checkpoint.Checkpointer(run, cfg, data.vocab)
        try:
            job = _Job(cfg, run, ckpt, layout, reporter, resuming=resume is not None, started=started)
            return _train_locked(job, data, source)
        finally:
            ckpt.close()
    finally:
        lock.__exit__(None, None, None)


def _devices(cfg: Config) -> distributed.Layout:
    """The device mesh of `dist.devices`, checked to have the same size in every process."""
    layout = distributed.together(
        lambda: distributed.make_layout(cfg.dist.devices, cfg.data.batch_size), "setting up devices"
    )
    distributed.check_same(
        str(layout.n_devices),
        "number of devices (dist.devices)",
        "give every process the same number of devices, e.g. with --set dist.devices=N",
    )
    return layout


def _reread(
    cfg: Config, run: rundir.RunDir, corpus_arg: str | Path | None, progress: encoded.Progress | None
) -> tuple[_Corpus, finetune.Source | None]:
    """A resumed run's corpus (its own unless `corpus_arg`) in its vocabulary, and the weights to start from
    when it is a fine-tuning run stopped before its first save."""
    path = corpus.resolve(corpus_arg) if corpus_arg else Path(str(run.read_info().get("corpus", "")))
    vocab, tr, va = distributed.together(
        lambda: prepare_data(cfg, path, run.read_vocab(), progress), "reading the corpus"
    )
    source = None
    info = run.read_info()
    if "init_from" in info and not checkpoint.steps(run):
        again = finetune.Init(rundir.RunDir(Path(info["init_from"])), str(info["init_step"]))
        source = distributed.together(lambda: finetune.load(again, cfg, vocab), "loading the weights to start from")
    return _Corpus(path, vocab, tr, va), source


def _prepare_new(
    cfg: Config, corpus_arg: str | Path | None, progress: encoded.Progress | None, init: finetune.Init | None
) -> tuple[_Corpus, finetune.Source | None, dict[str, object]]:
    """A new run's corpus, the weights to start from with `init`, and what its info file records about them."""
    path = corpus.resolve(corpus_arg)
    vocab, tr, va = distributed.together(lambda: prepare_data(cfg, path, None, progress), "reading the corpus")
    if init is None:
        return _Corpus(path, vocab, tr, va), None, {}
    # Before the run directory exists: a bad source leaves nothing behind.
    vocab, tr, va = distributed.together(
        lambda: finetune.adopt_vocab(init, vocab, tr, va, path), "matching the vocabularies"
    )
    source = distributed.together(lambda: finetune.load(init, cfg, vocab), "loading the weights to start from")
    info: dict[str, object] = {"init_from": str(init.run.path.resolve()), "init_step": source.step}
    return _Corpus(path, vocab, tr, va), source, info


def _auto_size(cfg: Config, data: _Corpus, started: float, reporter: TrainReporter) -> sizing.Choice:
    """The model `model.auto_size` picks for this corpus and budget on this machine, announced."""
    seconds = config.parse_duration(str(cfg.train.time))
    choice = sizing.choose(cfg, len(data.train_ids), len(data.vocab), seconds, started, log=reporter.message)
    reporter.message(choice.line())
    return choice


def _create_run_dir(
    cfg: Config, data: _Corpus, info: dict[str, object], name: str | None, runs_dir: Path, main: bool
) -> rundir.RunDir:
    """Process 0 creates the run directory; the others use the same path."""
    # The default name has the clock in it: process 0's name is the run's name.
    run_name = distributed.broadcast_text(name or rundir.default_name(data.path, cfg.model.cell))
    return distributed.together(
        lambda: (
            rundir.create(runs_dir, run_name, cfg, data.vocab, data.path, {**info, **_corpus_record(data.path)})
            if main
            else rundir.RunDir(runs_dir / run_name)
        ),
        "creating the run directory",
    )


def _corpus_record(path: Path) -> dict[str, object]:
    """What run.json records of the corpus besides its path: its sha256, by which `sample --novelty` finds the
    index of the very text the run trained on, and knows a changed file (a large corpus is hashed once)."""
    return {"corpus_sha256": novelty.corpus_digest(path)}


def _train_locked(job: _Job, data: _Corpus, source: finetune.Source | None) -> Summary:
    """Train the locked run from its start state to `train.steps`, a signal or an early stop, and summarise it."""
    state, best = _start_state(job, len(data.vocab), source)
    start_step = int(state.step)
    early = _check_can_continue(job, start_step)
    if job.resuming and job.layout.is_main:
        job.run.write_config(job.cfg)  # e.g. a new train.steps, so the next --resume continues toward it
    recorder = Recorder(
        job.cfg, job.run, job.reporter, data.vocab, main=job.layout.is_main, start_step=start_step, best=best
    )
    n_params = model.param_count(state.params)
    job.reporter.start(_start_info(job, data, n_params, start_step))
    try:
        ending = _fit_and_save(job, data, state, early, recorder)
    finally:
        recorder.close()
    if ending.signum:
        raise Interrupted(ending.signum, job.run.path, ending.step, distributed.process_count())
    return _summary(job, data, ending, recorder, n_params)


def _start_state(job: _Job, vocab_size: int, source: finetune.Source | None) -> tuple[loop.TrainState, float | None]:
    """The state to train from and its best validation loss so far: the latest checkpoint of a resumed run that
    has one, else fresh (with `source`'s weights when fine-tuning)."""
    if job.resuming and checkpoint.steps(job.run):
        restored = checkpoint.restore(job.run, "latest", cfg=job.cfg, warn=job.reporter.message, layout=job.layout)
        job.reporter.message(f"resuming {job.run.path} from step {restored.step}")
        return restored.state, restored.val_loss
    params = None if source is None else source.params
    return loop.place_state(loop.init_state(job.cfg, vocab_size, params), job.layout), None


def _check_can_continue(job: _Job, start_step: int) -> loop.EarlyStopping:
    """`train.patience`'s state at `start_step`; a RunError if a resumed run already reached `train.steps` or
    was stopped early."""
    cfg, run = job.cfg, job.run
    if job.resuming and start_step >= cfg.train.steps and cfg.train.time is None:
        raise RunError(
            f"run {run.path} already reached step {start_step} of {cfg.train.steps}",
            "pass --steps N with a larger N to train further",
        )
    early = _early_stopping(cfg, run, start_step, job.layout.is_main)
    if early.triggered:
        raise RunError(
            f"run {run.path} stopped early at step {start_step}: {early.bad_evals} evaluations without "
            f"a better validation loss (train.patience={cfg.train.patience})",
            "pass --set train.patience=N with a larger N (0: off) to train further",
        )
    return early


def _start_info(job: _Job, data: _Corpus, n_params: int, start_step: int) -> dict[str, object]:
    """What `TrainReporter.start` shows about the run."""
    cfg, layout = job.cfg, job.layout
    return {
        "run": str(job.run.path),
        "corpus": str(data.path),
        "params": n_params,
        "vocab": len(data.vocab),
        "train_chars": len(data.train_ids),
        "val_chars": len(data.val_ids),
        "start_step": start_step,
        "steps": None if cfg.train.time else cfg.train.steps,  # a budget's steps are known once it is fitted
        "cell": cfg.model.cell,
        "layers": cfg.model.layers,
        "hidden": cfg.model.hidden,
        "devices": distributed.describe(layout) if layout.n_devices > 1 or distributed.process_count() > 1 else "",
        "curriculum": [list(stage) for stage in cfg.data.curriculum],
    }


def _fit_and_save(
    job: _Job, data: _Corpus, state: loop.TrainState, early: loop.EarlyStopping, recorder: Recorder
) -> _Ending:
    """Run the loop with SIGINT/SIGTERM asking it to stop, then save the final state, also after a signal."""
    with signals.StopFlag() as flag:
        stop = signals.AgreedStop(flag)
        plan = _budget(job, data, state) if job.cfg.train.time else None  # a Ctrl-C here stops before step 1
        tic = time.perf_counter()
        try:
            state = loop.fit(
                job.cfg,
                state,
                data.train_ids,
                data.val_ids,
                emit=recorder,
                save=job.ckpt.save,
                should_stop=stop,
                layout=job.layout,
                newline=sampling.newline_id(data.vocab),
                early=early,
                plan=plan,
            )
        except loop.NonFiniteError as err:
            job.ckpt.wait()
            raise RunError(
                str(err), "lower optim.lr or set optim.clip_norm; the last good checkpoint is intact"
            ) from None
        finally:
            job.reporter.stop()
        signum = distributed.agree_max(flag.signum)  # a signal during the last steps counts too
        seconds = time.perf_counter() - tic
        # An interrupted run has no validation loss for this step: don't let it compete for "best".
        job.ckpt.save(state, None if signum else recorder.final_val)
        job.ckpt.wait()
        total = plan.total if plan is not None else job.cfg.train.steps
        stopped_early = early.triggered and not signum and int(state.step) < total
        if stopped_early:
            recorder.record_early_stop(int(state.step), early)
    return _Ending(state, seconds, signum, stopped_early, plan)


def _budget(job: _Job, data: _Corpus, state: loop.TrainState) -> budget_lib.Budget:
    """The plan of a run with `train.time`. What happens besides the steps is timed first, on the initial
    weights: a validation pass with its sample, and the prompt check of the end; each runs twice, the first
    compiling what training would compile later anyway, the second timed."""
    cfg, params = job.cfg, loop.weights(state)
    d, t = cfg.data, cfg.train
    val = batches.eval_batches(data.val_ids, d.batch_size, d.seq_len, t.eval_batches)
    eval_step = loop.make_eval_step(cfg.model)
    pairs = promptcheck.pairs_for(data.path, data.vocab) if t.prompt_check else None
    host = distributed.to_host(params)

    def evaluation() -> None:
        loop.validation_loss(params, cfg.model, eval_step, val, job.layout)
        if t.sample_length > 0:
            sample_text(host, cfg, data.vocab)

    def end() -> None:
        if pairs is not None:
            promptcheck.run(host, cfg.model, data.vocab, pairs, seed=t.seed)

    job.reporter.message("timing an evaluation and the end of training for the time budget")
    eval_s, end_s = (_timed_twice(f) for f in (evaluation, end))

    def fitted(fit: budget_lib.Fit) -> None:
        # The checkpoints and the run's config hold the total; a rerun or --resume with it needs no budget.
        job.ckpt.cfg = cfg.model_copy(update={"train": t.model_copy(update={"steps": fit.steps, "time": None})})
        if job.layout.is_main:
            job.run.write_config(job.ckpt.cfg)
            rundir.write_json(job.run.budget_file, plan.record())
        left = plan.seconds - (time.monotonic() - plan.started)
        job.reporter.message(
            f"time budget: {fit.steps:,} steps at {fit.seconds_per_step:.3f} s/step measured, {left:.0f} s left"
        )
        before = plan.fits[-2].steps if len(plan.fits) > 1 else None  # said once, not at every refit
        if (cut := budget_lib.curriculum_cut(fit.steps, d.curriculum)) and not (
            before and budget_lib.curriculum_cut(before, d.curriculum)
        ):
            job.reporter.message(cut)
        show = getattr(job.reporter, "plan", None)
        if show is not None:
            show(fit.steps, plan.started + plan.seconds)

    plan = budget_lib.Budget(
        config.parse_duration(str(t.time)), job.started, cfg.optim, t.eval_every, eval_s, end_s, fitted
    )
    return plan


def _timed_twice(work: Callable[[], None]) -> float:
    work()
    tic = time.perf_counter()
    work()
    return time.perf_counter() - tic


def _summary(job: _Job, data: _Corpus, ending: _Ending, recorder: Recorder, n_params: int) -> Summary:
    """The summary of a run that was not interrupted, with the prompt check of its final weights (process 0)."""
    cps = recorder.chars_per_s()
    main = job.layout.is_main
    check = _prompt_check(job.cfg, loop.weights(ending.state), data.vocab, data.path, job.run) if main else None
    line = None
    if ending.budget is not None:
        ended = time.monotonic()
        rundir.write_json(job.run.budget_file, ending.budget.record(ended))
        m, chosen = job.cfg.model, job.run.read_info().get("auto_size")
        what = f"{len(data.train_ids):,} training chars, {m.cell} {m.layers}x{m.hidden}"
        if isinstance(chosen, dict):
            what += f" (auto size: {chosen.get('reason', '')})"
        line = budget_lib.summary_line(ending.budget, ended, what)
    copied = _copied(job, data, recorder.final_sample) if main else None
    return Summary(
        job.run.path,
        ending.step,
        recorder.final_val,
        recorder.best,
        n_params,
        ending.seconds,
        cps,
        prompt_check=check,
        stopped_early=ending.stopped_early,
        budget=line,
        patience=job.cfg.train.patience,
        copied=copied,
    )


def _copied(job: _Job, data: _Corpus, sample: str | None) -> novelty.Novelty | None:
    """The last evaluation's sample checked against the training text, through the cached index (built here for
    training text up to `novelty.SUMMARY_MAX_BYTES`: about a second for 10 MB). A problem with the index (an
    unwritable cache, too little memory) is a message, not a failed run."""
    if not sample:
        return None
    try:
        size = data.path.stat().st_size
        build = size <= novelty.SUMMARY_MAX_BYTES
        index = novelty.load(data.path, data.vocab.encoding, job.cfg.data.val_fraction, build=build)
        if index is None:
            job.reporter.message(
                f"copied-text check of the last sample skipped: the {size / 1e6:,.0f} MB corpus has no index yet "
                "(charlstm sample --novelty builds it)"
            )
            return None
        return novelty.check(index, sample, sampling.default_prompt(data.vocab))
    except (UserError, OSError) as err:
        job.reporter.message(f"copied-text check of the last sample skipped: {err}")
        return None


def _early_stopping(cfg: Config, run: rundir.RunDir, start_step: int, main: bool) -> loop.EarlyStopping:
    """`train.patience`'s state at `start_step`: rebuilt from the validation losses of metrics.jsonl (process
    0's, sent to every process so that all of them stop after the same step)."""
    if start_step == 0 or cfg.train.patience == 0:
        return loop.EarlyStopping(cfg.train.patience)
    history = []
    if main:
        history = [
            (r["step"], float(r["val_loss"]))
            for r in rundir.read_metrics(run.metrics_file)
            if isinstance(r.get("val_loss"), float) and r["step"] <= start_step
        ]
    early = loop.EarlyStopping.from_history(cfg.train.patience, history)
    state = distributed.broadcast_text(json.dumps([early.best, early.best_step, early.bad_evals]))
    early.best, early.best_step, early.bad_evals = json.loads(state)
    return early


def _prompt_check(
    cfg: Config, params: model.Params, vocab: corpus.Vocab, corpus_path: Path, run: rundir.RunDir
) -> promptcheck.PromptCheck | None:
    """The prompt check of the final weights on an annotated corpus, also written to the run directory."""
    pairs = promptcheck.pairs_for(corpus_path, vocab) if cfg.train.prompt_check else None
    if pairs is None:
        return None
    check = promptcheck.run(distributed.to_host(params), cfg.model, vocab, pairs, seed=cfg.train.seed)
    rundir.write_json(run.prompt_check_file, check.to_json())
    return check
