"""The learned start state: the state every sequence is read from, trained where streams restart.

Checked here: every reader (training's reset streams, validation, `eval`, sampling, long-range scoring,
inspection) starts from it; its gradient matches finite differences; it is saved, restored and exported;
and runs saved before it existed load as zero-start runs.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import yaml
from helpers import TINY_TRAIN, assert_ok, run_cli

from charlstm import config
from charlstm.analysis import inspection
from charlstm.config import Config, ModelConfig
from charlstm.data import batches
from charlstm.data.corpus import Vocab
from charlstm.evaluation import longrange, scoring
from charlstm.nn import model, sampling
from charlstm.training import checkpoint, loop, rundir

B, T, H, V = 3, 7, 6, 5
VOCAB = Vocab(encoding="utf-8", symbols=tuple(ord(c) for c in "\nabcd"))


def _setup(cell: str = "lstm", layers: int = 2, seed: int = 0) -> tuple[ModelConfig, model.Params]:
    """Initialised parameters with a start state drawn at random, so that it differs from zeros."""
    cfg = ModelConfig(cell=cell, layers=layers, hidden=H)
    params = model.init_params(cfg, V, jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    params["start"] = [{k: jnp.asarray(rng.uniform(-0.8, 0.8, H), jnp.float32) for k in s} for s in params["start"]]
    return cfg, params


def _ids(seed: int = 1, batch: int = B, length: int = T) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, (batch, length)).astype(np.int32)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_start_carry_is_the_learned_state_for_every_row(cell: str) -> None:
    cfg, params = _setup(cell)
    carry = model.start_carry(params, cfg, B)
    assert len(carry) == cfg.layers and all(len(c) == len(model.state_names(cell)) for c in carry)
    for layer, start in zip(carry, params["start"]):
        for got, name in zip(layer, model.state_names(cell)):
            np.testing.assert_array_equal(np.asarray(got), np.tile(np.asarray(start[name]), (B, 1)))
    zeros = cfg.model_copy(update={"start_state": "zeros"})
    assert all(not np.asarray(x).any() for x in jax.tree_util.tree_leaves(model.start_carry(params, zeros, B)))
    assert "start" not in model.init_params(zeros, V, jax.random.PRNGKey(0))


def test_restart_replaces_only_the_reset_rows() -> None:
    cfg, params = _setup()
    carry = jax.tree_util.tree_map(lambda c: c + 5.0, model.start_carry(params, cfg, B))
    reset = jnp.array([True, False, True])
    out = model.restart(params, cfg, carry, reset)
    start = model.start_carry(params, cfg, B)
    for got, old, s in zip(
        jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(carry), jax.tree_util.tree_leaves(start)
    ):
        np.testing.assert_array_equal(np.asarray(got)[[0, 2]], np.asarray(s)[[0, 2]])
        np.testing.assert_array_equal(np.asarray(got)[1], np.asarray(old)[1])


@pytest.mark.slow
def test_gradient_reaches_the_start_state_as_finite_differences_say() -> None:
    cfg, params = _setup(layers=2)
    ids = _ids(length=T + 1)
    x, y = jnp.asarray(ids[:, :-1]), jnp.asarray(ids[:, 1:])
    carry = jax.tree_util.tree_map(jnp.ones_like, model.start_carry(params, cfg, B))
    reset = jnp.array([True, False, True])

    @jax.jit  # one compiled program for the gradient and every shifted loss below
    def loss(p: model.Params) -> jax.Array:
        logits, _ = model.apply(p, x, model.restart(p, cfg, carry, reset), cfg)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    grads = jax.jit(jax.grad(loss))(params)["start"]
    eps = 1e-2
    for layer, name, unit in ((0, "h", 1), (0, "c", 4), (1, "h", 0), (1, "c", 5)):

        def shifted(delta: float) -> float:
            p = jax.tree_util.tree_map(lambda a: a, params)
            p["start"][layer] = {**p["start"][layer], name: p["start"][layer][name].at[unit].add(delta)}
            return float(loss(p))

        numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
        assert abs(float(grads[layer][name][unit]) - numeric) < 2e-3 + 2e-2 * abs(numeric), (layer, name, unit)
    assert any(np.abs(np.asarray(g)).max() > 1e-4 for g in jax.tree_util.tree_leaves(grads))
    # no stream restarts: the start state gets no gradient
    none = jax.jit(jax.grad(lambda p: loss_no_reset(p, cfg, x, y, carry)))(params)["start"]
    assert all(not np.asarray(g).any() for g in jax.tree_util.tree_leaves(none))


def loss_no_reset(p: model.Params, cfg: ModelConfig, x: jax.Array, y: jax.Array, carry: model.Carry) -> jax.Array:
    logits, _ = model.apply(p, x, model.restart(p, cfg, carry, jnp.zeros(x.shape[0], bool)), cfg)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@pytest.mark.slow
def test_train_step_moves_the_start_state_only_when_streams_restart() -> None:
    cfg = config.load("tiny", ["model.hidden=8", "data.batch_size=4", "data.seq_len=6", "optim.warmup_steps=0"])
    state = loop.init_state(cfg, V)
    step = loop.make_train_step(cfg)
    ids = jnp.asarray(_ids(batch=4, length=7))
    x, y = ids[:, :-1], ids[:, 1:]
    before = np.asarray(state.params["start"][0]["h"])
    state, m = step(state, x, y, jnp.zeros(4, bool), cfg.train.steps)
    np.testing.assert_array_equal(np.asarray(state.params["start"][0]["h"]), before)
    state, m = step(state, x, y, jnp.array([True, False, False, False]), cfg.train.steps)
    assert bool(m["ok"]) and not np.array_equal(np.asarray(state.params["start"][0]["h"]), before)


@pytest.mark.slow
def test_every_reader_starts_from_the_start_state() -> None:
    cfg, params = _setup(layers=1)
    ids = _ids(batch=1, length=40)[0]
    from_start, _ = model.apply(params, jnp.asarray(ids[None]), model.start_carry(params, cfg, 1), cfg)
    from_zero, _ = model.apply(params, jnp.asarray(ids[None]), model.zeros_carry(cfg, 1), cfg)
    assert not np.allclose(np.asarray(from_start), np.asarray(from_zero), atol=1e-3)  # the test can tell them apart
    want = float(optax.softmax_cross_entropy_with_integer_labels(from_start[0, :-1], jnp.asarray(ids[1:])).mean())
    # eval: one stream, in chunks
    assert scoring.score(params, cfg, ids, chunk=16) == pytest.approx(want, rel=1e-5)
    # validation during training
    val = batches.eval_batches(ids, 1, len(ids) - 1, 1)
    assert loop.validation_loss(params, cfg, loop.make_eval_step(cfg), val) == pytest.approx(want, rel=1e-5)
    # inspect: the recorded h equals a run from the start state
    (traces,) = inspection.record_traces(params, cfg, ids, ["h"])
    _, _, rec = model.apply_recording(params, jnp.asarray(ids[None]), model.start_carry(params, cfg, 1), cfg, ("h",))
    np.testing.assert_allclose(traces["h"], np.asarray(rec[0]["h"][0]), atol=1e-6)
    # sampling: greedy continuation equals argmax read off a per-character loop from the start state
    prompt = np.array([1, 2], np.int32)
    got = np.concatenate(list(sampling.generate(params, cfg, prompt, sampling.SampleOptions(6, greedy=True))), axis=1)
    logits, carry = model.apply(params, jnp.asarray(prompt[None]), model.start_carry(params, cfg, 1), cfg)
    want_ids = []
    for _ in range(6):
        tok = int(jnp.argmax(logits[0, -1]))
        want_ids.append(tok)
        logits, carry = model.apply(params, jnp.asarray([[tok]], jnp.int32), carry, cfg)
    assert got[0].tolist() == want_ids
    # long-range scoring reads its context from the start state too
    ctx, cand = jnp.asarray(ids[None, :10]), jnp.asarray(ids[None, 10:13])
    nll = longrange._candidate_nll(params, cfg, ctx, cand, jnp.ones((1, 3)), 1)
    full, _ = model.apply(params, jnp.asarray(ids[None, :13]), model.start_carry(params, cfg, 1), cfg)
    want_nll = optax.softmax_cross_entropy_with_integer_labels(full[0, 9:12], jnp.asarray(ids[10:13])).sum()
    assert float(nll[0, 0]) == pytest.approx(float(want_nll), rel=1e-5)


@pytest.mark.slow
def test_trained_run_saves_restores_and_exports_its_start_state(tmp_path: Path) -> None:
    assert_ok(run_cli(["train", *TINY_TRAIN, "--runs-dir", tmp_path, "--name", "r"]))
    restored = checkpoint.load_run("r", tmp_path)
    assert restored.config.model.start_state == "learned"
    start = restored.params["start"]
    assert np.abs(np.asarray(start[0]["h"])).max() > 0  # trained: every stream restarts at the first step
    out = tmp_path / "model.npz"
    assert_ok(run_cli(["export", "--run", tmp_path / "r", "--out", out]))
    with np.load(out) as npz:
        np.testing.assert_array_equal(npz["h0"][0], np.asarray(start[0]["h"]))
        np.testing.assert_array_equal(npz["c0"][0], np.asarray(start[0]["c"]))


def test_a_run_saved_without_the_key_loads_as_a_zero_start_run(tmp_path: Path) -> None:
    cfg = config.load("tiny", ["train.steps=2", "checkpoint.every=2", "train.sample_length=0", "train.eval_every=2"])
    data = cfg.model_dump()
    del data["model"]["start_state"]  # as written before the start state existed
    assert config.from_saved(data).model.start_state == "zeros"
    assert config.from_dict(data).model.start_state == "learned"  # a new config gets the default
    run = rundir.RunDir(tmp_path / "old")
    run.path.mkdir()
    run.config_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert run.read_config().model.start_state == "zeros"
    assert config.load(run.config_file, saved=True).model.start_state == "zeros"
    assert isinstance(Config.model_validate(data), Config)
