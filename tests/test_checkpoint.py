"""Checkpoints and exact resume: an interrupted-then-resumed run equals an uninterrupted one, bit for bit."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import Reporter

from charlstm import config
from charlstm.errors import RunError
from charlstm.training import checkpoint, loop, rundir, runner

CORPUS = Path(__file__).resolve().parent.parent / "corpora" / "languages.txt"
TINY = ["train.steps=24", "train.eval_every=8", "checkpoint.every=8", "checkpoint.keep=2", "train.sample_length=0"]


class Silent(Reporter):
    """A reporter that records events and can send itself a signal at a chosen step."""

    def __init__(self, interrupt_at: int | None = None, signum: int = signal.SIGINT) -> None:
        super().__init__()
        self.interrupt_at, self.signum = interrupt_at, signum

    def event(self, ev: loop.Event) -> None:
        super().event(ev)
        if isinstance(ev, loop.StepEvent) and ev.step == self.interrupt_at:
            os.kill(os.getpid(), self.signum)


def _cfg(*extra: str) -> config.Config:
    return config.load("tiny", TINY + list(extra))


def _params(run: Path, which: str | int = "latest") -> list[np.ndarray]:
    restored = checkpoint.restore(rundir.RunDir(run), which)
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(restored.state)]


def _losses(run: Path) -> dict[int, float]:
    return {m["step"]: m.get("loss", m.get("val_loss")) for m in rundir.read_metrics(run / "metrics.jsonl")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 24-step run."""
    runs = tmp_path_factory.mktemp("runs")
    rep = Silent()
    summary = runner.train_run(_cfg(), CORPUS, rep, name="ref", runs_dir=runs)
    assert summary.steps == 24 and summary.final_val_loss is not None
    return runs / "ref"


def _assert_same_state(a: Path, b: Path) -> None:
    pa, pb = _params(a), _params(b)
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_saves_and_resume_is_exact(reference: Path, tmp_path: Path, signum: int, code: int) -> None:
    rep = Silent(interrupt_at=11, signum=signum)
    with pytest.raises(runner.Interrupted) as exc:
        runner.train_run(_cfg(), CORPUS, rep, name="cut", runs_dir=tmp_path)
    assert exc.value.exit_code == code
    assert "--resume" in exc.value.hint
    run = tmp_path / "cut"
    assert checkpoint.steps(rundir.RunDir(run))[-1] == 11  # saved where it stopped
    assert not rundir.is_locked(rundir.RunDir(run))

    resumed = Silent()
    summary = runner.train_run(_cfg(), None, resumed, runs_dir=tmp_path, resume=rundir.RunDir(run))
    assert summary.steps == 24
    assert any("resuming" in m and "step 11" in m for m in resumed.messages)
    _assert_same_state(reference, run)
    assert _losses(run) == _losses(reference)  # every logged train and val loss, bitwise


@pytest.mark.slow
def test_resume_from_intermediate_checkpoint_is_exact(reference: Path, tmp_path: Path) -> None:
    """As after kill -9: only the periodic checkpoint at step 16 survived (saved asynchronously mid-training)."""
    run = tmp_path / "ref"
    shutil.copytree(reference, run)
    for step in checkpoint.steps(rundir.RunDir(run)):
        if step != 16:
            shutil.rmtree(run / "checkpoints" / str(step))
    assert checkpoint.steps(rundir.RunDir(run)) == [16]
    runner.train_run(_cfg(), None, Silent(), runs_dir=tmp_path, resume=rundir.RunDir(run))
    _assert_same_state(reference, run)


@pytest.mark.slow
def test_keeps_last_k_and_best(reference: Path) -> None:
    steps = checkpoint.steps(rundir.RunDir(reference))
    assert steps[-2:] == [16, 24] and len(steps) <= 3
    best = checkpoint.best_step(rundir.RunDir(reference))
    vals = {m["step"]: m["val_loss"] for m in rundir.read_metrics(reference / "metrics.jsonl") if "val_loss" in m}
    assert best in steps and vals[best] == min(vals[s] for s in steps if s in vals)


@pytest.mark.slow
def test_damaged_latest_falls_back_with_warning(reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "ref"
    shutil.copytree(reference, run)
    state_dir = run / "checkpoints" / "24" / "state"
    for f in state_dir.rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\x00garbage" * 3)
    warnings: list[str] = []
    restored = checkpoint.restore(rundir.RunDir(run), "latest", warn=warnings.append)
    assert restored.step == 16
    assert warnings and "checkpoint 24" in warnings[0] and "falling back" in warnings[0]


@pytest.mark.slow
def test_a_checkpoint_config_this_version_cannot_read_still_loads_when_its_arrays_fit(
    reference: Path, tmp_path: Path
) -> None:
    """The arrays decide whether a checkpoint fits: a saved config this version cannot read (e.g. written by a
    newer version) neither blocks a checkpoint whose arrays are the run's, nor gets it called damaged."""
    run = tmp_path / "ref"
    shutil.copytree(reference, run)
    meta = run / "checkpoints" / "24" / "meta" / "metadata"
    data = json.loads(meta.read_text())
    data["config"]["model"]["hidden"] = -5
    meta.write_text(json.dumps(data))
    warnings: list[str] = []
    assert checkpoint.restore(rundir.RunDir(run), "latest", warn=warnings.append).step == 24
    assert warnings == []


@pytest.mark.slow
def test_half_written_checkpoint_is_ignored(reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "ref"
    shutil.copytree(reference, run)
    # What Orbax leaves when killed mid-save: a temporary directory that was never renamed into place.
    (run / "checkpoints" / "32.orbax-checkpoint-tmp-123").mkdir()
    assert checkpoint.restore(rundir.RunDir(run)).step == 24


@pytest.mark.slow
def test_shape_mismatch_is_a_clear_error(reference: Path) -> None:
    with pytest.raises(
        RunError, match=r"model.hidden=48 \(saved: 32\).*params/.* is \(.*32.*\) in the checkpoint"
    ) as info:
        checkpoint.restore(rundir.RunDir(reference), cfg=_cfg("model.hidden=48"))
    assert "damaged" not in str(info.value)


@pytest.mark.slow
def test_empty_run_and_unknown_step(reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "empty"
    run.mkdir()
    shutil.copy(reference / "config.yaml", run / "config.yaml")
    shutil.copy(reference / "vocab.json", run / "vocab.json")
    with pytest.raises(RunError, match="no complete checkpoint"):
        checkpoint.restore(rundir.RunDir(run))
    with pytest.raises(RunError, match="no checkpoint at step 5"):
        checkpoint.restore(rundir.RunDir(reference), 5)


@pytest.mark.slow
def test_resume_past_the_end_asks_for_more_steps(reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "ref"
    shutil.copytree(reference, run)
    with pytest.raises(RunError, match="already reached step 24"):
        runner.train_run(_cfg(), None, Silent(), runs_dir=tmp_path, resume=rundir.RunDir(run))


@pytest.mark.slow
def test_same_seed_same_losses(reference: Path, tmp_path: Path) -> None:
    runner.train_run(_cfg(), CORPUS, Silent(), name="again", runs_dir=tmp_path)
    assert _losses(tmp_path / "again") == _losses(reference)
    other = runner.train_run(_cfg("train.seed=1"), CORPUS, Silent(), name="seed1", runs_dir=tmp_path)
    assert other.final_val_loss != _losses(reference)[24]


@pytest.mark.slow
def test_a_run_saved_with_the_earlier_gain_names_restores_and_resumes_exactly(tmp_path: Path) -> None:
    """Layer-norm gains were saved as g_ih, g_hh, g_c (now gain_*): such a checkpoint, optimizer moments
    included, is read under the new names, and resuming from it ends where the uninterrupted run ended."""
    cfg = _cfg("model.layer_norm=true")
    runner.train_run(cfg, CORPUS, Silent(), name="ref", runs_dir=tmp_path)
    run = rundir.RunDir(tmp_path / "ref")
    end, mid = _params(run.path, 24), checkpoint.restore(run, 16)
    shutil.rmtree(run.checkpoints)
    earlier = {v: k for k, v in checkpoint.EARLIER_NAMES.items()}
    saver = checkpoint.Checkpointer(run, cfg, mid.vocab)
    saver.save(loop.TrainState(**checkpoint._renamed(mid.state._asdict(), earlier)), mid.val_loss)
    saver.wait()
    saver.close()
    on_disk = (run.checkpoints / "16" / "state" / "_METADATA").read_text()
    assert '"g_hh"' in on_disk and "gain_hh" not in on_disk  # the earlier names really were written

    again = checkpoint.restore(run, 16)
    assert sorted(again.state.params["layers"][0]) == sorted(mid.state.params["layers"][0])
    for a, b in zip(jax.tree_util.tree_leaves(again.state), jax.tree_util.tree_leaves(mid.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    runner.train_run(cfg, None, Silent(), runs_dir=tmp_path, resume=run)
    for a, b in zip(_params(run.path, 24), end):
        np.testing.assert_array_equal(a, b)
