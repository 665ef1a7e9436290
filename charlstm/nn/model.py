"""The stacked network: character ids -> recurrent layers -> linear head -> next-character logits.

Batch-major at the edges ([B, T]), time-major inside ([T, B, ...]) because `lax.scan` runs over axis 0.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from charlstm.config import ModelConfig
from charlstm.nn import cells, layers

Params = dict[str, Any]
Carry = tuple[cells.Carry, ...]


def init_params(cfg: ModelConfig, vocab_size: int, key: jax.Array) -> Params:
    """Parameters as a plain pytree: {"layers": [per-layer dicts], "head": {"W", "b"}} (+ "embed" [V, E]).

    The embedding starts N(0, 1) as in PyTorch's nn.Embedding: a strong, distinct input per character from
    the first step, which learns the long-range dependency sooner than one-hot input does (docs/corpus.md).
    Compiled as one program (the same numbers as op by op, in less time than dispatching each draw).
    """
    params: Params = _init_params(cfg, vocab_size, key)
    return params


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_params(cfg: ModelConfig, vocab_size: int, key: jax.Array) -> Params:
    keys = jax.random.split(key, cfg.layers + 2)
    n_in = cfg.embed or vocab_size
    layers = [
        cells.init_layer(
            cfg.cell,
            keys[k],
            n_in if k == 0 else cfg.hidden,
            cfg.hidden,
            cfg.forget_bias,
            init_hh=cfg.init_hh,
            layer_norm=cfg.layer_norm,
        )
        for k in range(cfg.layers)
    ]
    bound = 1.0 / jnp.sqrt(cfg.hidden)
    k_w, k_b = jax.random.split(keys[cfg.layers])
    head = {"b": jax.random.uniform(k_b, (vocab_size,), minval=-bound, maxval=bound)}
    if not cfg.tie_embed:  # tied: the head reads the embedding table (see `head_weight`)
        head["W"] = jax.random.uniform(k_w, (cfg.hidden, vocab_size), minval=-bound, maxval=bound)
    params: Params = {"layers": layers, "head": head}
    if cfg.embed:
        params["embed"] = jax.random.normal(keys[-1], (vocab_size, cfg.embed))
    if cfg.start_state == "learned":  # starts at zeros: the untrained network behaves as with zero start state
        params["start"] = [{name: jnp.zeros(cfg.hidden) for name in state_names(cfg.cell)} for _ in range(cfg.layers)]
    return params


def layer_params(params: Params, n: int) -> cells.Params:
    """Layer n's parameters as the cell sees them: the embedding (if any) folded into layer 0's input table,
    so that character ids stay a row gather of one [V, G*H] table."""
    p: cells.Params = params["layers"][n]
    if n == 0 and "embed" in params:
        p = {**p, "W_ih": params["embed"] @ p["W_ih"]}
    return p


def folded(params: Params) -> Params:
    """The same network with the embedding folded into layer 0's table and the head's matrix made explicit.

    `apply` gives the same logits with either form; the folded one does the [V, E] @ [E, G*H] product once,
    which matters in sampling loops that call `apply` once per character.
    """
    if "embed" not in params:
        return params
    layers = [layer_params(params, 0), *params["layers"][1:]]
    rest = {k: v for k, v in params.items() if k != "embed"}  # e.g. the start state
    return {**rest, "layers": layers, "head": {"W": head_weight(params), "b": params["head"]["b"]}}


def head_weight(params: Params) -> jax.Array:
    """The output head's [H, V] matrix: its own, or the embedding table transposed when they are tied.

    The tied table is scaled by 1/sqrt(E): the N(0, 1) embedding is sized for inputs, and unscaled it would
    start the logits about sqrt(E) times larger than an untied head's.
    """
    if "W" in params["head"]:
        own: jax.Array = params["head"]["W"]
        return own
    table: jax.Array = params["embed"]
    return table.T / jnp.sqrt(table.shape[1]).astype(table.dtype)


def zeros_carry(cfg: ModelConfig, batch: int) -> Carry:
    """Zero state for every layer."""
    return tuple(cells.zeros_carry(cfg.cell, batch, cfg.hidden) for _ in range(cfg.layers))


def state_names(cell: str) -> tuple[str, ...]:
    """The names of a layer's carried state, in carry order: (h, c) for an LSTM, (h,) otherwise."""
    return ("h", "c") if cell == "lstm" else ("h",)


def start_carry(params: Params, cfg: ModelConfig, batch: int) -> Carry:
    """The state every sequence starts from: the learned h0 (and c0) of each layer, or zeros.

    Training carries the state from window to window, so a network almost never sees a zero state there; a
    learned start state is trained wherever a stream restarts, which makes it the state the network reads
    a prompt from in-distribution.
    """
    if cfg.start_state == "zeros":
        return zeros_carry(cfg, batch)
    return tuple(
        tuple(jnp.broadcast_to(s[name], (batch, cfg.hidden)) for name in state_names(cfg.cell)) for s in params["start"]
    )


def restart(params: Params, cfg: ModelConfig, carry: Carry, reset: jax.Array) -> Carry:
    """`carry` with the rows where `reset` [B] is true replaced by the start state (which gradients reach)."""
    start = start_carry(params, cfg, reset.shape[0])
    restarted: Carry = jax.tree_util.tree_map(lambda s, c: jnp.where(reset[:, None], s, c), start, carry)
    return restarted


def param_count(params: Params) -> int:
    """Total number of scalars in the parameters."""
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))


@functools.lru_cache(maxsize=1024)
def param_count_of(cfg: ModelConfig, vocab_size: int) -> int:
    """Parameters of the model `cfg` describes, counted on the tree `init_params` builds (shapes only, nothing
    computed): the model itself is the one source of which parameters a config has."""
    return param_count(jax.eval_shape(lambda: init_params(cfg, vocab_size, jax.random.PRNGKey(0))))


def matmul_shapes(cfg: ModelConfig, vocab_size: int) -> list[tuple[int, int]]:
    """The [K, N] weight matrices one character goes through, in order: per layer W_ih and W_hh, then the head.
    Layer 0's input projection is a row gather (no matmul), so its W_ih is not among them."""
    g = cells.GATES[cfg.cell] * cfg.hidden
    shapes = []
    for k in range(cfg.layers):
        shapes += ([(cfg.hidden, g)] if k > 0 else []) + [(cfg.hidden, g)]
    return shapes + [(cfg.hidden, vocab_size)]


def train_flops_per_char(cfg: ModelConfig, vocab_size: int) -> float:
    """6 FLOPs per weight per character (2 forward, 4 backward) for every matmul weight (`matmul_shapes`).
    Folding a learned embedding into layer 0's table (once per step, not per character) and the elementwise
    gate operations count nothing."""
    return 6.0 * sum(k * n for k, n in matmul_shapes(cfg, vocab_size))


def dropout_ramp_scale(cfg: ModelConfig, step: jax.Array | int) -> jax.Array | float:
    """The fraction of the configured dropout rates applied at optimizer step `step`: a linear ramp from 0 over
    `cfg.dropout_ramp` steps, then 1. Regularisation slows early learning and only pays once the model can
    start to overfit, so a ramp gets the fast start of an unregularised model ("late dropout")."""
    if cfg.dropout_ramp == 0:
        return 1.0
    return jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / cfg.dropout_ramp)


def _dropout(x: jax.Array, rate: jax.Array | float, key: jax.Array) -> jax.Array:
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


class Dropout:
    """The four dropout kinds of one training forward pass, at `cfg`'s rates times `scale`, one key per layer.

    - `cfg.dropout` drops each layer's output h, i.e. between layers and before the head (`outputs`);
    - `cfg.recurrent_dropout` drops h where it enters W_hh, one mask per sequence for the whole window
      (variational, Gal & Ghahramani; `recurrent_mask`);
    - `cfg.weight_drop` drops recurrent weights (DropConnect on W_hh, as in AWD-LSTM), one mask for the whole
      batch and window (`weights`);
    - `cfg.input_dropout` hides input characters: their embedding (or one-hot vector) becomes zero, so layer 0
      sees only its bias (AWD-LSTM's embedding dropout applied per position; `inputs`).
    Each kind draws from its own stream of the layer's key, so turning one on leaves the others' masks alone.
    A kind whose rate is 0, or every kind outside training, is the identity.
    """

    def __init__(
        self, cfg: ModelConfig, train: bool = False, key: jax.Array | None = None, scale: jax.Array | float = 1.0
    ) -> None:
        rates = (cfg.dropout, cfg.recurrent_dropout, cfg.weight_drop, cfg.input_dropout)
        on = train and any(r > 0.0 for r in rates)
        if on and key is None:
            raise ValueError("training with dropout needs a random key")
        self.cfg, self.scale = cfg, scale
        self.keys = jax.random.split(key, cfg.layers) if on and key is not None else None

    def _key(self, n: int) -> jax.Array:
        """Layer n's key; asked for only when a rate is on, so there are keys."""
        assert self.keys is not None
        return self.keys[n]

    def _on(self, rate: float) -> bool:
        return self.keys is not None and rate > 0.0

    def inputs(self, n: int, p: cells.Params, ids: jax.Array, xw: jax.Array) -> jax.Array:
        """Layer n's projected input xw with hidden characters' rows replaced by the bias alone (layer 0 only)."""
        if n > 0 or not self._on(self.cfg.input_dropout):
            return xw
        key = jax.random.fold_in(self._key(n), 3)
        hidden = jax.random.bernoulli(key, self.cfg.input_dropout * self.scale, ids.shape)
        return jnp.where(hidden[..., None], cells.input_bias(self.cfg.cell, p), xw)

    def weights(self, n: int, p: cells.Params) -> cells.Params:
        """Layer n's parameters with W_hh dropped; outside the sequential loop, the gradient reaches W_hh
        through the mask."""
        if not self._on(self.cfg.weight_drop):
            return p
        key = jax.random.fold_in(self._key(n), 2)
        return {**p, "W_hh": _dropout(p["W_hh"], self.cfg.weight_drop * self.scale, key)}

    def recurrent_mask(self, n: int, batch: int) -> jax.Array | None:
        """Layer n's [B, H] mask on the h that feeds W_hh, or None."""
        if not self._on(self.cfg.recurrent_dropout):
            return None
        ones = jnp.ones((batch, self.cfg.hidden))
        return _dropout(ones, self.cfg.recurrent_dropout * self.scale, jax.random.fold_in(self._key(n), 1))

    def outputs(self, n: int, h: jax.Array) -> jax.Array:
        """Layer n's output sequence h [T, B, H], dropped."""
        if not self._on(self.cfg.dropout):
            return h
        return _dropout(h, self.cfg.dropout * self.scale, self._key(n))


def apply(
    params: Params,
    x: jax.Array,
    carry: Carry,
    cfg: ModelConfig,
    *,
    train: bool = False,
    key: jax.Array | None = None,
    dropout_scale: jax.Array | float = 1.0,
) -> tuple[jax.Array, Carry]:
    """Logits [B, T, V] for character ids x [B, T], starting from `carry`; returns the final carry too.

    With `train=True` (needs `key` when a dropout rate is set) the `Dropout` kinds act; `dropout_scale`
    multiplies all four rates (the training loop passes `dropout_ramp_scale`).
    """
    drop = Dropout(cfg, train, key, dropout_scale)
    logits, carry, _ = _forward(params, x, carry, cfg, drop, ())
    return logits, carry


def apply_recording(
    params: Params, x: jax.Array, carry: Carry, cfg: ModelConfig, record: tuple[str, ...]
) -> tuple[jax.Array, Carry, list[dict[str, jax.Array]]]:
    """`apply` (no dropout) that also returns, per layer, the step quantities named in `record` (e.g. gates,
    see `cells.RECORDABLE`) as [B, T, H] arrays."""
    return _forward(params, x, carry, cfg, Dropout(cfg), record)


def _forward(
    params: Params, x: jax.Array, carry: Carry, cfg: ModelConfig, drop: Dropout, record: tuple[str, ...]
) -> tuple[jax.Array, Carry, list[dict[str, jax.Array]]]:
    """The layers, then the head."""
    inp = x.T  # [T, B] ids
    want = tuple(dict.fromkeys(("h", *record)))
    new_carry, recorded = [], []
    for n, c in enumerate(carry):
        p = drop.weights(n, layer_params(params, n))
        xw = drop.inputs(n, p, inp, cells.project_input(cfg.cell, p, inp, cfg.compute_dtype))
        h_mask = drop.recurrent_mask(n, x.shape[0])
        outs, c = layers.scan_layer(cfg.cell, p, xw, c, record=want, compute_dtype=cfg.compute_dtype, h_mask=h_mask)
        new_carry.append(c)
        recorded.append({name: jnp.swapaxes(outs[name], 0, 1) for name in record})
        inp = drop.outputs(n, outs["h"])
    logits = cells.matmul(inp, head_weight(params), cfg.compute_dtype, inp.dtype) + params["head"]["b"]  # [T, B, V]
    return jnp.swapaxes(logits, 0, 1), tuple(new_carry), recorded
