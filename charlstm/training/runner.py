"""Driving one training run: corpus -> run directory -> training loop, with metrics, checkpoints and signals.

`train_run` is what `charlstm train` calls. It reports through a `TrainReporter` (the live display in `ui`, or
anything with the same methods), so it can run headless in tests and in `compare-rnn`.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Protocol

import numpy as np

from charlstm.config import Config
from charlstm.data import corpus, encoded
from charlstm.errors import RunError, UserError
from charlstm.evaluation import promptcheck
from charlstm.nn import model, sampling
from charlstm.training import checkpoint, distributed, finetune, rundir, tensorboard
from charlstm.training import loop as training


class TrainReporter(Protocol):
    def start(self, info: dict[str, object]) -> None: ...
    def event(self, ev: training.Event) -> None: ...
    def sample(self, step: int, text: str) -> None: ...
    def message(self, text: str) -> None: ...
    def stop(self) -> None: ...


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


class _StopFlag:
    """First SIGINT/SIGTERM asks the loop to stop after its step (and save); a second SIGINT exits at once."""

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum:
            raise KeyboardInterrupt  # second press: leave now; complete checkpoints are never touched
        self.signum = signum

    def __enter__(self) -> _StopFlag:
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: no signal handling
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)  # type: ignore[arg-type]


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


@dataclass(frozen=True)
class _Ending:
    """How the loop ended: the final state (saved), the seconds it took and the signal that stopped it (0: none)."""

    state: training.TrainState
    seconds: float
    signum: int
    stopped_early: bool

    @property
    def step(self) -> int:
        return int(self.state.step)


def prepare_data(
    cfg: Config, corpus_path: Path, vocab: corpus.Vocab | None = None, progress: encoded.Progress | None = None
) -> tuple[corpus.Vocab, np.ndarray, np.ndarray]:
    """Read and split the corpus; reject one too small for a training and a validation batch.

    Large files go through the encoded cache and come back memory-mapped (see `encoded`).
    """
    vocab, ids = encoded.load_corpus(corpus_path, cfg.data.encoding, vocab, progress)
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
) -> Summary:
    """Start a run, or continue `resume` (whose config the caller loaded, overrides applied), to `cfg.train.steps`.

    `init`: a new run starts from that run's weights (fine-tuning; `cfg.model` must be that run's, see
    `api.training_config`). Every process of a multi-process job calls this with the same arguments; process 0
    owns the run directory (creation, lock, metrics, samples) and the others follow it. `progress` sees corpus
    encoding.
    """
    if cfg.train.tensorboard:
        tensorboard.check_available()
    layout = _devices(cfg)
    progress = progress if layout.is_main else None
    if resume is not None:
        run = resume
        data, source = _reread(cfg, run, corpus_arg, progress)
    else:
        data, source, info = _prepare_new(cfg, corpus_arg, progress, init)
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
            return _train_locked(_Job(cfg, run, ckpt, layout, reporter, resuming=resume is not None), data, source)
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


def _create_run_dir(
    cfg: Config, data: _Corpus, info: dict[str, object], name: str | None, runs_dir: Path, main: bool
) -> rundir.RunDir:
    """Process 0 creates the run directory; the others use the same path."""
    # The default name has the clock in it: process 0's name is the run's name.
    run_name = distributed.broadcast_text(name or rundir.default_name(data.path, cfg.model.cell))
    return distributed.together(
        lambda: (
            rundir.create(runs_dir, run_name, cfg, data.vocab, data.path, info)
            if main
            else rundir.RunDir(runs_dir / run_name)
        ),
        "creating the run directory",
    )


class _NoLog:
    """The metrics log of processes other than 0: they train, but process 0 alone writes."""

    def write(self, record: dict[str, object]) -> None: ...
    def close(self) -> None: ...


def _train_locked(job: _Job, data: _Corpus, source: finetune.Source | None) -> Summary:
    """Train the locked run from its start state to `train.steps`, a signal or an early stop, and summarise it."""
    state, best = _start_state(job, len(data.vocab), source)
    start_step = int(state.step)
    early = _check_can_continue(job, start_step)
    if job.resuming and job.layout.is_main:
        job.run.write_config(job.cfg)  # e.g. a new train.steps, so the next --resume continues toward it
    recorder = _RunRecorder(job, data.vocab, start_step, best)
    n_params = model.param_count(state.params)
    job.reporter.start(_start_info(job, data, n_params, start_step))
    try:
        ending = _fit_and_save(job, data, state, early, recorder)
    finally:
        recorder.close()
    if ending.signum:
        raise Interrupted(ending.signum, job.run.path, ending.step, distributed.process_count())
    return _summary(job, data, ending, recorder, n_params)


def _start_state(
    job: _Job, vocab_size: int, source: finetune.Source | None
) -> tuple[training.TrainState, float | None]:
    """The state to train from and its best validation loss so far: the latest checkpoint of a resumed run that
    has one, else fresh (with `source`'s weights when fine-tuning)."""
    if job.resuming and checkpoint.steps(job.run):
        restored = checkpoint.restore(job.run, "latest", cfg=job.cfg, warn=job.reporter.message, layout=job.layout)
        job.reporter.message(f"resuming {job.run.path} from step {restored.step}")
        return restored.state, restored.val_loss
    params = None if source is None else source.params
    return training.place_state(training.init_state(job.cfg, vocab_size, params), job.layout), None


def _check_can_continue(job: _Job, start_step: int) -> training.EarlyStopping:
    """`train.patience`'s state at `start_step`; a RunError if a resumed run already reached `train.steps` or
    was stopped early."""
    cfg, run = job.cfg, job.run
    if job.resuming and start_step >= cfg.train.steps:
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
        "steps": cfg.train.steps,
        "cell": cfg.model.cell,
        "layers": cfg.model.layers,
        "hidden": cfg.model.hidden,
        "devices": distributed.describe(layout) if layout.n_devices > 1 or distributed.process_count() > 1 else "",
    }


class _RunRecorder:
    """The run's bookkeeping, called with every event of the loop.

    It passes each event to the reporter and writes the metrics rows, tensorboard events and samples (process 0
    alone), and keeps the speeds and the final and best validation losses for the summary.
    """

    def __init__(self, job: _Job, vocab: corpus.Vocab, start_step: int, best: float | None) -> None:
        self.cfg, self.reporter, self.vocab, self.main = job.cfg, job.reporter, vocab, job.layout.is_main
        self.metrics: rundir.MetricsLog | _NoLog = (
            rundir.MetricsLog(job.run.metrics_file, resume_step=start_step) if self.main else _NoLog()
        )
        self.events: tensorboard.EventLog | None = (
            tensorboard.EventLog(job.run.tensorboard, start_step) if job.cfg.train.tensorboard and self.main else None
        )
        self.speeds: list[float] = []  # chars/s of every step
        self.final_val: float | None = None
        self.best: float | None = best

    def __call__(self, ev: training.Event) -> None:
        self.reporter.event(ev)
        if isinstance(ev, training.StepEvent):
            self._step(ev)
        else:
            self._evaluation(ev)

    def _step(self, ev: training.StepEvent) -> None:
        self.speeds.append(ev.chars_per_s)
        if ev.step % self.cfg.train.log_every == 0 or ev.skipped:
            self.metrics.write(
                {
                    "step": ev.step,
                    "loss": ev.loss,
                    "grad_norm": ev.grad_norm,
                    "lr": ev.lr,
                    "chars_per_s": round(ev.chars_per_s),
                    "skipped": ev.skipped,
                    "time": time.time(),
                }
            )
            if self.events is not None:
                self.events.step(ev)

    def _evaluation(self, ev: training.EvalEvent) -> None:
        self.final_val = ev.val_loss
        self.best = ev.val_loss if self.best is None or ev.val_loss < self.best else self.best
        raw = {} if ev.raw_val_loss is None else {"raw_val_loss": ev.raw_val_loss}
        self.metrics.write(
            {"step": ev.step, "val_loss": ev.val_loss, "val_bpc": ev.bits_per_char, **raw, "time": time.time()}
        )
        if self.events is not None:
            self.events.evaluation(ev)
        if self.cfg.train.sample_length > 0 and self.main:  # sampled from a host copy: process 0 alone, no collectives
            text = _sample(distributed.to_host(ev.params), self.cfg, self.vocab)
            self.reporter.sample(ev.step, text)
            if self.events is not None:
                self.events.sample(ev.step, text)

    def record_early_stop(self, step: int, early: training.EarlyStopping) -> None:
        """The last metrics row says why the run ended before train.steps (`charlstm runs` reads it)."""
        self.metrics.write(
            {
                "step": step,
                "stopped_early": True,
                "patience": self.cfg.train.patience,
                "best_step": early.best_step,
                "time": time.time(),
            }
        )
        self.reporter.message(
            f"stopped early at step {step}: no better validation loss in {early.bad_evals} "
            f"evaluations; the best ({early.best:.4f} nats/char at step {early.best_step}) "
            "is kept as --checkpoint best"
        )

    def chars_per_s(self) -> float:
        """The median speed; step 0 compiles, so it is left out when there are others."""
        speeds = self.speeds
        return float(np.median(speeds[1:])) if len(speeds) > 1 else (speeds[0] if speeds else 0.0)

    def close(self) -> None:
        self.metrics.close()
        if self.events is not None:
            self.events.close()


def _fit_and_save(
    job: _Job, data: _Corpus, state: training.TrainState, early: training.EarlyStopping, recorder: _RunRecorder
) -> _Ending:
    """Run the loop with SIGINT/SIGTERM asking it to stop, then save the final state, also after a signal."""
    tic = time.perf_counter()
    with _StopFlag() as flag:
        stop = _Agreed(flag)
        try:
            state = training.fit(
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
            )
        except training.NonFiniteError as err:
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
        stopped_early = early.triggered and not signum and int(state.step) < job.cfg.train.steps
        if stopped_early:
            recorder.record_early_stop(int(state.step), early)
    return _Ending(state, seconds, signum, stopped_early)


def _summary(job: _Job, data: _Corpus, ending: _Ending, recorder: _RunRecorder, n_params: int) -> Summary:
    """The summary of a run that was not interrupted, with the prompt check of its final weights (process 0)."""
    cps = recorder.chars_per_s()
    main = job.layout.is_main
    check = _prompt_check(job.cfg, training.weights(ending.state), data.vocab, data.path, job.run) if main else None
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
    )


def _early_stopping(cfg: Config, run: rundir.RunDir, start_step: int, main: bool) -> training.EarlyStopping:
    """`train.patience`'s state at `start_step`: rebuilt from the validation losses of metrics.jsonl (process
    0's, sent to every process so that all of them stop after the same step)."""
    if start_step == 0 or cfg.train.patience == 0:
        return training.EarlyStopping(cfg.train.patience)
    history = []
    if main:
        history = [
            (int(r["step"]), float(r["val_loss"]))
            for r in rundir.read_metrics(run.metrics_file)
            if "val_loss" in r and int(r.get("step", 0)) <= start_step
        ]
    early = training.EarlyStopping.from_history(cfg.train.patience, history)
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


class _Agreed:
    """`should_stop` for the loop: the signal seen by any process, agreed on by all of them.

    Every process must stop after the same step (the final save is collective). With several processes the
    flags are exchanged every `every` steps, which bounds the cost of the exchange; alone, every step.
    """

    def __init__(self, flag: _StopFlag, every: int = 5) -> None:
        self.flag, self.every, self.calls, self.signum = flag, every if distributed.process_count() > 1 else 1, 0, 0

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls % self.every == 0:
            self.signum = distributed.agree_max(self.flag.signum)
        return self.signum != 0


def _sample(params: model.Params, cfg: Config, vocab: corpus.Vocab) -> str:
    opts = sampling.SampleOptions(length=cfg.train.sample_length, temperature=0.8, seed=cfg.train.seed)
    return sampling.sample_text(params, cfg.model, vocab, sampling.default_prompt(vocab), opts)[0]
