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
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]
Carry = tuple[jax.Array, ...]

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
# What each step can report, for `inspect` and the gradient analysis; the layer normally returns only "h".
RECORDABLE = {"lstm": ("i", "f", "g", "o", "c", "h"), "gru": ("r", "z", "n", "h"), "rnn": ("h",)}


def init_layer(cell: str, key: jax.Array, n_in: int, hidden: int, forget_bias: float = 1.0) -> Params:
    """PyTorch's initialisation, U(-1/sqrt(H), 1/sqrt(H)), and a forget-gate bias that starts remembering."""
    k = 1.0 / jnp.sqrt(hidden)
    g = GATES[cell] * hidden
    k_ih, k_hh, k_b, k_b2 = jax.random.split(key, 4)
    p = {
        "W_ih": jax.random.uniform(k_ih, (n_in, g), minval=-k, maxval=k),
        "W_hh": jax.random.uniform(k_hh, (hidden, g), minval=-k, maxval=k),
    }
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


def project_input(cell: str, p: Params, x: jax.Array) -> jax.Array:
    """x W_ih + b for all timesteps at once; integer x (character ids) is a row gather, not a one-hot matmul."""
    b = p["b_ih"] if cell == "gru" else p["b"]
    xw = p["W_ih"][x] if jnp.issubdtype(x.dtype, jnp.integer) else x @ p["W_ih"]
    return xw + b


def lstm_step(p: Params, carry: Carry, xw: jax.Array) -> tuple[Carry, dict[str, jax.Array]]:
    h, c = carry
    i, f, g, o = jnp.split(xw + h @ p["W_hh"], 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (h, c), {"i": i, "f": f, "g": g, "o": o, "c": c, "h": h}


def gru_step(p: Params, carry: Carry, xw: jax.Array) -> tuple[Carry, dict[str, jax.Array]]:
    (h,) = carry
    x_r, x_z, x_n = jnp.split(xw, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(h @ p["W_hh"] + p["b_hh"], 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)  # reset gate: how much of the past feeds the candidate
    z = jax.nn.sigmoid(x_z + h_z)  # update gate: how much of the old state to keep
    n = jnp.tanh(x_n + r * h_n)
    h = (1.0 - z) * n + z * h
    return (h,), {"r": r, "z": z, "n": n, "h": h}


def rnn_step(p: Params, carry: Carry, xw: jax.Array) -> tuple[Carry, dict[str, jax.Array]]:
    (h,) = carry
    h = jnp.tanh(xw + h @ p["W_hh"])
    return (h,), {"h": h}


STEPS = {"lstm": lstm_step, "gru": gru_step, "rnn": rnn_step}


def scan_layer(
    cell: str, p: Params, xw: jax.Array, carry: Carry, record: tuple[str, ...] = ("h",)
) -> tuple[dict[str, jax.Array], Carry]:
    """Run one layer over a time-major sequence of projected inputs xw [T, B, G*H].

    Returns the recorded per-step quantities (each [T, B, H]) and the final carry.
    """
    step_fn = STEPS[cell]

    def step(carry: Carry, xw_t: jax.Array) -> tuple[Carry, dict[str, jax.Array]]:
        carry, out = step_fn(p, carry, xw_t)
        return carry, {k: out[k] for k in record}

    carry, outs = jax.lax.scan(step, carry, xw)
    return outs, carry


def layer_param_count(cell: str, n_in: int, hidden: int) -> int:
    """Parameters of one layer (used to match cells by parameter count)."""
    g = GATES[cell] * hidden
    return n_in * g + hidden * g + g * (2 if cell == "gru" else 1)
