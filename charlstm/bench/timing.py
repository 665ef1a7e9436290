"""The timed tasks of `charlstm bench` and the alternating rounds that time them.

Each task (training, sampling at batch 1, sampling at batch 64) is described once, as a `Task`. In every round
each task runs on both sides back to back, and each timed run starts with a pause and an untimed warm-up of the
side being measured; after the tasks, the round times the machine's two ceilings (`charlstm.bench.probes`), so
every per-round ratio compares figures taken under the same machine load.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from charlstm.bench.charlstm_side import SAMPLE_B1_CHARS, SAMPLE_B64_CHARS, CharlstmSide
from charlstm.config import Config

if TYPE_CHECKING:
    from charlstm.bench.torch_side import TorchSide

# Every timed run starts with this pause and an untimed warm-up of the side being measured, so each side runs hot
# on a machine the other has just left (docs/performance.md, "How `charlstm bench` measures").
SETTLE_S = 0.1
WARM_CHARS = 64  # characters per stream sampled to warm up before a timed sampling run


class Side(Protocol):
    """A model the rounds time: `CharlstmSide` or `TorchSide`, on the same weights and batches."""

    def train(self, steps: int) -> tuple[float, float]:
        """(seconds, last loss) for `steps` training steps."""
        ...

    def sample(self, batch: int, length: int) -> float:
        """Seconds to sample `length` characters per stream, `batch` streams at once."""
        ...


@dataclass(frozen=True)
class Task:
    """One timed measurement, made once per side in every round."""

    name: str  # "train", "b1" or "b64": the keys of `TorchNumbers.threads`
    chars: int  # characters one timed run trains on or samples
    warm_up: Callable[[Side], object]  # untimed, right before every timed run
    timed_run: Callable[[Side], float]  # returns its own seconds

    def measure(self, side: Side) -> float:
        """The seconds of one timed run on `side`, after the settle pause and the warm-up."""
        time.sleep(SETTLE_S)
        self.warm_up(side)
        return self.timed_run(side)


class Tasks(NamedTuple):
    """What every round times, in this order."""

    train: Task
    b1: Task
    b64: Task


def tasks(cfg: Config, steps: int) -> Tasks:
    """`steps` training steps (warmed up by one), then sampling at batch 1 and at batch 64."""
    d = cfg.data
    return Tasks(
        train=Task("train", steps * d.batch_size * d.seq_len, lambda s: s.train(1), lambda s: s.train(steps)[0]),
        b1=_sampling("b1", 1, SAMPLE_B1_CHARS),
        b64=_sampling("b64", 64, SAMPLE_B64_CHARS),
    )


def _sampling(name: str, batch: int, length: int) -> Task:
    """Sampling `length` characters per stream for `batch` streams, warmed up by `WARM_CHARS` per stream."""
    return Task(name, batch * length, lambda s: s.sample(batch, WARM_CHARS), lambda s: s.sample(batch, length))


@dataclass
class Timings:
    """One side's timed runs, one entry per round: seconds per task and, for PyTorch, the thread count of each."""

    seconds: dict[str, list[float]]
    threads: dict[str, list[int]]

    @classmethod
    def empty(cls, todo: Tasks) -> Timings:
        return cls({t.name: [] for t in todo}, {t.name: [] for t in todo})

    def chars_per_s(self, task: Task) -> float:
        """The median speed over rounds."""
        return statistics.median(task.chars / t for t in self.seconds[task.name])


@dataclass
class Rounds:
    """Everything the rounds timed, one entry per round in each list."""

    ours: Timings
    theirs: Timings  # empty without --vs-torch
    gemm_flops: list[float]  # the fp32 GEMM's FLOP/s (`probes.gemm_probe`)
    chain_s: list[float]  # one pass of the model's batch-1 matmuls alone (`probes.matmul_chain_probe`)


def measure_rounds(
    todo: Tasks,
    rounds: int,
    ours: CharlstmSide,
    theirs: TorchSide | None,
    gemm: Callable[[], float],
    chain: Callable[[], float],
    log: Callable[[str], None],
) -> Rounds:
    """In each round, every task on both sides back to back (charlstm first in even rounds, PyTorch first in odd
    ones; PyTorch at each of its thread counts, the faster kept), then the GEMM and the matmul-chain probes."""
    out = Rounds(Timings.empty(todo), Timings.empty(todo), [], [])
    for r in range(rounds):
        log(f"round {r + 1}/{rounds}")
        for task in todo:
            for side in (ours, theirs) if r % 2 == 0 else (theirs, ours):
                if side is ours:
                    out.ours.seconds[task.name].append(task.measure(ours))
                elif theirs is not None:
                    seconds, threads = theirs.fastest(functools.partial(task.measure, theirs))
                    out.theirs.seconds[task.name].append(seconds)
                    out.theirs.threads[task.name].append(threads)
        out.gemm_flops.append(gemm())
        out.chain_s.append(chain())
    return out
