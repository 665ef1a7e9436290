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
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]
Carry = tuple[jax.Array, ...]

GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # blocks of H columns in W_ih and W_hh
# What a layer can record per step (`layers.scan_layer`'s `record`), for `inspect` and the gradient analysis.
RECORDABLE = {"lstm": ("i", "f", "g", "o", "c", "h"), "gru": ("r", "z", "n", "h"), "rnn": ("h",)}


def init_layer(
    cell: str,
    key: jax.Array,
    n_in: int,
    hidden: int,
    forget_bias: float = 1.0,
    *,
    init_hh: str = "uniform",
    layer_norm: bool = False,
) -> Params:
    """PyTorch's initialisation, U(-1/sqrt(H), 1/sqrt(H)), and a forget-gate bias that starts remembering.

    `init_hh="orthogonal"` makes each gate's [H, H] block of W_hh orthogonal (its singular values are all 1,
    so at initialisation the recurrent matmul neither shrinks nor grows h). `layer_norm` adds the LSTM's
    normalisation gains (ones) and the cell-state shift (zeros): gain_ih, gain_hh [4H], gain_c, b_c [H].
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
        p.update(gain_ih=jnp.ones(g), gain_hh=jnp.ones(g), gain_c=jnp.ones(hidden), b_c=jnp.zeros(hidden))
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
    b = input_bias(cell, p)
    normalised = variant(cell, p) == "ln_lstm"
    if jnp.issubdtype(x.dtype, jnp.integer):
        # LN acts row by row, so for ids it can normalise the [V, G*H] table once instead of every [T, B] row.
        table = layer_norm(p["W_ih"]) * p["gain_ih"] if normalised else p["W_ih"]
        return (table + b)[x]
    xw = matmul(x, p["W_ih"], compute_dtype, x.dtype)
    if normalised:
        xw = layer_norm(xw) * p["gain_ih"]
    return xw + b


def input_bias(cell: str, p: Params) -> jax.Array:
    """The bias added to x W_ih: what layer 0 sees for an all-zero input (a GRU keeps its own b_hh apart)."""
    return p["b_ih"] if cell == "gru" else p["b"]


def normalise(x: jax.Array, eps: float = 1e-5) -> tuple[jax.Array, jax.Array]:
    """x normalised over its last axis to zero mean and unit variance, and the reciprocal standard deviation
    (which the hand-written backward pass needs)."""
    mu = x.mean(axis=-1, keepdims=True)
    rs = jax.lax.rsqrt(jnp.square(x - mu).mean(axis=-1, keepdims=True) + eps)
    return (x - mu) * rs, rs


def layer_norm(x: jax.Array) -> jax.Array:
    """Normalise the last axis to zero mean and unit variance (the gain and shift are the caller's)."""
    return normalise(x)[0]


def masked(h: jax.Array, h_mask: jax.Array | None) -> jax.Array:
    """Variational recurrent dropout: only the copy of h that feeds W_hh is dropped, not the carried state."""
    return h if h_mask is None else h * h_mask


def recurrent(h: jax.Array, w: jax.Array) -> jax.Array:
    """h @ W_hh, accumulated in h's dtype: with W_hh cast to bfloat16 (model.compute_dtype) the product runs
    on bf16 inputs with fp32 accumulation; with fp32 weights it is exactly `h @ W_hh`."""
    return jnp.dot(h.astype(w.dtype), w, preferred_element_type=h.dtype)


# Each step returns the new carry and, by name, what it computed: the recordable quantities (RECORDABLE) and, for
# the fused layers' backward pass (charlstm.nn.layers), a few intermediates.


def lstm_step(
    p: Params, carry: Carry, xw: jax.Array, h_mask: jax.Array | None = None
) -> tuple[Carry, dict[str, jax.Array]]:
    h, c = carry
    i, f, g, o = lstm_gates(xw + recurrent(masked(h, h_mask), p["W_hh"]))
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (h, c), {"i": i, "f": f, "g": g, "o": o, "c": c, "h": h}


def ln_lstm_step(
    p: Params, carry: Carry, xw: jax.Array, h_mask: jax.Array | None = None
) -> tuple[Carry, dict[str, jax.Array]]:
    """The layer-normalised LSTM step; xw is already LN(x W_ih) * gain_ih + b (see `project_input`).

    Also returns the normalised recurrent product n_a and cell state n_c with their reciprocal standard
    deviations rs_a, rs_c, and t_u = tanh(n_c gain_c + b_c).
    """
    h, c = carry
    n_a, rs_a = normalise(recurrent(masked(h, h_mask), p["W_hh"]))
    i, f, g, o = lstm_gates(xw + n_a * p["gain_hh"])
    c = f * c + i * g
    n_c, rs_c = normalise(c)
    t_u = jnp.tanh(n_c * p["gain_c"] + p["b_c"])
    h = o * t_u
    out = {"i": i, "f": f, "g": g, "o": o, "c": c, "h": h}
    return (h, c), {**out, "n_a": n_a, "rs_a": rs_a, "n_c": n_c, "rs_c": rs_c, "t_u": t_u}


def lstm_gates(z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The four gate blocks of the pre-activation z [..., 4H]: i, f, o through a sigmoid, g through tanh."""
    i, f, g, o = jnp.split(z, 4, axis=-1)
    return jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)


def gru_step(
    p: Params, carry: Carry, xw: jax.Array, h_mask: jax.Array | None = None
) -> tuple[Carry, dict[str, jax.Array]]:
    """Also returns h_n = h W_hn + b_hn, which the reset gate scales."""
    (h,) = carry
    x_r, x_z, x_n = jnp.split(xw, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(recurrent(masked(h, h_mask), p["W_hh"]) + p["b_hh"], 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)  # reset gate: how much of the past feeds the candidate
    z = jax.nn.sigmoid(x_z + h_z)  # update gate: how much of the old state to keep
    n = jnp.tanh(x_n + r * h_n)
    h = (1.0 - z) * n + z * h
    return (h,), {"r": r, "z": z, "n": n, "h": h, "h_n": h_n}


def rnn_step(
    p: Params, carry: Carry, xw: jax.Array, h_mask: jax.Array | None = None
) -> tuple[Carry, dict[str, jax.Array]]:
    (h,) = carry
    h = jnp.tanh(xw + recurrent(masked(h, h_mask), p["W_hh"]))
    return (h,), {"h": h}


STEPS = {"lstm": lstm_step, "ln_lstm": ln_lstm_step, "gru": gru_step, "rnn": rnn_step}


def variant(cell: str, p: Params) -> str:
    """Which step a layer runs: its cell, or "ln_lstm" for an LSTM layer whose parameters hold the layer-norm
    gains (`init_layer(..., layer_norm=True)`). The parameters alone say it, so a layer's weights are all a
    function needs (a saved run, the tests' random layers); only the LSTM has a normalised variant."""
    if "gain_hh" not in p:
        return cell
    if cell != "lstm":
        raise ValueError(f"a {cell} layer has layer-norm gains; only the LSTM has a layer-normalised variant")
    return "ln_lstm"


def step_fn(cell: str, p: Params) -> Callable[..., tuple[Carry, dict[str, jax.Array]]]:
    """The step function of a layer (see `variant`)."""
    return STEPS[variant(cell, p)]


def matmul(a: jax.Array, b: jax.Array, compute_dtype: str, out: Any) -> jax.Array:
    """a @ b with inputs in compute_dtype (fp32 stays the input dtype, e.g. float64 in tests), result in `out`.

    a is [..., K], b is [K, N]. In bfloat16 the two backward products run on bfloat16 inputs as well (fp32
    accumulation, as mixed-precision autocast does): left to autodiff, the fp32 cotangent would turn both into
    slower fp32 matmuls (docs/performance.md).
    """
    if compute_dtype == "float32":
        return jnp.dot(a, b, preferred_element_type=out)
    return _low_precision_matmul(compute_dtype, jnp.dtype(out), a, b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _low_precision_matmul(compute_dtype: str, out: Any, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.dot(a.astype(compute_dtype), b.astype(compute_dtype), preferred_element_type=out)


def _low_precision_fwd(compute_dtype: str, out: Any, a: jax.Array, b: jax.Array) -> tuple[jax.Array, tuple[Any, ...]]:
    return _low_precision_matmul(compute_dtype, out, a, b), (a, b)


def _low_precision_bwd(
    compute_dtype: str, out: Any, res: tuple[Any, ...], ct: jax.Array
) -> tuple[jax.Array, jax.Array]:
    a, b = res
    ct_c, a_c = ct.astype(compute_dtype), a.astype(compute_dtype)
    da = jnp.dot(ct_c, b.astype(compute_dtype).T, preferred_element_type=jnp.float32)
    lead = tuple(range(a.ndim - 1))  # sum over every leading (batch, time) axis: [K, N] like b
    db = jax.lax.dot_general(a_c, ct_c, ((lead, lead), ((), ())), preferred_element_type=jnp.float32)
    return da.astype(a.dtype), db.astype(b.dtype)


_low_precision_matmul.defvjp(_low_precision_fwd, _low_precision_bwd)


def layer_param_count(cell: str, n_in: int, hidden: int) -> int:
    """Parameters of one layer (used to match cells by parameter count)."""
    g = GATES[cell] * hidden
    return n_in * g + hidden * g + g * (2 if cell == "gru" else 1)
