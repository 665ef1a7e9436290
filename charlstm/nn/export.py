"""`charlstm export`: trained weights in PyTorch's parameter layout and names, in one of two forms.

A directory (`export_dir`), for every model: model.safetensors, config.json, vocab.json and charlstm_torch.py, a
self-contained PyTorch module (shipped in this package and copied out) whose `load(dir)` returns the network with
these weights, ready to score and sample. Its tensor names are its own state dict's (`torch_tensors`).

A .npz file (`export_npz`), for the plain cells: the arrays of this PyTorch module, with the vocabulary and config.
The layout matches:

    embedding = nn.Embedding(V, E)          # E = model.embed; with embed 0, E = V and the table is the identity
    rnn = nn.LSTM(E, H, num_layers=L)       # or nn.GRU / nn.RNN(nonlinearity="tanh")
    head = nn.Linear(H, V)

Keys: embedding.weight [V, E]; rnn.weight_ih_l{k} [G*H, In]; rnn.weight_hh_l{k} [G*H, H]; rnn.bias_ih_l{k},
rnn.bias_hh_l{k} [G*H]; head.weight [V, H]; head.bias [V]; h0 (and c0 for an LSTM) [L, H], the start state
every sequence is read from (pass h0[:, None].expand(L, B, H) as the initial state). Gate order is PyTorch's
(LSTM i,f,g,o; GRU r,z,n), which is also ours, so each matrix is only transposed. Metadata: `vocab_json` (the
vocabulary) and `config_json` (the run's config) as 0-d string arrays.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from charlstm.config import Config
from charlstm.data.corpus import Vocab
from charlstm.errors import UserError
from charlstm.nn import model

TORCH_FILES = ("model.safetensors", "config.json", "vocab.json", "charlstm_torch.py")


def torch_state_dict(params: model.Params, cfg: Config, vocab_size: int) -> dict[str, np.ndarray]:
    """Our parameters renamed and transposed into PyTorch's layout (float32 NumPy arrays), for the .npz file."""
    if cfg.model.layer_norm:
        raise UserError(
            "this run uses model.layer_norm, which PyTorch's nn.LSTM has no place for",
            "export to a directory (--out DIR): it comes with a PyTorch module for layer-normalised LSTMs",
        )
    embed = params.get("embed")  # a learned table, or the identity for one-hot input
    sd: dict[str, np.ndarray] = {
        "embedding.weight": np.eye(vocab_size, dtype=np.float32) if embed is None else np.asarray(embed, np.float32)
    }
    for k, p in enumerate(params["layers"]):
        sd.update(_layer_tensors(k, p, cfg.model.cell))
    sd["head.weight"] = np.asarray(model.head_weight(params), dtype=np.float32).T.copy()
    sd["head.bias"] = np.asarray(params["head"]["b"], dtype=np.float32)
    sd.update(_start_tensors(params, cfg))
    return sd


def _layer_tensors(k: int, params: dict[str, Any], cell: str) -> dict[str, np.ndarray]:
    """Layer k as nn.LSTM / nn.GRU / nn.RNN name it, or as charlstm_torch.LayerNormLSTM does when normalised."""
    p = {name: np.asarray(v, dtype=np.float32) for name, v in params.items()}
    sd = {f"rnn.weight_ih_l{k}": p["W_ih"].T.copy(), f"rnn.weight_hh_l{k}": p["W_hh"].T.copy()}
    if "gain_hh" in p:  # layer-normalised: one bias, and the gains and shift of the normalisations
        sd.update(
            {
                f"rnn.bias_l{k}": p["b"],
                f"rnn.gain_ih_l{k}": p["gain_ih"],
                f"rnn.gain_hh_l{k}": p["gain_hh"],
                f"rnn.gain_c_l{k}": p["gain_c"],
                f"rnn.bias_c_l{k}": p["b_c"],
            }
        )
    elif cell == "gru":
        sd[f"rnn.bias_ih_l{k}"], sd[f"rnn.bias_hh_l{k}"] = p["b_ih"], p["b_hh"]
    else:  # one fused bias here; PyTorch adds two, so the second is zero
        sd[f"rnn.bias_ih_l{k}"], sd[f"rnn.bias_hh_l{k}"] = p["b"], np.zeros_like(p["b"])
    return sd


def _start_tensors(params: model.Params, cfg: Config) -> dict[str, np.ndarray]:
    """The start state as nn.LSTM's (h0, c0) take it, less the batch axis: [layers, H] each (zeros if not learned)."""
    carry = model.start_carry(params, cfg.model, 1)
    return {
        f"{name}0": np.stack([np.asarray(c[k][0], np.float32) for c in carry])
        for k, name in enumerate(model.state_names(cfg.model.cell))
    }


def torch_tensors(params: model.Params, cfg: Config) -> dict[str, np.ndarray]:
    """The state dict of charlstm_torch.CharRNN for these parameters (float32 NumPy arrays, PyTorch layout).

    Unlike the .npz layout, a one-hot model has no embedding table (the module one-hot encodes its input) and a
    tied model no head.weight (the module reads the embedding table, scaled as `model.head_weight` scales it).
    """
    sd: dict[str, np.ndarray] = {}
    if "embed" in params:
        sd["embedding.weight"] = np.asarray(params["embed"], np.float32)
    for k, p in enumerate(params["layers"]):
        sd.update(_layer_tensors(k, p, cfg.model.cell))
    if "W" in params["head"]:
        sd["head.weight"] = np.asarray(params["head"]["W"], np.float32).T.copy()
    sd["head.bias"] = np.asarray(params["head"]["b"], np.float32)
    sd.update(_start_tensors(params, cfg))
    return sd


def export_dir(params: model.Params, cfg: Config, vocab: Vocab, out: Path) -> dict[str, np.ndarray]:
    """Write model.safetensors, config.json, vocab.json and charlstm_torch.py into `out` (made if needed; other
    files there are left alone); return the tensors written, by name."""
    from safetensors.numpy import save

    tensors = torch_tensors(params, cfg)
    template = resources.files("charlstm").joinpath("charlstm_torch.py")
    try:
        out.mkdir(parents=True, exist_ok=True)
        # Each file is written beside its final name and renamed: a reader never sees half a file. Metadata
        # "format": "pt" says the tensors are PyTorch's, which safetensors' own loaders look for.
        _write_bytes(out / "model.safetensors", save(tensors, metadata={"format": "pt"}))
        _write_text(out / "config.json", json.dumps(cfg.model_dump(), indent=1) + "\n")
        _write_text(out / "vocab.json", vocab.to_json() + "\n")
        _write_bytes(out / "charlstm_torch.py", template.read_bytes())
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror}", "choose another --out directory") from None
    return tensors


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def export_npz(params: model.Params, cfg: Config, vocab: Vocab, path: Path) -> dict[str, np.ndarray]:
    """Write the PyTorch-layout weights plus vocabulary and config to `path` (.npz); return the arrays."""
    sd = torch_state_dict(params, cfg, len(vocab))
    meta = {"vocab_json": np.array(vocab.to_json()), "config_json": np.array(json.dumps(cfg.model_dump()))}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **sd, **meta)  # type: ignore[arg-type]  # numpy's stub reads **arrays as its allow_pickle flag
        tmp.replace(path)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}", "choose another --out path") from None
    return sd
