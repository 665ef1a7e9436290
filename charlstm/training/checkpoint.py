"""Checkpoints: Orbax's CheckpointManager around the TrainState, plus `load_run` for every reading command.

Each checkpoint holds two items: "state" (params, optimizer state, step, key, carried state) and "meta"
(config, vocabulary, validation loss) so that a checkpoint directory describes itself. Orbax writes to a
temporary directory and renames it when complete, so a save cut short by a crash is never listed; a finished
checkpoint that fails to load (truncated or corrupted file) is skipped with a warning for the previous one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from charlstm import config as config_lib
from charlstm.config import Config
from charlstm.data.corpus import Vocab
from charlstm.errors import RunError, UserError
from charlstm.nn import model
from charlstm.training import loop, rundir
from charlstm.training.distributed import Layout
from charlstm.training.rundir import RunDir

# Orbax logs every save at INFO/WARNING through absl; the CLI reports saves itself.
logging.getLogger("absl").setLevel(logging.ERROR)


def _manager(directory: Path, keep: int, read_only: bool = False) -> ocp.CheckpointManager:
    policy = ocp.checkpoint_managers.AnyPreservationPolicy(
        [
            ocp.checkpoint_managers.LatestN(n=keep),
            # BestN keeps the last n after sorting; reverse=True sorts by descending loss, so the lowest is last.
            ocp.checkpoint_managers.BestN(
                get_metric_fn=lambda m: m["val_loss"], n=1, reverse=True, keep_checkpoints_without_metrics=False
            ),
        ]
    )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=None if read_only else policy,
        best_fn=lambda m: m["val_loss"],
        best_mode="min",
        enable_async_checkpointing=True,  # the copy off the device is synchronous, the file writes are not
        read_only=read_only,
        create=not read_only,
    )
    return ocp.CheckpointManager(directory.resolve(), options=options, item_names=("state", "meta"))


def _abstract_state(cfg: Config, vocab_size: int, layout: Layout | None = None) -> Any:
    """Shapes, dtypes and target shardings of a TrainState for this config, without computing one.

    Orbax reads each array straight into the layout asked for, whatever layout it was saved from: a run
    saved from 4 devices restores onto 1 and vice versa. Without a layout, everything goes to this process's
    first device (the reading commands: sample, eval, export, inspect).
    """
    shapes = jax.eval_shape(lambda: loop.init_state(cfg, vocab_size))
    if layout is None:
        one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one), shapes)

    def attach(sharding: Any, subtree: Any) -> Any:
        return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), subtree)

    return jax.tree_util.tree_map(attach, loop.state_shardings(layout), shapes)


class Checkpointer:
    """Saves and restores the TrainState of one run."""

    def __init__(self, run: RunDir, cfg: Config, vocab: Vocab) -> None:
        self.run, self.cfg, self.vocab = run, cfg, vocab
        try:
            self.manager = _manager(run.checkpoints, cfg.checkpoint.keep)
        except OSError as err:
            raise RunError(f"cannot create {run.checkpoints}: {err}", "check permissions and free space") from None

    def save(self, state: loop.TrainState, val_loss: float | None) -> None:
        """Start saving `state` (async); a no-op if this step is already saved."""
        step = int(state.step)
        if step in self.manager.all_steps():
            return
        meta = {"config": self.cfg.model_dump(), "vocab": self.vocab.to_json(), "step": step, "val_loss": val_loss}
        metrics = {"val_loss": val_loss} if val_loss is not None and math.isfinite(val_loss) else None
        try:
            self.manager.save(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardSave(state._asdict()), meta=ocp.args.JsonSave(meta)),
                metrics=metrics,
            )
        except OSError as err:
            raise RunError(
                f"could not save checkpoint at step {step}: {err}",
                "free disk space or fix permissions; earlier checkpoints are intact",
            ) from None

    def wait(self) -> None:
        """Block until pending saves are on disk (raises RunError if the write failed)."""
        try:
            self.manager.wait_until_finished()
        except OSError as err:
            raise RunError(
                f"could not finish writing a checkpoint: {err}",
                "free disk space or fix permissions; earlier checkpoints are intact",
            ) from None

    def close(self) -> None:
        self.manager.close()


@dataclass(frozen=True)
class Restored:
    config: Config
    vocab: Vocab
    state: loop.TrainState
    step: int
    val_loss: float | None

    @property
    def params(self) -> model.Params:
        """The parameters to use: the weight average when the run kept one (optim.ema), else the raw ones."""
        return loop.weights(self.state)


def steps(run: RunDir) -> list[int]:
    """Complete checkpoint steps of a run, oldest first."""
    if not run.checkpoints.is_dir():
        return []
    return sorted(int(p.name) for p in run.checkpoints.iterdir() if p.is_dir() and p.name.isdigit())


def best_step(run: RunDir) -> int | None:
    """The step with the lowest recorded validation loss, if any."""
    if not run.checkpoints.is_dir():
        return None
    mngr = _manager(run.checkpoints, keep=1, read_only=True)
    try:
        return mngr.best_step() if mngr.all_steps() else None
    finally:
        mngr.close()


def restore(
    run: RunDir,
    which: str | int = "latest",
    cfg: Config | None = None,
    warn: Callable[[str], None] = lambda s: None,
    layout: Layout | None = None,
) -> Restored:
    """Restore a run's TrainState: "latest" (falling back past damaged checkpoints), "best", or a step number.

    `cfg` (default: the run's own config) decides the expected shapes; a checkpoint of another shape is a
    RunError naming the difference, not a shape traceback. `layout` places the state on a device mesh
    (training); every process of a multi-process job must call this together.
    """
    cfg = cfg or run.read_config()
    vocab = run.read_vocab()
    available = steps(run)
    if not available:
        raise RunError(
            f"run {run.path} has no complete checkpoint", "train it (or resume it) until a checkpoint is saved"
        )
    if which == "latest":
        candidates = available[::-1]
    elif which == "best":
        b = best_step(run)
        candidates = [b] if b is not None else available[::-1]
    else:
        step = int(which)
        if step not in available:
            raise RunError(f"run {run.path} has no checkpoint at step {step}", f"available steps: {available}")
        candidates = [step]
    mngr = _manager(run.checkpoints, keep=1, read_only=True)
    try:
        for i, step in enumerate(candidates):
            try:
                meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
                _check_compatible(meta, cfg, vocab, run, step)
                target = _abstract_state(cfg, len(vocab), layout)._asdict()
                restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
            except UserError:  # a readable checkpoint that does not fit (shapes, config): not damage
                raise
            except Exception as err:
                more = (
                    "falling back to the previous one"
                    if i + 1 < len(candidates)
                    else "no older checkpoint to fall back to"
                )
                warn(f"checkpoint {step} of {run.path} is damaged ({err.__class__.__name__}); {more}")
                continue
            return Restored(cfg, vocab, loop.TrainState(**restored), step, meta.get("val_loss"))
    finally:
        mngr.close()
    raise RunError(
        f"no loadable checkpoint in {run.checkpoints}", "the files are damaged; retrain, or restore them from a backup"
    )


def _check_compatible(meta: dict[str, Any], cfg: Config, vocab: Vocab, run: RunDir, step: int) -> None:
    saved = config_lib.from_saved(meta["config"])
    diffs = [
        f"model.{k}: checkpoint {getattr(saved.model, k)!r} vs requested {getattr(cfg.model, k)!r}"
        for k in ("cell", "layers", "hidden", "start_state")
        if getattr(saved.model, k) != getattr(cfg.model, k)
    ]
    if (saved.optim.ema > 0) != (cfg.optim.ema > 0):  # the optimizer state has a weight average or not
        diffs.append(f"optim.ema: checkpoint {saved.optim.ema!r} vs requested {cfg.optim.ema!r}")
    if saved.data.batch_size != cfg.data.batch_size:
        diffs.append(f"data.batch_size: checkpoint {saved.data.batch_size} vs requested {cfg.data.batch_size}")
    if Vocab.from_json(meta["vocab"]) != vocab:
        diffs.append("the vocabulary differs")
    if diffs:
        raise RunError(
            f"checkpoint {step} of {run.path} does not match the config: {'; '.join(diffs)}",
            "resume without shape-changing --set options, or start a new run",
        )


def load_run(
    run: str | Path | None,
    runs_dir: Path = Path("runs"),
    which: str = "latest",
    warn: Callable[[str], None] = lambda s: None,
) -> Restored:
    """What sample/eval/export/inspect need: a run argument (None: runs/latest) -> config, vocab, params."""
    which_arg: str | int = int(which) if str(which).isdigit() else which
    if which_arg not in ("latest", "best") and not isinstance(which_arg, int):
        raise RunError(f"unknown checkpoint '{which}'", "use latest, best, or a step number")
    return restore(rundir.resolve(run, runs_dir), which_arg, warn=warn)
