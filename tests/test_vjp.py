"""The fused layers' hand-written backward pass (charlstm.nn.layers.fused_layer) against `jax.grad` of the plain scan.

Both run in float64, so the two gradients must agree to rounding: any wrong term in the custom VJP (a gate
derivative, the shifted h_{t-1}/c_{t-1}, the carry or input cotangents) shows up far above the tolerance.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from charlstm.config import Config, ModelConfig
from charlstm.nn import cells, layers, model
from charlstm.training import loop

CELLS = ("lstm", "gru", "rnn")
T, B, H = 7, 3, 5


def random_inputs(cell: str, seed: int, zero_carry: bool, dtype=jnp.float64):
    """Random W_hh (and b_hh), projected inputs xw, a carry and cotangent weights for every output."""
    rng = np.random.default_rng(seed)
    g = cells.GATES[cell] * H
    p = {"W_hh": rng.uniform(-0.7, 0.7, (H, g))}
    if cell == "gru":
        p["b_hh"] = rng.uniform(-0.7, 0.7, g)
    xw = rng.normal(0.0, 1.0, (T, B, g))
    n = 2 if cell == "lstm" else 1
    carry = tuple(np.zeros((B, H)) if zero_carry else rng.normal(0.0, 0.8, (B, H)) for _ in range(n))
    w_out = rng.normal(0.0, 1.0, (T, B, H))
    w_final = tuple(rng.normal(0.0, 1.0, (B, H)) for _ in range(n))
    cast = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), t)  # noqa: E731
    return cast(p), cast(xw), cast(carry), cast(w_out), cast(w_final)


def weighted_loss(layer, cell, p, xw, carry, w_out, w_final):
    """A scalar that weighs every output step and every part of the final carry (all cotangents nonzero)."""
    outs, final = layer(cell, p, xw, carry)
    return jnp.sum(outs["h"] * w_out) + sum(jnp.sum(f * w) for f, w in zip(final, w_final))


def plain(cell, p, xw, carry):
    return layers.plain_scan_layer(cell, p, xw, carry)


def fused(cell, p, xw, carry):
    return layers.fused_layer(cell, p, xw, carry)


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("zero_carry", [True, False])
def test_fused_gradients_equal_autodiff_of_plain_scan(cell: str, zero_carry: bool) -> None:
    with jax.enable_x64(True):
        p, xw, carry, w_out, w_final = random_inputs(cell, 1, zero_carry)
        assert xw.dtype == jnp.float64
        grads = {}
        for name, layer in (("plain", plain), ("fused", fused)):
            loss = jax.jit(partial(weighted_loss, layer, cell))
            grads[name] = jax.grad(loss, argnums=(0, 1, 2))(p, xw, carry, w_out, w_final)
        g_plain, g_fused = jax.tree_util.tree_map(np.asarray, (grads["plain"], grads["fused"]))
    for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(g_plain), jax.tree_util.tree_leaves(g_fused)):
        name = jax.tree_util.keystr(path)
        assert got.shape == want.shape and got.dtype == np.float64, name
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=name)
        assert np.abs(want).max() > 1e-3, name  # every gradient (params, xw, carry) is exercised


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
def test_fused_forward_equals_plain_scan(cell: str) -> None:
    with jax.enable_x64(True):
        p, xw, carry, _, _ = random_inputs(cell, 2, zero_carry=False)
        (o_plain, c_plain), (o_fused, c_fused) = (jax.jit(partial(f, cell))(p, xw, carry) for f in (plain, fused))
        # The forward rule used under differentiation (it saves residuals) computes the same outputs.
        (h_vjp, c_vjp), _ = jax.vjp(lambda xw: fused(cell, p, xw, carry), xw)
    np.testing.assert_array_equal(np.asarray(o_fused["h"]), np.asarray(o_plain["h"]))
    np.testing.assert_allclose(np.asarray(h_vjp["h"]), np.asarray(o_plain["h"]), rtol=1e-12, atol=1e-12)
    for a, b, v in zip(c_fused, c_plain, c_vjp):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_allclose(np.asarray(v), np.asarray(b), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
def test_bfloat16_compute_is_close_to_float32(cell: str) -> None:
    """bf16 matmul inputs, fp32 accumulation: outputs and gradients stay fp32 and near the fp32 values."""
    p, xw, carry, w_out, w_final = random_inputs(cell, 3, zero_carry=False, dtype=jnp.float32)

    def loss(dtype, p, xw, carry):
        outs, final = layers.scan_layer(cell, p, xw, carry, compute_dtype=dtype)
        return jnp.sum(outs["h"] * w_out) + sum(jnp.sum(f * w) for f, w in zip(final, w_final))

    g32 = jax.jit(jax.grad(partial(loss, "float32"), argnums=(0, 1, 2)))(p, xw, carry)
    g16 = jax.jit(jax.grad(partial(loss, "bfloat16"), argnums=(0, 1, 2)))(p, xw, carry)
    for a, b in zip(jax.tree_util.tree_leaves(g16), jax.tree_util.tree_leaves(g32)):
        assert a.dtype == jnp.float32
        scale = float(jnp.abs(b).max())
        assert float(jnp.abs(a - b).max()) < 0.05 * scale  # bf16 has an 8-bit mantissa: close, not equal


@pytest.mark.slow
def test_bfloat16_matmul_backward_runs_on_bfloat16_inputs() -> None:
    """cells.matmul's custom backward: both products on bf16-rounded operands with fp32 accumulation, which is
    what autodiff gives for fp32 operands that happen to be bf16-representable."""
    ka, kb, kc = jax.random.split(jax.random.PRNGKey(0), 3)
    a = jax.random.normal(ka, (6, 4, 24))  # [T, B, K]: the weight gradient sums over both leading axes
    b = jax.random.normal(kb, (24, 40))
    ct = jax.random.normal(kc, (6, 4, 40))
    bf = lambda x: x.astype(jnp.bfloat16).astype(jnp.float32)  # noqa: E731
    out, vjp = jax.vjp(lambda a, b: cells.matmul(a, b, "bfloat16", jnp.float32), a, b)
    da, db = vjp(ct)
    ref_out, ref_vjp = jax.vjp(lambda a, b: jnp.dot(a, b, precision="highest"), bf(a), bf(b))
    ref_da, ref_db = ref_vjp(bf(ct))
    assert out.dtype == da.dtype == db.dtype == jnp.float32 and da.shape == a.shape and db.shape == b.shape
    for got, want in ((out, ref_out), (da, ref_da), (db, ref_db)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    # ...and near the fp32 gradient, as bf16 rounding allows.
    da32, db32 = jax.vjp(lambda a, b: jnp.dot(a, b), a, b)[1](ct)
    assert float(jnp.abs(da - da32).max()) < 0.03 * float(jnp.abs(da32).max())
    assert float(jnp.abs(db - db32).max()) < 0.03 * float(jnp.abs(db32).max())


@pytest.mark.slow
def test_gate_split_recurrent_backward_equals_one_product() -> None:
    dz = jax.random.normal(jax.random.PRNGKey(1), (3, 4 * 16))
    w_t = jax.random.normal(jax.random.PRNGKey(2), (4 * 16, 16)).astype(jnp.bfloat16)
    whole = cells.recurrent(dz, w_t)
    split = layers._recurrent_back(dz, w_t)
    np.testing.assert_allclose(np.asarray(split), np.asarray(whole), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
def test_train_step_gradient_uses_fused_layer_and_matches_plain(cell: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole model's loss gradient (two layers, head, integer inputs) is the same through either path."""
    cfg = ModelConfig(cell=cell, layers=2, hidden=H)
    params = model.init_params(cfg, 11, jax.random.PRNGKey(0))
    ids = jnp.asarray(np.random.default_rng(4).integers(0, 11, (B, T)), jnp.int32)
    carry = jax.tree_util.tree_map(lambda a: a + 0.3, model.zeros_carry(cfg, B))

    def grad_with(layer):
        monkeypatch.setattr(layers, "fused_layer", layer)

        def loss(p):
            return loop.loss_fn(p, ids[:, :-1], ids[:, 1:], carry, cfg, train=False, key=None)[0]

        return jax.jit(jax.grad(loss))(params)  # one compiled program: faster than op-by-op

    fused_layer = layers.fused_layer
    g_fused = grad_with(fused_layer)
    g_plain = grad_with(
        lambda cell, p, xw, carry, compute_dtype="float32", h_mask=None: layers.plain_scan_layer(cell, p, xw, carry)
    )
    for a, b in zip(jax.tree_util.tree_leaves(g_fused), jax.tree_util.tree_leaves(g_plain)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_bfloat16_config_trains_one_step() -> None:
    cfg = Config.model_validate(
        {"model": {"hidden": 8, "layers": 2, "compute_dtype": "bfloat16"}, "data": {"seq_len": 6, "batch_size": 2}}
    )
    state = loop.init_state(cfg, 9)
    ids = np.random.default_rng(0).integers(0, 9, (2, 7)).astype(np.int32)
    state, m = loop.make_train_step(cfg)(state, ids[:, :-1], ids[:, 1:], jnp.zeros(len(ids), bool), cfg.train.steps)
    assert bool(m["ok"]) and np.isfinite(float(m["loss"]))
    assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(state.params))  # fp32 master weights


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cell", "layer_norm", "masked"),
    [("lstm", True, False), ("lstm", True, True), ("lstm", False, True), ("rnn", False, True)],
)
def test_fused_options_gradients_equal_autodiff_of_plain_scan(cell: str, layer_norm: bool, masked: bool) -> None:
    """The layer-normalised LSTM and recurrent dropout masks through the hand-written backward pass."""
    with jax.enable_x64(True):
        p, xw, carry, w_out, w_final = random_inputs(cell, 6, zero_carry=False)
        rng = np.random.default_rng(7)
        if layer_norm:
            p = {
                **p,
                **{k: jnp.asarray(rng.uniform(0.5, 1.5, n)) for k, n in (("gain_hh", 4 * H), ("gain_c", H))},
                "b_c": jnp.asarray(rng.uniform(-0.5, 0.5, H)),
            }
        mask = jnp.asarray((rng.random((B, H)) > 0.4) / 0.6) if masked else None
        grads, outs = {}, {}
        for name, layer in (("plain", layers.plain_scan_layer), ("fused", layers.fused_layer)):

            def loss(p, xw, carry, layer=layer):
                o, final = layer(cell, p, xw, carry, h_mask=mask)
                return jnp.sum(o["h"] * w_out) + sum(jnp.sum(f * w) for f, w in zip(final, w_final))

            outs[name] = jax.jit(loss)(p, xw, carry)
            grads[name] = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(p, xw, carry)
    assert float(outs["fused"]) == float(outs["plain"])  # the primal is the plain scan itself
    flat_plain = jax.tree_util.tree_leaves_with_path(grads["plain"])
    for (path, want), got in zip(flat_plain, jax.tree_util.tree_leaves(grads["fused"])):
        name = jax.tree_util.keystr(path)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-9, atol=1e-11, err_msg=name)
        assert np.abs(np.asarray(want)).max() > 1e-3, name
