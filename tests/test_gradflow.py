"""charlstm.analysis.gradflow: d loss_T / d h_{T-k} against hand-computed cases, and the RNN-versus-LSTM picture
at init."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from charlstm.analysis import gradflow
from charlstm.config import ModelConfig
from charlstm.nn import cells, layers, model


def linear_step(p: dict, carry: tuple, x: jax.Array) -> tuple[tuple, dict]:
    """h_t = h_{t-1} W + x_t: the gradient k steps back is g (W^T)^k exactly."""
    (h,) = carry
    h = h @ p["W"] + x
    return (h,), {"h": h}


def linear_norms(W: np.ndarray, V: np.ndarray, T: int) -> np.ndarray:
    """Hand computation: readout sum_j h_T[b, j] V[b, j] has g_b = V[b]; k steps back it is V[b] (W^T)^k."""
    out, g = [], V.astype(np.float64)
    for _ in range(T):
        out.append(np.linalg.norm(g, axis=-1).mean())
        g = g @ W.T
    return np.array(out)


@pytest.mark.slow
def test_linear_rnn_matches_hand_computation() -> None:
    rng = np.random.default_rng(0)
    B, H, T = 3, 5, 12
    W = rng.normal(0, 0.5, (H, H))
    V = rng.normal(0, 1, (B, H))
    xw = jnp.asarray(rng.normal(0, 1, (T, B, H)), jnp.float32)
    readout = lambda h: (h * jnp.asarray(V, jnp.float32)).sum(-1)  # noqa: E731
    norms = gradflow.hidden_grad_norms(
        linear_step, {"W": jnp.asarray(W, jnp.float32)}, xw, (jnp.zeros((B, H)),), readout
    )
    assert norms.shape == (T,)
    np.testing.assert_allclose(np.asarray(norms), linear_norms(W, V, T), rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("a", [0.5, 0.9, 1.1])
def test_scaled_identity_decays_as_a_power(a: float) -> None:
    """W = a I: the norm k steps back is a^k times the norm at k = 0, vanishing for a < 1, exploding for a > 1."""
    B, H, T = 4, 6, 30
    xw = jnp.asarray(np.random.default_rng(1).normal(0, 1, (T, B, H)), jnp.float32)
    readout = lambda h: jnp.sin(h).sum(-1)  # noqa: E731  (nonlinear readout: g depends on h_T, the ratio does not)
    norms = np.asarray(
        gradflow.hidden_grad_norms(linear_step, {"W": a * jnp.eye(H)}, xw, (jnp.zeros((B, H)),), readout)
    )
    np.testing.assert_allclose(norms, norms[0] * a ** np.arange(T), rtol=1e-4)


@pytest.mark.slow
def test_perturbation_changes_nothing_forward() -> None:
    """Zero perturbations leave the layer's outputs exactly as layers.scan_layer computes them."""
    rng = np.random.default_rng(2)
    p = cells.init_layer("lstm", jax.random.PRNGKey(0), 7, 8)
    xw = cells.project_input("lstm", p, jnp.asarray(rng.integers(0, 7, (10, 3))))
    carry = cells.zeros_carry("lstm", 3, 8)
    hs, _ = gradflow.scan_perturbed(cells.STEPS["lstm"], p, xw, carry, jnp.zeros((10, 3, 8)))
    outs, _ = layers.scan_layer("lstm", p, xw, carry)
    np.testing.assert_array_equal(np.asarray(hs), np.asarray(outs["h"]))


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_model_profile_against_direct_gradient(cell: str) -> None:
    """norms[k] equals the gradient of the last loss w.r.t. h_{T-k}, computed by rerunning the tail from there
    with the rest of the carry (an LSTM's c) held fixed: the two methods share nothing but the cells."""
    cfg = ModelConfig(cell=cell, layers=1, hidden=6)
    V, B, T = 9, 2, 8
    params = model.init_params(cfg, V, jax.random.PRNGKey(3))
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, V, (B, T)).astype(np.int32), rng.integers(0, V, (B, T)).astype(np.int32)
    prof = gradflow.model_profile(params, cfg, x, y)
    assert prof.shape == (T,) and np.isfinite(prof).all() and (prof > 0).all()
    p = params["layers"][0]
    xw = cells.project_input(cell, p, jnp.asarray(x.T))
    for k in (0, 3):
        t = T - 1 - k
        _, carry = layers.scan_layer(cell, p, xw[: t + 1], cells.zeros_carry(cell, B, cfg.hidden))

        def tail_loss(h: jax.Array, carry: tuple = carry, t: int = t) -> jax.Array:
            outs, _ = layers.scan_layer(cell, p, xw[t + 1 :], (h,) + tuple(carry[1:]))
            h_last = outs["h"][-1] if t + 1 < T else h
            logits = h_last @ params["head"]["W"] + params["head"]["b"]
            return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(y[:, -1])).sum()

        g = jax.jit(jax.grad(tail_loss))(carry[0])
        np.testing.assert_allclose(prof[k], float(jnp.linalg.norm(g, axis=-1).mean()), rtol=1e-4)


def profile_at_init(cell: str, seed: int, T: int = 61, V: int = 30, H: int = 64) -> np.ndarray:
    cfg = ModelConfig(cell=cell, layers=1, hidden=H, forget_bias=1.0)
    params = model.init_params(cfg, V, jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, V, (8, T)).astype(np.int32), rng.integers(0, V, (8, T)).astype(np.int32)
    return gradflow.model_profile(params, cfg, x, y)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rnn_vanishes_lstm_remembers_at_init(seed: int) -> None:
    """At PyTorch's initialisation a tanh RNN's gradient shrinks by orders of magnitude within 20 steps; an
    LSTM with forget bias 1 (f ~ 0.73) keeps orders of magnitude more of it 50 steps back."""
    rnn, lstm = profile_at_init("rnn", seed), profile_at_init("lstm", seed)
    assert rnn[20] < 1e-3 * rnn[1]
    assert (np.diff(rnn[1:40]) < 0).all()  # monotone decay
    assert lstm[50] > 1e3 * rnn[50]
    assert lstm[50] / lstm[1] > 1e3 * rnn[50] / rnn[1]
