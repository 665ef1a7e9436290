"""`charlstm export`: trained weights in PyTorch's own parameter layout and names, as .npz.

The layout matches this PyTorch module (see the README for the loading snippet):

    embedding = nn.Embedding(V, E)          # E = model.embed; with embed 0, E = V and the table is the identity
    rnn = nn.LSTM(E, H, num_layers=L)       # or nn.GRU / nn.RNN(nonlinearity="tanh")
    head = nn.Linear(H, V)

Keys: embedding.weight [V, E]; rnn.weight_ih_l{k} [G*H, In]; rnn.weight_hh_l{k} [G*H, H]; rnn.bias_ih_l{k},
rnn.bias_hh_l{k} [G*H]; head.weight [V, H]; head.bias [V]; h0 (and c0 for an LSTM) [L, H], the start state
every sequence is read from (pass h0[:, None].expand(L, B, H) as the initial state). Gate order is PyTorch's (LSTM i,f,g,o; GRU r,z,n),
which is also ours, so each matrix is only transposed. Metadata: `vocab_json` (the vocabulary) and
`config_json` (the run's config) as 0-d string arrays.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from charlstm import model
from charlstm.config import Config
from charlstm.corpus import Vocab
from charlstm.errors import UserError


def torch_state_dict(params: model.Params, cfg: Config, vocab_size: int) -> dict[str, np.ndarray]:
    """Our parameters renamed and transposed into PyTorch's layout (float32 NumPy arrays)."""
    if cfg.model.layer_norm:
        raise UserError("this run uses model.layer_norm, which PyTorch's nn.LSTM has no place for",
                        "export a run trained without layer_norm")
    embed = params.get("embed")  # a learned table, or the identity for one-hot input
    sd: dict[str, np.ndarray] = {
        "embedding.weight": np.eye(vocab_size, dtype=np.float32) if embed is None else np.asarray(embed, np.float32)
    }
    for k, p in enumerate(params["layers"]):
        p = {name: np.asarray(v, dtype=np.float32) for name, v in p.items()}
        sd[f"rnn.weight_ih_l{k}"] = p["W_ih"].T.copy()
        sd[f"rnn.weight_hh_l{k}"] = p["W_hh"].T.copy()
        if cfg.model.cell == "gru":
            sd[f"rnn.bias_ih_l{k}"], sd[f"rnn.bias_hh_l{k}"] = p["b_ih"], p["b_hh"]
        else:  # one fused bias here; PyTorch adds two, so the second is zero
            sd[f"rnn.bias_ih_l{k}"], sd[f"rnn.bias_hh_l{k}"] = p["b"], np.zeros_like(p["b"])
    sd["head.weight"] = np.asarray(model.head_weight(params), dtype=np.float32).T.copy()
    sd["head.bias"] = np.asarray(params["head"]["b"], dtype=np.float32)
    # The start state as nn.LSTM's (h0, c0) take it, less the batch axis: [layers, H] each (zeros if not learned).
    for k, name in enumerate(model.state_names(cfg.model.cell)):
        sd[f"{name}0"] = np.stack([np.asarray(c[k][0], np.float32) for c in model.start_carry(params, cfg.model, 1)])
    return sd


def export_npz(params: model.Params, cfg: Config, vocab: Vocab, path: Path) -> dict[str, np.ndarray]:
    """Write the PyTorch-layout weights plus vocabulary and config to `path` (.npz); return the arrays."""
    sd = torch_state_dict(params, cfg, len(vocab))
    meta = {"vocab_json": np.array(vocab.to_json()), "config_json": np.array(json.dumps(cfg.model_dump()))}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **sd, **meta)
        tmp.replace(path)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}", "choose another --out path") from None
    return sd
