"""Ctrl-C and SIGTERM during training: the first asks the loop to stop after its step (and save), a second
Ctrl-C leaves at once; with several processes, all of them agree on the step to stop after."""

from __future__ import annotations

import signal
from types import FrameType

from charlstm.training import distributed


class StopFlag:
    """First SIGINT/SIGTERM asks the loop to stop after its step (and save); a second SIGINT exits at once."""

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum:
            raise KeyboardInterrupt  # second press: leave now; complete checkpoints are never touched
        self.signum = signum

    def __enter__(self) -> StopFlag:
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: no signal handling
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)  # type: ignore[arg-type]  # a handler getsignal returned; the stub's union is wider


class AgreedStop:
    """`should_stop` for the loop: the signal seen by any process, agreed on by all of them.

    Every process must stop after the same step (the final save is collective). With several processes the
    flags are exchanged every `every` steps, which bounds the cost of the exchange; alone, every step.
    """

    def __init__(self, flag: StopFlag, every: int = 5) -> None:
        self.flag, self.every, self.calls, self.signum = flag, every if distributed.process_count() > 1 else 1, 0, 0

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls % self.every == 0:
            self.signum = distributed.agree_max(self.flag.signum)
        return self.signum != 0
