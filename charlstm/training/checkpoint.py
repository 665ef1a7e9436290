"""Checkpoints: Orbax's CheckpointManager around the TrainState, plus `load_run` for every reading command.

Each checkpoint holds two items: "state" (params, optimizer state, step, key, carried state) and "meta"
(config, vocabulary, validation loss) so that a checkpoint directory describes itself. Orbax writes to a
temporary directory and renames it when complete, so a save cut short by a crash is never listed; a finished
checkpoint that fails to load (truncated or corrupted file) is skipped with a warning for the previous one.
"""

from __future__ import annotations

import logging
import math
import os
import sys
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
from charlstm.training import distributed, loop, rundir
from charlstm.training.distributed import Layout
from charlstm.training.rundir import RunDir

# Orbax logs every save at INFO/WARNING through absl, and a failed background write as an ERROR with its
# traceback; the CLI reports saves itself, and a failed one as one line when `save` or `wait` raises it.
logging.getLogger("absl").setLevel(logging.CRITICAL)


def _from_orbax(exc: BaseException | None) -> bool:
    tb = exc.__traceback__ if exc is not None else None
    while tb is not None:
        if f"{os.sep}orbax{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _from_the_store(exc: BaseException | None) -> bool:
    """A failed write of the checkpoint store itself (tensorstore's OCDBT database), which reports a full disk
    as a ValueError with no Python traceback."""
    text = str(exc) if isinstance(exc, ValueError) else ""
    return text.startswith("RESOURCE_EXHAUSTED") and "OCDBT database" in text


class _AbandonedWrites(logging.Filter):
    """Drops asyncio's "Future exception was never retrieved" for a file write of a failed save: once one
    write fails, Orbax stops waiting for the others, and their errors (the same full disk) are reported again
    when they are garbage-collected."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not ((isinstance(exc, OSError) and _from_orbax(exc)) or _from_the_store(exc))


def _late_callback_hook(previous: Callable[[Any], object]) -> Callable[[Any], object]:
    """sys.unraisablehook without the checkpoint store's late completion callbacks: after a failed save, Orbax
    closes that save's event loop while other writes are in flight, and each one that finishes later reports
    "Event loop is closed" as it tries to wake the loop. Everything else goes to the previous hook."""

    def hook(unraisable: Any) -> object:
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed" and unraisable.object is None:
            return None
        return previous(unraisable)

    return hook


logging.getLogger("asyncio").addFilter(_AbandonedWrites())
sys.unraisablehook = _late_callback_hook(sys.unraisablehook)


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
        cleanup_tmp_directories=not read_only,  # a save cut short (a full disk) frees its space on the next start
    )
    # Handlers named up front, so a checkpoint's tree metadata can be read before restoring it.
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    try:
        return ocp.CheckpointManager(directory.resolve(), options=options, item_handlers=handlers)
    except (ValueError, TypeError, KeyError) as err:  # Orbax reads every step's metadata file as it starts
        reason = str(err).splitlines()[0][:200] if str(err).strip() else err.__class__.__name__
        raise RunError(
            f"cannot read the checkpoints in {directory}: a step's _CHECKPOINT_METADATA is damaged ({reason})",
            "restore that file from a backup, or move its step directory out of the way",
        ) from None


def _abstract_state(cfg: Config, vocab_size: int, layout: Layout | None = None) -> Any:
    """Shapes, dtypes and target shardings of a TrainState for this config, without computing one.

    Orbax reads each array straight into the layout asked for, whatever layout it was saved from: a run
    saved from 4 devices restores onto 1 and vice versa. Without a layout, everything goes to this process's
    first device (the reading commands: sample, eval, export, inspect).
    """
    shapes = jax.eval_shape(lambda: loop.init_state(cfg, vocab_size))
    layout = layout or distributed.one_device()

    def attach(sharding: Any, subtree: Any) -> Any:
        return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), subtree)

    return jax.tree_util.tree_map(attach, loop.state_shardings(layout), shapes)


def _write_error(err: Exception) -> str:
    """A failed write's cause in a few words. Orbax reports a full disk as a ValueError (RESOURCE_EXHAUSTED)
    with the errno inside its long text."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    text = str(err)
    if "os_error_code='28'" in text or "No space left" in text:
        return "No space left on device"
    return text.splitlines()[0][:200] if text.strip() else err.__class__.__name__


class Checkpointer:
    """Saves and restores the TrainState of one run. A failed write is a RunError saying which checkpoint a
    `--resume` continues from; the complete ones before it are never touched."""

    def __init__(self, run: RunDir, cfg: Config, vocab: Vocab) -> None:
        self.run, self.cfg, self.vocab = run, cfg, vocab
        try:
            self.manager = _manager(run.checkpoints, cfg.checkpoint.keep)
        except OSError as err:
            raise RunError(f"cannot create {run.checkpoints}: {err}", "check permissions and free space") from None

    def save(self, state: loop.TrainState, val_loss: float | None) -> None:
        """Start saving `state` (async); a no-op if this step is already saved. Raises RunError if this save,
        or the previous one still being written, failed."""
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
        except (OSError, ValueError) as err:
            raise self._failed(f"could not save checkpoint at step {step}", err) from None

    def wait(self) -> None:
        """Block until pending saves are on disk (raises RunError if the write failed)."""
        try:
            self.manager.wait_until_finished()
        except (OSError, ValueError) as err:
            raise self._failed("could not finish writing a checkpoint", err) from None

    def close(self) -> None:
        try:
            self.manager.close()
        except (OSError, ValueError):  # a failed write: `save` or `wait` has raised it already
            pass

    def _failed(self, what: str, err: Exception) -> RunError:
        done = steps(self.run)
        then = f"charlstm train --resume {self.run.path} continues from step {done[-1]}" if done else "train again"
        return RunError(
            f"{what}: {_write_error(err)}",
            f"free disk space or fix permissions, then {then}; earlier checkpoints are intact",
        )


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
                saved_tree = mngr.item_metadata(step)["state"]
                earlier = any(k in EARLIER_NAMES for path in _shapes(saved_tree) for k in path.split("/"))
                target = _abstract_state(cfg, len(vocab), layout)._asdict()
                target = _renamed(target, {v: k for k, v in EARLIER_NAMES.items()}) if earlier else target
                _check_compatible(meta, saved_tree, target, cfg, vocab, run, step)
                restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
                restored = _renamed(restored, EARLIER_NAMES) if earlier else restored
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
            val = meta.get("val_loss")
            val = float(val) if isinstance(val, (int, float)) and not isinstance(val, bool) else None
            return Restored(
                cfg, vocab, loop.TrainState(**restored), step, val if val is None or math.isfinite(val) else None
            )
    finally:
        mngr.close()
    raise RunError(
        f"no loadable checkpoint in {run.checkpoints}", "the files are damaged; retrain, or restore them from a backup"
    )


# Parameters saved under other names by earlier versions (the layer-norm gains were g_*, like the gate g):
# read under their saved names, then renamed, so those runs still resume and sample.
EARLIER_NAMES = {"g_ih": "gain_ih", "g_hh": "gain_hh", "g_c": "gain_c"}


def _renamed(tree: Any, names: dict[str, str]) -> Any:
    """`tree` with the keys of every dict holding one of `names` renamed (in the parameters and in each optimizer
    state that mirrors them)."""

    def holds(node: Any) -> bool:
        return isinstance(node, dict) and any(k in names for k in node)

    def rename(node: Any) -> Any:
        return {names.get(k, k): v for k, v in node.items()} if holds(node) else node

    return jax.tree_util.tree_map(rename, tree, is_leaf=holds)


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """Every array of a pytree (saved metadata or an abstract state) by its path: params/layers/0/W_hh."""

    def name(key: Any) -> str:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                return str(getattr(key, attr))
        return str(key)

    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {"/".join(name(k) for k in path): tuple(leaf.shape) for path, leaf in leaves if hasattr(leaf, "shape")}


def _check_compatible(
    meta: dict[str, Any], saved_tree: Any, target: dict[str, Any], cfg: Config, vocab: Vocab, run: RunDir, step: int
) -> None:
    """A RunError naming what differs when the checkpoint's arrays are not the ones `cfg` asks for.

    The arrays themselves decide (their paths and shapes in the checkpoint's metadata against those of a state
    built for `cfg`), so every key that changes a shape counts, now and later; the config keys that differ are
    named to say why.
    """
    have, want = _shapes(saved_tree), _shapes(target)
    diffs = []
    for path in sorted(have.keys() | want.keys(), key=lambda p: (not p.startswith("params/"), p)):
        if path not in have:
            diffs.append(f"{path} is not in the checkpoint")
        elif path not in want:
            diffs.append(f"{path} is not in the requested model")
        elif have[path] != want[path]:
            diffs.append(f"{path} is {have[path]} in the checkpoint, {want[path]} requested")
    vocab_differs = Vocab.from_json(meta["vocab"]) != vocab
    if not diffs and not vocab_differs:
        return
    shown = "; ".join(diffs[:3]) + (f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else "")
    if vocab_differs:
        shown = "; ".join(x for x in (shown, "the vocabulary differs") if x)
    try:
        saved = config_lib.from_saved(meta["config"]).model_dump()
    except (UserError, KeyError, TypeError):  # the arrays say enough without it
        saved = {}
    changed = [
        f"{section}.{key}={value!r} (saved: {saved[section][key]!r})"
        for section, values in cfg.model_dump().items()
        for key, value in values.items()
        if section in ("model", "data", "optim") and section in saved and saved[section][key] != value
    ]
    why = f" after {', '.join(changed)}" if changed and diffs else ""
    raise RunError(
        f"checkpoint {step} of {run.path} does not fit the requested model{why}: {shown}",
        "the checkpoints are fine: resume without the options that change the model's shape, or start a new run",
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
