"""Training to a time budget (`train.time`): the number of steps, chosen from the measured step time.

Training starts with the total left open. The learning rate is then on the flat part of the wsd schedule,
which does not depend on the total (`loop.learning_rate`), so the steps taken before the total is chosen are
the steps a rerun with that total takes. After a few seconds of steps the total is fitted from their median
time, the measured cost of a validation pass and sample, and the measured work at the end (the prompt
check). From about a third of the budget on, every tenth of it, the total is checked against the median step
of the later half of the steps since the last fit (the longer steps counted as evaluations and saves) and
fitted again if the run would miss its end by more than 1%: a shared machine's step time swings by 15% within
a minute (docs/quality.md), which one early refit cannot follow. Every fit comes before the decay begins. The
run directory's config then holds the total, so `--resume` and a rerun continue that schedule.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from charlstm.config import Config, OptimConfig
from charlstm.data.batches import Curriculum, stage

_IMPORTED = time.monotonic()
# The total before the first fit: far enough that the wsd decay cannot begin before it.
OPEN_TOTAL = 100_000_000
# A fit needs this many timed steps (the first, which compiles, is not one of them) ...
_MIN_TIMED_STEPS = 5
# ... and at least this much timed stepping, or this share of the budget if that is less.
_FIT_AFTER_S, _FIT_AFTER_SHARE = 15.0, 0.03
# The total is checked once this share of the budget has gone, then every _CHECK_EVERY of it until the decay
# begins, and fitted again only if that moves the end by more than _REFIT_OVER.
_REFIT_AT_SHARE, _CHECK_EVERY, _REFIT_OVER = 0.3, 0.1, 0.01
_MIN_HALF = 8  # steps since the last fit below which a refit times all of them, not the later half
_SPIKE = 2.0  # a step that took this many times the median had more than a step in it (an evaluation, a save)
# The final save and the summary, not timed before they happen (a few hundred ms for a small model).
_END_S = 0.5


def process_start() -> float:
    """When this process started, on the `time.monotonic()` clock: a budget counts interpreter start-up and
    imports too. Where /proc is missing (macOS, Windows), the time this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            ticks = float(f.read().rsplit(")", 1)[1].split()[19])  # field 22: start time, clock ticks after boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.monotonic() - age if 0 <= age < 3600 else _IMPORTED
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED


@dataclass(frozen=True)
class Fit:
    """One choice of the total: when it was made and from what."""

    at_step: int
    elapsed_s: float  # since the budget's start
    seconds_per_step: float  # the time a step is expected to take from here
    seconds_per_eval: float  # and a validation pass with its sample (and the checkpoints, once timed)
    reserve_s: float  # the work after the last step (final save, prompt check)
    steps: int  # the total chosen


@dataclass
class Budget:
    """The plan of `loop.fit` (`plan(steps_done) -> total`) for a budget of `seconds` from `started`.

    `eval_s` is the measured time of one validation pass with its sample, `reserve_s` that of the work after
    the last step; `on_fit` sees each fit (the runner records it and rewrites the run's config).
    """

    seconds: float
    started: float  # time.monotonic() at the budget's start
    optim: OptimConfig
    eval_every: int
    eval_s: float
    reserve_s: float
    on_fit: Callable[[Fit], None] = lambda fit: None
    fits: list[Fit] = field(default_factory=list)
    _checks: int = 0  # the totals checked since the first fit
    _times: list[tuple[int, float]] = field(default_factory=list)  # (steps done, monotonic time)
    _clock: Callable[[], float] = time.monotonic

    @property
    def total(self) -> int:
        return self.fits[-1].steps if self.fits else OPEN_TOTAL

    def __call__(self, done: int) -> int:
        if self.fits and done >= decay_start(self.optim, self.total) - 1:
            return self.total  # the decay has begun: the total is fixed
        now = self._clock()
        self._times.append((done, now))
        if not self.fits:
            if self._first_fit_due(done):
                self._fit(done, now, statistics.median(self._timed()), self.eval_s)
        elif self._check_due(done, now):  # the next check a tenth of the budget from now, however late this one
            self._checks = math.floor(((now - self.started) / self.seconds - _REFIT_AT_SHARE) / _CHECK_EVERY) + 1
            per_step, per_eval = self._measured_since(self.fits[-1].at_step)
            if abs(self._end(done, now, self.total, per_step, per_eval) - self.seconds) > _REFIT_OVER * self.seconds:
                self._fit(done, now, per_step, per_eval)
        return self.total

    def _timed(self, since: int = 0) -> list[float]:
        """The times of single steps after step `since` (an evaluation or a save after one counts with it),
        without the run's first step here (it compiles)."""
        times = [t for t in self._times if t[0] >= since]
        start = self._times[0][0] if self._times else 0
        return [b[1] - a[1] for a, b in zip(times, times[1:]) if b[0] == a[0] + 1 and a[0] > start]

    def _measured_since(self, step: int) -> tuple[float, float]:
        """(seconds per step, seconds per evaluation) over the later half of the steps since `step`: the median
        step, and what the steps of over _SPIKE x that took beyond it (an evaluation, a save) per evaluation,
        spread over the steps if none came. The later half and the median follow a step time that drifts
        (docs/quality.md: a run slower for its first 150 steps, which the mean of them all ended 8% early)."""
        since = [done for done, _ in self._times if done >= step]
        first, last = since[len(since) // 2] if len(since) >= _MIN_HALF else step, since[-1]
        timed = self._timed(first)
        per_step = statistics.median(timed)
        beyond = sum(dt - per_step for dt in timed if dt > _SPIKE * per_step)
        evals = (last - 1) // self.eval_every - (first - 1) // self.eval_every  # those that ended in the window
        return (per_step, beyond / evals) if evals else (per_step + beyond / (last - first), self.eval_s)

    def _first_fit_due(self, done: int) -> bool:
        timed = self._timed()
        if len(timed) < _MIN_TIMED_STEPS:
            return False
        boundary = (done + 1) % self.eval_every == 0  # before the first evaluation, so its records hold the total
        return boundary or sum(timed) >= min(_FIT_AFTER_S, _FIT_AFTER_SHARE * self.seconds)

    def _check_due(self, done: int, now: float) -> bool:
        gone = now - self.started >= (_REFIT_AT_SHARE + _CHECK_EVERY * self._checks) * self.seconds
        first = self.fits[0].at_step
        timed_evals = (done - 1) // self.eval_every > (first - 1) // self.eval_every
        if not (gone and (timed_evals or done >= 2 * first + 100)):
            return False
        return len(self._timed(self.fits[-1].at_step)) >= _MIN_TIMED_STEPS

    def _end(self, done: int, now: float, total: int, per_step: float, per_eval: float) -> float:
        """Seconds from the budget's start to the end of a run of `total` steps."""
        # An evaluation after step `done` comes after this call: it is still to come.
        evals = total // self.eval_every - (done - 1) // self.eval_every + (total % self.eval_every != 0)
        return now - self.started + (total - done) * per_step + evals * per_eval + self.reserve_s + _END_S

    def _fit(self, done: int, now: float, per_step: float, per_eval: float) -> None:
        left = self.seconds - (now - self.started) - self.reserve_s - _END_S
        total = done + max(math.floor(left / (per_step + per_eval / self.eval_every)), 1)
        while self._end(done, now, total + 1, per_step, per_eval) <= self.seconds:
            total += 1
        while total > done + 1 and self._end(done, now, total, per_step, per_eval) > self.seconds:
            total -= 1
        total = max(total, _least_total(self.optim, done))
        fit = Fit(done, round(now - self.started, 3), per_step, per_eval, self.reserve_s, total)
        self.fits.append(fit)
        self.on_fit(fit)

    def record(self, ended: float | None = None) -> dict[str, object]:
        """What budget.json holds: the budget, each fit, and (once the run is over) the time it took."""
        out: dict[str, object] = {"seconds": self.seconds, "fits": [asdict(f) for f in self.fits]}
        if ended is not None:
            out["took_s"] = round(ended - self.started, 3)
            out["off_by"] = round((ended - self.started) / self.seconds - 1, 4)
        return out


def for_budget(cfg: Config) -> Config:
    """`cfg` as a budgeted run trains it: with the wsd schedule, the one whose rate until its decay does not
    depend on the total (its lr, warmup and decay settings kept)."""
    if cfg.optim.schedule == "wsd":
        return cfg
    return cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"schedule": "wsd"})})


def decay_start(optim: OptimConfig, total: int) -> int:
    """The first step whose learning rate depends on the total: where `loop.learning_rate`'s decay begins
    (cosine: after the warmup; wsd: the last `decay_fraction` of the steps; constant: never)."""
    warmup = min(optim.warmup_steps, max(total - 1, 0))
    if optim.schedule == "constant":
        return total
    if optim.schedule == "cosine":
        return warmup
    return max(total - max(round(optim.decay_fraction * total), 1), warmup)


def _least_total(optim: OptimConfig, done: int) -> int:
    """The smallest total whose decay starts after `done` steps: the steps taken keep their learning rates."""
    total = max(done + 1, math.ceil((done + 1) / (1 - optim.decay_fraction)) if optim.decay_fraction < 1 else done + 1)
    while decay_start(optim, total) <= done:
        total += 1
    return total


def curriculum_cut(total: int, curriculum: Curriculum) -> str:
    """A warning when a run of `total` steps ends before its curriculum reads all of the text ("" if it does
    not): the model then never trains on the text it is scored on."""
    if stage(total - 1, curriculum)[1] >= 1.0:
        return ""
    whole = [first for first, share in curriculum if share >= 1.0 and first >= total]
    when = f" (from step {min(whole):,})" if whole else ""
    return (
        f"the budget's {total:,} steps end before the curriculum reads all of the text{when}: "
        "the validation loss will stay high; give it more time"
    )


def summary_line(budget: Budget, ended: float, what: str) -> str:
    """One line for the end of training: the budget, what was trained, the measured speed, the steps chosen,
    and how close to the budget it ended."""
    took = ended - budget.started
    speed = f"{budget.fits[-1].seconds_per_step:.3f} s/step measured" if budget.fits else "no step timed"
    return (
        f"budget {_hms(budget.seconds)}: {what}, {speed} -> {budget.total:,} steps; "
        f"took {_hms(took)} ({took / budget.seconds - 1:+.1%})"
    )


def _hms(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"
