"""optim.ema: a moving average of the weights, kept in the optimizer state and used to evaluate, sample, export."""

from __future__ import annotations

import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import Reporter

from charlstm import config
from charlstm.data import batches
from charlstm.errors import RunError
from charlstm.training import checkpoint, loop, rundir, runner

CORPUS = Path(__file__).resolve().parent.parent / "corpora" / "languages.txt"
TINY = [
    "train.steps=24",
    "train.eval_every=8",
    "checkpoint.every=8",
    "checkpoint.keep=2",
    "train.sample_length=0",
    "optim.ema=0.9",
]


def _cfg(*extra: str) -> config.Config:
    return config.load("tiny", TINY + list(extra))


def test_average_matches_a_numpy_running_average() -> None:
    decay = 0.9
    rng = np.random.default_rng(0)
    p = {"w": rng.normal(size=(3, 2)).astype(np.float32), "b": rng.normal(size=2).astype(np.float32)}
    tx = loop.average_params(decay)
    state = tx.init(jax.tree_util.tree_map(jnp.asarray, p))
    ref = {k: v.copy() for k, v in p.items()}
    cur = {k: v.copy() for k, v in p.items()}
    for t in range(30):
        u = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in p.items()}
        out, state = tx.update(jax.tree_util.tree_map(jnp.asarray, u), state, jax.tree_util.tree_map(jnp.asarray, cur))
        np.testing.assert_array_equal(np.asarray(out["w"]), u["w"])  # updates pass through unchanged
        cur = {k: cur[k] + u[k] for k in p}
        d = min(decay, (1 + t) / (10 + t))  # the ramp: 0.1, 0.18, ... then the decay itself
        ref = {k: d * ref[k] + (1 - d) * cur[k] for k in p}
    assert int(state.count) == 30
    for k in p:
        np.testing.assert_allclose(np.asarray(state.params[k]), ref[k], rtol=1e-5, atol=1e-6)


def test_off_by_default_and_optimizer_unchanged_without_it() -> None:
    cfg = config.load("tiny", ["train.steps=4"])
    assert cfg.optim.ema == 0.0
    state = loop.init_state(cfg, 5)
    assert loop.weights(state) is state.params
    assert not any(
        isinstance(n, loop.AverageState)
        for n in jax.tree_util.tree_leaves(state.opt_state, is_leaf=lambda n: isinstance(n, loop.AverageState))
    )


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[rundir.RunDir, runner.Summary]:
    """An uninterrupted 24-step run with the weight average on."""
    runs = tmp_path_factory.mktemp("runs")
    summary = runner.train_run(_cfg(), CORPUS, Reporter(), name="ema", runs_dir=runs)
    return rundir.RunDir(runs / "ema"), summary


@pytest.mark.slow
def test_training_evaluates_the_average_and_checkpoints_it(ema_run: tuple[rundir.RunDir, runner.Summary]) -> None:
    run, summary = ema_run
    restored = checkpoint.restore(run)
    avg, raw = restored.params, restored.state.params
    assert avg is not raw
    diff = max(
        float(jnp.abs(a - b).max()) for a, b in zip(jax.tree_util.tree_leaves(avg), jax.tree_util.tree_leaves(raw))
    )
    assert diff > 1e-4  # the average lags the raw weights
    evals = [m for m in rundir.read_metrics(run.metrics_file) if "val_loss" in m]
    assert [m["step"] for m in evals] == [8, 16, 24]
    assert all("raw_val_loss" in m and m["raw_val_loss"] != m["val_loss"] for m in evals)
    # The logged validation loss is the average's: recompute it from the checkpoint.
    cfg = restored.config
    _, _, va = runner.prepare_data(cfg, CORPUS, restored.vocab)
    val = batches.eval_batches(va, cfg.data.batch_size, cfg.data.seq_len, cfg.train.eval_batches)
    eval_step = loop.make_eval_step(cfg.model)
    assert loop.validation_loss(avg, cfg.model, eval_step, val) == pytest.approx(evals[-1]["val_loss"], rel=1e-6)
    assert loop.validation_loss(raw, cfg.model, eval_step, val) == pytest.approx(evals[-1]["raw_val_loss"], rel=1e-6)
    assert summary.final_val_loss == evals[-1]["val_loss"]


@pytest.mark.slow
def test_resume_with_the_average_is_exact(ema_run: tuple[rundir.RunDir, runner.Summary], tmp_path: Path) -> None:
    ref = ema_run[0]
    cut = tmp_path / "cut"
    shutil.copytree(ref.path, cut)
    for step in checkpoint.steps(rundir.RunDir(cut)):
        if step != 16:
            shutil.rmtree(cut / "checkpoints" / str(step))
    runner.train_run(_cfg(), None, Reporter(), runs_dir=tmp_path, resume=rundir.RunDir(cut))
    a, b = checkpoint.restore(ref), checkpoint.restore(rundir.RunDir(cut))
    for x, y in zip(jax.tree_util.tree_leaves(a.state), jax.tree_util.tree_leaves(b.state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_turning_the_average_on_or_off_for_a_saved_run_is_a_clear_error(
    ema_run: tuple[rundir.RunDir, runner.Summary],
) -> None:
    with pytest.raises(
        RunError, match=r"after optim.ema=0.0 \(saved: 0.9\): opt_state/.* is not in the requested model"
    ):
        checkpoint.restore(ema_run[0], cfg=_cfg("optim.ema=0"))


@pytest.mark.slow
def test_non_finite_steps_leave_the_average_alone() -> None:
    cfg = _cfg()
    state = loop.init_state(cfg, 7)
    step = loop.make_train_step(cfg)
    x = jnp.zeros((cfg.data.batch_size, cfg.data.seq_len), jnp.int32)
    state, _ = step(state, x, x, jnp.zeros(len(x), bool), cfg.train.steps)
    before = jax.tree_util.tree_map(np.asarray, loop.weights(state))
    poisoned = state._replace(params=jax.tree_util.tree_map(lambda p: p * jnp.nan, state.params))
    after, m = step(poisoned, x, x, jnp.zeros(len(x), bool), cfg.train.steps)
    assert not bool(m["ok"])
    for a, b in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(loop.weights(after))):
        np.testing.assert_array_equal(a, np.asarray(b))
