"""`eval`: chunked scoring with the state carried equals one pass over the whole text."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from charlstm import config
from charlstm.data.corpus import Vocab
from charlstm.errors import CorpusError
from charlstm.evaluation import scoring
from charlstm.nn import model

VOCAB = Vocab("utf-8", tuple(sorted(ord(c) for c in "abcde \n")))


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [7, 16, 100])
def test_chunked_score_equals_one_pass(chunk: int) -> None:
    cfg = config.ModelConfig(cell="lstm", layers=2, hidden=12)
    params = model.init_params(cfg, len(VOCAB), jax.random.PRNGKey(0))
    ids = np.random.default_rng(0).integers(0, len(VOCAB), size=53).astype(np.int32)
    logits, _ = model.apply(params, jnp.asarray(ids[:-1])[None], model.zeros_carry(cfg, 1), cfg)
    want = float(optax.softmax_cross_entropy_with_integer_labels(logits[0], jnp.asarray(ids[1:])).mean())
    assert scoring.score(params, cfg, ids, chunk=chunk) == pytest.approx(want, rel=1e-5)


def test_unknown_characters_error_or_are_counted(tmp_path: Path) -> None:
    cfg = config.ModelConfig(cell="gru", layers=1, hidden=8)
    params = model.init_params(cfg, len(VOCAB), jax.random.PRNGKey(0))
    f = tmp_path / "t.txt"
    f.write_text("abc xyz dea\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="3 characters not in the run's vocabulary"):
        scoring.score_file(params, cfg, VOCAB, f)
    res = scoring.score_file(params, cfg, VOCAB, f, skip_unknown=True)
    assert res.unknown_skipped == 3 and res.chars_scored == len("abc  dea\n") - 1
    assert res.bits_per_char == pytest.approx(res.nats_per_char / np.log(2))
