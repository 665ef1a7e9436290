"""A recurrent layer over a whole sequence: `scan_layer` runs a cell's step (charlstm.nn.cells) under `lax.scan`.

Two paths give the same values. `plain_scan_layer` is one `lax.scan` of the step function, differentiated by
JAX: the reference, and the path for recording gates (`inspect`). The fused layers below have a hand-written
backward pass and are what training runs.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from charlstm.nn.cells import RECORDABLE, Carry, Params, masked, matmul, recurrent, step_fn, variant


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
    recorded, goes through `fused_layer` (same values, a faster backward pass); asking for gates runs the
    plain scan, `plain_scan_layer`, which is also the reference the fused layer is tested against.
    `h_mask` [B, H] is a recurrent dropout mask (LSTM and RNN fused; GRU plain).
    `compute_dtype="bfloat16"` runs the recurrent matmul on bf16 inputs with fp32 accumulation.
    """
    unknown = [name for name in record if name not in RECORDABLE[cell]]
    if unknown:
        raise ValueError(f"a {cell} layer cannot record {unknown}; it records {RECORDABLE[cell]}")
    if tuple(record) == ("h",) and (h_mask is None or cell != "gru"):
        return fused_layer(cell, p, xw, carry, compute_dtype=compute_dtype, h_mask=h_mask)
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
    """`scan_layer` as one `lax.scan` of the step function, differentiated by JAX (the reference path).

    `record` may also name a step's intermediates (see the steps in `charlstm.nn.cells`): the fused layers save them.
    """
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


def fused_layer(
    cell: str,
    p: Params,
    xw: jax.Array,
    carry: Carry,
    *,
    compute_dtype: str = "float32",
    h_mask: jax.Array | None = None,
) -> tuple[dict[str, jax.Array], Carry]:
    """`scan_layer(..., record=("h",))` with the custom VJP: returns ({"h": [T, B, H]}, final carry)."""
    kind = variant(cell, p)
    if kind == "ln_lstm":
        hs, carry = _ln_lstm_fused(compute_dtype, p["W_hh"], p["gain_hh"], p["gain_c"], p["b_c"], xw, carry, h_mask)
    elif kind == "lstm":
        hs, carry = _lstm_fused(compute_dtype, p["W_hh"], xw, carry, h_mask)
    elif cell == "gru":
        if h_mask is not None:
            raise ValueError("the fused GRU has no recurrent dropout; use plain_scan_layer")
        hs, carry = _gru_fused(compute_dtype, p["W_hh"], p["b_hh"], xw, carry)
    else:
        hs, carry = _rnn_fused(compute_dtype, p["W_hh"], xw, carry, h_mask)
    return {"h": hs}, carry


def _weight_grad(h_prev: jax.Array, dz: jax.Array, compute_dtype: str) -> jax.Array:
    """sum_t h_{t-1}^T dz_t as one [H, T*B] @ [T*B, G*H] matmul."""
    t, b, n = h_prev.shape
    return matmul(h_prev.reshape(t * b, n).T, dz.reshape(t * b, -1), compute_dtype, dz.dtype)


def _transposed(w_hh: jax.Array, compute_dtype: str) -> jax.Array:
    """W_hh^T for the backward loop, transposed and cast once."""
    return w_hh.T.astype(compute_dtype if compute_dtype != "float32" else w_hh.dtype)


def _recurrent_back(dz: jax.Array, w_t: jax.Array) -> jax.Array:
    """dz @ W_hh^T with W_hh^T [G*H, H] in the backward loop. In bfloat16 it is summed over the G gate blocks:
    XLA:CPU's bf16 dot is slower with one G*H-long contraction than with G H-long ones (docs/performance.md)."""
    n_gates = w_t.shape[0] // w_t.shape[1]
    if w_t.dtype != jnp.bfloat16 or n_gates == 1:
        return recurrent(dz, w_t)
    h = w_t.shape[1]
    return functools.reduce(
        jnp.add, [recurrent(dz[:, k * h : (k + 1) * h], w_t[k * h : (k + 1) * h]) for k in range(n_gates)]
    )


def _shift(first: jax.Array, seq: jax.Array) -> jax.Array:
    """[x_0, s_0, ..., s_{T-2}]: the value at the previous step, for every step."""
    return jnp.concatenate([first[None], seq[:-1]], axis=0)


def _plain(
    cell: str, compute_dtype: str, p: Params, xw: jax.Array, carry: Carry, h_mask: jax.Array | None = None
) -> tuple[jax.Array, Carry]:
    outs, carry = plain_scan_layer(cell, p, xw, carry, ("h",), compute_dtype=compute_dtype, h_mask=h_mask)
    return outs["h"], carry


def _saving(
    cell: str,
    compute_dtype: str,
    p: Params,
    xw: jax.Array,
    carry: Carry,
    saved: tuple[str, ...],
    h_mask: jax.Array | None = None,
) -> tuple[tuple[jax.Array, Carry], dict[str, jax.Array]]:
    """The forward pass of a fused layer: the plain scan of the same step function, keeping `saved` ([T, B, ...]
    each) for the backward pass. Returns ((h [T, B, H], final carry), saved)."""
    outs, final = plain_scan_layer(cell, p, xw, carry, saved, compute_dtype=compute_dtype, h_mask=h_mask)
    return (outs["h"], final), outs


def _mask_ct(h_mask: jax.Array | None) -> jax.Array | None:
    # The mask is drawn at random, not learned: its cotangent is zero (None when there is no mask).
    return None if h_mask is None else jnp.zeros_like(h_mask)


def _ln_back(dy: jax.Array, n: jax.Array, rs: jax.Array) -> jax.Array:
    """Through y = (x - mean x) * rs over the last axis, where n is the normalised x and rs = 1/std."""
    return rs * (dy - dy.mean(axis=-1, keepdims=True) - n * (dy * n).mean(axis=-1, keepdims=True))


# LSTM: residuals are the gate activations i, f, g, o and the cell states; h_{t-1}, c_{t-1} are shifted copies.


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _lstm_fused(
    compute_dtype: str, w_hh: jax.Array, xw: jax.Array, carry: Carry, h_mask: jax.Array | None
) -> tuple[jax.Array, Carry]:
    return _plain("lstm", compute_dtype, {"W_hh": w_hh}, xw, carry, h_mask)


def _lstm_fwd(
    compute_dtype: str, w_hh: jax.Array, xw: jax.Array, carry: Carry, h_mask: jax.Array | None
) -> tuple[Any, ...]:
    out, s = _saving("lstm", compute_dtype, {"W_hh": w_hh}, xw, carry, ("i", "f", "g", "o", "c", "h"), h_mask)
    return out, (w_hh, carry, h_mask, s["i"], s["f"], s["g"], s["o"], s["c"], s["h"])


def _lstm_bwd(compute_dtype: str, res: tuple[Any, ...], cts: tuple[Any, ...]) -> tuple[Any, ...]:
    w_hh, (h0, c0), h_mask, i, f, g, o, c, h = res
    d_hs, (d_hT, d_cT) = cts
    w_t = _transposed(w_hh, compute_dtype)

    def step(carry: tuple[Any, Any], xs: tuple[jax.Array, ...]) -> tuple[tuple[Any, Any], jax.Array]:
        dh_next, dc_next = carry
        dh_out, i, f, g, o, c, c_prev = xs
        dh = dh_out + dh_next
        tc = jnp.tanh(c)
        dc = dc_next + dh * o * (1.0 - tc * tc)
        dz = jnp.concatenate(
            [dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g), dh * tc * o * (1.0 - o)],
            axis=-1,
        )
        return (masked(_recurrent_back(dz, w_t), h_mask), dc * f), dz

    (dh0, dc0), dz = jax.lax.scan(step, (d_hT, d_cT), (d_hs, i, f, g, o, c, _shift(c0, c)), reverse=True)
    d_w = _weight_grad(masked(_shift(h0, h), h_mask), dz, compute_dtype)
    return d_w, dz, (dh0, dc0), _mask_ct(h_mask)


_lstm_fused.defvjp(_lstm_fwd, _lstm_bwd)


# Layer-normalised LSTM (see cells.ln_lstm_step): the residuals add the normalised recurrent product n_a and
# cell state n_c with their reciprocal standard deviations, and t_u, tanh of the normalised cell.


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _ln_lstm_fused(
    compute_dtype: str,
    w_hh: jax.Array,
    gain_hh: jax.Array,
    gain_c: jax.Array,
    b_c: jax.Array,
    xw: jax.Array,
    carry: Carry,
    h_mask: jax.Array | None,
) -> tuple[jax.Array, Carry]:
    p = {"W_hh": w_hh, "gain_hh": gain_hh, "gain_c": gain_c, "b_c": b_c}
    return _plain("lstm", compute_dtype, p, xw, carry, h_mask)


def _ln_lstm_fwd(
    compute_dtype: str,
    w_hh: jax.Array,
    gain_hh: jax.Array,
    gain_c: jax.Array,
    b_c: jax.Array,
    xw: jax.Array,
    carry: Carry,
    h_mask: jax.Array | None,
) -> tuple[Any, ...]:
    p = {"W_hh": w_hh, "gain_hh": gain_hh, "gain_c": gain_c, "b_c": b_c}
    names = ("i", "f", "g", "o", "c", "n_a", "rs_a", "n_c", "rs_c", "t_u", "h")
    out, s = _saving("lstm", compute_dtype, p, xw, carry, names, h_mask)
    return out, (w_hh, gain_hh, gain_c, carry, h_mask, tuple(s[k] for k in names))


def _ln_lstm_bwd(compute_dtype: str, res: tuple[Any, ...], cts: tuple[Any, ...]) -> tuple[Any, ...]:
    w_hh, gain_hh, gain_c, (h0, c0), h_mask, (i, f, g, o, c, n_a, rs_a, n_c, rs_c, t_u, h) = res
    d_hs, (d_hT, d_cT) = cts
    w_t = _transposed(w_hh, compute_dtype)

    def step(carry: tuple[Any, Any], xs: tuple[jax.Array, ...]) -> tuple[tuple[Any, Any], tuple[jax.Array, ...]]:
        dh_next, dc_next = carry
        dh_out, i, f, g, o, c_prev, n_a, rs_a, n_c, rs_c, t_u = xs
        dh = dh_out + dh_next
        du = dh * o * (1.0 - t_u * t_u)  # u = n_c gain_c + b_c, the argument of the output tanh
        dc = dc_next + _ln_back(du * gain_c, n_c, rs_c)
        dz = jnp.concatenate(
            [dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g), dh * t_u * o * (1.0 - o)],
            axis=-1,
        )
        da = _ln_back(dz * gain_hh, n_a, rs_a)  # gradient of the raw recurrent product (h m) W_hh
        return (masked(_recurrent_back(da, w_t), h_mask), dc * f), (dz, da, du)

    xs = (d_hs, i, f, g, o, _shift(c0, c), n_a, rs_a, n_c, rs_c, t_u)
    (dh0, dc0), (dz, da, du) = jax.lax.scan(step, (d_hT, d_cT), xs, reverse=True)
    d_w = _weight_grad(masked(_shift(h0, h), h_mask), da, compute_dtype)
    d_gain_hh = (dz * n_a).sum(axis=(0, 1))
    d_gain_c, d_b_c = (du * n_c).sum(axis=(0, 1)), du.sum(axis=(0, 1))
    return d_w, d_gain_hh, d_gain_c, d_b_c, dz, (dh0, dc0), _mask_ct(h_mask)


_ln_lstm_fused.defvjp(_ln_lstm_fwd, _ln_lstm_bwd)


# GRU: h' = (1 - z) n + z h with n = tanh(x_n + r (h W_hn + b_hn)); residuals r, z, n, (h W_hn + b_hn) and h.


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _gru_fused(
    compute_dtype: str, w_hh: jax.Array, b_hh: jax.Array, xw: jax.Array, carry: Carry
) -> tuple[jax.Array, Carry]:
    return _plain("gru", compute_dtype, {"W_hh": w_hh, "b_hh": b_hh}, xw, carry)


def _gru_fwd(compute_dtype: str, w_hh: jax.Array, b_hh: jax.Array, xw: jax.Array, carry: Carry) -> tuple[Any, ...]:
    out, s = _saving("gru", compute_dtype, {"W_hh": w_hh, "b_hh": b_hh}, xw, carry, ("r", "z", "n", "h_n", "h"))
    return out, (w_hh, carry[0], s["r"], s["z"], s["n"], s["h_n"], s["h"])


def _gru_bwd(compute_dtype: str, res: tuple[Any, ...], cts: tuple[Any, ...]) -> tuple[Any, ...]:
    w_hh, h0, r, z, n, h_n, h = res
    d_hs, (d_hT,) = cts
    w_t = _transposed(w_hh, compute_dtype)
    hidden = h0.shape[-1]

    def step(dh_next: jax.Array, xs: tuple[jax.Array, ...]) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        dh_out, r, z, n, h_n, h_prev = xs
        dh = dh_out + dh_next
        dn = dh * (1.0 - z) * (1.0 - n * n)  # through tanh: the pre-activation of n
        dr = dn * h_n * r * (1.0 - r)
        dzz = dh * (h_prev - n) * z * (1.0 - z)
        d_hw = jnp.concatenate([dr, dzz, dn * r], axis=-1)  # gradient of h W_hh + b_hh
        return dh * z + _recurrent_back(d_hw, w_t), (d_hw, dn)

    h_prev = _shift(h0, h)
    dh0, (d_hw, dn) = jax.lax.scan(step, d_hT, (d_hs, r, z, n, h_n, h_prev), reverse=True)
    d_xw = jnp.concatenate([d_hw[..., : 2 * hidden], dn], axis=-1)  # x_n enters outside the reset gate
    return _weight_grad(h_prev, d_hw, compute_dtype), d_hw.sum(axis=(0, 1)), d_xw, (dh0,)


_gru_fused.defvjp(_gru_fwd, _gru_bwd)


# Plain tanh RNN: the outputs h are the only residual.


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _rnn_fused(
    compute_dtype: str, w_hh: jax.Array, xw: jax.Array, carry: Carry, h_mask: jax.Array | None
) -> tuple[jax.Array, Carry]:
    return _plain("rnn", compute_dtype, {"W_hh": w_hh}, xw, carry, h_mask)


def _rnn_fwd(
    compute_dtype: str, w_hh: jax.Array, xw: jax.Array, carry: Carry, h_mask: jax.Array | None
) -> tuple[Any, ...]:
    h, final = _rnn_fused(compute_dtype, w_hh, xw, carry, h_mask)
    return (h, final), (w_hh, carry[0], h_mask, h)


def _rnn_bwd(compute_dtype: str, res: tuple[Any, ...], cts: tuple[Any, ...]) -> tuple[Any, ...]:
    w_hh, h0, h_mask, h = res
    d_hs, (d_hT,) = cts
    w_t = _transposed(w_hh, compute_dtype)

    def step(dh_next: jax.Array, xs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        dh_out, h_t = xs
        da = (dh_out + dh_next) * (1.0 - h_t * h_t)
        return masked(recurrent(da, w_t), h_mask), da

    dh0, da = jax.lax.scan(step, d_hT, (d_hs, h), reverse=True)
    return _weight_grad(masked(_shift(h0, h), h_mask), da, compute_dtype), da, (dh0,), _mask_ct(h_mask)


_rnn_fused.defvjp(_rnn_fwd, _rnn_bwd)
