"""Prototype: the fused LSTM layers' sequential loops as XLA FFI custom calls (liblstm_ffi.so), same custom VJP
interface as charlstm.nn.layers._lstm_fused / _ln_lstm_fused. `use(True)` routes layers.fused_layer to them."""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import jax
import jax.numpy as jnp

from charlstm.nn import layers

_LIB = ctypes.cdll.LoadLibrary(str(Path(__file__).with_name("liblstm_ffi.so")))
for _name in ("charlstm_lstm_fwd", "charlstm_ln_lstm_fwd", "charlstm_lstm_bwd", "charlstm_ln_lstm_bwd"):
    jax.ffi.register_ffi_target(_name, jax.ffi.pycapsule(getattr(_LIB, _name)), platform="cpu")


def _sds(shape):
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def _mask(h_mask, h0):
    return jnp.ones_like(h0) if h_mask is None else h_mask


def _fwd_call(w_hh, xw, h0, c0, mask):
    t, b, g = xw.shape
    h = g // 4
    return jax.ffi.ffi_call("charlstm_lstm_fwd", (_sds((t, b, h)), _sds((t, b, h)), _sds((t, b, g))))(
        w_hh, xw, h0, c0, mask
    )


def _ln_fwd_call(w_hh, gain_hh, gain_c, b_c, xw, h0, c0, mask):
    t, b, g = xw.shape
    h = g // 4
    shapes = (
        _sds((t, b, h)),
        _sds((t, b, h)),
        _sds((t, b, g)),
        _sds((t, b, g)),
        _sds((t, b, 1)),
        _sds((t, b, h)),
        _sds((t, b, 1)),
        _sds((t, b, h)),
    )
    return jax.ffi.ffi_call("charlstm_ln_lstm_fwd", shapes)(w_hh, gain_hh, gain_c, b_c, xw, h0, c0, mask)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def lstm_native(compute_dtype, w_hh, xw, carry, h_mask):
    hs, cs, _ = _fwd_call(w_hh, xw, carry[0], carry[1], _mask(h_mask, carry[0]))
    return hs, (hs[-1], cs[-1])


def _lstm_fwd(compute_dtype, w_hh, xw, carry, h_mask):
    h0, c0 = carry
    mask = _mask(h_mask, h0)
    hs, cs, gates = _fwd_call(w_hh, xw, h0, c0, mask)
    return (hs, (hs[-1], cs[-1])), (w_hh, carry, h_mask, mask, gates, cs, hs)


def _lstm_bwd(compute_dtype, res, cts):
    w_hh, (h0, c0), h_mask, mask, gates, cs, hs = res
    d_hs, (d_hT, d_cT) = cts
    t, b, h = d_hs.shape
    dz, dh0, dc0 = jax.ffi.ffi_call("charlstm_lstm_bwd", (_sds((t, b, 4 * h)), _sds((b, h)), _sds((b, h))))(
        w_hh, d_hs, d_hT, d_cT, gates, cs, c0, mask
    )
    d_w = layers._weight_grad(layers.masked(layers._shift(h0, hs), h_mask), dz, compute_dtype)
    return d_w, dz, (dh0, dc0), layers._mask_ct(h_mask)


lstm_native.defvjp(_lstm_fwd, _lstm_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def ln_lstm_native(compute_dtype, w_hh, gain_hh, gain_c, b_c, xw, carry, h_mask):
    out = _ln_fwd_call(w_hh, gain_hh, gain_c, b_c, xw, carry[0], carry[1], _mask(h_mask, carry[0]))
    return out[0], (out[0][-1], out[1][-1])


def _ln_fwd(compute_dtype, w_hh, gain_hh, gain_c, b_c, xw, carry, h_mask):
    h0, c0 = carry
    mask = _mask(h_mask, h0)
    hs, cs, gates, n_a, rs_a, n_c, rs_c, t_u = _ln_fwd_call(w_hh, gain_hh, gain_c, b_c, xw, h0, c0, mask)
    return (hs, (hs[-1], cs[-1])), (
        w_hh,
        gain_hh,
        gain_c,
        carry,
        h_mask,
        mask,
        (gates, cs, n_a, rs_a, n_c, rs_c, t_u, hs),
    )


def _ln_bwd(compute_dtype, res, cts):
    w_hh, gain_hh, gain_c, (h0, c0), h_mask, mask, (gates, cs, n_a, rs_a, n_c, rs_c, t_u, hs) = res
    d_hs, (d_hT, d_cT) = cts
    t, b, h = d_hs.shape
    shapes = (_sds((t, b, 4 * h)), _sds((t, b, 4 * h)), _sds((t, b, h)), _sds((b, h)), _sds((b, h)))
    dz, da, du, dh0, dc0 = jax.ffi.ffi_call("charlstm_ln_lstm_bwd", shapes)(
        w_hh, gain_hh, gain_c, d_hs, d_hT, d_cT, gates, cs, c0, n_a, rs_a, n_c, rs_c, t_u, mask
    )
    d_w = layers._weight_grad(layers.masked(layers._shift(h0, hs), h_mask), da, compute_dtype)
    d_gain_hh = (dz * n_a).sum(axis=(0, 1))
    d_gain_c, d_b_c = (du * n_c).sum(axis=(0, 1)), du.sum(axis=(0, 1))
    return d_w, d_gain_hh, d_gain_c, d_b_c, dz, (dh0, dc0), layers._mask_ct(h_mask)


ln_lstm_native.defvjp(_ln_fwd, _ln_bwd)

_SCAN = (layers._lstm_fused, layers._ln_lstm_fused)


def use(native: bool) -> None:
    """Route the fused LSTM layers (fp32 only in this prototype) to the native calls or back to the scan."""
    layers._lstm_fused, layers._ln_lstm_fused = (lstm_native, ln_lstm_native) if native else _SCAN
