"""A training run's bookkeeping: every event of the loop goes to the reporter, the metrics log, TensorBoard and
the samples shown at each evaluation; the speeds and validation losses are kept for the run's summary."""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from charlstm.config import Config
from charlstm.data import corpus
from charlstm.events import EvalEvent, Event, StepEvent
from charlstm.nn import model, sampling
from charlstm.training import distributed, loop, rundir, tensorboard


class TrainReporter(Protocol):
    def start(self, info: dict[str, object]) -> None: ...
    def event(self, ev: Event) -> None: ...
    def sample(self, step: int, text: str) -> None: ...
    def message(self, text: str) -> None: ...
    def stop(self) -> None: ...


class _NoLog:
    """The metrics log of processes other than 0: they train, but process 0 alone writes."""

    def write(self, record: dict[str, object]) -> None: ...
    def close(self) -> None: ...


class Recorder:
    """The run's bookkeeping, called with every event of the loop.

    It passes each event to the reporter and writes the metrics rows, tensorboard events and samples (process 0
    alone), and keeps the speeds and the final and best validation losses for the summary.
    """

    def __init__(
        self,
        cfg: Config,
        run: rundir.RunDir,
        reporter: TrainReporter,
        vocab: corpus.Vocab,
        *,
        main: bool,
        start_step: int,
        best: float | None,
    ) -> None:
        self.cfg, self.reporter, self.vocab, self.main = cfg, reporter, vocab, main
        self.metrics: rundir.MetricsLog | _NoLog = (
            rundir.MetricsLog(run.metrics_file, resume_step=start_step) if main else _NoLog()
        )
        self.events: tensorboard.EventLog | None = (
            tensorboard.EventLog(run.tensorboard, start_step) if cfg.train.tensorboard and main else None
        )
        self.speeds: list[float] = []  # chars/s of every step
        self.final_val: float | None = None
        self.best: float | None = best
        self.final_sample: str | None = None  # the sample of the last evaluation, checked for copies at the end

    def __call__(self, ev: Event) -> None:
        self.reporter.event(ev)
        if isinstance(ev, StepEvent):
            self._step(ev)
        else:
            self._evaluation(ev)

    def _step(self, ev: StepEvent) -> None:
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

    def _evaluation(self, ev: EvalEvent) -> None:
        self.final_val = ev.val_loss
        self.best = ev.val_loss if self.best is None or ev.val_loss < self.best else self.best
        raw = {} if ev.raw_val_loss is None else {"raw_val_loss": ev.raw_val_loss}
        self.metrics.write(
            {"step": ev.step, "val_loss": ev.val_loss, "val_bpc": ev.bits_per_char, **raw, "time": time.time()}
        )
        if self.events is not None:
            self.events.evaluation(ev)
        if self.cfg.train.sample_length > 0 and self.main:  # sampled from a host copy: process 0 alone, no collectives
            text = sample_text(distributed.to_host(ev.params), self.cfg, self.vocab)
            self.final_sample = text
            self.reporter.sample(ev.step, text)
            if self.events is not None:
                self.events.sample(ev.step, text)

    def record_early_stop(self, step: int, early: loop.EarlyStopping) -> None:
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


def sample_text(params: model.Params, cfg: Config, vocab: corpus.Vocab) -> str:
    """The sample shown at an evaluation."""
    opts = sampling.SampleOptions(length=cfg.train.sample_length, temperature=0.8, seed=cfg.train.seed)
    return sampling.sample_text(params, cfg.model, vocab, sampling.default_prompt(vocab), opts)[0]
