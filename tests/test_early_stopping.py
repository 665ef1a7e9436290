"""Early stopping (`train.patience`): a run stops after that many evaluations without a better validation loss,
keeps its best checkpoint, says so in its summary and its metrics, and a resumed run counts on from its history.

The validation losses are scripted (loop.validation_loss is replaced), so when the run stops does not depend on
how well a tiny model happens to learn."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import charlstm
from charlstm.analysis import runs
from charlstm.errors import RunError
from charlstm.training import checkpoint, loop, rundir

# Evaluations every 2 steps: the best is the 2nd (step 4), then two worse ones stop a run with patience 2.
SCRIPTED = [3.0, 2.5, 2.6, 2.7, 2.8, 2.3, 2.2, 2.1, 2.0, 1.9]
OVERRIDES = {
    "train.steps": 20,
    "train.eval_every": 2,
    "checkpoint.every": 2,
    "checkpoint.keep": 1,
    "train.sample_length": 0,
    "train.patience": 2,
}


@pytest.fixture
def scripted_val(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    losses = iter(SCRIPTED)
    monkeypatch.setattr(loop, "validation_loss", lambda *args, **kwargs: next(losses))
    yield


def test_history_counts_evaluations_since_the_best() -> None:
    early = loop.EarlyStopping.from_history(2, [(2, 3.0), (4, 2.5), (6, 2.6)])
    assert (early.best, early.best_step, early.bad_evals, early.triggered) == (2.5, 4, 1, False)
    early.update(8, float("nan"))  # no improvement
    assert early.triggered
    early.update(10, 2.0)
    assert not early.triggered and early.best_step == 10
    assert not loop.EarlyStopping.from_history(0, [(2, 1.0), (4, 2.0), (6, 3.0)]).triggered  # 0: off


@pytest.mark.slow
def test_patience_stops_keeps_the_best_and_resumes(tmp_path: Path, scripted_val: None) -> None:
    runs_dir = tmp_path / "runs"
    model = charlstm.train(config="tiny", overrides=OVERRIDES, runs_dir=runs_dir, name="p", progress=False)
    summary = model.summary
    assert summary is not None and summary.stopped_early
    assert summary.steps == 8 and summary.best_val_loss == 2.5 and summary.final_val_loss == 2.7
    run = rundir.RunDir(runs_dir / "p")
    assert checkpoint.best_step(run) == 4 and 4 in checkpoint.steps(run)  # kept beside the latest (keep=1)
    last = rundir.read_metrics(run.metrics_file)[-1]
    assert last["stopped_early"] and last["step"] == 8 and last["best_step"] == 4
    assert runs.summarize(run).status == "finished" and runs.summarize(run).reason == "stopped early"

    with pytest.raises(RunError, match="stopped early at step 8"):
        charlstm.train(overrides={"train.patience": 2}, resume=run.path, runs_dir=runs_dir, progress=False)
    # More patience: the history (best 2.5 at step 4, two worse) still counts, so one more worse evaluation
    # stops it again; then the scripted losses improve and a patient run trains to the end.
    resumed = charlstm.train(overrides={"train.patience": 3}, resume=run.path, runs_dir=runs_dir, progress=False)
    assert resumed.summary is not None and resumed.summary.stopped_early and resumed.summary.steps == 10
    done = charlstm.train(overrides={"train.patience": 0}, resume=run.path, runs_dir=runs_dir, progress=False)
    assert done.summary is not None and not done.summary.stopped_early and done.summary.steps == 20
    assert runs.summarize(run).status == "finished" and runs.summarize(run).reason == ""
    vals = [r["val_loss"] for r in rundir.read_metrics(run.metrics_file) if "val_loss" in r]
    assert vals == SCRIPTED[:10]


@pytest.mark.slow
def test_no_patience_trains_every_step(tmp_path: Path, scripted_val: None) -> None:
    model = charlstm.train(
        config="tiny",
        overrides={**OVERRIDES, "train.patience": 0, "train.steps": 8},
        runs_dir=tmp_path,
        name="q",
        progress=False,
    )
    assert model.summary is not None and not model.summary.stopped_early and model.summary.steps == 8
    assert not any(json.loads(line).get("stopped_early") for line in (tmp_path / "q" / "metrics.jsonl").open())
