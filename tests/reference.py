"""An independent float64 NumPy reference for the model maths, used by the numerical tests.

Written from PyTorch's documented equations (nn.LSTM, nn.GRU, nn.RNN with tanh), in PyTorch's parameter layout:
weight_ih [G*H, In], weight_hh [G*H, H], bias_ih [G*H], bias_hh [G*H], gates stacked along the rows
(LSTM i, f, g, o; GRU r, z, n). It deliberately does not import charlstm.nn.cells or charlstm.nn.export, so a
mistake there shows up as a disagreement with this file rather than being copied into it.

A state is a tuple per layer: (h, c) for an LSTM, (h,) for a GRU or an RNN, each [B, H].
"""

from __future__ import annotations

import numpy as np

N_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _rows(w: np.ndarray, k: int, h: int) -> np.ndarray:
    """The k-th gate block of a stacked [G*H, ...] weight (or [..., G*H] pre-activation, via the last axis)."""
    return w[..., k * h : (k + 1) * h]


def lstm_step(x, state, w_ih, w_hh, b_ih, b_hh):
    """nn.LSTM: i,f,o = sigma(...), g = tanh(...), c' = f*c + i*g, h' = o*tanh(c')."""
    h, c = state
    hid = h.shape[-1]
    pre = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f = sigmoid(_rows(pre, 0, hid)), sigmoid(_rows(pre, 1, hid))
    g, o = np.tanh(_rows(pre, 2, hid)), sigmoid(_rows(pre, 3, hid))
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    return (h_new, c_new), {"i": i, "f": f, "g": g, "o": o, "c": c_new, "h": h_new}


def gru_step(x, state, w_ih, w_hh, b_ih, b_hh):
    """nn.GRU: r,z = sigma(W_i x + b_i + W_h h + b_h), n = tanh(W_in x + b_in + r*(W_hn h + b_hn)),
    h' = (1-z)*n + z*h."""
    (h,) = state
    hid = h.shape[-1]
    gi = x @ w_ih.T + b_ih
    gh = h @ w_hh.T + b_hh
    r = sigmoid(_rows(gi, 0, hid) + _rows(gh, 0, hid))
    z = sigmoid(_rows(gi, 1, hid) + _rows(gh, 1, hid))
    n = np.tanh(_rows(gi, 2, hid) + r * _rows(gh, 2, hid))
    h_new = (1.0 - z) * n + z * h
    return (h_new,), {"r": r, "z": z, "n": n, "h": h_new}


def rnn_step(x, state, w_ih, w_hh, b_ih, b_hh):
    """nn.RNN(nonlinearity='tanh'): h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""
    (h,) = state
    h_new = np.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
    return (h_new,), {"h": h_new}


STEP = {"lstm": lstm_step, "gru": gru_step, "rnn": rnn_step}


def zero_state(cell: str, batch: int, hidden: int) -> tuple[np.ndarray, ...]:
    h = np.zeros((batch, hidden))
    return (h, h.copy()) if cell == "lstm" else (h,)


def one_hot(ids: np.ndarray, n: int) -> np.ndarray:
    return (np.asarray(ids)[..., None] == np.arange(n)).astype(np.float64)


def run_layer(cell, xs, state, w_ih, w_hh, b_ih, b_hh):
    """One layer over time-major inputs xs [T, B, In] (float) or [T, B] (integer ids, one-hot encoded).

    Returns (traces, final_state): traces maps each recordable name to a time-major [T, B, H] array.
    """
    w_ih, w_hh, b_ih, b_hh = (np.asarray(a, dtype=np.float64) for a in (w_ih, w_hh, b_ih, b_hh))
    xs = np.asarray(xs)
    if np.issubdtype(xs.dtype, np.integer):
        xs = one_hot(xs, w_ih.shape[1])
    state = tuple(np.asarray(s, dtype=np.float64) for s in state)
    steps = []
    for x in xs.astype(np.float64):
        state, out = STEP[cell](x, state, w_ih, w_hh, b_ih, b_hh)
        steps.append(out)
    traces = {name: np.stack([s[name] for s in steps]) for name in steps[0]}
    return traces, state


def num_layers(sd: dict) -> int:
    return sum(1 for key in sd if key.startswith("rnn.weight_ih_l"))


def run_network(sd: dict, cell: str, ids: np.ndarray, state=None):
    """The stacked model on a PyTorch-layout state dict (keys as documented in charlstm.nn.export).

    ids [B, T] -> embedding lookup -> L recurrent layers -> linear head.
    Returns (logits [B, T, V], final states (one tuple per layer), traces: per layer a dict of [B, T, H]).
    """
    ids = np.asarray(ids)
    emb = np.asarray(sd["embedding.weight"], dtype=np.float64)
    inp = emb[ids.T]  # [T, B, E]: an embedding lookup (one-hot times the identity, for our export)
    n_layers = num_layers(sd)
    if state is None:  # the exported start state (h0, c0: [L, H]), the same for every sequence of the batch
        names = ("h0", "c0") if cell == "lstm" else ("h0",)
        state = [
            tuple(np.repeat(np.asarray(sd[n], np.float64)[k][None], ids.shape[0], axis=0) for n in names)
            for k in range(n_layers)
        ]
    finals, all_traces = [], []
    for k in range(n_layers):
        w = [sd[f"rnn.{name}_l{k}"] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        traces, final = run_layer(cell, inp, state[k], *w)
        finals.append(final)
        all_traces.append({name: np.swapaxes(v, 0, 1) for name, v in traces.items()})
        inp = traces["h"]
    w_head = np.asarray(sd["head.weight"], dtype=np.float64)
    logits = inp @ w_head.T + np.asarray(sd["head.bias"], dtype=np.float64)
    return np.swapaxes(logits, 0, 1), tuple(finals), all_traces


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean -log softmax(logits)[target], computed stably."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_probs, np.asarray(targets)[..., None], axis=-1)
    return float(-picked.mean())


def _transpose(a) -> np.ndarray:
    """[m, n] -> [n, m], element by element (kept explicit: this is the conversion under test)."""
    a = np.asarray(a, dtype=np.float64)
    out = np.empty((a.shape[1], a.shape[0]))
    for r in range(a.shape[0]):
        out[:, r] = a[r, :]
    return out


def layer_to_torch(cell: str, p: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One charlstm layer (W_ih [In, G*H], W_hh [H, G*H], b or b_ih/b_hh) -> (weight_ih, weight_hh, bias_ih, bias_hh).

    charlstm keeps one fused bias for the LSTM and the RNN; it goes to bias_ih and bias_hh is zero.
    """
    w_ih, w_hh = _transpose(p["W_ih"]), _transpose(p["W_hh"])
    assert w_ih.shape[0] == N_GATES[cell] * w_hh.shape[1], "gate axis does not match the cell type"
    if cell == "gru":
        b_ih, b_hh = np.array(p["b_ih"], dtype=np.float64), np.array(p["b_hh"], dtype=np.float64)
    else:
        b_ih = np.array(p["b"], dtype=np.float64)
        b_hh = np.zeros_like(b_ih)
    return w_ih, w_hh, b_ih, b_hh


def state_dict_from_params(params: dict, cell: str, vocab_size: int) -> dict[str, np.ndarray]:
    """charlstm params -> the PyTorch state dict of charlstm.nn.export.torch_state_dict, built independently."""
    embed = params.get("embed")
    sd = {"embedding.weight": np.identity(vocab_size) if embed is None else np.array(embed, dtype=np.float64)}
    for k, p in enumerate(params["layers"]):
        for name, arr in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), layer_to_torch(cell, p)):
            sd[f"rnn.{name}_l{k}"] = arr
    sd["head.weight"] = _transpose(params["head"]["W"])
    sd["head.bias"] = np.array(params["head"]["b"], dtype=np.float64)
    hidden = np.asarray(params["layers"][0]["W_hh"]).shape[0]
    for name in ("h", "c") if cell == "lstm" else ("h",):  # the start state; zeros where it is not learned
        rows = (
            [np.asarray(s[name], np.float64) for s in params["start"]]
            if "start" in params
            else [np.zeros(hidden) for _ in params["layers"]]
        )
        sd[f"{name}0"] = np.stack(rows)
    return sd
