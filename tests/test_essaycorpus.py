"""Tests for the essay corpus generator and the committed corpus it produced."""

from __future__ import annotations

import re
import string
from collections import Counter
from pathlib import Path

import pytest

from charlstm.data import essaycorpus, langcorpus

CORPORA = Path(__file__).resolve().parent.parent / "corpora"
NAMES = [name for pair in langcorpus.PAIRS for name in pair]
CUES = ("speak", "spoke", "language", "learn", "understand", "talk", "written", "words")


@pytest.fixture(scope="module")
def corpus() -> tuple[str, list[langcorpus.GapRecord]]:
    return essaycorpus.generate()


def test_committed_files_are_reproduced_byte_for_byte(tmp_path: Path) -> None:
    # If this fails, the generator changed (run `python -m charlstm.data.essaycorpus` and commit) or the
    # committed files were edited.
    text_path, gaps_path = essaycorpus.write(tmp_path)
    assert text_path.read_bytes() == (CORPORA / "essay.txt").read_bytes()
    assert gaps_path.read_bytes() == (CORPORA / "essay.gaps.json").read_bytes()


def test_records_point_at_place_and_language_on_one_line(corpus) -> None:
    text, records = corpus
    languages = dict(langcorpus.PAIRS)
    for r in records:
        assert text[r.place_start : r.place_end] == r.place and text[r.language_start : r.language_end] == r.language
        assert languages[r.place] == r.language and r.gap == r.language_start - r.place_end > 0
        assert "\n" not in text[r.place_start : r.language_end]
    assert langcorpus.load_gaps(CORPORA / "essay.gaps.json") == records


def test_every_printable_ascii_character_occurs(corpus) -> None:
    text, _ = corpus
    assert set(string.printable) - set(text) == set("\t\r\x0b\x0c")
    assert text.isascii() and text.endswith("\n")


def test_nothing_between_place_and_language_names_one_or_asks_for_one(corpus) -> None:
    text, records = corpus
    for r in records[::7]:
        between = text[r.place_end : r.language_start]
        assert not any(name in between for name in NAMES), between
    for sentence in essaycorpus.MIDDLES:  # only closings use the words that ask for a language
        assert not any(re.search(rf"\b{cue}", sentence, re.IGNORECASE) for cue in CUES), sentence
    for closing in essaycorpus.CLOSINGS:
        assert closing.endswith(("{l}.", "{l} language.")) and any(cue in closing for cue in CUES)


def test_the_template_comes_first_stays_in_the_mix_and_not_in_the_validation_split(corpus) -> None:
    text, _ = corpus
    lines = text.splitlines()
    template = re.compile(r"I went to [A-Za-z ]+\.( It was fun\.)* I don't speak [A-Za-z]+\.")
    essay = re.compile(r"[A-Za-z ]+ is a beautiful place\. I went there last year, but I couldn't enjoy it because")

    def kinds(part: list[str]) -> Counter[str]:
        return Counter(
            "template" if template.fullmatch(line) else "essay" if essay.match(line) else "other" for line in part
        )

    first = lines[: len(lines) // 12]  # inside the first part (a tenth of the text)
    assert all(template.fullmatch(line) for line in first)
    middle = kinds(lines[len(lines) // 5 : len(lines) * 4 // 5])  # inside the second part
    assert 0.1 < middle["template"] / middle.total() < 0.2 and 0.06 < middle["essay"] / middle.total() < 0.11
    last = lines[-len(lines) // 11 :]  # inside the validation split: paragraphs, the essay's sentence, associations
    share = kinds(last)
    assert share["template"] < 0.02 * len(last) and 0.07 < share["essay"] / len(last) < 0.13
    openings = Counter(o for line in last for o in essaycorpus.OPENINGS if _matches(o, line))
    assert set(openings) == set(essaycorpus.OPENINGS)  # every opening occurs in the validation split
    assert essaycorpus.STAGES[-1][0] == 1.0 and [end for end, _ in essaycorpus.STAGES] == sorted(
        end for end, _ in essaycorpus.STAGES
    )


def _matches(opening: str, line: str) -> bool:
    head, tail = opening.split("{p}")
    return line.startswith(head) and any(line.startswith(head + p + tail) for p, _ in langcorpus.PAIRS)


def test_same_seed_same_text_other_seed_other_text() -> None:
    a = essaycorpus.generate(seed=3, n_chars=20_000)
    assert a == essaycorpus.generate(seed=3, n_chars=20_000)
    assert a[0] != essaycorpus.generate(seed=4, n_chars=20_000)[0]
    with pytest.raises(ValueError):
        essaycorpus.generate(n_chars=0)
