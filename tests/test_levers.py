"""The optional model levers (layer-normalised LSTM, variational recurrent dropout, orthogonal W_hh, a tied
head) against independent NumPy code and finite differences, and their config rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

from charlstm import config
from charlstm.errors import ConfigError, UserError
from charlstm.nn import cells, export, layers, model
from charlstm.training import loop

# One compiled program per configuration, instead of op-by-op dispatch of every call.
apply = jax.jit(model.apply, static_argnames=("cfg", "train"))

T, B, H, N_IN = 6, 3, 4, 5


def _np_layer_norm(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)


def ln_lstm_reference(p: dict, xs: np.ndarray, h: np.ndarray, c: np.ndarray, h_mask: np.ndarray | None = None):
    """Ba et al.'s layer-normalised LSTM written out in NumPy float64, gates in PyTorch's order i, f, g, o:
    z = LN(x W_ih) gain_ih + LN((h m) W_hh) gain_hh + b;  c' = f c + i g;  h' = o tanh(LN(c') gain_c + b_c)."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    m = np.ones_like(h) if h_mask is None else h_mask
    hs = []
    for x in xs:
        z = _np_layer_norm(x @ p["W_ih"]) * p["gain_ih"] + _np_layer_norm((h * m) @ p["W_hh"]) * p["gain_hh"] + p["b"]
        i, f, g, o = (z[:, k * H : (k + 1) * H] for k in range(4))
        i, f, g, o = ref.sigmoid(i), ref.sigmoid(f), np.tanh(g), ref.sigmoid(o)
        c = f * c + i * g
        h = o * np.tanh(_np_layer_norm(c) * p["gain_c"] + p["b_c"])
        hs.append(h)
    return np.stack(hs), h, c


def random_ln_layer(rng: np.random.Generator) -> dict:
    g = 4 * H
    return {
        "W_ih": rng.uniform(-0.7, 0.7, (N_IN, g)),
        "W_hh": rng.uniform(-0.7, 0.7, (H, g)),
        "b": rng.uniform(-0.5, 0.5, g),
        "gain_ih": rng.uniform(0.5, 1.5, g),
        "gain_hh": rng.uniform(0.5, 1.5, g),
        "gain_c": rng.uniform(0.5, 1.5, H),
        "b_c": rng.uniform(-0.5, 0.5, H),
    }


def _run(p, xs, carry, h_mask=None, record=("h",)):
    xw = cells.project_input("lstm", p, xs)
    return layers.scan_layer("lstm", p, xw, carry, record=record, h_mask=h_mask)


@pytest.mark.slow
@pytest.mark.parametrize("masked", [False, True])
def test_layer_norm_lstm_matches_numpy_reference(masked: bool) -> None:
    rng = np.random.default_rng(0)
    p = random_ln_layer(rng)
    xs = rng.normal(0, 1, (T, B, N_IN))
    h0, c0 = rng.uniform(-0.9, 0.9, (B, H)), rng.normal(0, 1, (B, H))
    mask = (rng.random((B, H)) > 0.3) / 0.7 if masked else None
    outs, (h, c) = jax.jit(_run)(*jax.tree_util.tree_map(jnp.asarray, (p, xs, (h0, c0), mask)))
    want_hs, want_h, want_c = ln_lstm_reference(p, xs, h0, c0, mask)
    np.testing.assert_allclose(np.asarray(outs["h"]), want_hs, atol=1e-5)
    np.testing.assert_allclose(np.asarray(h), want_h, atol=1e-5)
    np.testing.assert_allclose(np.asarray(c), want_c, atol=1e-5)


@pytest.mark.slow
def test_layer_norm_lstm_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(1)
    p = random_ln_layer(rng)
    xs = rng.normal(0, 1, (T, B, N_IN))
    h0, c0 = rng.uniform(-0.9, 0.9, (B, H)), rng.normal(0, 1, (B, H))
    w = rng.normal(0, 1, (T, B, H))

    def ref_loss(q: dict) -> float:
        return float((ln_lstm_reference(q, xs, h0, c0)[0] * w).sum())

    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), p)
        grads = jax.jit(
            jax.grad(lambda q: jnp.sum(_run(q, jnp.asarray(xs), (jnp.asarray(h0), jnp.asarray(c0)))[0]["h"] * w))
        )(p64)
    eps = 1e-6
    for name, value in p.items():
        fd = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            up, down = {**p, name: value.copy()}, {**p, name: value.copy()}
            up[name][idx] += eps
            down[name][idx] -= eps
            fd[idx] = (ref_loss(up) - ref_loss(down)) / (2 * eps)
        np.testing.assert_allclose(np.asarray(grads[name]), fd, rtol=1e-5, atol=1e-7, err_msg=name)
        assert np.abs(fd).max() > 1e-3, name


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_recurrent_mask_drops_only_the_copy_of_h_that_feeds_w_hh(cell: str) -> None:
    """A mask of ones changes nothing; a mask m equals the reference run with W_hh's rows scaled by m
    (identical when the mask is one per sequence: (h * m) W_hh = h (diag(m) W_hh) row by row)."""
    rng = np.random.default_rng(2)
    g = ref.N_GATES[cell] * H
    p = {"W_ih": rng.uniform(-0.7, 0.7, (N_IN, g)), "W_hh": rng.uniform(-0.7, 0.7, (H, g))}
    if cell == "gru":
        p["b_ih"], p["b_hh"] = rng.uniform(-0.5, 0.5, g), rng.uniform(-0.5, 0.5, g)
    else:
        p["b"] = rng.uniform(-0.5, 0.5, g)
    xs = rng.normal(0, 1, (T, 1, N_IN))
    carry = tuple(rng.uniform(-0.9, 0.9, (1, H)) for _ in range(2 if cell == "lstm" else 1))
    m = np.array([[0.0, 2.0, 2.0, 0.0]])

    def run(q, mask):
        xw = cells.project_input(cell, q, jnp.asarray(xs, jnp.float32))
        return layers.scan_layer(cell, q, xw, carry, h_mask=mask)[0]["h"]

    pj = jax.tree_util.tree_map(jnp.asarray, p)
    np.testing.assert_allclose(np.asarray(run(pj, jnp.ones((1, H)))), np.asarray(run(pj, None)), atol=1e-6)
    scaled = {**pj, "W_hh": jnp.asarray(m[0][:, None] * p["W_hh"])}
    if cell == "gru":  # the GRU also blends the unmasked h into h' = (1 - z) n + z h: compare to the reference
        want = _gru_masked_reference(p, xs, carry[0], m)
    else:
        want = np.asarray(run(scaled, None))
    np.testing.assert_allclose(np.asarray(run(pj, jnp.asarray(m))), want, atol=1e-5)


def _gru_masked_reference(p: dict, xs: np.ndarray, h: np.ndarray, m: np.ndarray) -> np.ndarray:
    out = []
    for x in xs:
        gi, gh = x @ p["W_ih"] + p["b_ih"], (h * m) @ p["W_hh"] + p["b_hh"]
        r = ref.sigmoid(gi[:, :H] + gh[:, :H])
        z = ref.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
        n = np.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out)


def _cfg(*sets: str) -> config.Config:
    return config.load("tiny", ["model.hidden=8", "data.batch_size=4", "data.seq_len=6", *sets])


@pytest.mark.slow
def test_recurrent_dropout_is_training_only_and_one_mask_per_window() -> None:
    cfg = _cfg("model.recurrent_dropout=0.5")
    params = model.init_params(cfg.model, 7, jax.random.PRNGKey(0))
    x = jnp.asarray(np.random.default_rng(3).integers(0, 7, (4, 6)))
    carry = model.zeros_carry(cfg.model, 4)
    plain = apply(params, x, carry, _cfg().model)[0]
    np.testing.assert_array_equal(np.asarray(apply(params, x, carry, cfg.model)[0]), np.asarray(plain))
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    a = apply(params, x, carry, cfg.model, train=True, key=k1)[0]
    again = apply(params, x, carry, cfg.model, train=True, key=k1)[0]
    b = apply(params, x, carry, cfg.model, train=True, key=k2)[0]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(again))  # deterministic for a key
    assert not np.allclose(np.asarray(a), np.asarray(plain)) and not np.allclose(np.asarray(a), np.asarray(b))


@pytest.mark.slow
@pytest.mark.parametrize("layer_norm", [False, True])
def test_weight_drop_zeroes_recurrent_weights_in_training_only(layer_norm: bool) -> None:
    cfg = _cfg("model.weight_drop=0.5", "model.hidden=32", f"model.layer_norm={str(layer_norm).lower()}")
    plain_cfg = _cfg("model.hidden=32", f"model.layer_norm={str(layer_norm).lower()}")
    params = model.init_params(cfg.model, 7, jax.random.PRNGKey(0))
    x = jnp.asarray(np.random.default_rng(3).integers(0, 7, (4, 6)))
    carry = model.zeros_carry(cfg.model, 4)
    np.testing.assert_array_equal(
        np.asarray(apply(params, x, carry, cfg.model)[0]),
        np.asarray(apply(params, x, carry, plain_cfg.model)[0]),
    )

    def grads(c: config.Config) -> list[np.ndarray]:
        g = jax.jit(
            jax.grad(lambda q: loop.loss_fn(q, x, x, carry, c.model, train=True, key=jax.random.PRNGKey(4))[0])
        )(params)
        return [np.asarray(layer["W_hh"]) for layer in g["layers"]]

    for g_drop, g_plain in zip(grads(cfg), grads(plain_cfg)):
        # A dropped weight does not reach the loss: its gradient is exactly zero, for about half of them.
        assert 0.4 < np.mean(g_drop == 0.0) < 0.6, np.mean(g_drop == 0.0)
        assert np.mean(g_plain == 0.0) < 0.01
    # A different key drops different weights; the same key the same ones.
    a = apply(params, x, carry, cfg.model, train=True, key=jax.random.PRNGKey(1))[0]
    b = apply(params, x, carry, cfg.model, train=True, key=jax.random.PRNGKey(2))[0]
    again = apply(params, x, carry, cfg.model, train=True, key=jax.random.PRNGKey(1))[0]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(again))
    assert not np.allclose(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_dropout_ramp_scales_every_rate_from_zero() -> None:
    rates = ("model.layers=1", "model.hidden=8")  # the ramp scales every rate alike, whatever the size
    cfg = _cfg(
        *rates, "model.dropout=0.4", "model.recurrent_dropout=0.2", "model.weight_drop=0.4", "model.dropout_ramp=100"
    )
    half = _cfg(*rates, "model.dropout=0.2", "model.recurrent_dropout=0.1", "model.weight_drop=0.2")
    assert [float(model.dropout_ramp_scale(cfg.model, s)) for s in (0, 25, 50, 100, 1000)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert model.dropout_ramp_scale(half.model, 0) == 1.0  # no ramp configured: full rates from the first step
    params = model.init_params(cfg.model, 7, jax.random.PRNGKey(0))
    x = jnp.asarray(np.random.default_rng(3).integers(0, 7, (4, 6)))
    carry = model.zeros_carry(cfg.model, 4)
    key = jax.random.PRNGKey(5)
    run = lambda c, **kw: np.asarray(apply(params, x, carry, c.model, **kw)[0])  # noqa: E731
    # Scale 0 is the evaluation network; scale 0.5 draws the masks of rates halved, from the same key.
    np.testing.assert_array_equal(run(cfg, train=True, key=key, dropout_scale=0.0), run(cfg))
    np.testing.assert_allclose(
        run(cfg, train=True, key=key, dropout_scale=0.5), run(half, train=True, key=key), rtol=1e-6
    )
    assert not np.allclose(run(cfg, train=True, key=key, dropout_scale=0.5), run(cfg, train=True, key=key))

    # In the training loop the ramp follows the optimizer step: step 0 trains the undropped network.
    state = loop.init_state(cfg, 7)
    clean = loop.loss_fn(state.params, x, x, state.carry, cfg.model, train=False, key=None)[0]
    _, metrics = loop.make_train_step(cfg)(state, x, x, jnp.ones(len(x), bool), cfg.train.steps)  # donates `state`
    np.testing.assert_allclose(float(metrics["loss"]), float(clean), rtol=1e-6)
    _, metrics = loop.make_train_step(half)(loop.init_state(half, 7), x, x, jnp.ones(len(x), bool), half.train.steps)
    assert abs(float(metrics["loss"]) - float(clean)) > 1e-4  # without a ramp step 0 is dropped


@pytest.mark.slow
@pytest.mark.parametrize(
    "sets", [("model.embed=8", "model.layer_norm=true"), ("model.embed=0",), ("model.cell=gru", "model.embed=8")]
)
def test_input_dropout_hides_characters_in_training_only(sets: tuple[str, ...]) -> None:
    cfg = _cfg("model.hidden=16", "model.input_dropout=0.3", *sets)
    params = model.init_params(cfg.model, 7, jax.random.PRNGKey(0))
    # 4000 one-character windows from the zero state: each training output is either the character's own
    # logits or those of a network whose layer-0 input table is zero (the character hidden).
    x = jnp.asarray(np.random.default_rng(3).integers(0, 7, (4000, 1)))
    carry = model.zeros_carry(cfg.model, 4000)
    blank_params = jax.tree_util.tree_map(lambda a: a, params)
    if "embed" in params:
        blank_params["embed"] = jnp.zeros_like(params["embed"])
    else:
        blank_params["layers"][0]["W_ih"] = jnp.zeros_like(params["layers"][0]["W_ih"])
    seen = np.asarray(apply(params, x, carry, cfg.model)[0])
    blank = np.asarray(apply(blank_params, x, carry, cfg.model)[0])
    np.testing.assert_array_equal(seen, np.asarray(apply(params, x, carry, _cfg("model.hidden=16", *sets).model)[0]))

    def hidden(key: int) -> np.ndarray:
        out = np.asarray(apply(params, x, carry, cfg.model, train=True, key=jax.random.PRNGKey(key))[0])
        is_blank = np.all(np.isclose(out, blank, atol=1e-6), axis=(1, 2))
        assert np.all(is_blank | np.all(np.isclose(out, seen, atol=1e-6), axis=(1, 2)))  # nothing in between
        return is_blank

    a, b = hidden(1), hidden(2)
    assert 0.27 < a.mean() < 0.33 and 0.27 < b.mean() < 0.33, (a.mean(), b.mean())
    np.testing.assert_array_equal(a, hidden(1))
    assert not np.array_equal(a, b)


@pytest.mark.slow
def test_orthogonal_init_gives_orthogonal_gate_blocks() -> None:
    p = cells.init_layer("lstm", jax.random.PRNGKey(0), 5, 16, init_hh="orthogonal")
    w = np.asarray(p["W_hh"])
    for k in range(4):
        block = w[:, k * 16 : (k + 1) * 16]
        np.testing.assert_allclose(block.T @ block, np.eye(16), atol=1e-5)
    assert not np.allclose(w[:, :16], w[:, 16:32])


@pytest.mark.slow
def test_tied_head_reads_the_embedding_and_trains_it_through_both_paths() -> None:
    cfg = _cfg("model.embed=8", "model.tie_embed=true")
    untied = model.init_params(_cfg("model.embed=8").model, 7, jax.random.PRNGKey(0))
    params = model.init_params(cfg.model, 7, jax.random.PRNGKey(0))
    assert "W" not in params["head"]
    assert model.param_count(untied) - model.param_count(params) == 8 * 7
    np.testing.assert_allclose(
        np.asarray(model.head_weight(params)), np.asarray(params["embed"]).T / np.sqrt(8), rtol=1e-6
    )
    x = jnp.asarray(np.random.default_rng(4).integers(0, 3, (4, 6)))  # ids 3..6 never read as inputs
    y = jnp.full((4, 6), 5)
    grads = jax.jit(
        jax.grad(lambda q: loop.loss_fn(q, x, y, model.zeros_carry(cfg.model, 4), cfg.model, train=False, key=None)[0])
    )(params)
    g = np.asarray(grads["embed"])
    assert np.abs(g[5]).max() > 0  # only the head reaches row 5 (a target, never an input)
    sd = export.torch_state_dict(params, cfg, 7)
    np.testing.assert_allclose(sd["head.weight"], np.asarray(params["embed"]) / np.sqrt(8), rtol=1e-6)


@pytest.mark.slow
def test_layer_norm_model_trains_and_refuses_torch_export() -> None:
    cfg = _cfg("model.layer_norm=true", "optim.lr=0.02")
    state = loop.init_state(cfg, 7)
    step = loop.make_train_step(cfg)
    x = jnp.asarray(np.random.default_rng(5).integers(0, 7, (4, 6)))
    losses = []
    for _ in range(cfg.train.steps):
        state, m = step(state, x, x, jnp.zeros(len(x), bool), cfg.train.steps)
        losses.append(float(m["loss"]))
    assert losses[-1] < 0.7 * losses[0]  # learning to copy its input (measured: 1.97 -> 1.13)
    with pytest.raises(UserError, match="layer_norm"):
        export.torch_state_dict(state.params, cfg, 7)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["model.tie_embed=true"], "tie_embed needs model.embed equal to model.hidden"),
        (["model.cell=gru", "model.layer_norm=true"], "layer_norm is implemented for model.cell=lstm only"),
        (["model.recurrent_dropout=1.0"], "model.recurrent_dropout"),
        (["model.init_hh=identity"], "allowed"),
    ],
)
def test_lever_config_errors_name_the_key(sets: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(*sets)
