"""`charlstm eval`: the loss of a trained run on any text file, state carried through the whole file."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from charlstm import events
from charlstm.config import ModelConfig
from charlstm.data import corpus
from charlstm.data.corpus import Vocab
from charlstm.errors import CorpusError
from charlstm.nn import model


@dataclass(frozen=True)
class EvalResult:
    nats_per_char: float
    chars_scored: int
    unknown_skipped: int  # symbols not in the vocabulary, dropped before scoring

    @property
    def bits_per_char(self) -> float:
        return events.bits(self.nats_per_char)

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats_per_char)


@functools.partial(jax.jit, static_argnames="cfg")
def _chunk_loss(
    params: model.Params, cfg: ModelConfig, carry: model.Carry, x: jax.Array, y: jax.Array, mask: jax.Array
) -> tuple[jax.Array, model.Carry]:
    # The weights are an argument, not a constant of the traced function: a second model of the same shape (or
    # a second `score` call) reuses the compilation.
    logits, carry = model.apply(params, x[None], carry, cfg)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits[0], y)
    return jnp.sum(loss * mask), carry


def score(params: model.Params, cfg: ModelConfig, ids: np.ndarray, chunk: int = 1024) -> float:
    """Mean next-character loss (nats) over `ids` as one stream (batch 1), in chunks with the state carried.

    The last partial chunk is zero-padded to the chunk length and masked, so one compiled function serves
    every chunk and every character after the first is scored exactly once.
    """
    carry = model.start_carry(params, cfg, 1)
    total = jnp.zeros(())
    n = len(ids) - 1
    for start in range(0, n, chunk):
        x = ids[start : start + chunk]
        y = ids[start + 1 : start + chunk + 1]
        m = len(y)
        pad = chunk - m
        x, y = np.pad(x[:m], (0, pad)), np.pad(y, (0, pad))
        loss, carry = _chunk_loss(params, cfg, carry, x, y, (np.arange(chunk) < m).astype(np.float32))
        total = total + loss
    return float(total) / n


def score_file(
    params: model.Params, cfg: ModelConfig, vocab: Vocab, path: Path, skip_unknown: bool = False, chunk: int = 1024
) -> EvalResult:
    """Score a text file with a trained model."""
    data = corpus.read_bytes(path, "file")
    points = corpus.to_points(data, vocab.encoding, str(path), "re-save the file as UTF-8: this run reads UTF-8 text")
    return score_points(params, cfg, vocab, points, str(path), skip_unknown, chunk)


def score_text(
    params: model.Params, cfg: ModelConfig, vocab: Vocab, text: str, skip_unknown: bool = False, chunk: int = 1024
) -> EvalResult:
    """Score a string with a trained model."""
    points = corpus.to_points(corpus.text_bytes(text), vocab.encoding)
    return score_points(params, cfg, vocab, points, "the text", skip_unknown, chunk)


def score_points(
    params: model.Params,
    cfg: ModelConfig,
    vocab: Vocab,
    points: np.ndarray,
    source: str,
    skip_unknown: bool = False,
    chunk: int = 1024,
) -> EvalResult:
    """Score symbols (`corpus.to_points`); unknown ones are a CorpusError, or dropped and counted (`skip_unknown`)."""
    ids, unknown = corpus.known_ids(
        vocab,
        points,
        source=source,
        skip_unknown=skip_unknown,
        error=CorpusError,
        hint="pass --skip-unknown to drop and count them",
    )
    if len(ids) < 2:
        raise CorpusError(f"{source} has fewer than 2 scorable characters", "pass a longer text")
    return EvalResult(score(params, cfg, ids, chunk), len(ids) - 1, unknown)
