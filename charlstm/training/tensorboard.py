"""TensorBoard event files for a run (`--set train.tensorboard=true`), in runs/<name>/tb/.

One directory per run under the runs directory, so `tensorboard --logdir runs` shows every run side by side.
The scalars are those of metrics.jsonl, at the same steps; each evaluation's sample is logged as text.
tensorboardX is optional (the `tensorboard` extra): `check_available` fails before training starts without it.
This module imports neither JAX nor tensorboardX at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from charlstm.errors import UserError
from charlstm.events import EvalEvent, StepEvent

INSTALL = 'pip install "charlstm[tensorboard]"'


def check_available() -> None:
    """Raise a UserError naming the install command when tensorboardX cannot be imported."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        # Exit 1 as for the other optional packages (matplotlib, torch): the command line is valid, the
        # installation lacks a package.
        raise UserError(
            "train.tensorboard=true needs tensorboardX, which is not installed",
            f"{INSTALL}, or leave train.tensorboard off",
        ) from None


class EventLog:
    """Writes one run's events. `start_step`: the step a resumed run continues from; events the run logged
    after it (before it was stopped) are dropped, as metrics.jsonl drops its lines past that step."""

    def __init__(self, directory: Path, start_step: int = 0) -> None:
        from tensorboardX import SummaryWriter

        # File names hold the clock in whole seconds: the suffix keeps a quick resume from overwriting the file
        # of the process before it.
        self._writer: Any = SummaryWriter(
            str(directory),
            purge_step=start_step + 1 if start_step else None,
            flush_secs=10,
            filename_suffix=f".step{start_step}",
        )

    def step(self, ev: StepEvent) -> None:
        for tag, value in (
            ("train/loss", ev.loss),
            ("train/grad_norm", ev.grad_norm),
            ("train/lr", ev.lr),
            ("train/chars_per_s", ev.chars_per_s),
        ):
            self._writer.add_scalar(tag, value, ev.step)

    def evaluation(self, ev: EvalEvent) -> None:
        self._writer.add_scalar("val/loss", ev.val_loss, ev.step)
        self._writer.add_scalar("val/bits_per_char", ev.bits_per_char, ev.step)
        if ev.raw_val_loss is not None:  # with optim.ema, the raw weights' loss beside the average's
            self._writer.add_scalar("val/raw_loss", ev.raw_val_loss, ev.step)
        self._writer.flush()  # evaluations are rare: show them in TensorBoard at once

    def sample(self, step: int, text: str) -> None:
        # TensorBoard renders text as Markdown: indented by four spaces, the sample shows verbatim, lines kept.
        self._writer.add_text("sample", "".join("    " + line + "\n" for line in text.split("\n")), step)

    def close(self) -> None:
        self._writer.close()
