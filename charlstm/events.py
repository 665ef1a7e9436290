"""What the training loop reports: one event per step and one per validation pass.

Kept apart from `charlstm.training.loop` (which needs JAX and optax) so that the display code and the command
line can name these types without starting JAX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, overload


@overload
def bits(nats: float) -> float: ...
@overload
def bits(nats: None) -> None: ...
def bits(nats: float | None) -> float | None:
    """A loss in nats (per character) in bits; None stays None."""
    return None if nats is None else nats / math.log(2)


@dataclass(frozen=True)
class StepEvent:
    step: int
    loss: float
    grad_norm: float
    lr: float
    chars_per_s: float
    skipped: bool  # non-finite loss or gradient: the update was not applied


@dataclass(frozen=True)
class EvalEvent:
    step: int
    val_loss: float
    params: Any = None  # the parameters evaluated, for samples at evaluation time
    raw_val_loss: float | None = None  # with optim.ema: the loss of the raw (not averaged) parameters

    @property
    def bits_per_char(self) -> float:
        return bits(self.val_loss)


Event = StepEvent | EvalEvent


class Silent:
    """A training reporter that shows nothing: `charlstm.train(progress=False)` and headless runs use it.

    The methods a reporter has (`runner.TrainReporter`); the live display, `ui.TrainingDisplay`, is another."""

    def start(self, info: dict[str, object]) -> None: ...
    def event(self, ev: Event) -> None: ...
    def sample(self, step: int, text: str) -> None: ...
    def message(self, text: str) -> None: ...
    def stop(self) -> None: ...
