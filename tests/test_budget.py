"""Training to a time budget: durations, the learning-rate schedules it relies on (against optax's), the fitting
of the total on a simulated clock, and real runs: the recorded config reproduces a budgeted run exactly, and
an interrupted one resumes to the same weights."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_clean_error, run_cli
from test_faults import _start

import charlstm
from charlstm import config
from charlstm.analysis import compare
from charlstm.config import OptimConfig
from charlstm.errors import ConfigError
from charlstm.training import budget, checkpoint, configure, loop, rundir

# --- durations ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h30m", 5400), ("1.5h", 5400), ("2m30s", 150), ("600", 600), (" 5m ", 300)],
)
def test_a_duration_reads_as_seconds(text: str, seconds: float) -> None:
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "1h30", "m", "-5m", "0s", "8d", "200h"])
def test_a_bad_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        config.parse_duration(text)


def test_train_time_is_checked_when_the_config_loads() -> None:
    assert config.load("tiny", ["train.time=2m"]).train.time == "2m"
    with pytest.raises(ConfigError, match="train.time"):
        config.load("tiny", ["train.time=soon"])


@pytest.mark.slow
def test_a_budget_trains_with_wsd_and_steps_with_time_is_a_usage_error(tmp_path: Path) -> None:
    cfg, _ = configure.training_config("shakespeare", ["train.time=10m"])
    assert cfg.optim.schedule == "wsd" and cfg.optim.lr == config.load("shakespeare").optim.lr
    proc = run_cli(["train", "--config", "tiny", "--steps", "5", "--time", "1m"], cwd=tmp_path)
    assert_clean_error(proc, "--steps and --time both given", code=2)
    proc = run_cli(["train", "--config", "tiny", "--time", "ten minutes"], cwd=tmp_path)
    assert_clean_error(proc, "train.time", code=2)


# --- the learning rate -------------------------------------------------------------------------------------------


def _rates(cfg: OptimConfig, total: int, steps: int) -> np.ndarray:
    return np.asarray(loop.learning_rate(cfg, jnp.arange(steps), total))


@pytest.mark.parametrize("warmup", [0, 100])
def test_cosine_and_constant_rates_are_optax_schedules(warmup: int) -> None:
    total = 1000
    cosine = OptimConfig(lr=2e-3, warmup_steps=warmup, min_lr_ratio=0.05)
    reference = optax.warmup_cosine_decay_schedule(0.0 if warmup else 2e-3, 2e-3, warmup, total, 2e-3 * 0.05)
    np.testing.assert_allclose(_rates(cosine, total, 1200), [reference(i) for i in range(1200)], rtol=2e-6, atol=1e-9)
    constant = OptimConfig(lr=5e-3, warmup_steps=warmup, schedule="constant")
    ramp = [5e-3 * min(i / warmup, 1) if warmup else 5e-3 for i in range(1200)]
    np.testing.assert_allclose(_rates(constant, total, 1200), ramp, rtol=2e-6, atol=1e-9)


def test_wsd_is_flat_until_its_decay_whatever_the_total() -> None:
    cfg = OptimConfig(lr=4e-3, warmup_steps=50, schedule="wsd", decay_fraction=0.2, min_lr_ratio=0.1)
    short, long = _rates(cfg, 1000, 1000), _rates(cfg, budget.OPEN_TOTAL, 1000)
    start = budget.decay_start(cfg, 1000)
    assert start == 800
    np.testing.assert_array_equal(short[:start], long[:start])  # the steps a fit leaves as they were
    np.testing.assert_allclose(short[50:start], 4e-3, rtol=1e-6)
    assert np.all(np.diff(short[start:]) < 0) and short[-1] == pytest.approx(4e-4, rel=2e-3)
    # the decay is a cosine from lr to lr * min_lr_ratio over the last 200 steps
    x = (np.arange(start, 1000) - start) / 200
    np.testing.assert_allclose(short[start:], 4e-4 + 3.6e-3 * 0.5 * (1 + np.cos(np.pi * x)), rtol=1e-5)


# --- fitting the total -------------------------------------------------------------------------------------------


def _simulate(
    seconds: float,
    step_s: Callable[[int], float],
    *,
    compile_s: float = 2.0,
    eval_every: int = 10**9,
    eval_s: float = 0.0,
    measured_eval_s: float | None = None,
    reserve_s: float = 0.0,
) -> tuple[budget.Budget, float]:
    """Run `loop.fit`'s calls to the plan on a simulated clock; the budget's own end work included."""
    now = [1.0]
    cfg = OptimConfig(schedule="wsd", warmup_steps=20)
    measured = eval_s if measured_eval_s is None else measured_eval_s
    plan = budget.Budget(seconds, 0.0, cfg, eval_every, measured, reserve_s, _clock=lambda: now[0])
    done, total = 0, plan(0)
    while done < total:
        now[0] += step_s(done) + (compile_s if done == 0 else 0.0)
        done += 1
        total = plan(done)
        if done % eval_every == 0 or done == total:
            now[0] += eval_s
        for fit in plan.fits:
            assert fit.at_step < budget.decay_start(cfg, fit.steps)  # no step already taken changes its rate
    return plan, now[0] + reserve_s + budget._END_S


def test_steady_steps_end_on_the_budget_with_one_fit() -> None:
    plan, end = _simulate(300.0, lambda step: 0.05)
    assert len(plan.fits) == 1 and end == pytest.approx(300.0, rel=0.002)


def test_evaluations_and_the_end_work_are_counted() -> None:
    plan, end = _simulate(300.0, lambda step: 0.05, eval_every=200, eval_s=3.0, reserve_s=10.0)
    assert end == pytest.approx(300.0, rel=0.01)


def test_a_machine_that_slows_down_is_refitted_once() -> None:
    plan, end = _simulate(600.0, lambda step: 0.05 if step < 300 else 0.08, eval_every=500, eval_s=1.0)
    assert len(plan.fits) == 2 and plan.fits[1].steps < plan.fits[0].steps
    assert end == pytest.approx(600.0, rel=0.02)


def test_a_machine_that_warms_up_is_refitted_from_its_recent_steps() -> None:
    # Measured on a 10 MB corpus: 0.40 s/step for the first ~150 steps, 0.31 s after; fitting the refit on every
    # step since the first fit ended that 5-minute run 8% early.
    plan, end = _simulate(300.0, lambda step: 0.40 if step < 150 else 0.31, eval_every=250, eval_s=2.6)
    assert len(plan.fits) == 2 and plan.fits[1].seconds_per_step == pytest.approx(0.31)
    assert end == pytest.approx(300.0, rel=0.02)


def test_a_step_time_that_swings_is_followed_until_the_decay(monkeypatch: pytest.MonkeyPatch) -> None:
    # A shared machine's step time, measured on the essay corpus's 5-minute run: +-15% within about a minute.
    def swinging(phase: float) -> Callable[[int], float]:
        return lambda step: 0.065 * (1 + 0.15 * np.sin(2 * np.pi * (step / 900 + phase)))

    phases = (0.0, 0.25, 0.5, 0.75)
    for phase in phases:
        plan, end = _simulate(300.0, swinging(phase), eval_every=500, eval_s=0.6, reserve_s=2.0)
        assert len(plan.fits) > 2 and end == pytest.approx(300.0, rel=0.04)
    monkeypatch.setattr(budget, "_CHECK_EVERY", 10.0)  # one check only, at a third of the budget
    ends = [_simulate(300.0, swinging(phase), eval_every=500, eval_s=0.6, reserve_s=2.0)[1] for phase in phases]
    assert max(abs(end / 300.0 - 1) for end in ends) > 0.05


def test_an_evaluation_that_costs_more_than_measured_is_refitted() -> None:
    plan, end = _simulate(600.0, lambda step: 0.05, eval_every=300, eval_s=4.0, measured_eval_s=1.0)
    assert len(plan.fits) == 2 and end == pytest.approx(600.0, rel=0.02)


def test_a_budget_too_short_for_the_decay_still_keeps_the_steps_taken() -> None:
    plan, end = _simulate(3.0, lambda step: 0.05, compile_s=2.5)
    assert plan.total >= budget.OPEN_TOTAL or plan.fits  # it fitted
    assert plan.fits[0].at_step < budget.decay_start(plan.optim, plan.total)


def test_a_budget_that_ends_before_the_curriculum_reads_all_the_text_says_so() -> None:
    stages = ((0, 0.1), (1000, 1.0))
    assert budget.curriculum_cut(1001, stages) == budget.curriculum_cut(5000, stages) == ""
    assert budget.curriculum_cut(400, ()) == ""
    cut = budget.curriculum_cut(1000, stages)  # its last step, 999, still reads the first tenth
    assert cut.startswith("the budget's 1,000 steps end before the curriculum reads all of the text (from step 1,000)")
    assert "give it more time" in budget.curriculum_cut(40, ((0, 0.1), (30, 0.5)))


# --- real runs ---------------------------------------------------------------------------------------------------

QUICK = {"train.sample_length": 0, "checkpoint.every": 50, "train.eval_every": 50, "train.log_every": 1}


def _rows(run: Path) -> list[tuple[object, ...]]:
    return [
        (r["step"], r.get("loss"), r.get("val_loss"), r.get("lr")) for r in rundir.read_metrics(run / "metrics.jsonl")
    ]


@pytest.mark.slow
def test_a_budgeted_run_records_its_total_and_its_config_reproduces_it(tmp_path: Path) -> None:
    model = charlstm.train(None, "tiny", QUICK, runs_dir=tmp_path, name="timed", progress=False, time="12s")
    run = tmp_path / "timed"
    record = json.loads((run / "budget.json").read_text())
    saved = rundir.RunDir(run).read_config()
    assert saved.train.time is None and saved.optim.schedule == "wsd"
    assert record["fits"] and saved.train.steps == record["fits"][-1]["steps"] == model.summary.steps
    assert model.summary.budget.startswith("budget 12s: ") and "training chars, lstm 1x32" in model.summary.budget
    assert f"-> {saved.train.steps:,} steps; took" in model.summary.budget
    again = charlstm.train(None, run / "config.yaml", runs_dir=tmp_path, name="again", progress=False)
    assert again.summary.budget is None
    assert _rows(tmp_path / "again") == _rows(run)


@pytest.mark.slow
def test_a_budgeted_run_says_once_that_it_ends_before_its_curriculum_reads_all_the_text(tmp_path: Path) -> None:
    sets = [f"--set={k}={v}" for k, v in {**QUICK, "data.curriculum": "[[0, 0.5], [100000, 1.0]]"}.items()]
    result = run_cli(["train", "--config", "tiny", "--time", "8s", *sets, "--runs-dir", "runs"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())  # the training display's messages
    assert said.count("steps end before the curriculum reads all of the text (from step 100,000)") == 1


@pytest.mark.slow
def test_an_interrupted_budgeted_run_resumes_to_its_total(tmp_path: Path) -> None:
    args = ["--config", "tiny", "--time", "10s", *(f"--set={k}={v}" for k, v in QUICK.items())]
    proc = _start(["train", *args, "--name", "cut"], tmp_path)
    record = tmp_path / "runs" / "cut" / "budget.json"
    end = time.time() + 120
    while not record.exists() and proc.poll() is None and time.time() < end:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # after the total is chosen, before the run ends
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    resumed = _start(["train", "--resume", "runs/cut"], tmp_path)
    _, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err
    cut = rundir.RunDir(tmp_path / "runs" / "cut")
    charlstm.train(None, cut.config_file, runs_dir=tmp_path / "runs", name="ref", progress=False)
    a, b = checkpoint.restore(cut), checkpoint.restore(rundir.RunDir(tmp_path / "runs" / "ref"))
    assert a.step == b.step == cut.read_config().train.steps
    for x, y in zip(jax.tree_util.tree_leaves(a.state), jax.tree_util.tree_leaves(b.state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_compare_rnn_with_time_trains_every_cell_to_its_own_total() -> None:
    cfg = config.load("tiny", ["train.time=8s", "train.patience=3", "train.eval_every=20"])
    result = compare.run(cfg, None, ("rnn", "lstm"), longrange_records=50)
    assert result.config.optim.schedule == "wsd" and result.config.train.patience == 0
    for cell in result.cells:
        assert cell.steps > 1 and cell.steps == cell.curves.steps[-1] and cell.curves.val_steps[-1] == cell.steps
        assert cell.curves.steps == list(range(1, cell.steps + 1))  # no plateau stop, no gap
