"""Data parallel training on several devices and several processes, on CPU.

Devices are forced with XLA_FLAGS=--xla_force_host_platform_device_count=N, which must be set before JAX
starts, so every run here is a subprocess. The runs share one global batch (data.batch_size=8), so 1 device,
4 devices and 2 processes of 2 devices must give the same losses up to float rounding (the gradient is summed
in a different order).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from dist_worker import OPTIONS
from helpers import ROOT, TINY_TRAIN, assert_clean_error, assert_ok, cli_env, describe, run_cli, run_cli_process

from charlstm.training import checkpoint, distributed, rundir

FOUR = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
RTOL = 2e-5  # float32 sums in another order; measured differences are ~1e-7


def _losses(run: Path) -> dict[tuple[int, str], float]:
    out = {}
    for m in rundir.read_metrics(run / "metrics.jsonl"):
        for key in ("loss", "val_loss"):
            if key in m:
                out[(m["step"], key)] = m[key]
    return out


def _assert_same_losses(run: Path, ref: Path, steps: int = 8) -> None:
    got, want = _losses(run), {k: v for k, v in _losses(ref).items() if k[0] <= steps}
    assert got.keys() == want.keys(), (sorted(got), sorted(want))
    assert len(want) == steps + steps // 4  # a train loss per step, a validation loss every 4 steps
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=RTOL), k


def _assert_same_params(run: Path, ref: Path, step: int = 8) -> None:
    a = checkpoint.restore(rundir.RunDir(run), step)  # onto this 1-device process, whatever the saved mesh
    b = checkpoint.restore(rundir.RunDir(ref), step)
    for x, y in zip(jax.tree_util.tree_leaves(a.state), jax.tree_util.tree_leaves(b.state)):
        # The gradient is summed in another order across devices; Adam divides a near-zero gradient by its own
        # small scale, so a weight's rounding difference can reach ~1e-3 of a step (lr 3e-3) after a few steps.
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "dist_worker.py"), str(out)],
        env={**cli_env(), **FOUR},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, describe(proc)
    return out


@pytest.mark.slow
def test_four_devices_give_the_losses_of_one(runs: Path) -> None:
    _assert_same_losses(runs / "four_half", runs / "ref", steps=4)
    _assert_same_params(runs / "four_half", runs / "ref", step=4)


@pytest.mark.slow
def test_run_trained_on_one_device_resumes_on_four(runs: Path) -> None:
    _assert_same_losses(runs / "one_half", runs / "ref")
    _assert_same_params(runs / "one_half", runs / "ref")


@pytest.mark.slow
def test_run_trained_on_four_devices_resumes_in_a_one_device_process(runs: Path, tmp_path: Path) -> None:
    _assert_same_losses(runs / "four_half", runs / "ref", steps=4)
    # Its config asks for 4 devices: this process has 1, and says so until told to use what there is.
    assert_clean_error(
        run_cli(["train", "--resume", runs / "four_half", "--steps", "8", "--runs-dir", runs]),
        "dist.devices=4",
        "1 cpu device",
        "--set dist.devices=1",
        code=1,
    )
    # This resume also reads the corpus through the encoded cache (memory-mapped): the same numbers again.
    cache = {"CHARLSTM_CACHE": str(tmp_path / "cache"), "CHARLSTM_CACHE_MIN_MB": "0"}
    proc = run_cli(
        ["train", "--resume", runs / "four_half", "--steps", "8", "--set", "dist.devices=0", "--runs-dir", runs],
        env=cache,
    )
    assert_ok(proc)
    assert "encoded in" in proc.stderr and "cached for later runs" in " ".join(proc.stderr.split()), proc.stderr
    _assert_same_losses(runs / "four_half", runs / "ref")
    _assert_same_params(runs / "four_half", runs / "ref")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(args: list[str], n: int, env: dict[str, str], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """Start n processes of one job on localhost and wait for all of them (killing the rest if one hangs)."""
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "charlstm.cli",
                *args,
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                str(n),
                "--process-id",
                str(i),
            ],
            cwd=cwd,
            env={**cli_env(), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=180)
            results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return results


@pytest.mark.slow
def test_two_processes_give_the_losses_of_one(runs: Path, tmp_path: Path) -> None:
    # 2 processes x 2 devices: each process gathers its 4 rows of the global batch of 8.
    args = [
        "train",
        "languages",  # the reference run's corpus (dist_worker.py)
        "--config",
        "tiny",
        *(a for o in OPTIONS for a in ("--set", o)),
        "--set",
        "train.steps=8",
        "--runs-dir",
        str(tmp_path),
        "--name",
        "two",
    ]
    p0, p1 = _launch(args, 2, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, tmp_path)
    assert_ok(p0)
    assert_ok(p1)
    said = " ".join(p0.stderr.split())  # rich wraps long lines on a pipe
    assert "training summary" in said and "4 cpu device(s) in 2 processes" in said, describe(p0)
    # Only gloo's hellos, whose threads may cut into each other anywhere ("[Gloo] Rank 2[Gloo] Rank 3 is ...").
    hello = r"\[Gloo\]|Rank|\d+|is connected to|Expected number of connected peer ranks is :|peer ranks\."
    assert not re.sub(hello, "", p1.stderr).strip(), describe(p1)
    assert p0.stdout == p1.stdout == ""
    _assert_same_losses(tmp_path / "two", runs / "ref")
    _assert_same_params(tmp_path / "two", runs / "ref")


@pytest.mark.slow
def test_a_failure_on_one_process_stops_every_process(tmp_path: Path) -> None:
    # Process 1 is given a corpus that does not exist (e.g. not copied to its host): both must say so.
    port = _free_port()
    procs = []
    for i, corpus in enumerate(["languages", str(tmp_path / "missing.txt")]):
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "charlstm.cli",
                    "train",
                    corpus,
                    *TINY_TRAIN,
                    "--runs-dir",
                    str(tmp_path),
                    "--coordinator",
                    f"127.0.0.1:{port}",
                    "--num-processes",
                    "2",
                    "--process-id",
                    str(i),
                ],
                env=cli_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        results.append(
            subprocess.CompletedProcess(
                p.args, p.returncode, out, "\n".join(ln for ln in err.splitlines() if not ln.startswith("[Gloo]"))
            )
        )
    assert_clean_error(results[0], "process 1", "corpus not found", code=1)
    assert_clean_error(results[1], "corpus not found", code=1)


@pytest.mark.slow
def test_batch_must_split_evenly_across_devices(tmp_path: Path) -> None:
    # A process of its own: XLA_FLAGS is read when JAX starts.
    proc = run_cli_process(["train", *TINY_TRAIN, "--set", "data.batch_size=6", "--runs-dir", tmp_path], env=FOUR)
    assert_clean_error(proc, "data.batch_size=6", "4 devices", "multiple of 4", code=1)
    assert not (tmp_path / "latest").exists()  # checked before anything is read or written


def test_more_devices_than_exist() -> None:
    with pytest.raises(distributed.DistributedError) as info:  # this pytest process has 1 CPU device
        distributed.make_layout(2, 8)
    assert "dist.devices=2" in info.value.message and "1 cpu device" in info.value.message
    assert "xla_force_host_platform_device_count" in info.value.hint


def test_one_device_layout() -> None:
    layout = distributed.make_layout(0, 5)  # any batch splits across one device
    assert layout.n_devices == 1 and layout.is_main and layout.rows(5) == slice(0, 5)
    x = np.arange(10).reshape(5, 2)
    assert np.array_equal(np.asarray(layout.put_global(x)), x)


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"coordinator": "nohost"}, ["HOST:PORT"]),
        ({"coordinator": "host:99999"}, ["HOST:PORT"]),
        ({"coordinator": "127.0.0.1:1", "num_processes": 2, "process_id": 2}, ["--process-id 2", "0..1"]),
        ({"coordinator": "127.0.0.1:1", "num_processes": 0}, ["--num-processes"]),
    ],
)
def test_bad_distributed_options(kwargs: dict, words: list[str]) -> None:
    # Checked before jax.distributed is touched, so safe in this process.
    with pytest.raises(distributed.DistributedError) as info:
        distributed.initialize(**kwargs)
    for w in words:
        assert w in str(info.value)


def test_no_options_no_distributed_runtime() -> None:
    assert distributed.initialize() is False


def test_environment_variables_are_the_options(tmp_path: Path) -> None:
    env = {"JAX_COORDINATOR_ADDRESS": "bad-address", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}
    assert_clean_error(
        run_cli(["train", *TINY_TRAIN, "--runs-dir", tmp_path], env=env), "bad-address", "HOST:PORT", code=2
    )


@pytest.mark.slow
def test_the_distributed_flag_without_a_cluster(tmp_path: Path) -> None:
    env = {k: v for k, v in cli_env().items() if not k.startswith(("SLURM_", "OMPI_", "PMI_", "JAX_COORDINATOR"))}
    proc = subprocess.run(
        [sys.executable, "-m", "charlstm.cli", "train", *TINY_TRAIN, "--runs-dir", str(tmp_path), "--distributed"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_clean_error(proc, "cannot start the distributed runtime", "--coordinator", code=1)
