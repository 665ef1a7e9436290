"""The recurrent cells: LSTM, GRU and a plain tanh RNN, one step each, and a whole layer over `lax.scan`.

Weights are stored input-major (`x @ W_ih`), with the gates fused along the last axis in PyTorch's order
(LSTM i, f, g, o; GRU r, z, n), so exporting to PyTorch is a transpose. The input projection `x @ W_ih + b`
of all timesteps is computed before the scan (for layer 0 it is a row gather: the input is a character id),
so only the recurrent `h @ W_hh` runs inside the sequential loop.

The LSTM in equations (sigma = logistic sigmoid, * = elementwise):
    i = sigma(x W_ii + h W_hi + b_i)   input gate:  how much new content to write
    f = sigma(x W_if + h W_hf + b_f)   forget gate: how much of the old cell state to keep
    g = tanh (x W_ig + h W_hg + b_g)   candidate content
    o = sigma(x W_io + h W_ho + b_o)   output gate: how much of the memory to expose
    c = f * c + i * g                  cell state: long-term memory, changed only additively
    h = o * tanh(c)                    hidden state: short-term memory and the layer's output

Options (all off by default): the layer-normalised LSTM (Ba et al., 2016) normalises the two gate
pre-activations x W_ih and h W_hh separately and the cell state before its tanh; variational recurrent
dropout (Gal & Ghahramani, 2016) multiplies h by one fixed mask per sequence where it enters W_hh.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]
Carry = tuple[jax.Array, ...]

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
# What each step can report, for `inspect` and the gradient analysis; the layer normally returns only "h".
RECORDABLE = {"lstm": ("i", "f", "g", "o", "c", "h"), "gru": ("r", "z", "n", "h"), "rnn": ("h",)}


def init_layer(
    cell: str, key: jax.Array, n_in: int, hidden: int, forget_bias: float = 1.0, *, init_hh: str = "uniform",
    layer_norm: bool = False,
) -> Params:
    """PyTorch's initialisation, U(-1/sqrt(H), 1/sqrt(H)), and a forget-gate bias that starts remembering.

    `init_hh="orthogonal"` makes each gate's [H, H] block of W_hh orthogonal (its singular values are all 1,
    so at initialisation the recurrent matmul neither shrinks nor grows h). `layer_norm` adds the LSTM's
    normalisation gains (ones) and the cell-state shift (zeros): g_ih, g_hh [4H], g_c, b_c [H].
    """
    k = 1.0 / jnp.sqrt(hidden)
    g = GATES[cell] * hidden
    k_ih, k_hh, k_b, k_b2 = jax.random.split(key, 4)
    if init_hh == "orthogonal":
        blocks = jax.random.split(k_hh, GATES[cell])
        w_hh = jnp.concatenate([jax.nn.initializers.orthogonal()(kb, (hidden, hidden)) for kb in blocks], axis=1)
    else:
        w_hh = jax.random.uniform(k_hh, (hidden, g), minval=-k, maxval=k)
    p = {"W_ih": jax.random.uniform(k_ih, (n_in, g), minval=-k, maxval=k), "W_hh": w_hh}
    if layer_norm:
        p.update(g_ih=jnp.ones(g), g_hh=jnp.ones(g), g_c=jnp.ones(hidden), b_c=jnp.zeros(hidden))
    if cell == "gru":  # GRU keeps b_hh apart: it sits inside r * (h W_hn + b_hn)
        p["b_ih"] = jax.random.uniform(k_b, (g,), minval=-k, maxval=k)
        p["b_hh"] = jax.random.uniform(k_b2, (g,), minval=-k, maxval=k)
    else:
        p["b"] = jax.random.uniform(k_b, (g,), minval=-k, maxval=k)
        if cell == "lstm":
            p["b"] = p["b"].at[hidden : 2 * hidden].set(forget_bias)
    return p


def zeros_carry(cell: str, batch: int, hidden: int, dtype: Any = jnp.float32) -> Carry:
    """The initial state: (h, c) for an LSTM, (h,) otherwise."""
    h = jnp.zeros((batch, hidden), dtype)
    return (h, jnp.zeros_like(h)) if cell == "lstm" else (h,)


def project_input(cell: str, p: Params, x: jax.Array, compute_dtype: str = "float32") -> jax.Array:
    """x W_ih + b for all timesteps at once; integer x (character ids) is a row gather, not a one-hot matmul.

    A float x (the layer below's h) is multiplied on `compute_dtype` inputs with fp32 accumulation; a
    layer-normalised LSTM normalises x W_ih here, outside the sequential loop.
    """
    b = p["b_ih"] if cell == "gru" else p["b"]
    xw = p["W_ih"][x] if jnp.issubdtype(x.dtype, jnp.integer) else _mm(x, p["W_ih"], compute_dtype, x.dtype)
    if "g_ih" in p:
        xw = layer_norm(xw) * p["g_ih"]
    return xw + b


def layer_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Normalise the last axis to zero mean and unit variance (the gain and shift are the caller's)."""
    mu = x.mean(axis=-1, keepdims=True)
    var = jnp.square(x - mu).mean(axis=-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + eps)


def _masked(h: jax.Array, h_mask: jax.Array | None) -> jax.Array:
    # Variational recurrent dropout: only the copy of h that feeds W_hh is dropped, not the carried state.
    return h if h_mask is None else h * h_mask


def _recurrent(h: jax.Array, w: jax.Array) -> jax.Array:
    """h @ W_hh, accumulated in h's dtype: with W_hh cast to bfloat16 (model.compute_dtype) the product runs
    on bf16 inputs with fp32 accumulation; with fp32 weights it is exactly `h @ W_hh`."""
    return jnp.dot(h.astype(w.dtype), w, preferred_element_type=h.dtype)


def lstm_step(p: Params, carry: Carry, xw: jax.Array, h_mask: jax.Array | None = None) -> tuple[Carry, dict[str, jax.Array]]:
    h, c = carry
    i, f, g, o = jnp.split(xw + _recurrent(_masked(h, h_mask), p["W_hh"]), 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (h, c), {"i": i, "f": f, "g": g, "o": o, "c": c, "h": h}


def ln_lstm_step(p: Params, carry: Carry, xw: jax.Array, h_mask: jax.Array | None = None) -> tuple[Carry, dict[str, jax.Array]]:
    """The layer-normalised LSTM step; xw is already LN(x W_ih) * g_ih + b (see `project_input`)."""
    h, c = carry
    hw = layer_norm(_recurrent(_masked(h, h_mask), p["W_hh"])) * p["g_hh"]
    i, f, g, o = jnp.split(xw + hw, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * c + i * g
    h = o * jnp.tanh(layer_norm(c) * p["g_c"] + p["b_c"])
    return (h, c), {"i": i, "f": f, "g": g, "o": o, "c": c, "h": h}


def gru_step(p: Params, carry: Carry, xw: jax.Array, h_mask: jax.Array | None = None) -> tuple[Carry, dict[str, jax.Array]]:
    (h,) = carry
    x_r, x_z, x_n = jnp.split(xw, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(_recurrent(_masked(h, h_mask), p["W_hh"]) + p["b_hh"], 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)  # reset gate: how much of the past feeds the candidate
    z = jax.nn.sigmoid(x_z + h_z)  # update gate: how much of the old state to keep
    n = jnp.tanh(x_n + r * h_n)
    h = (1.0 - z) * n + z * h
    return (h,), {"r": r, "z": z, "n": n, "h": h}


def rnn_step(p: Params, carry: Carry, xw: jax.Array, h_mask: jax.Array | None = None) -> tuple[Carry, dict[str, jax.Array]]:
    (h,) = carry
    h = jnp.tanh(xw + _recurrent(_masked(h, h_mask), p["W_hh"]))
    return (h,), {"h": h}


STEPS = {"lstm": lstm_step, "gru": gru_step, "rnn": rnn_step}


def step_fn(cell: str, p: Params):  # noqa: ANN201 - one of the step functions above
    """The step function for a layer: its parameters say whether it is layer-normalised."""
    return ln_lstm_step if "g_hh" in p else STEPS[cell]


def scan_layer(
    cell: str,
    p: Params,
    xw: jax.Array,
    carry: Carry,
    record: tuple[str, ...] = ("h",),
    *,
    compute_dtype: str = "float32",
    h_mask: jax.Array | None = None,
) -> tuple[dict[str, jax.Array], Carry]:
    """Run one layer over a time-major sequence of projected inputs xw [T, B, G*H].

    Returns the recorded per-step quantities (each [T, B, H]) and the final carry. The usual case, only "h"
    recorded, goes through `fused_layer` (same values, a faster backward pass); asking for gates, a
    recurrent dropout mask `h_mask` [B, H] or a layer-normalised LSTM runs the plain scan,
    `plain_scan_layer`, which is also the reference the fused layer is tested against.
    `compute_dtype="bfloat16"` runs the recurrent matmul on bf16 inputs with fp32 accumulation.
    """
    if tuple(record) == ("h",) and h_mask is None and "g_hh" not in p:
        return fused_layer(cell, p, xw, carry, compute_dtype=compute_dtype)
    return plain_scan_layer(cell, p, xw, carry, record, compute_dtype=compute_dtype, h_mask=h_mask)


def plain_scan_layer(
    cell: str,
    p: Params,
    xw: jax.Array,
    carry: Carry,
    record: tuple[str, ...] = ("h",),
    *,
    compute_dtype: str = "float32",
    h_mask: jax.Array | None = None,
) -> tuple[dict[str, jax.Array], Carry]:
    """`scan_layer` as one `lax.scan` of the step function, differentiated by JAX (the reference path)."""
    cell_step = step_fn(cell, p)
    p = _cast_recurrent(p, compute_dtype)

    def step(carry: Carry, xw_t: jax.Array) -> tuple[Carry, dict[str, jax.Array]]:
        carry, out = cell_step(p, carry, xw_t, h_mask)
        return carry, {k: out[k] for k in record}

    if xw.shape[0] == 1:  # one step (sampling feeds one character at a time): no loop around it
        carry, outs = step(carry, xw[0])
        return {k: v[None] for k, v in outs.items()}, carry
    carry, outs = jax.lax.scan(step, carry, xw)
    return outs, carry


def _cast_recurrent(p: Params, compute_dtype: str) -> Params:
    # Cast once, outside the loop; the gradient flows back through the cast to the fp32 master weights.
    return {**p, "W_hh": p["W_hh"].astype(compute_dtype)} if compute_dtype != "float32" else p


# --- the fused layers: a hand-written backward pass, as cuDNN does it ----------------------------------------
#
# Differentiating through `lax.scan` makes XLA accumulate dW_hh += h_{t-1}^T dz_t inside the reverse loop: T
# small matmuls plus a read-modify-write of dW_hh each step. The backward loops below do only the sequential
# part (dz_t from the gate activations saved by the forward pass, then dh_{t-1} = dz_t W_hh^T) and emit dz_t;
# the weight gradient is then one large matmul over all T*B rows after the loop. Without differentiation the
# primal function runs, and it is exactly `plain_scan_layer` (bitwise the same values as the reference path).


def fused_layer(cell: str, p: Params, xw: jax.Array, carry: Carry, *, compute_dtype: str = "float32") -> tuple[dict[str, jax.Array], Carry]:
    """`scan_layer(..., record=("h",))` with the custom VJP: returns ({"h": [T, B, H]}, final carry)."""
    if cell == "lstm":
        hs, carry = _lstm_fused(compute_dtype, p["W_hh"], xw, carry)
    elif cell == "gru":
        hs, carry = _gru_fused(compute_dtype, p["W_hh"], p["b_hh"], xw, carry)
    else:
        hs, carry = _rnn_fused(compute_dtype, p["W_hh"], xw, carry)
    return {"h": hs}, carry


def _mm(a: jax.Array, b: jax.Array, compute_dtype: str, out: Any) -> jax.Array:
    """a @ b with inputs in compute_dtype (fp32 stays the input dtype, e.g. float64 in tests), result in `out`."""
    if compute_dtype != "float32":
        a, b = a.astype(compute_dtype), b.astype(compute_dtype)
    return jnp.dot(a, b, preferred_element_type=out)


def _weight_grad(h_prev: jax.Array, dz: jax.Array, compute_dtype: str) -> jax.Array:
    """sum_t h_{t-1}^T dz_t as one [H, T*B] @ [T*B, G*H] matmul."""
    t, b, n = h_prev.shape
    return _mm(h_prev.reshape(t * b, n).T, dz.reshape(t * b, -1), compute_dtype, dz.dtype)


def _shift(first: jax.Array, seq: jax.Array) -> jax.Array:
    """[x_0, s_0, ..., s_{T-2}]: the value at the previous step, for every step."""
    return jnp.concatenate([first[None], seq[:-1]], axis=0)


def _plain(cell: str, compute_dtype: str, p: Params, xw: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
    outs, carry = plain_scan_layer(cell, p, xw, carry, ("h",), compute_dtype=compute_dtype)
    return outs["h"], carry


# LSTM: residuals are the gate activations i, f, g, o and the cell states; h_{t-1}, c_{t-1} are shifted copies.


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _lstm_fused(compute_dtype: str, w_hh: jax.Array, xw: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
    return _plain("lstm", compute_dtype, {"W_hh": w_hh}, xw, carry)


def _lstm_fwd(compute_dtype: str, w_hh: jax.Array, xw: jax.Array, carry: Carry) -> tuple:
    p = _cast_recurrent({"W_hh": w_hh}, compute_dtype)

    def step(carry: Carry, xw_t: jax.Array) -> tuple[Carry, tuple[jax.Array, ...]]:
        carry, out = lstm_step(p, carry, xw_t)
        return carry, (out["i"], out["f"], out["g"], out["o"], out["c"], out["h"])

    final, (i, f, g, o, c, h) = jax.lax.scan(step, carry, xw)
    return (h, final), (w_hh, carry, i, f, g, o, c, h)


def _lstm_bwd(compute_dtype: str, res: tuple, cts: tuple) -> tuple:
    w_hh, (h0, c0), i, f, g, o, c, h = res
    d_hs, (d_hT, d_cT) = cts
    w_t = w_hh.T.astype(compute_dtype if compute_dtype != "float32" else w_hh.dtype)  # transposed once

    def step(carry: Carry, xs: tuple[jax.Array, ...]) -> tuple[Carry, jax.Array]:
        dh_next, dc_next = carry
        dh_out, i, f, g, o, c, c_prev = xs
        dh = dh_out + dh_next
        tc = jnp.tanh(c)
        dc = dc_next + dh * o * (1.0 - tc * tc)
        dz = jnp.concatenate(
            [dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g), dh * tc * o * (1.0 - o)], axis=-1
        )
        return (_recurrent(dz, w_t), dc * f), dz

    (dh0, dc0), dz = jax.lax.scan(step, (d_hT, d_cT), (d_hs, i, f, g, o, c, _shift(c0, c)), reverse=True)
    d_w = _weight_grad(_shift(h0, h), dz, compute_dtype)
    return d_w, dz, (dh0, dc0)


_lstm_fused.defvjp(_lstm_fwd, _lstm_bwd)


# GRU: h' = (1 - z) n + z h with n = tanh(x_n + r (h W_hn + b_hn)); residuals r, z, n, (h W_hn + b_hn) and h.


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _gru_fused(compute_dtype: str, w_hh: jax.Array, b_hh: jax.Array, xw: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
    return _plain("gru", compute_dtype, {"W_hh": w_hh, "b_hh": b_hh}, xw, carry)


def _gru_fwd(compute_dtype: str, w_hh: jax.Array, b_hh: jax.Array, xw: jax.Array, carry: Carry) -> tuple:
    w = w_hh.astype(compute_dtype) if compute_dtype != "float32" else w_hh

    def step(carry: Carry, xw_t: jax.Array) -> tuple[Carry, tuple[jax.Array, ...]]:
        (h,) = carry  # the same equations as gru_step, also keeping h W_hn + b_hn for the backward pass
        x_r, x_z, x_n = jnp.split(xw_t, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(_recurrent(h, w) + b_hh, 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        h = (1.0 - z) * n + z * h
        return (h,), (r, z, n, h_n, h)

    final, (r, z, n, h_n, h) = jax.lax.scan(step, carry, xw)
    return (h, final), (w_hh, carry[0], r, z, n, h_n, h)


def _gru_bwd(compute_dtype: str, res: tuple, cts: tuple) -> tuple:
    w_hh, h0, r, z, n, h_n, h = res
    d_hs, (d_hT,) = cts
    w_t = w_hh.T.astype(compute_dtype if compute_dtype != "float32" else w_hh.dtype)
    hidden = h0.shape[-1]

    def step(dh_next: jax.Array, xs: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
        dh_out, r, z, n, h_n, h_prev = xs
        dh = dh_out + dh_next
        dn = dh * (1.0 - z) * (1.0 - n * n)  # through tanh: the pre-activation of n
        dr = dn * h_n * r * (1.0 - r)
        dzz = dh * (h_prev - n) * z * (1.0 - z)
        d_hw = jnp.concatenate([dr, dzz, dn * r], axis=-1)  # gradient of h W_hh + b_hh
        return dh * z + _recurrent(d_hw, w_t), (d_hw, dn)

    h_prev = _shift(h0, h)
    dh0, (d_hw, dn) = jax.lax.scan(step, d_hT, (d_hs, r, z, n, h_n, h_prev), reverse=True)
    d_xw = jnp.concatenate([d_hw[..., : 2 * hidden], dn], axis=-1)  # x_n enters outside the reset gate
    return _weight_grad(h_prev, d_hw, compute_dtype), d_hw.sum(axis=(0, 1)), d_xw, (dh0,)


_gru_fused.defvjp(_gru_fwd, _gru_bwd)


# Plain tanh RNN: the outputs h are the only residual.


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _rnn_fused(compute_dtype: str, w_hh: jax.Array, xw: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
    return _plain("rnn", compute_dtype, {"W_hh": w_hh}, xw, carry)


def _rnn_fwd(compute_dtype: str, w_hh: jax.Array, xw: jax.Array, carry: Carry) -> tuple:
    h, final = _rnn_fused(compute_dtype, w_hh, xw, carry)
    return (h, final), (w_hh, carry[0], h)


def _rnn_bwd(compute_dtype: str, res: tuple, cts: tuple) -> tuple:
    w_hh, h0, h = res
    d_hs, (d_hT,) = cts
    w_t = w_hh.T.astype(compute_dtype if compute_dtype != "float32" else w_hh.dtype)

    def step(dh_next: jax.Array, xs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        dh_out, h_t = xs
        da = (dh_out + dh_next) * (1.0 - h_t * h_t)
        return _recurrent(da, w_t), da

    dh0, da = jax.lax.scan(step, d_hT, (d_hs, h), reverse=True)
    return _weight_grad(_shift(h0, h), da, compute_dtype), da, (dh0,)


_rnn_fused.defvjp(_rnn_fwd, _rnn_bwd)


def layer_param_count(cell: str, n_in: int, hidden: int) -> int:
    """Parameters of one layer (used to match cells by parameter count)."""
    g = GATES[cell] * hidden
    return n_in * g + hidden * g + g * (2 if cell == "gru" else 1)
