"""Faults during training: Ctrl-C, SIGTERM and kill -9 on the real CLI, and non-finite steps."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import Reporter, assert_ok, run_cli

from charlstm import config
from charlstm.errors import RunError
from charlstm.training import checkpoint, loop, rundir, runner

CORPUS = Path(__file__).resolve().parent.parent / "corpora" / "languages.txt"
LONG = [
    "--config",
    "tiny",
    "--set",
    "train.steps=100000",
    "--set",
    "checkpoint.every=5",
    "--set",
    "train.sample_length=0",
]


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "charlstm.cli", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for_steps(proc: subprocess.Popen[str], n_lines: int = 2, timeout: float = 120) -> None:
    """Block until training has logged `n_lines` step lines (stderr is a pipe, so the display logs plainly)."""
    seen, end = 0, time.time() + timeout
    assert proc.stderr is not None
    while seen < n_lines:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, f"process ended early: {proc.returncode}"
        assert time.time() < end, "training did not start in time"
        seen += line.startswith("step ")


def _assert_loadable(run: Path) -> None:
    for step in checkpoint.steps(rundir.RunDir(run)):
        checkpoint.restore(rundir.RunDir(run), step)


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_and_says_how_to_resume(tmp_path: Path, signum: int, code: int) -> None:
    proc = _start(["train", *LONG, "--name", "r"], tmp_path)
    _wait_for_steps(proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error:") and "charlstm train --resume" in last and "checkpoint saved" in last
    steps = checkpoint.steps(rundir.RunDir(tmp_path / "runs" / "r"))
    assert steps, "no checkpoint saved on interrupt"
    _assert_loadable(tmp_path / "runs" / "r")
    assert not rundir.is_locked(rundir.RunDir(tmp_path / "runs" / "r"))


@pytest.mark.slow
def test_second_ctrl_c_exits_at_once_and_keeps_checkpoints_intact(tmp_path: Path) -> None:
    proc = _start(["train", *LONG, "--name", "r"], tmp_path)
    _wait_for_steps(proc, n_lines=3)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    _assert_loadable(tmp_path / "runs" / "r")


@pytest.mark.slow
def test_kill_9_repeatedly_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    args = [
        "--config",
        "tiny",
        "--set",
        "train.steps=60",
        "--set",
        "checkpoint.every=4",
        "--set",
        "train.sample_length=0",
        "--set",
        "train.log_every=1",
    ]
    assert_ok(run_cli(["train", *args, "--name", "ref"], cwd=tmp_path))  # the reference, uninterrupted
    rng = random.Random(0)
    proc = _start(["train", *args, "--name", "cut"], tmp_path)
    for _ in range(2):
        _wait_for_steps(proc, n_lines=rng.randint(1, 12))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        proc = _start(["train", "--resume", "runs/cut"], tmp_path)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    a = checkpoint.restore(rundir.RunDir(tmp_path / "runs" / "ref"))
    b = checkpoint.restore(rundir.RunDir(tmp_path / "runs" / "cut"))
    assert a.step == b.step == 60
    for x, y in zip(jax.tree_util.tree_leaves(a.state), jax.tree_util.tree_leaves(b.state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    def vals(r):
        return [m["val_loss"] for m in rundir.read_metrics(tmp_path / "runs" / r / "metrics.jsonl") if "val_loss" in m]

    assert vals("cut") == vals("ref")


@pytest.mark.slow
def test_non_finite_steps_are_skipped_then_training_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config.load(
        "tiny", ["train.steps=10", "checkpoint.every=5", "train.max_bad_steps=3", "train.sample_length=0"]
    )
    runner.train_run(cfg, CORPUS, Reporter(), name="nan", runs_dir=tmp_path)
    run = rundir.RunDir(tmp_path / "nan")
    before = checkpoint.restore(run)
    assert before.step == 10

    healthy = loop.loss_fn

    def poisoned(*args, **kwargs):  # type: ignore[no-untyped-def]
        loss, carry = healthy(*args, **kwargs)
        return loss * jnp.nan, carry

    monkeypatch.setattr(loop, "loss_fn", poisoned)
    record = Reporter()
    longer = config.load(run.config_file, ["train.steps=20"])
    with pytest.raises(RunError, match="3 consecutive steps had a non-finite loss"):
        runner.train_run(longer, None, record, runs_dir=tmp_path, resume=run)
    steps = [e for e in record.events if isinstance(e, loop.StepEvent)]
    assert [e.skipped for e in steps] == [True, True, True]  # detected at each step, training stopped at the 3rd
    assert checkpoint.steps(run)[-1] == 10  # nothing saved after the failure
    after = checkpoint.restore(run)
    for x, y in zip(jax.tree_util.tree_leaves(before.state), jax.tree_util.tree_leaves(after.state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not rundir.is_locked(run)


@pytest.mark.slow
def test_skipped_step_leaves_params_and_optimizer_state_unchanged() -> None:
    cfg = config.load("tiny", ["data.batch_size=2", "data.seq_len=4"])
    state = loop.init_state(cfg, 5)
    # One NaN weight makes the loss and every gradient non-finite.
    head = {**state.params["head"], "W": state.params["head"]["W"].at[0, 0].set(jnp.nan)}
    bad = state._replace(params={**state.params, "head": head})
    before = [np.asarray(a).copy() for a in jax.tree_util.tree_leaves((bad.params, bad.opt_state))]
    x = np.zeros((2, 4), np.int32)
    new, m = loop.make_train_step(cfg)(bad, x, x, jnp.ones(len(x), bool), cfg.train.steps)
    assert not bool(m["ok"]) and int(new.step) == 1
    after = jax.tree_util.tree_leaves((new.params, new.opt_state))
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, np.asarray(b))
