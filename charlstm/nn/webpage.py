"""`charlstm export --out model.html`: a trained model as one web page that generates text in any browser.

The page is self-contained (no network, no server; it opens from `file://`): the weights are embedded as base64
float32, little-endian, one buffer with a table of where each array starts; `web/model.js` computes the
network with the equations of `cells.py` one character at a time, and `web/page.html` is the form around it
(prompt, length, temperature, top-k, top-p, greedy, seed, Generate and Stop, text streamed as it comes).
float32 keeps the page's log-probabilities within 1e-5 nats of charlstm's for a float32 model; float16 would
halve the page but move them by about 1e-3 (and the greedy text with them).
"""

from __future__ import annotations

import base64
import json
from importlib import resources
from pathlib import Path

import numpy as np

from charlstm.config import Config
from charlstm.data.corpus import Vocab
from charlstm.nn import model


def arrays(params: model.Params, cfg: Config) -> dict[str, np.ndarray]:
    """The arrays the page reads, by name: the embedding folded into layer 0's input table and the head made
    explicit (`model.folded`), so the page never needs the embedding; the start state when it is learned."""
    folded = model.folded(params)
    out: dict[str, np.ndarray] = {}
    for n, layer in enumerate(folded["layers"]):
        out.update({f"layers.{n}.{name}": np.asarray(value, np.float32) for name, value in layer.items()})
    out["head.W"] = np.asarray(folded["head"]["W"], np.float32)
    out["head.b"] = np.asarray(folded["head"]["b"], np.float32)
    if cfg.model.start_state == "learned":
        for n, state in enumerate(folded["start"]):
            out.update({f"start.{n}.{name}": np.asarray(value, np.float32) for name, value in state.items()})
    return out


def page(params: model.Params, cfg: Config, vocab: Vocab, about: str = "") -> str:
    """The whole HTML page of a model."""
    return _page(arrays(params, cfg), cfg, vocab, about)


def _page(named: dict[str, np.ndarray], cfg: Config, vocab: Vocab, about: str) -> str:
    table: dict[str, list[int]] = {}
    offset = 0
    for name, a in named.items():
        rows, cols = (a.shape[0], a.shape[1]) if a.ndim == 2 else (1, a.shape[0])
        table[name] = [offset, rows, cols]
        offset += a.size
    weights = np.concatenate([a.ravel() for a in named.values()]).astype("<f4")
    spec = {
        "cell": cfg.model.cell,
        "layers": cfg.model.layers,
        "hidden": cfg.model.hidden,
        "layer_norm": cfg.model.layer_norm,
        "vocab": {"encoding": vocab.encoding, "symbols": list(vocab.symbols)},
        "arrays": table,
        "about": about,
    }
    web = resources.files("charlstm.nn") / "web"
    html = (web / "page.html").read_text(encoding="utf-8")
    script = (web / "model.js").read_text(encoding="utf-8")
    # "<" escaped: nothing in the JSON can close its script element.
    spec_json = json.dumps(spec, separators=(",", ":")).replace("<", "\\u003c")
    return (
        html.replace("/*MODEL_JS*/", script)
        .replace("/*SPEC*/", spec_json)
        .replace("/*WEIGHTS*/", base64.b64encode(weights.tobytes()).decode("ascii"))
    )


def export_html(params: model.Params, cfg: Config, vocab: Vocab, path: Path, about: str = "") -> dict[str, np.ndarray]:
    """Write the page to `path` (via a temporary file, so a failed write leaves no half page); the arrays it
    holds, by name."""
    named = arrays(params, cfg)
    text = _page(named, cfg, vocab, about)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return named
