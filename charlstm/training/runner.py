"""Driving one training run: corpus -> run directory -> training loop, with metrics, checkpoints and signals.

`train_run` is what `charlstm train` calls. It reports through a `Reporter` (the live display in `ui`, or
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


class Reporter(Protocol):
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
    reporter: Reporter,
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
    layout = distributed.together(
        lambda: distributed.make_layout(cfg.dist.devices, cfg.data.batch_size), "setting up devices"
    )
    distributed.check_same(
        str(layout.n_devices),
        "number of devices (dist.devices)",
        "give every process the same number of devices, e.g. with --set dist.devices=N",
    )
    main = layout.is_main
    progress = progress if main else None
    if resume is not None:
        run = resume
        corpus_path = corpus.resolve(corpus_arg) if corpus_arg else Path(str(run.read_info().get("corpus", "")))
        vocab, tr, va = distributed.together(
            lambda: prepare_data(cfg, corpus_path, run.read_vocab(), progress), "reading the corpus"
        )
        source = None
        info = run.read_info()
        if "init_from" in info and not checkpoint.steps(run):  # a fine-tuning run stopped before its first save
            again = finetune.Init(rundir.RunDir(Path(info["init_from"])), str(info["init_step"]))
            source = distributed.together(lambda: finetune.load(again, cfg, vocab), "loading the weights to start from")
    else:
        corpus_path = corpus.resolve(corpus_arg)
        vocab, tr, va = distributed.together(
            lambda: prepare_data(cfg, corpus_path, None, progress), "reading the corpus"
        )
        source, info = None, {}
        if init is not None:  # before the run directory exists: a bad source leaves nothing behind
            vocab, tr, va = distributed.together(
                lambda: finetune.adopt_vocab(init, vocab, tr, va, corpus_path), "matching the vocabularies"
            )
            source = distributed.together(lambda: finetune.load(init, cfg, vocab), "loading the weights to start from")
            info = {"init_from": str(init.run.path.resolve()), "init_step": source.step}
        # The default name has the clock in it: process 0's name is the run's name.
        run_name = distributed.broadcast_text(name or rundir.default_name(corpus_path, cfg.model.cell))
        run = distributed.together(
            lambda: (
                rundir.create(runs_dir, run_name, cfg, vocab, corpus_path, info)
                if main
                else rundir.RunDir(runs_dir / run_name)
            ),
            "creating the run directory",
        )
    distributed.check_same(
        f"{vocab.to_json()} {len(tr)} {len(va)}",
        "corpus (vocabulary or length)",
        "give every process the same file (a shared file system or identical copies)",
    )

    lock: contextlib.AbstractContextManager[object] = rundir.Lock(run) if main else contextlib.nullcontext()
    distributed.together(lock.__enter__, "locking the run directory")
    try:
        ckpt = checkpoint.Checkpointer(run, cfg, vocab)
        try:
            return _train_locked(
                cfg, run, ckpt, vocab, tr, va, corpus_path, reporter, layout, resuming=resume is not None, source=source
            )
        finally:
            ckpt.close()
    finally:
        lock.__exit__(None, None, None)


class _NoLog:
    """The metrics log of processes other than 0: they train, but process 0 alone writes."""

    def write(self, record: dict[str, object]) -> None: ...
    def close(self) -> None: ...


def _train_locked(
    cfg: Config,
    run: rundir.RunDir,
    ckpt: checkpoint.Checkpointer,
    vocab: corpus.Vocab,
    tr: np.ndarray,
    va: np.ndarray,
    corpus_path: Path,
    reporter: Reporter,
    layout: distributed.Layout,
    *,
    resuming: bool,
    source: finetune.Source | None = None,
) -> Summary:
    main = layout.is_main
    if resuming and checkpoint.steps(run):
        restored = checkpoint.restore(run, "latest", cfg=cfg, warn=reporter.message, layout=layout)
        state, best = restored.state, restored.val_loss
        reporter.message(f"resuming {run.path} from step {restored.step}")
    else:
        params = None if source is None else source.params
        state, best = training.place_state(training.init_state(cfg, len(vocab), params), layout), None
    start_step = int(state.step)
    if resuming and start_step >= cfg.train.steps:
        raise RunError(
            f"run {run.path} already reached step {start_step} of {cfg.train.steps}",
            "pass --steps N with a larger N to train further",
        )
    early = _early_stopping(cfg, run, start_step, main)
    if early.triggered:
        raise RunError(
            f"run {run.path} stopped early at step {start_step}: {early.bad_evals} evaluations without "
            f"a better validation loss (train.patience={cfg.train.patience})",
            "pass --set train.patience=N with a larger N (0: off) to train further",
        )
    if resuming and main:
        run.write_config(cfg)  # e.g. a new train.steps, so the next --resume continues toward it
    metrics = rundir.MetricsLog(run.metrics_file, resume_step=start_step) if main else _NoLog()
    events = tensorboard.EventLog(run.tensorboard, start_step) if cfg.train.tensorboard and main else None
    n_params = model.param_count(state.params)
    reporter.start(
        {
            "run": str(run.path),
            "corpus": str(corpus_path),
            "params": n_params,
            "vocab": len(vocab),
            "train_chars": len(tr),
            "val_chars": len(va),
            "start_step": start_step,
            "steps": cfg.train.steps,
            "cell": cfg.model.cell,
            "layers": cfg.model.layers,
            "hidden": cfg.model.hidden,
            "devices": distributed.describe(layout) if layout.n_devices > 1 or distributed.process_count() > 1 else "",
        }
    )
    final_val: float | None = None
    speed: list[float] = []

    def emit(ev: training.Event) -> None:
        nonlocal final_val, best
        reporter.event(ev)
        if isinstance(ev, training.StepEvent):
            speed.append(ev.chars_per_s)
            if ev.step % cfg.train.log_every == 0 or ev.skipped:
                metrics.write(
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
                if events is not None:
                    events.step(ev)
        else:
            final_val = ev.val_loss
            best = ev.val_loss if best is None or ev.val_loss < best else best
            raw = {} if ev.raw_val_loss is None else {"raw_val_loss": ev.raw_val_loss}
            metrics.write(
                {"step": ev.step, "val_loss": ev.val_loss, "val_bpc": ev.bits_per_char, **raw, "time": time.time()}
            )
            if events is not None:
                events.evaluation(ev)
            if cfg.train.sample_length > 0 and main:  # sampled from a host copy: process 0 alone, no collectives
                text = _sample(distributed.to_host(ev.params), cfg, vocab)
                reporter.sample(ev.step, text)
                if events is not None:
                    events.sample(ev.step, text)

    tic = time.perf_counter()
    try:
        with _StopFlag() as flag:
            stop = _Agreed(flag)
            try:
                state = training.fit(
                    cfg,
                    state,
                    tr,
                    va,
                    emit=emit,
                    save=ckpt.save,
                    should_stop=stop,
                    layout=layout,
                    newline=sampling.newline_id(vocab),
                    early=early,
                )
            except training.NonFiniteError as err:
                ckpt.wait()
                raise RunError(
                    str(err), "lower optim.lr or set optim.clip_norm; the last good checkpoint is intact"
                ) from None
            finally:
                reporter.stop()
            stop.signum = distributed.agree_max(flag.signum)  # a signal during the last steps counts too
            seconds = time.perf_counter() - tic
            step = int(state.step)
            # An interrupted run has no validation loss for this step: don't let it compete for "best".
            ckpt.save(state, None if stop.signum else final_val)
            ckpt.wait()
            stopped_early = early.triggered and not stop.signum and step < cfg.train.steps
            if stopped_early:
                # The last metric row says why the run ended before train.steps (`charlstm runs` reads it).
                metrics.write(
                    {
                        "step": step,
                        "stopped_early": True,
                        "patience": cfg.train.patience,
                        "best_step": early.best_step,
                        "time": time.time(),
                    }
                )
                reporter.message(
                    f"stopped early at step {step}: no better validation loss in {early.bad_evals} "
                    f"evaluations; the best ({early.best:.4f} nats/char at step {early.best_step}) "
                    "is kept as --checkpoint best"
                )
    finally:
        metrics.close()
        if events is not None:
            events.close()
    if stop.signum:
        raise Interrupted(stop.signum, run.path, step, distributed.process_count())
    # Step 0 compiles; leave it out of the speed figure.
    cps = float(np.median(speed[1:])) if len(speed) > 1 else (speed[0] if speed else 0.0)
    check = _prompt_check(cfg, training.weights(state), vocab, corpus_path, run) if main else None
    return Summary(
        run.path, step, final_val, best, n_params, seconds, cps, prompt_check=check, stopped_early=stopped_early
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
