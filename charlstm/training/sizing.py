"""Choosing the model for a time budget (`model.auto_size`, `charlstm train my.txt --time 10m`).

The candidates are one recipe (the `shakespeare` config's layer-normalised LSTM, streams of 64 x 100
characters, AdamW) at four sizes, the largest with its heavier regularisation. Which one a budget can afford
depends on this machine: a short probe compiles and times a few training steps of the candidates (cached per
machine, JAX version and shape), which turns the budget into steps, and the steps into characters seen.

The rule, fitted on measured runs (docs/quality.md, "Sizing to the corpus and the budget"): take the largest
size that
  1. the corpus can feed: at most MAX_PARAMS_PER_CHAR parameters per training character, and
  2. the budget can train: it sees at least MIN_CHARS_PER_PARAM characters per parameter in the time left;
else the smallest. Dropout is for text read more than once: when the budget reads the training text less than
once, the chosen size trains without it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from charlstm import perf
from charlstm.config import Config
from charlstm.nn import model

# The rule's two constants (docs/quality.md, "Sizing to the corpus and the budget"). Measured: sizes that saw
# 0.6-1.6 characters per parameter lost to a smaller one by 0.023-0.054 nats, at 2.1-2.2 the two were within
# 0.014, at 3.1 the larger won; 9.8 parameters per character (2 x 256 on 90k characters) still beat 2 x 128.
MAX_PARAMS_PER_CHAR = 10.0
MIN_CHARS_PER_PARAM = 2.0
# The share of the time left that goes to training steps (the rest: evaluations, checkpoints, the end).
_STEP_SHARE = 0.9
# The probe stops at this share of the budget, and at most this many seconds (the candidates it did not reach
# are estimated from the last one measured, in proportion to their matmul FLOPs, bf16 counted as fp32: its gain
# was 1.06x to 1.5x on the machines measured, and an estimate too slow only keeps the rule from an untimed size).
_PROBE_SHARE, _PROBE_MAX_S = 0.1, 20.0
# The first step compiles and the next still warm up (measured: 2-3x a steady step), so the median of five after two.
_UNTIMED_STEPS, _TIMED_STEPS = 2, 5


@dataclass(frozen=True)
class Size:
    """One candidate: the model keys it sets on top of the recipe."""

    layers: int
    hidden: int
    dropout: float = 0.3
    weight_drop: float = 0.0
    weight_decay: float = 0.01
    compute_dtype: str = "float32"

    @property
    def name(self) -> str:
        return f"{self.layers}x{self.hidden}"


# Smallest first. 2 x 512 takes `shakespeare-large`'s regularisation and bf16 matmuls.
LADDER: tuple[Size, ...] = (
    Size(2, 128),
    Size(2, 256),
    Size(2, 384),
    Size(2, 512, dropout=0.4, weight_drop=0.15, weight_decay=0.1, compute_dtype="bfloat16"),
)


def sized(cfg: Config, size: Size, dropout: bool = True) -> Config:
    """`cfg` with the model and weight decay of `size` (without dropout: every dropout rate 0)."""
    m = {
        "layers": size.layers,
        "hidden": size.hidden,
        "dropout": size.dropout if dropout else 0.0,
        "weight_drop": size.weight_drop if dropout else 0.0,
        "compute_dtype": size.compute_dtype,
        "auto_size": False,
    }
    return cfg.model_copy(
        update={
            "model": cfg.model.model_copy(update=m),
            "optim": cfg.optim.model_copy(update={"weight_decay": size.weight_decay}),
        }
    )


@dataclass(frozen=True)
class Option:
    """A candidate as the rule sees it on this corpus, budget and machine."""

    size: Size
    params: int
    seconds_per_step: float | None  # None: not needed (the corpus cannot feed it)
    measured: bool  # False: estimated from a smaller size's time
    steps: int  # the steps that fit the time left
    chars: int  # characters those steps read

    @property
    def chars_per_param(self) -> float:
        return self.chars / self.params


@dataclass(frozen=True)
class Choice:
    """What `choose` picked and why."""

    config: Config
    size: Size
    options: tuple[Option, ...]
    train_chars: int
    seconds: float
    dropout: bool
    reason: str

    def line(self) -> str:
        """One line for the training summary and `config show --time`."""
        return f"auto size {self.size.name}: {self.reason}"

    def record(self) -> dict[str, object]:
        """What run.json keeps of the choice."""
        return {
            "size": self.size.name,
            "reason": self.reason,
            "train_chars": self.train_chars,
            "seconds": self.seconds,
            "dropout": self.dropout,
            "rule": {"max_params_per_char": MAX_PARAMS_PER_CHAR, "min_chars_per_param": MIN_CHARS_PER_PARAM},
            "options": [{**dataclasses.asdict(o), "size": o.size.name} for o in self.options],
        }

    def rows(self) -> list[tuple[str, str, str, str, str, str]]:
        """(size, params, s/step, steps, chars/param, verdict) per candidate."""
        out = []
        for o in self.options:
            speed = "—" if o.seconds_per_step is None else f"{o.seconds_per_step:.3f}{'' if o.measured else ' (est.)'}"
            cpp = "—" if o.seconds_per_step is None else f"{o.chars_per_param:.1f}"
            steps = "—" if o.seconds_per_step is None else f"{o.steps:,}"
            out.append((o.size.name, f"{o.params:,}", speed, steps, cpp, _verdict(o, self)))
        return out


def _verdict(o: Option, choice: Choice) -> str:
    if o.size == choice.size:
        return "chosen"
    if o.params > MAX_PARAMS_PER_CHAR * choice.train_chars:
        return "too big for the text"
    if o.seconds_per_step is None or o.chars_per_param < MIN_CHARS_PER_PARAM:  # None: a smaller one already was
        return "too slow"
    return "smaller"


def rule() -> str:
    """The rule in one line."""
    return (
        f"the rule: the largest size that reads at least {MIN_CHARS_PER_PARAM:g} characters per parameter in the "
        f"time and has at most {MAX_PARAMS_PER_CHAR:g} parameters per training character"
    )


def pick(options: list[Option], train_chars: int) -> tuple[Option, str]:
    """The rule: the largest option the corpus can feed and the budget can train, else the smallest; and why."""
    fed = [o for o in options if o.params <= MAX_PARAMS_PER_CHAR * train_chars]
    trained = [o for o in fed if o.seconds_per_step is not None and o.chars_per_param >= MIN_CHARS_PER_PARAM]
    if trained:
        best = trained[-1]
        why = f"{best.chars_per_param:.1f} chars per parameter in the budget"
        if best is not options[-1]:
            bigger = options[options.index(best) + 1]
            limit = (
                f"{bigger.size.name} would have {bigger.params / train_chars:.1f} params per corpus char"
                if bigger not in fed
                else f"{bigger.size.name} would see {bigger.chars_per_param:.1f} chars per parameter"
            )
            why += f"; {limit}"
        return best, why
    smallest = options[0]
    if smallest.seconds_per_step is None:
        return smallest, "the smallest size: the corpus is small for every size"
    return smallest, f"the smallest size: even it sees only {smallest.chars_per_param:.1f} chars per parameter"


def choose(
    cfg: Config,
    train_chars: int,
    vocab_size: int,
    seconds: float,
    started: float,
    *,
    probe: Callable[[Config, int], float] | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> Choice:
    """The config `cfg` becomes for a budget of `seconds` counted from `started` (`time.monotonic()`) on a corpus
    of `train_chars` training characters: the size the rule picks, each candidate's step time from `probe`
    (default: `StepTimes` in the charlstm cache, measured where missing)."""
    probe = probe or StepTimes.default(log).seconds_per_step
    chars_per_step = cfg.data.batch_size * cfg.data.seq_len
    probe_until = time.monotonic() + min(_PROBE_SHARE * seconds, _PROBE_MAX_S)
    options: list[Option] = []
    last: tuple[float, float] | None = None  # (seconds per step, FLOPs per char) of the last size measured
    for size in LADDER:
        c = sized(cfg, size)
        params = model.param_count_of(c.model, vocab_size)
        if params > MAX_PARAMS_PER_CHAR * train_chars:
            options.append(Option(size, params, None, False, 0, 0))
            continue
        if any(o.seconds_per_step is not None and o.chars_per_param < MIN_CHARS_PER_PARAM for o in options):
            per_step, measured = None, False  # a smaller size is already too slow: this one is too
        elif last is None or time.monotonic() < probe_until:
            per_step, measured = probe(c, vocab_size), True
            last = (per_step, model.train_flops_per_char(c.model, vocab_size))
        else:
            per_step, measured = last[0] * model.train_flops_per_char(c.model, vocab_size) / last[1], False
        if per_step is None:
            options.append(Option(size, params, None, False, 0, 0))
            continue
        options.append(_with_steps(Option(size, params, per_step, measured, 0, 0), seconds, started, chars_per_step))
    # Again with the time left now: the larger sizes' probes came out of the budget too.
    options = [_with_steps(o, seconds, started, chars_per_step) for o in options]
    best, why = pick(options, train_chars)
    dropout = best.chars >= train_chars or best.seconds_per_step is None
    if not dropout:
        why += f"; the budget reads the text {best.chars / train_chars:.2f} times: no dropout"
    return Choice(sized(cfg, best.size, dropout), best.size, tuple(options), train_chars, seconds, dropout, why)


def _with_steps(option: Option, seconds: float, started: float, chars_per_step: int) -> Option:
    """`option` with the steps (and characters) its step time fits into the time left of the budget."""
    if option.seconds_per_step is None:
        return option
    left = seconds - (time.monotonic() - started)
    steps = max(math.floor(_STEP_SHARE * left / option.seconds_per_step), 1)
    return dataclasses.replace(option, steps=steps, chars=steps * chars_per_step)


def measure_step(cfg: Config, vocab_size: int) -> float:
    """Median seconds of a training step of `cfg` on random characters, after the untimed steps that compile
    and warm up. The state and batches are placed on the devices as a run places them (unplaced, the second
    step compiles again)."""
    import numpy as np

    from charlstm.training import distributed, loop

    d = cfg.data
    layout = distributed.make_layout(cfg.dist.devices, d.batch_size)
    ids = np.random.default_rng(0).integers(0, vocab_size, (d.batch_size, d.seq_len + 1)).astype(np.int32)
    x, y = (layout.put_rows(a, d.batch_size) for a in (ids[:, :-1], ids[:, 1:]))
    reset = layout.put_rows(np.zeros(d.batch_size, bool), d.batch_size)
    state = loop.place_state(loop.init_state(cfg, vocab_size), layout)
    step = loop.make_train_step(cfg, layout)
    times = []
    for _ in range(_UNTIMED_STEPS + _TIMED_STEPS):
        tic = time.perf_counter()
        state, m = step(state, x, y, reset, cfg.train.steps)
        float(m["loss"])  # synced, as the training loop is
        times.append(time.perf_counter() - tic)
    return statistics.median(times[_UNTIMED_STEPS:])


@dataclass
class StepTimes:
    """Measured step times, kept in a JSON file per machine, JAX version and shape (None: not kept)."""

    path: Path | None
    measure: Callable[[Config, int], float] = measure_step
    log: Callable[[str], None] = lambda msg: None
    _known: dict[str, float] | None = field(default=None, repr=False)

    @classmethod
    def default(cls, log: Callable[[str], None] = lambda msg: None) -> StepTimes:
        """In the charlstm cache (`download.cache_dir`); not kept when CHARLSTM_CACHE is the empty string."""
        from charlstm.data import download

        off = os.environ.get("CHARLSTM_CACHE", None) == ""
        return cls(None if off else download.cache_dir() / "step-times.json", log=log)

    def seconds_per_step(self, cfg: Config, vocab_size: int) -> float:
        key = self.key(cfg, vocab_size)
        known = self._read()
        if key not in known:
            self.log(f"timing a training step of {cfg.model.layers}x{cfg.model.hidden}")
            known[key] = self.measure(cfg, vocab_size)
            self._write(known)
        return known[key]

    @staticmethod
    def key(cfg: Config, vocab_size: int) -> str:
        """What a step's time depends on: the machine, the JAX build, the model, the batch and the vocabulary."""
        import jax

        machine = f"{perf.cpu_name()} x{os.cpu_count()} {jax.default_backend()} jax {jax.__version__}"
        shape = cfg.model.model_dump(exclude={"auto_size", "dropout_ramp", "start_state"})
        batch = f"{cfg.data.batch_size}x{cfg.data.seq_len} v{vocab_size}"
        return f"{machine} | {json.dumps(shape, sort_keys=True)} | {batch}"

    def _read(self) -> dict[str, float]:
        if self._known is None:
            self._known = {}
            if self.path is not None:
                try:
                    loaded = json.loads(self.path.read_text(encoding="utf-8"))
                    self._known = {k: float(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
                except (OSError, ValueError, TypeError):
                    self._known = {}  # missing or damaged: measured again
        return self._known

    def _write(self, known: dict[str, float]) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only cache costs a probe next time, nothing else
