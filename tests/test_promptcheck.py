"""The prompt check: which sampled lines count as right, and the check as `charlstm train` reports it."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import pytest
from helpers import TINY_TRAIN, assert_ok, run_cli

from charlstm.config import ModelConfig
from charlstm.data import corpus, langcorpus
from charlstm.evaluation import promptcheck
from charlstm.nn import model


@pytest.mark.parametrize(
    "line",
    [
        "Jammu is a beautiful place where people speak Kashmiri.",
        "People in Jammu speak Kashmiri.",
        "Kashmiri is spoken in Jammu.",
        "I went to Jammu. I don't speak Kashmiri.",
        "I went to Jammu. It was fun. It was fun. It was fun. I don't speak Kashmiri.",
    ],
)
def test_every_line_form_of_the_corpus_with_the_right_language_is_right(line: str) -> None:
    assert promptcheck.right_line(line, "Jammu", "Kashmiri")


@pytest.mark.parametrize(
    "line",
    [
        "Jammu is a beautiful place where people speak Konkani.",  # another place's language
        "Jammu is spoken in Maharashtra.",  # a place read as a language
        "Jammu is a beautiful place where people speak Kashmiri",  # no full stop
        "Jammu is a beautiful place where people speak Kashmiri. It was fun.",  # more after the line's end
        "I went to Jammu. It was fun. It was fn. I don't speak Kashmiri.",  # a garbled filler
        "I went to Jammu. It was fun. I don't speak Kashmiri..",
        "I went to Goa. I don't speak Kashmiri.",
    ],
)
def test_wrong_or_garbled_lines_are_wrong(line: str) -> None:
    assert not promptcheck.right_line(line, "Jammu", "Kashmiri")
    assert not promptcheck.right_line(None, "Jammu", "Kashmiri")  # unfinished within the budget


def test_a_place_that_starts_its_language_name_may_go_on_as_the_language() -> None:
    assert promptcheck.right_line("Punjabi is spoken in Punjab.", "Punjab", "Punjabi")
    assert not promptcheck.right_line("Punjabi is spoken in Assam.", "Punjab", "Punjabi")


def test_check_covers_every_place_and_is_seeded() -> None:
    path = corpus.CORPORA_DIR / "languages.txt"
    vocab = corpus.build_vocab(corpus.to_points(corpus.read_bytes(path), "utf-8"), "utf-8")
    pairs = promptcheck.pairs_for(path, vocab)
    assert pairs is not None and [p for p, _ in pairs] == [p for p, _ in langcorpus.PAIRS]
    cfg = ModelConfig(cell="lstm", layers=1, hidden=16)
    params = model.init_params(cfg, len(vocab), jax.random.PRNGKey(0))
    a = promptcheck.run(params, cfg, vocab, pairs[:2], samples=4, seed=3)
    assert [p.place for p in a.places] == ["Jammu", "West Bengal"] and a.samples == 4
    assert all(0 <= p.line <= 1 and 0 <= p.went <= 1 for p in a.places)
    assert a == promptcheck.run(params, cfg, vocab, pairs[:2], samples=4, seed=3)
    cols, rows = promptcheck.rows(a)
    assert len(cols) == len(rows[0]) == 5 and rows[0][:2] == ["Jammu", "Kashmiri"]
    # a plain text without gap annotations has no check
    assert promptcheck.pairs_for(Path(__file__), vocab) is None


def test_train_on_the_bundled_corpus_reports_the_check(tmp_path: Path) -> None:
    args = ["train", *TINY_TRAIN, "--set", "train.prompt_check=true", "--runs-dir", tmp_path, "--name", "r"]
    proc = run_cli(args)
    assert_ok(proc)
    assert "prompt check" in proc.stderr and "Kashmiri" in proc.stderr
    saved = json.loads((tmp_path / "r" / "prompt_check.json").read_text(encoding="utf-8"))
    assert saved["samples"] == 20 and [p["place"] for p in saved["places"]] == [p for p, _ in langcorpus.PAIRS]
    proc = run_cli([*args[:-2], "--name", "j", "--json"])
    assert_ok(proc)
    summary = json.loads(proc.stdout)
    assert summary["prompt_check"]["places"][0]["language"] == "Kashmiri"
