"""How far back does the loss reach? The norm of d loss_T / d h_{T-k}, measured with autodiff.

This is the vanishing/exploding-gradient picture in one curve. A zero perturbation `eps_t` is added to the
hidden state after every step of a scan; the loss at the last position is a function of all of them, and its
gradient with respect to `eps_t` is exactly d loss_T / d h_t (adding zero changes no value, only exposes a
handle to differentiate). One backward pass gives every distance k = T - 1 - t at once.

For a linear RNN h_t = h_{t-1} W + x_t and a readout with gradient g = d loss / d h_T,
d loss / d h_{T-k} = g (W^T)^k, so W = a I gives a^k ||g||: the test of this module. A tanh RNN's norm falls
off geometrically (vanishing) or blows up (exploding); an LSTM's cell path `c = f * c + ...` keeps it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from charlstm.config import ModelConfig
from charlstm.nn import cells, layers, model

Carry = tuple[jax.Array, ...]
# (layer params, carry, projected input of one step) -> (new carry, anything); carry[0] is the hidden state h.
StepFn = Callable[[Any, Carry, jax.Array], tuple[Carry, Any]]
# h_T [B, H] -> per-example loss [B]
Readout = Callable[[jax.Array], jax.Array]


def scan_perturbed(step_fn: StepFn, p: Any, xw: jax.Array, carry: Carry, eps: jax.Array) -> tuple[jax.Array, Carry]:
    """Run `step_fn` over time-major xw [T, B, ...], adding eps[t] [B, H] to h after step t.

    Returns the (perturbed) hidden states [T, B, H] and the final carry. The perturbed h is what the next
    step and the layer's output see, so d/d eps[t] is the full dependence on h_t.
    """

    def body(c: Carry, inp: tuple[jax.Array, jax.Array]) -> tuple[Carry, jax.Array]:
        xw_t, e_t = inp
        c, _ = step_fn(p, c, xw_t)
        c = (c[0] + e_t,) + tuple(c[1:])
        return c, c[0]

    carry, hs = jax.lax.scan(body, carry, (xw, eps))
    return hs, carry


def hidden_grad_norms(step_fn: StepFn, p: Any, xw: jax.Array, carry: Carry, readout: Readout) -> jax.Array:
    """norms[k] = mean over the batch of || d readout(h_T) / d h_{T-k} ||_2, for k = 0 .. T-1.

    `readout` maps the last hidden state [B, H] to one loss per example; the losses are summed before the
    backward pass, which keeps examples independent (example b's loss depends on eps[:, b] only).
    """
    eps = jnp.zeros(xw.shape[:2] + carry[0].shape[-1:], carry[0].dtype)  # [T, B, H]

    def total(e: jax.Array) -> jax.Array:
        hs, _ = scan_perturbed(step_fn, p, xw, carry, e)
        return readout(hs[-1]).sum()

    grads = jax.grad(total)(eps)  # [T, B, H]
    norms = jnp.linalg.norm(grads, axis=-1).mean(axis=1)  # [T]: norm over units, mean over the batch
    return norms[::-1]  # index k = distance back from the last step


def _model_norms(params: model.Params, x: jax.Array, y: jax.Array, cfg: ModelConfig) -> jax.Array:
    """The model's profile: lower layers run as usual, the top layer is perturbed, the head scores y[:, -1]."""
    inp = x.T  # [T, B] ids, time-major like model.apply
    batch = x.shape[0]
    for p in [model.layer_params(params, n) for n in range(len(params["layers"]) - 1)]:
        outs, _ = layers.scan_layer(
            cfg.cell, p, cells.project_input(cfg.cell, p, inp), cells.zeros_carry(cfg.cell, batch, cfg.hidden)
        )
        inp = outs["h"]
    top = model.layer_params(params, len(params["layers"]) - 1)
    head, head_w = params["head"], model.head_weight(params)

    def readout(h_last: jax.Array) -> jax.Array:
        logits = h_last @ head_w + head["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y[:, -1])

    xw = cells.project_input(cfg.cell, top, inp)
    return hidden_grad_norms(
        cells.step_fn(cfg.cell, top), top, xw, cells.zeros_carry(cfg.cell, batch, cfg.hidden), readout
    )


def model_profile(params: model.Params, cfg: ModelConfig, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|| d loss_T / d h_{T-k} || of the top layer for k = 0 .. T-1 on windows x, y [B, T], from zero state.

    Element k is the distance k (element 0: the last step itself); the loss is the cross entropy of the
    last position only, so the curve shows how far back that one prediction reaches.
    """
    return np.asarray(_jitted(cfg)(params, jnp.asarray(x), jnp.asarray(y)), dtype=np.float64)


@functools.lru_cache(maxsize=16)
def _jitted(cfg: ModelConfig) -> Callable[..., jax.Array]:
    """One compiled profile per model config (the config is frozen, hence hashable), reused before and after
    training."""
    return jax.jit(functools.partial(_model_norms, cfg=cfg))
