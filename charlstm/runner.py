"""Driving one training run: corpus -> run directory -> training loop, with metrics, checkpoints and signals.

`train_run` is what `charlstm train` calls. It reports through a `Reporter` (the live display in `ui`, or
anything with the same methods), so it can run headless in tests and in `compare-rnn`.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Protocol

import numpy as np

from charlstm import checkpoint, corpus, model, rundir, sampling, train
from charlstm.config import Config
from charlstm.errors import RunError, UserError


class Reporter(Protocol):
    def start(self, info: dict[str, object]) -> None: ...
    def event(self, ev: train.Event) -> None: ...
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


class Interrupted(UserError):
    """Training stopped by SIGINT/SIGTERM after saving; exit code 128 + signal."""

    def __init__(self, signum: int, run: Path, step: int) -> None:
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        super().__init__(f"{name}: training stopped at step {step}, checkpoint saved in {run}",
                         f"resume with: charlstm train --resume {run}")
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


def prepare_data(cfg: Config, corpus_path: Path, vocab: corpus.Vocab | None = None) -> tuple[corpus.Vocab, np.ndarray, np.ndarray]:
    """Read and split the corpus; reject one too small for a training and a validation batch."""
    vocab, ids = corpus.load_corpus(corpus_path, cfg.data.encoding, vocab)
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
) -> Summary:
    """Start a run, or continue `resume` (whose config the caller loaded, overrides applied), to `cfg.train.steps`."""
    if resume is not None:
        run = resume
        corpus_path = corpus.resolve(corpus_arg) if corpus_arg else Path(str(run.read_info().get("corpus", "")))
        vocab, tr, va = prepare_data(cfg, corpus_path, run.read_vocab())
    else:
        corpus_path = corpus.resolve(corpus_arg)
        vocab, tr, va = prepare_data(cfg, corpus_path)
        run = rundir.create(runs_dir, name or rundir.default_name(corpus_path, cfg.model.cell), cfg, vocab, corpus_path)

    with rundir.Lock(run):
        ckpt = checkpoint.Checkpointer(run, cfg, vocab)
        try:
            return _train_locked(cfg, run, ckpt, vocab, tr, va, corpus_path, reporter, resuming=resume is not None)
        finally:
            ckpt.close()


def _train_locked(cfg: Config, run: rundir.RunDir, ckpt: checkpoint.Checkpointer, vocab: corpus.Vocab, tr: np.ndarray,
                  va: np.ndarray, corpus_path: Path, reporter: Reporter, *, resuming: bool) -> Summary:
    if resuming and checkpoint.steps(run):
        restored = checkpoint.restore(run, "latest", cfg=cfg, warn=reporter.message)
        state, best = restored.state, restored.val_loss
        reporter.message(f"resuming {run.path} from step {restored.step}")
    else:
        state, best = train.init_state(cfg, len(vocab)), None
    start_step = int(state.step)
    if resuming and start_step >= cfg.train.steps:
        raise RunError(f"run {run.path} already reached step {start_step} of {cfg.train.steps}",
                       "pass --steps N with a larger N to train further")
    if resuming:
        run.write_config(cfg)  # e.g. a new train.steps, so the next --resume continues toward it
    metrics = rundir.MetricsLog(run.metrics_file, resume_step=start_step)
    n_params = model.param_count(state.params)
    reporter.start({"run": str(run.path), "corpus": str(corpus_path), "params": n_params, "vocab": len(vocab),
                    "train_chars": len(tr), "val_chars": len(va), "start_step": start_step, "steps": cfg.train.steps,
                    "cell": cfg.model.cell, "layers": cfg.model.layers, "hidden": cfg.model.hidden})
    final_val: float | None = None
    speed: list[float] = []

    def emit(ev: train.Event) -> None:
        nonlocal final_val, best
        reporter.event(ev)
        if isinstance(ev, train.StepEvent):
            speed.append(ev.chars_per_s)
            if ev.step % cfg.train.log_every == 0 or ev.skipped:
                metrics.write({"step": ev.step, "loss": ev.loss, "grad_norm": ev.grad_norm, "lr": ev.lr,
                               "chars_per_s": round(ev.chars_per_s), "skipped": ev.skipped, "time": time.time()})
        else:
            final_val = ev.val_loss
            best = ev.val_loss if best is None or ev.val_loss < best else best
            metrics.write({"step": ev.step, "val_loss": ev.val_loss, "val_bpc": ev.bits_per_char, "time": time.time()})
            if cfg.train.sample_length > 0:
                reporter.sample(ev.step, _sample(ev.params, cfg, vocab))

    tic = time.perf_counter()
    try:
        with _StopFlag() as flag:
            try:
                state = train.fit(cfg, state, tr, va, emit=emit, save=ckpt.save, should_stop=lambda: flag.signum != 0)
            except train.NonFiniteError as err:
                ckpt.wait()
                raise RunError(str(err), "lower optim.lr or set optim.clip_norm; the last good checkpoint is intact") from None
            finally:
                reporter.stop()
            seconds = time.perf_counter() - tic
            step = int(state.step)
            # An interrupted run has no validation loss for this step: don't let it compete for "best".
            ckpt.save(state, None if flag.signum else final_val)
            ckpt.wait()
    finally:
        metrics.close()
    if flag.signum:
        raise Interrupted(flag.signum, run.path, step)
    # Step 0 compiles; leave it out of the speed figure.
    cps = float(np.median(speed[1:])) if len(speed) > 1 else (speed[0] if speed else 0.0)
    return Summary(run.path, step, final_val, best, n_params, seconds, cps)


def _sample(params: model.Params, cfg: Config, vocab: corpus.Vocab) -> str:
    opts = sampling.SampleOptions(length=cfg.train.sample_length, temperature=0.8, seed=cfg.train.seed)
    return sampling.sample_text(params, cfg.model, vocab, sampling.default_prompt(vocab), opts)[0]


def bits(nats: float | None) -> float | None:
    return None if nats is None else nats / math.log(2)
