"""Long-range dependency accuracy: does the model name the right language, many characters after the place?

For each annotated paragraph of the bundled corpus (see `langcorpus`), the model reads the text before the
language word and then scores every candidate language word (with the character that follows it, so words of
different lengths compete fairly). It is right when the true language is the most likely candidate; chance is
one over the number of languages. Results are bucketed by the gap between place and language.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from charlstm.config import ModelConfig
from charlstm.data import langcorpus
from charlstm.data.corpus import Vocab
from charlstm.nn import model

BUCKETS: tuple[tuple[int, int], ...] = ((0, 25), (25, 50), (50, 100), (100, 200), (200, 1 << 30))


def bucket_label(lo: int, hi: int) -> str:
    return f"<{hi}" if lo == 0 else f"{lo}+" if hi >= 1 << 30 else f"{lo}-{hi}"


def bucket_of(gap: int, buckets: tuple[tuple[int, int], ...] = BUCKETS) -> int:
    """Index of the [lo, hi) bucket holding `gap`."""
    for k, (lo, hi) in enumerate(buckets):
        if lo <= gap < hi:
            return k
    raise ValueError(f"gap {gap} is in no bucket")


@dataclass(frozen=True)
class BucketResult:
    label: str
    count: int
    accuracy: float  # share of records whose true language is the top candidate (nan if empty)
    loss: float  # mean -log P(true word + next char | context), nats per word (nan if empty)


def gaps_file_for(corpus_path: Path) -> Path | None:
    """The gap annotations next to a corpus (`<stem>.gaps.json`), if there are any."""
    p = corpus_path.with_name(corpus_path.stem + ".gaps.json")
    return p if p.exists() else None


def select_records(
    records: list[langcorpus.GapRecord], start: int, end: int, context: int
) -> list[langcorpus.GapRecord]:
    """Records whose context window and language word lie within text[start:end] (e.g. the validation split)."""
    return [r for r in records if r.language_start - context >= start and r.language_end + 1 <= end]


def score_records(
    params: model.Params,
    cfg: ModelConfig,
    vocab: Vocab,
    text: str,
    records: list[langcorpus.GapRecord],
    languages: list[str],
    context: int = 320,
) -> tuple[np.ndarray, np.ndarray]:
    """Per record: (correct?, loss of the true word). The model reads `context` characters before each word."""
    ctx = np.stack([vocab.encode(text[r.language_start - context : r.language_start]) for r in records]).astype(
        np.int32
    )
    terminators = [text[r.language_end] for r in records]
    truth = np.array([languages.index(r.language) for r in records])
    words = [w + t for t in terminators for w in languages]  # [record, candidate] flattened
    width = max(len(w) for w in words)
    ids = np.zeros((len(words), width), np.int32)
    mask = np.zeros((len(words), width), np.float32)
    for k, w in enumerate(words):
        ids[k, : len(w)] = vocab.encode(w)
        mask[k, : len(w)] = 1.0
    if (ctx < 0).any() or (ids < 0).any():
        raise ValueError("the vocabulary lacks characters of the annotated text")
    nll = np.asarray(_candidate_nll(params, cfg, jnp.asarray(ctx), jnp.asarray(ids), jnp.asarray(mask), len(languages)))
    return nll.argmin(axis=1) == truth, nll[np.arange(len(records)), truth]


def _candidate_nll(
    params: model.Params, cfg: ModelConfig, ctx: jax.Array, ids: jax.Array, mask: jax.Array, n_cand: int
) -> jax.Array:
    """-log P(candidate) for every (record, candidate): [records, candidates]."""
    logits, carry = model.apply(params, ctx, model.start_carry(params, cfg, ctx.shape[0]), cfg)
    first = jnp.repeat(logits[:, -1], n_cand, axis=0)  # predicts each candidate's first character
    carry = jax.tree_util.tree_map(lambda c: jnp.repeat(c, n_cand, axis=0), carry)
    rest, _ = model.apply(params, ids[:, :-1], carry, cfg)
    all_logits = jnp.concatenate([first[:, None], rest], axis=1)
    nll = optax.softmax_cross_entropy_with_integer_labels(all_logits, ids) * mask
    return nll.sum(axis=1).reshape(-1, n_cand)


def accuracy_by_gap(
    params: model.Params,
    cfg: ModelConfig,
    vocab: Vocab,
    text: str,
    gaps_path: Path,
    start: int = 0,
    end: int | None = None,
    context: int = 320,
    max_records: int = 600,
) -> list[BucketResult]:
    """Accuracy and loss at the language word per gap bucket, over records in text[start:end]."""
    records = langcorpus.load_gaps(gaps_path)
    languages = sorted({r.language for r in records})
    chosen = select_records(records, start, len(text) if end is None else end, context)[:max_records]
    if not chosen:
        return []
    correct, loss = score_records(params, cfg, vocab, text, chosen, languages, context)
    out = []
    which = np.array([bucket_of(r.gap) for r in chosen])
    for k, (lo, hi) in enumerate(BUCKETS):
        sel = which == k
        n = int(sel.sum())
        out.append(
            BucketResult(
                bucket_label(lo, hi),
                n,
                float(correct[sel].mean()) if n else float("nan"),
                float(loss[sel].mean()) if n else float("nan"),
            )
        )
    return out
