"""Fine-tuning: a new run that starts from another run's weights (`charlstm train NEW.txt --init-from RUN`).

The new run gets the source run's model section and weights, but a fresh optimizer state, learning-rate
schedule and data order from its own config. Its vocabulary is the source's; a corpus with characters the
source never saw is refused, or, with `extend_vocab`, the vocabulary grows to hold them. The vocabulary
stays sorted, so the old characters may move to new ids: every vocabulary-sized axis (the embedding, the
one-hot input table of layer 0, the head) is gathered row by row into the new order, and the new
characters' rows are the ones a fresh run of the new config would start with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from charlstm.config import Config
from charlstm.data.corpus import Vocab
from charlstm.errors import CorpusError
from charlstm.nn import model
from charlstm.training import checkpoint, loop
from charlstm.training.rundir import RunDir


@dataclass(frozen=True)
class Init:
    """Where a fine-tuning run starts: `run`'s checkpoint `which` ("latest", "best" or a step number)."""

    run: RunDir
    which: str = "latest"
    extend_vocab: bool = False


def adopt_vocab(
    init: Init, corpus_vocab: Vocab, train_ids: np.ndarray, val_ids: np.ndarray, corpus_path: Path
) -> tuple[Vocab, np.ndarray, np.ndarray]:
    """The new run's vocabulary (the source's, grown by `extend_vocab`) and the corpus ids re-encoded to it.

    `corpus_vocab` is the corpus's own vocabulary, which `train_ids` and `val_ids` are encoded with.
    """
    old = init.run.read_vocab()
    if corpus_vocab.encoding != old.encoding:  # the config check makes this rare: a run dir edited by hand
        raise CorpusError(
            f"{corpus_path} was read as {corpus_vocab.encoding} but run {init.run.path} reads {old.encoding}",
            f"pass --encoding {old.encoding}",
        )
    known = set(old.symbols)
    missing = [s for s in corpus_vocab.symbols if s not in known]
    if missing and not init.extend_vocab:
        shown = "".join(chr(s) for s in missing[:20]) if old.encoding == "utf-8" else str(missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise CorpusError(
            f"{corpus_path} has {len(missing)} characters the vocabulary of {init.run.path} lacks: {shown!r}{more}",
            "pass --extend-vocab to add them (their weights start as at init)",
        )
    vocab = Vocab(old.encoding, tuple(sorted(known | set(missing)))) if missing else old
    remap: np.ndarray = vocab.encode_points(np.asarray(corpus_vocab.symbols, dtype=np.int64)).astype(vocab.dtype)
    return vocab, remap[train_ids], remap[val_ids]


@dataclass(frozen=True)
class Source:
    """The weights a fine-tuning run starts from, in its vocabulary, and the checkpoint step they came from."""

    params: model.Params
    step: int


def load(init: Init, cfg: Config, vocab: Vocab) -> Source:
    """The source run's weights (its weight average with optim.ema: what it evaluates and samples with), with
    their vocabulary-sized axes laid out for `vocab`, a superset of the source's vocabulary."""
    restored = checkpoint.restore(init.run, int(init.which) if init.which.isdigit() else init.which)
    params = jax.device_get(restored.params)
    if restored.vocab != vocab:
        params = _extend(params, restored.vocab, vocab, jax.device_get(loop.initial_params(cfg, len(vocab))), cfg)
    return Source(jax.tree_util.tree_map(np.asarray, params), restored.step)


def _extend(params: model.Params, old: Vocab, new: Vocab, fresh: model.Params, cfg: Config) -> model.Params:
    """`params` (for `old`) with every vocabulary axis in `new`'s order: old rows where the symbol is known,
    `fresh`'s rows (a new run's initialisation for `new`) where it is not."""
    src = old.encode_points(np.asarray(new.symbols, dtype=np.int64))  # old id of each new id; -1: a new symbol
    known = src >= 0

    def rows(old_arr: np.ndarray, fresh_arr: np.ndarray, axis: int) -> np.ndarray:
        taken = np.take(np.asarray(old_arr), np.where(known, src, 0), axis=axis)
        shape = [1] * taken.ndim
        shape[axis] = len(new)
        return np.where(known.reshape(shape), taken, np.asarray(fresh_arr))

    out = {**params, "head": {**params["head"], "b": rows(params["head"]["b"], fresh["head"]["b"], 0)}}
    if "W" in params["head"]:  # absent with tie_embed: the head reads the embedding table
        out["head"]["W"] = rows(params["head"]["W"], fresh["head"]["W"], 1)
    if "embed" in params:
        out["embed"] = rows(params["embed"], fresh["embed"], 0)
    if cfg.model.embed == 0:  # one-hot input: layer 0's input table has one row per symbol
        layer0 = {**params["layers"][0], "W_ih": rows(params["layers"][0]["W_ih"], fresh["layers"][0]["W_ih"], 0)}
        out["layers"] = [layer0, *params["layers"][1:]]
    return out
