"""The run lock: one trainer per run, named in the refusal, and freed by the kernel however its holder dies."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY_TRAIN, assert_clean_error, assert_ok, cli_env, describe

from charlstm.errors import RunError
from charlstm.training import checkpoint, rundir

# Takes the lock on the run directory argv[1], says so, then sleeps until it is killed.
HOLDER = """
import sys, time
from pathlib import Path
from charlstm.training import rundir
lock = rundir.Lock(rundir.RunDir(Path(sys.argv[1])))  # kept referenced: a collected lock is released
lock.__enter__()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    run = rundir.RunDir(tmp_path)
    assert not rundir.is_locked(run)
    with rundir.Lock(run):
        assert rundir.is_locked(run)
        assert run.lock_pid_file.read_text() == str(os.getpid())
        refusal = re.escape(f"run {tmp_path} is being trained by process {os.getpid()}") + r"\b"
        with pytest.raises(RunError, match=refusal):
            rundir.Lock(run).__enter__()
    assert not rundir.is_locked(run) and not run.lock_pid_file.exists()
    with rundir.Lock(run):  # and it can be taken again
        pass


def test_a_stale_pid_file_does_not_lock_even_when_its_pid_is_alive(tmp_path: Path) -> None:
    # What a PID file lock got wrong: a PID reused after a crash (PID 1 in a container) kept the run locked.
    run = rundir.RunDir(tmp_path)
    run.lock_pid_file.write_text(str(os.getppid()))
    run.lock_file.touch()
    with rundir.Lock(run):
        assert run.lock_pid_file.read_text() == str(os.getpid())


@pytest.mark.slow
def test_a_killed_holder_frees_the_run_at_once(tmp_path: Path) -> None:
    run = rundir.RunDir(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n", holder.communicate()
        with pytest.raises(RunError, match=rf"being trained by process {holder.pid}\b"):
            rundir.Lock(run).__enter__()
    finally:
        holder.kill()  # SIGKILL: no handler, no cleanup, the PID file stays behind
        holder.communicate()
    assert holder.returncode == -signal.SIGKILL
    assert run.lock_pid_file.read_text() == str(holder.pid)
    tic = time.monotonic()
    with rundir.Lock(run):
        assert time.monotonic() - tic < 1
        assert run.lock_pid_file.read_text() == str(os.getpid())


@pytest.mark.slow
def test_two_trainers_racing_for_one_run_one_trains_the_other_fails(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "charlstm.cli", "train", *TINY_TRAIN, "--runs-dir", str(tmp_path), "--name", "r"]
    procs = [
        subprocess.Popen(
            cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8"
        )
        for _ in range(2)
    ]
    done = [subprocess.CompletedProcess(p.args, 0, *p.communicate(timeout=300)) for p in procs]
    for proc, result in zip(procs, done):
        result.returncode = proc.returncode
    winners = [i for i, r in enumerate(done) if r.returncode == 0]
    assert len(winners) == 1, "\n".join(describe(r) for r in done)
    winner, loser = procs[winners[0]], done[1 - winners[0]]
    assert_ok(done[winners[0]])

    # The loser either met the lock, or came after the winner's first checkpoint and found the run taken.
    line = assert_clean_error(loser, code=1)  # a runtime failure, not a usage error
    assert re.search(rf"is being trained by process {winner.pid}\b", line) or "run 'r' already exists" in line, line
    run = rundir.RunDir(tmp_path / "r")
    assert checkpoint.steps(run) == [2, 4]
    evals = [r["step"] for r in rundir.read_metrics(run.metrics_file) if "val_loss" in r]
    assert evals == [2, 4]  # one trainer's log, not two interleaved
    assert not rundir.is_locked(run)
