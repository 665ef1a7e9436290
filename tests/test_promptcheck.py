"""The prompt check: which sampled lines count as right, and the check as `charlstm train` reports it."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import jax
import pytest
from helpers import TINY_TRAIN, assert_ok, run_cli

from charlstm.config import ModelConfig
from charlstm.data import corpus, essaycorpus, langcorpus
from charlstm.evaluation import promptcheck
from charlstm.nn import model


@pytest.mark.parametrize(
    ("continuation", "first"),
    [
        (" Kashmiri language.", "Kashmiri"),
        (" local Kashmiri, and some Punjabi.", "Kashmiri"),  # the first one named counts
        (" Punjabi and Kashmiri.", "Punjabi"),
        (" language of the hills.\nPeople in Jammu speak Kashmiri.", None),  # only the prompt's own line counts
        (" people of Tamil Nadu.", None),  # a place, not the language Tamil
        (" Tamil, like everyone in Tamil Nadu.", "Tamil"),
        (" Odiashire.", None),  # a word that only starts like a language
        ("", None),
    ],
)
def test_the_first_language_named_on_the_line_is_the_answer(continuation: str, first: str | None) -> None:
    assert promptcheck.first_language(continuation) == first


def test_a_language_name_may_begin_in_the_prompt() -> None:
    assert promptcheck.first_language("i is spoken in Punjab.", "Punjab") == "Punjabi"
    assert promptcheck.first_language("ese.", "Assam") == "Assamese"
    assert promptcheck.first_language(" Nadu.", "Tamil") is None  # the place Tamil Nadu
    assert promptcheck.first_language(" and Odia.", "I speak Punjabi") == "Odia"  # the prompt's own is not counted


def test_heldout_sentences_ask_every_place_twice_and_use_no_shape_of_the_corpora() -> None:
    prompts = promptcheck.heldout_prompts()
    assert sorted(Counter(place for _, place, _ in prompts).values()) == [2] * len(langcorpus.PAIRS)
    e = essaycorpus
    pieces = [*e.OPENINGS, *e.MIDDLES, *e.CLOSINGS, *e.ASSOCIATIONS, *langcorpus.ASSOCIATIONS, e.ESSAY]
    for prompt, place, _ in prompts:
        assert place in prompt and promptcheck.first_language(prompt) is None  # the prompt names no language
        for piece in pieces:
            # The longest slot-free run of each generator sentence must not occur in a held-out prompt.
            fixed = max(re.split(r"\{[a-z]+\}", piece.strip()), key=len).strip()
            assert len(fixed) < 12 or fixed not in prompt, (fixed, prompt)


def _vocab(name: str) -> corpus.Vocab:
    return corpus.build_vocab(corpus.to_points(corpus.read_bytes(corpus.CORPORA_DIR / name), "utf-8"), "utf-8")


@pytest.mark.slow
def test_check_covers_every_place_and_kind_and_is_seeded() -> None:
    path = corpus.CORPORA_DIR / "essay.txt"
    vocab = _vocab("essay.txt")
    pairs = promptcheck.pairs_for(path, vocab)
    assert pairs is not None and [p for p, _ in pairs] == [p for p, _ in langcorpus.PAIRS]
    cfg = ModelConfig(cell="lstm", layers=1, hidden=16)
    params = model.init_params(cfg, len(vocab), jax.random.PRNGKey(0))
    a = promptcheck.run(params, cfg, vocab, pairs[:2], samples=4, seed=3)
    assert [p.prompt for p in a.places] == ["Jammu", "West Bengal"] and a.samples == 4
    assert [w.prompt for w in a.went] == ["I went to Jammu", "I went to West Bengal"]
    assert [e.prompt for e in a.essay] == [promptcheck.ESSAY_PROMPT.format(p=p) for p in ("Jammu", "West Bengal")]
    assert {h.language for h in a.heldout} == {"Kashmiri", "Bengali"} and len(a.heldout) == 4
    assert [kind for kind, _ in a.results()] == ["places"] * 2 + ["went"] * 2 + ["essay"] * 2 + ["heldout"] * 4
    assert all(0 <= r.right <= 1 for _, r in a.results())
    assert a == promptcheck.run(params, cfg, vocab, pairs[:2], samples=4, seed=3)
    cols, rows = promptcheck.rows(a)
    assert len(cols) == len(rows[0]) == 6 and rows[0][:2] == ["Jammu", "Kashmiri"]
    # a plain text without gap annotations has no check
    assert promptcheck.pairs_for(Path(__file__), vocab) is None


@pytest.mark.slow
def test_a_vocabulary_without_the_essays_characters_checks_the_prompts_it_can_read() -> None:
    vocab = _vocab("languages.txt")  # no comma: the essay's sentence and the held-out sentences cannot be read
    pairs = promptcheck.pairs_for(corpus.CORPORA_DIR / "languages.txt", vocab)
    assert pairs is not None
    cfg = ModelConfig(cell="lstm", layers=1, hidden=16)
    params = model.init_params(cfg, len(vocab), jax.random.PRNGKey(0))
    a = promptcheck.run(params, cfg, vocab, pairs[:1], samples=2)
    assert len(a.places) == len(a.went) == 1 and a.essay == [] and a.heldout == []
    assert promptcheck.rows(a)[1][0][4:] == ["—", "—"]
    assert math.isnan(a.heldout_mean()) and math.isnan(a.essay_mean())


@pytest.mark.slow
def test_train_on_the_bundled_corpora_reports_the_check(tmp_path: Path) -> None:
    check_on = ["--set", "train.prompt_check=true"]
    args = ["train", "languages", *TINY_TRAIN, *check_on, "--runs-dir", tmp_path, "--name", "r"]
    proc = run_cli(args)
    assert_ok(proc)
    assert "prompt check" in proc.stderr and "Kashmiri" in proc.stderr
    saved = json.loads((tmp_path / "r" / "prompt_check.json").read_text(encoding="utf-8"))
    assert saved["samples"] == 20 and [p["prompt"] for p in saved["places"]] == [p for p, _ in langcorpus.PAIRS]
    assert len(saved["went"]) == 12 and saved["essay"] == []  # the plain corpus has no comma
    # the default (essay) corpus reads every prompt: --json carries the essay's sentence and the held-out sentences
    proc = run_cli(["train", *args[2:-2], "--name", "j", "--json"])
    assert_ok(proc)
    check = json.loads(proc.stdout)["prompt_check"]
    assert check["places"][0]["language"] == "Kashmiri" and len(check["essay"]) == 12
    assert len(check["heldout"]) == len(promptcheck.heldout_prompts()) and 0 <= check["heldout_mean"] <= 1
