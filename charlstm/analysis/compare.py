"""`charlstm compare-rnn`: train an RNN, an LSTM (and a GRU) on the same data and measure why the LSTM wins.

Every cell is trained in-process by `loop.fit` with the same seed, batches and step budget, one after the
other, reporting through one events callback. For each cell the run collects the loss and gradient-norm
curves, the language-word accuracy by gap (`longrange`, on the validation split of an annotated corpus) and
the gradient-distance profile (`gradflow`) at initialisation and after training.

Each cell's width is matched to a common parameter budget, or to `model.hidden` (`compare_sizing`); the
tables and files of a finished comparison are `compare_output`'s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import jax
import numpy as np

from charlstm import config, events
from charlstm.analysis import gradflow
from charlstm.analysis.compare_sizing import CellSpec, cell_config, plan_cells
from charlstm.config import Config
from charlstm.data import batches, corpus, langcorpus
from charlstm.errors import UsageError
from charlstm.evaluation import longrange, promptcheck
from charlstm.events import Event, StepEvent
from charlstm.nn import cells, model, sampling
from charlstm.training import budget, loop, runner

DEFAULT_CELLS: tuple[str, ...] = ("rnn", "lstm")
GRAD_DISTANCE = 200  # K: how many steps back the gradient-distance profile reaches (covers the 200+ gap bucket)
GRAD_BATCH = 16  # windows averaged in the profile
# A cell has stopped improving (train.patience) once neither its validation loss falls by this share of its
# best nor its long-range accuracy rises by this much: smaller changes are evaluation noise.
MIN_LOSS_GAIN = 0.02
MIN_ACCURACY_GAIN = 0.05


@dataclass
class Plateau(loop.EarlyStopping):
    """compare-rnn's stop: `patience` evaluations in a row with no real gain in the validation loss (by
    MIN_LOSS_GAIN of the best) nor in the long-range accuracy (by MIN_ACCURACY_GAIN). Every cell trains until
    it stops improving, capped at train.steps: a cell that learns slowly is not cut short, and one that has
    settled (the RNN's accuracy never leaves chance) does not spend the rest of the budget proving it."""

    accuracy: float = math.nan  # the long-range accuracy at the evaluation about to be counted (nan: unmeasured)
    best_accuracy: float = -math.inf

    def update(self, step: int, val_loss: float) -> None:
        better_loss = self.best is None or val_loss < self.best * (1.0 - MIN_LOSS_GAIN)
        better_accuracy = math.isfinite(self.accuracy) and self.accuracy > self.best_accuracy + MIN_ACCURACY_GAIN
        if better_loss or better_accuracy:
            self.best_step, self.bad_evals = step, 0
        else:
            self.bad_evals += 1
        if self.best is None or val_loss < self.best:
            self.best = val_loss
        if math.isfinite(self.accuracy):
            self.best_accuracy = max(self.best_accuracy, self.accuracy)


@dataclass
class CellCurves:
    """Everything the training loop reported for one cell, as plain lists (the live chart reads them)."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    chars_per_s: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class CellResult:
    spec: CellSpec
    curves: CellCurves
    val_loss: float  # last validation loss, nats/char (nan if none)
    seconds: float  # wall time of training, compilation and evaluations included
    chars_per_s: float  # median training speed, first (compiling) step left out
    longrange: list[longrange.BucketResult] | None  # None when the corpus has no usable gap annotations
    grad_init: np.ndarray  # || d loss_T / d h_{T-k} || for k = 0..K at initialisation
    grad_final: np.ndarray  # the same after training (nan if training diverged before any evaluation)
    diverged: str | None = None  # why training stopped early, if it did
    prompt_check: promptcheck.PromptCheck | None = None  # on an annotated corpus, with train.prompt_check
    steps: int = 0  # optimizer steps trained (fewer than train.steps when it stopped improving)

    @property
    def bits_per_char(self) -> float:
        return events.bits(self.val_loss)

    def accuracy_from(self, gap: int = 100) -> float:
        """Accuracy over all records with gap >= `gap` (count-weighted over the buckets starting there)."""
        return _accuracy_from(self.longrange, gap)


def _accuracy_from(buckets: list[longrange.BucketResult] | None, gap: int) -> float:
    picked = [b for b, (lo, _) in zip(buckets or [], longrange.BUCKETS) if lo >= gap and b.count]
    n = sum(b.count for b in picked)
    return sum(b.accuracy * b.count for b in picked) / n if n else float("nan")


@dataclass(frozen=True)
class CompareResult:
    corpus: Path
    config: Config
    match: str
    clip: bool
    cells: list[CellResult]
    chance: float | None  # language-word accuracy of a uniform guess, when long-range was measured
    longrange_note: str | None  # why long-range accuracy was skipped, if it was


class CompareReporter(Protocol):
    """What `run` tells its display: the plan, every training event with all curves so far, messages."""

    def start(self, plan: list[CellSpec], steps: int) -> None: ...
    def event(self, cell: str, ev: Event, curves: Mapping[str, CellCurves]) -> None: ...
    def message(self, text: str) -> None: ...
    def stop(self) -> None: ...


class NullReporter:
    """Reports nothing (tests, --quiet)."""

    def start(self, plan: list[CellSpec], steps: int) -> None: ...
    def event(self, cell: str, ev: Event, curves: Mapping[str, CellCurves]) -> None: ...
    def message(self, text: str) -> None: ...
    def stop(self) -> None: ...


# --- the cells ----------------------------------------------------------------------------------------------


def parse_cells(text: str) -> tuple[str, ...]:
    """'rnn,lstm' -> ('rnn', 'lstm'), rejecting unknown and repeated names."""
    names = tuple(s.strip().lower() for s in text.split(",") if s.strip())
    bad = [n for n in names if n not in cells.GATES]
    if not names or bad:
        raise UsageError(f"invalid --cells {text!r}", f"a comma-separated list of {', '.join(cells.GATES)}")
    if len(set(names)) != len(names):
        raise UsageError(f"--cells {text!r} names a cell twice", "list each cell once")
    return names


# --- long-range setup ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LongRange:
    text: str
    gaps: Path
    start: int  # offset of the validation split in `text`
    chance: float


def _longrange_setup(cfg: Config, corpus_path: Path, n_ids: int, n_train: int) -> tuple[_LongRange | None, str | None]:
    """The annotated validation text, or None and the reason long-range accuracy is skipped."""
    gaps = longrange.gaps_file_for(corpus_path)
    if gaps is None:
        return (
            None,
            f"{corpus_path.name} has no gap annotations ({corpus_path.stem}.gaps.json): long-range accuracy skipped",
        )
    if cfg.data.encoding != "utf-8":
        return None, "long-range accuracy needs data.encoding=utf-8 (gap offsets count characters): skipped"
    text = corpus.read_bytes(corpus_path).decode("utf-8", errors="replace")  # no newline translation: offsets stay
    records = langcorpus.load_gaps(gaps)
    if (
        len(text) != n_ids
        or not records
        or any(text[r.language_start : r.language_end] != r.language for r in records[:50])
    ):
        return None, f"{gaps.name} does not match {corpus_path.name}: long-range accuracy skipped"
    return _LongRange(text, gaps, n_train, 1.0 / len({r.language for r in records})), None


def _longrange(
    params: model.Params, cfg: Config, vocab: corpus.Vocab, setup: _LongRange, max_records: int
) -> list[longrange.BucketResult] | None:
    try:
        res = longrange.accuracy_by_gap(
            params, cfg.model, vocab, setup.text, setup.gaps, start=setup.start, max_records=max_records
        )
    except ValueError:  # the vocabulary lacks characters of the annotated text
        return None
    return res or None


# --- the run ------------------------------------------------------------------------------------------------


def _grad_windows(va: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """GRAD_BATCH windows of k + 1 validation characters (fewer and shorter if the split is small)."""
    k = max(1, min(k, len(va) - 2))
    b = batches.eval_batches(va, GRAD_BATCH, k + 1, 1)[0]
    return b.x, b.y


def run(
    cfg: Config,
    corpus_arg: str | Path | None,
    names: tuple[str, ...] = DEFAULT_CELLS,
    *,
    match: str = "params",
    clip: bool = True,
    reporter: CompareReporter | None = None,
    grad_k: int = GRAD_DISTANCE,
    longrange_records: int = 600,
) -> CompareResult:
    """Train every cell in `names` on the corpus (None: the bundled languages corpus) with the same seed, batches
    and steps (or, with `train.time`, the same training time each); measure each."""
    reporter = reporter or NullReporter()
    if cfg.train.time is not None:  # every cell trains for the whole time: no stop at a plateau
        cfg = budget.for_budget(cfg)
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"patience": 0})})
    corpus_path = corpus.resolve(corpus_arg, default=corpus.COMPARE_CORPUS)
    vocab, tr, va = runner.prepare_data(cfg, corpus_path)
    plan = plan_cells(cfg, names, len(vocab), match)
    longrange_setup, note = _longrange_setup(cfg, corpus_path, len(tr) + len(va), len(tr))
    pairs = promptcheck.pairs_for(corpus_path, vocab) if longrange_setup and cfg.train.prompt_check else None
    configs = [cell_config(cfg, spec, clip) for spec in plan]  # every cell's config checked before any trains
    gx, gy = _grad_windows(va, grad_k)
    shared = _Shared(vocab, tr, va, gx, gy, longrange_setup, longrange_records, pairs, reporter)
    results = []
    reporter.start(plan, 0 if cfg.train.time else cfg.train.steps)
    try:
        for spec, cell_cfg in zip(plan, configs):
            results.append(_train_cell(cell_cfg, spec, shared))
    finally:
        reporter.stop()
    chance = longrange_setup.chance if longrange_setup else None
    return CompareResult(corpus_path, cfg, match, clip, results, chance, note)


@dataclass
class _Shared:
    """What every cell of a comparison trains and is measured on."""

    vocab: corpus.Vocab
    tr: np.ndarray
    va: np.ndarray
    gx: np.ndarray  # the gradient-distance windows
    gy: np.ndarray
    longrange: _LongRange | None
    longrange_records: int
    pairs: list[tuple[str, str]] | None  # the prompt check's places and languages
    reporter: CompareReporter
    curves: dict[str, CellCurves] = field(default_factory=dict)  # every cell's so far, for the live chart


class _Watcher:
    """The `emit` of one cell's training: records its curves, keeps the last evaluated parameters (a cell
    that diverges is measured on them), and feeds the plateau stop the long-range accuracy."""

    def __init__(self, cfg: Config, cell: str, shared: _Shared) -> None:
        self.cfg, self.cell, self.shared = cfg, cell, shared
        self.curves = shared.curves[cell] = CellCurves()
        self.plateau = Plateau(cfg.train.patience)
        self.last_params: model.Params | None = None
        self.last_longrange: list[longrange.BucketResult] | None = None

    def __call__(self, ev: Event) -> None:
        c = self.curves
        if isinstance(ev, StepEvent):
            c.steps.append(ev.step)
            c.loss.append(ev.loss)
            c.grad_norm.append(ev.grad_norm)
            c.chars_per_s.append(ev.chars_per_s)
        else:
            c.val_steps.append(ev.step)
            c.val_loss.append(ev.val_loss)
            self.last_params = ev.params
            sh = self.shared
            if sh.longrange and self.plateau.patience:  # the stop watches the accuracy too (fit updates it next)
                self.last_longrange = _longrange(ev.params, self.cfg, sh.vocab, sh.longrange, sh.longrange_records)
                self.plateau.accuracy = _accuracy_from(self.last_longrange, 25)
        self.shared.reporter.event(self.cell, ev, self.shared.curves)


def _train_cell(ccfg: Config, spec: CellSpec, sh: _Shared) -> CellResult:
    state = loop.init_state(ccfg, len(sh.vocab))
    # Measured before fit: its jitted step donates the state's buffers.
    grad_init = gradflow.model_profile(state.params, ccfg.model, sh.gx, sh.gy)
    watch = _Watcher(ccfg, spec.cell, sh)
    cur, plateau = watch.curves, watch.plateau
    diverged = None
    tic = time.perf_counter()
    timed = None
    if ccfg.train.time is not None:  # the cell's training time, not the measurements after it
        each = config.parse_duration(ccfg.train.time)
        timed = budget.Budget(each, time.monotonic(), ccfg.optim, ccfg.train.eval_every, 0.0, 0.0)
    try:
        params: model.Params | None = loop.fit(
            ccfg,
            state,
            sh.tr,
            sh.va,
            emit=watch,
            newline=sampling.newline_id(sh.vocab),
            early=plateau if plateau.patience else None,
            plan=timed,
        ).params
    except loop.NonFiniteError as err:
        diverged = str(err)
        sh.reporter.message(f"{spec.cell}: {err}; measuring the last evaluated parameters")
        params = watch.last_params
    seconds = time.perf_counter() - tic
    jax.block_until_ready(params)
    nan_profile = np.full_like(grad_init, np.nan)
    grad_final = gradflow.model_profile(params, ccfg.model, sh.gx, sh.gy) if params is not None else nan_profile
    # Training ends right after an evaluation (fit evaluates its last step): that one's accuracy is final, unless
    # it was measured on a weight average (optim.ema) rather than the parameters measured here.
    reuse = watch.last_longrange is not None and not diverged and ccfg.optim.ema == 0
    accuracy = (
        watch.last_longrange
        if reuse
        else _longrange(params, ccfg, sh.vocab, sh.longrange, sh.longrange_records)
        if params is not None and sh.longrange
        else None
    )
    check = (
        promptcheck.run(params, ccfg.model, sh.vocab, sh.pairs, seed=ccfg.train.seed)
        if params is not None and sh.pairs
        else None
    )
    speed = cur.chars_per_s[1:] or cur.chars_per_s  # step 1 compiles
    return CellResult(
        spec,
        cur,
        cur.val_loss[-1] if cur.val_loss else float("nan"),
        seconds,
        float(np.median(speed)) if speed else 0.0,
        accuracy,
        grad_init,
        grad_final,
        diverged,
        check,
        cur.steps[-1] if cur.steps else 0,
    )
