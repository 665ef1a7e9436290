"""Fuzzing: arbitrary text and small random configs either train, checkpoint, resume and sample, or fail
through the clear-error path (UserError), never with another exception."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

import pytest
from helpers import Reporter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlstm import config
from charlstm.errors import RunError, UserError
from charlstm.nn import sampling
from charlstm.training import checkpoint, rundir, runner

configs = st.fixed_dictionaries(
    {
        "model.cell": st.sampled_from(["lstm", "gru", "rnn"]),
        "model.layers": st.integers(1, 2),
        "model.hidden": st.sampled_from([4, 8]),
        "model.embed": st.sampled_from([0, 3]),
        "data.seq_len": st.integers(1, 12),
        "data.batch_size": st.integers(1, 4),
        "data.val_fraction": st.sampled_from([0.1, 0.3, 0.5]),
        "data.encoding": st.sampled_from(["utf-8", "bytes"]),
        "data.batching": st.sampled_from(["stream", "random"]),
    }
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(min_size=0, max_size=400), cfg_items=configs, raw=st.booleans())
def test_train_resume_sample_or_clear_error(text: str, cfg_items: dict, raw: bool) -> None:
    overrides = [f"{k}={v}" for k, v in cfg_items.items()]
    overrides += [
        "train.steps=3",
        "train.eval_every=2",
        "checkpoint.every=2",
        "train.sample_length=5",
        "train.eval_batches=2",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "c.txt"
        # Sometimes raw bytes that need not be valid UTF-8.
        data = text.encode("utf-8", "surrogatepass")
        corpus.write_bytes(data + (b"\xff\xfe" if raw else b""))
        try:
            cfg = config.load("tiny", overrides)
            runner.train_run(
                cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 2})}),
                corpus,
                Reporter(),
                name="f",
                runs_dir=Path(tmp),
            )
            run = rundir.RunDir(Path(tmp) / "f")
            runner.train_run(cfg, None, Reporter(), runs_dir=Path(tmp), resume=run)
            restored = checkpoint.restore(run)
            assert restored.step == 3
            out = sampling.sample_text(
                restored.state.params,
                cfg.model,
                restored.vocab,
                restored.vocab.symbol(0),
                sampling.SampleOptions(length=4, seed=1),
            )
            assert len(out) == 1
        except UserError as err:
            assert err.message and "\n" not in err.message


@pytest.mark.slow
def test_full_disk_while_saving_keeps_earlier_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config.load("tiny", ["train.steps=8", "checkpoint.every=4", "train.eval_every=4", "train.sample_length=0"])
    corpus = Path(__file__).resolve().parent.parent / "corpora" / "languages.txt"
    runner.train_run(cfg, corpus, Reporter(), name="d", runs_dir=tmp_path)
    run = rundir.RunDir(tmp_path / "d")
    before = checkpoint.steps(run)
    original = checkpoint.ocp.CheckpointManager.save

    def no_space(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", no_space)
    longer = config.load(run.config_file, ["train.steps=16"])
    with pytest.raises(RunError, match="could not save checkpoint at step 12.*No space left"):
        runner.train_run(longer, None, Reporter(), runs_dir=tmp_path, resume=run)
    monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", original)
    assert checkpoint.steps(run) == before
    assert checkpoint.restore(run).step == 8
    assert not rundir.is_locked(run)
