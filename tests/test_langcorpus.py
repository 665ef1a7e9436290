"""Tests for the bundled corpus generator and the committed corpus it produced."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from charlstm.data import langcorpus

CORPORA = Path(__file__).resolve().parent.parent / "corpora"
NAMES = [name for pair in langcorpus.PAIRS for name in pair]
SMALL = 20_000


@pytest.fixture(scope="module")
def corpus() -> tuple[str, list[langcorpus.GapRecord]]:
    return langcorpus.generate()


def test_committed_files_are_reproduced_byte_for_byte(tmp_path: Path) -> None:
    # If this fails, either the generator changed (run `python -m
    # charlstm.data.langcorpus` and commit) or the committed files were edited.
    text_path, gaps_path = langcorpus.write(tmp_path)
    assert text_path.read_bytes() == (CORPORA / "languages.txt").read_bytes()
    assert gaps_path.read_bytes() == (CORPORA / "languages.gaps.json").read_bytes()


def test_committed_gaps_load_back(corpus) -> None:
    _, records = corpus
    assert langcorpus.load_gaps(CORPORA / "languages.gaps.json") == records


def test_text_shape(corpus) -> None:
    text, _ = corpus
    assert text.endswith("\n")
    assert text.isascii()
    assert "\r" not in text
    assert langcorpus.DEFAULT_CHARS <= len(text) < langcorpus.DEFAULT_CHARS + 1_000
    assert 300_000 <= len(text.encode("utf-8")) <= 1_000_000
    assert all(line for line in text.split("\n")[:-1])


def test_records_point_at_place_and_language(corpus) -> None:
    text, records = corpus
    languages = dict(langcorpus.PAIRS)
    for r in records:
        assert text[r.place_start : r.place_end] == r.place
        assert text[r.language_start : r.language_end] == r.language
        assert languages[r.place] == r.language
        assert r.gap == r.language_start - r.place_end > 0
        # Place and language belong to the same line.
        assert "\n" not in text[r.place_start : r.language_end]


def test_same_seed_same_output_different_seed_different_text() -> None:
    assert langcorpus.generate(seed=3, n_chars=SMALL) == langcorpus.generate(seed=3, n_chars=SMALL)
    assert langcorpus.generate(seed=3, n_chars=SMALL)[0] != langcorpus.generate(seed=4, n_chars=SMALL)[0]


def test_write_load_round_trip(tmp_path: Path) -> None:
    _, records = langcorpus.generate(seed=7, n_chars=SMALL)
    text_path, gaps_path = langcorpus.write(tmp_path, seed=7, n_chars=SMALL)
    assert text_path.read_text(encoding="utf-8") == langcorpus.generate(seed=7, n_chars=SMALL)[0]
    assert langcorpus.load_gaps(gaps_path) == records


def test_n_chars_must_be_positive() -> None:
    with pytest.raises(ValueError):
        langcorpus.generate(n_chars=0)


def test_gaps_span_intended_range(corpus) -> None:
    _, records = corpus
    gaps = [r.gap for r in records]
    assert min(gaps) < 30
    assert max(gaps) >= 150
    # Coverage, not just extremes: every band gets a real share.
    for lo, hi in [(0, 50), (50, 100), (100, 150), (150, 250)]:
        assert sum(lo <= g < hi for g in gaps) > 0.05 * len(gaps), (lo, hi)


def test_every_language_occurs_often(corpus) -> None:
    _, records = corpus
    counts = Counter(r.language for r in records)
    assert set(counts) == {language for _, language in langcorpus.PAIRS}
    expected = len(records) / len(langcorpus.PAIRS)
    assert all(n > 0.7 * expected for n in counts.values()), counts


def test_filler_never_names_a_place_or_language(corpus) -> None:
    text, records = corpus
    for r in records:
        between = text[r.place_end : r.language_start]
        assert not any(name in between for name in NAMES), between


def test_every_place_first_line_has_one_record(corpus) -> None:
    """Paragraphs and the place-first association lines are recorded (one record each); "L is spoken in P." is not."""
    text, records = corpus
    lines = text.splitlines()
    recorded_lines = [text.count("\n", 0, r.place_start) for r in records]
    assert len(set(recorded_lines)) == len(records)
    unrecorded = set(range(len(lines))) - set(recorded_lines)
    assert unrecorded and all(" is spoken in " in lines[k] for k in unrecorded)
    paragraphs = sum(line.startswith("I went to ") for line in lines)
    starts = {text.rfind("\n", 0, r.place_start) + 1: r for r in records}
    assert paragraphs == sum(text.startswith("I went to ", k) for k in starts)  # one record per paragraph
    essay = [line for line in lines if " is a beautiful place where people speak " in line]
    assert essay and all(not line.startswith(("I went", "People")) for line in essay)  # lines that start with a place
    assert 0.6 < paragraphs / len(lines) < 0.8  # about 70% of lines are paragraphs, 30% short associations


def test_filler_only_varies_in_length(corpus) -> None:
    """Low entropy on purpose: fillers always come in the same order, so two paragraphs with the same gap have
    exactly the same text between place and language."""
    text, records = corpus
    seen: dict[int, str] = {}
    for r in records:
        middle = text[r.place_end : r.language_start]
        assert seen.setdefault(r.gap, middle) == middle
    assert len(seen) > 15


def test_gaps_grow_from_a_short_one_in_small_steps(corpus) -> None:
    """Measured (module docstring): the LSTM learns to hold the place only if paragraphs reach down to a short
    gap and the gaps then grow in small steps, with enough short paragraphs to learn from."""
    text, records = corpus
    opening = langcorpus.OPENING.split("{}")[0]
    paragraph_gaps = [r.gap for r in records if text[r.place_start - len(opening) : r.place_start] == opening]
    values = sorted(set(paragraph_gaps))
    assert values[0] <= 16 and values[-1] >= 200
    assert all(b - a <= 12 for a, b in zip(values, values[1:]))
    short = sum(g <= 40 for g in paragraph_gaps) / len(paragraph_gaps)
    assert 0.3 < short < 0.5  # a quarter of paragraphs are short on purpose, plus the uniform share
    assert sum(g >= 200 for g in paragraph_gaps) > 0.03 * len(paragraph_gaps)  # the 200+ bucket is measured


def test_paragraphs_read_like_the_essay(corpus) -> None:
    text, records = corpus
    lines = [
        text[text.rfind("\n", 0, r.place_start) + 1 : text.index("\n", r.language_end)]
        for r in records
        if r.place == "Jammu"
    ]
    paragraph = next(line for line in lines if line.startswith("I went to Jammu."))
    assert paragraph.endswith("I don't speak Kashmiri.")
    assert "Jammu is a beautiful place where people speak Kashmiri." in lines  # the essay's opening
