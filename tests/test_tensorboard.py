"""`train.tensorboard`: event files under runs/<name>/tb/ with the metrics.jsonl scalars and the samples,
read back here from the files; without tensorboardX, one error line naming the extra before training starts."""

from __future__ import annotations

import shutil
import struct
from collections import defaultdict
from pathlib import Path

import pytest
from helpers import ROOT, TINY_TRAIN, assert_clean_error, run_cli_process

import charlstm
from charlstm.training import rundir

event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")  # the test extra installs it

OVERRIDES = {
    "train.steps": 6,
    "train.eval_every": 3,
    "train.log_every": 2,
    "checkpoint.every": 3,
    "train.sample_length": 30,
    "train.tensorboard": True,
}


def read_events(directory: Path) -> tuple[dict[str, dict[int, float]], dict[int, str]]:
    """Every scalar (tag -> step -> value) and text (step -> text) in a directory's event files.

    An event file is a TFRecord file: per record, a little-endian uint64 length, a uint32 checksum, the
    serialized Event and another uint32 checksum. As TensorBoard does, a session START event at step s (which a
    resumed run writes) drops what earlier events logged at steps >= s."""
    scalars: dict[str, dict[int, float]] = defaultdict(dict)
    texts: dict[int, str] = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            if event.HasField("session_log") and event.session_log.status == event.session_log.START:
                for by_step in (*scalars.values(), texts):
                    for step in [s for s in by_step if s >= event.step]:
                        del by_step[step]
            for value in event.summary.value:
                if value.HasField("tensor") and value.tensor.string_val:
                    texts[event.step] = value.tensor.string_val[0].decode("utf-8")
                else:
                    scalars[value.tag][event.step] = value.simple_value
    return scalars, texts


@pytest.mark.slow
def test_event_files_hold_the_metrics_and_samples(tmp_path: Path) -> None:
    model = charlstm.train(config="tiny", overrides=OVERRIDES, runs_dir=tmp_path, name="tb", progress=False)
    run = rundir.RunDir(model.run_dir)
    scalars, texts = read_events(run.tensorboard)
    records = rundir.read_metrics(run.metrics_file)
    steps = {r["step"]: r for r in records if "loss" in r}
    evals = {r["step"]: r for r in records if "val_loss" in r}
    assert set(steps) == {2, 4, 6} and set(evals) == {3, 6}
    for tag, key in (
        ("train/loss", "loss"),
        ("train/grad_norm", "grad_norm"),
        ("train/lr", "lr"),
        ("train/chars_per_s", "chars_per_s"),
    ):
        assert set(scalars[tag]) == set(steps), tag
        for step, value in scalars[tag].items():
            assert value == pytest.approx(steps[step][key], rel=1e-3, abs=1e-6), (tag, step)
    for tag, key in (("val/loss", "val_loss"), ("val/bits_per_char", "val_bpc")):
        assert scalars[tag] == pytest.approx({s: r[key] for s, r in evals.items()}, rel=1e-6), tag
    assert set(texts) == {3, 6} and all(len(t.strip()) >= 20 for t in texts.values())


@pytest.mark.slow
def test_resume_drops_the_events_after_its_checkpoint(tmp_path: Path) -> None:
    first = charlstm.train(config="tiny", overrides=OVERRIDES, runs_dir=tmp_path, name="r", progress=False)
    # Continue to step 9 from the checkpoint at step 3, as if steps 4-6 had been lost: the events logged at
    # those steps by the first process must not stay beside the new ones.
    shutil.rmtree(first.run_dir / "checkpoints" / "6")
    resumed = charlstm.train(overrides={"train.steps": 9}, resume=first.run_dir, runs_dir=tmp_path, progress=False)
    scalars, _ = read_events(rundir.RunDir(resumed.run_dir).tensorboard)
    records = rundir.read_metrics(resumed.run_dir / "metrics.jsonl")
    assert scalars["train/loss"] == pytest.approx({r["step"]: r["loss"] for r in records if "loss" in r}, rel=1e-6)
    assert set(scalars["val/loss"]) == {3, 6, 9}


@pytest.mark.slow
def test_without_tensorboardx_a_clear_error_before_training(tmp_path: Path) -> None:
    hidden = tmp_path / "no_tensorboardx" / "tensorboardX"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {"PYTHONPATH": f"{hidden.parent}:{ROOT}"}
    proc = run_cli_process(  # a process of its own: tensorboardX is hidden from it by PYTHONPATH
        ["train", *TINY_TRAIN, "--runs-dir", tmp_path / "runs", "--name", "x", "--set", "train.tensorboard=true"],
        env=env,
    )
    assert_clean_error(proc, "tensorboardX", 'pip install "charlstm[tensorboard]"', code=1)
    assert not (tmp_path / "runs").exists()
