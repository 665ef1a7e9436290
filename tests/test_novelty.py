"""Copied-text detection: the matching statistics against a brute-force reference, the spans, share and corpus lines
of a hand-made corpus, the cached index (built once, memory-mapped, a changed or missing file detected) and its
errors. The command line, the API and serve are tested on trained runs in test_cli_errors, test_api and test_serve."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from charlstm.data import corpus
from charlstm.data.corpus import Vocab
from charlstm.errors import CorpusError, UsageError, UserError
from charlstm.evaluation import novelty

ALPHABET = "ab\né€🙂"  # 1-, 2-, 3- and 4-byte characters


def brute_ms(haystack: bytes, text: str) -> list[int]:
    """For each character of `text`, the longest run of its characters from there whose UTF-8 is in `haystack`."""
    out = []
    for i in range(len(text)):
        k = 0
        while i + k < len(text) and text[i : i + k + 1].encode("utf-8") in haystack:
            k += 1
        out.append(k)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_matching_statistics_match_brute_force_on_utf8(seed: int) -> None:
    rng = random.Random(seed)
    train = "".join(rng.choice(ALPHABET[: rng.randint(2, 6)]) for _ in range(rng.randint(1, 300)))
    index = novelty.from_bytes(train.encode("utf-8"))
    for _ in range(5):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 60)))
        assert novelty.matching_statistics(index, text).tolist() == brute_ms(train.encode("utf-8"), text)


@pytest.mark.parametrize("seed", range(4))
def test_matching_statistics_on_raw_bytes(seed: int) -> None:
    """A run on --encoding bytes indexes its raw bytes, which need not be UTF-8: matches are still whole
    characters of the generated text."""
    rng = random.Random(seed)
    pieces = [c.encode("utf-8") for c in ALPHABET] + [b"\xff", b"\xc3", b"\x80"]  # stray and broken bytes
    train = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 300)))
    index = novelty.from_bytes(train)
    text = "".join(rng.choice(ALPHABET) for _ in range(80))
    assert novelty.matching_statistics(index, text).tolist() == brute_ms(train, text)


CORPUS = "the cat sat on the mat\nthe dog ran far away\nall is quiet on the western front\n"


def test_spans_share_and_corpus_lines() -> None:
    index = novelty.from_bytes(CORPUS.encode("utf-8"))
    text = "xx the dog ran far!! quiet on the western front??"
    checked = novelty.check(index, "PROMPT " + text, "PROMPT ", min_copy=10)
    assert checked.prompt == "PROMPT " and checked.text == text
    assert [(s.start, s.end, s.corpus_line, s.occurrences) for s in checked.spans] == [
        (3, 18, 2, 1),  # "the dog ran far" occurs once, on line 2 (after a newline, not a space)
        (20, 47, 3, 1),  # " quiet on the western front"
    ]
    span = checked.spans[0]
    assert text[span.start : span.end] == "the dog ran far" and span.length == 15
    assert CORPUS.encode()[span.corpus_offset :].startswith(b"the dog ran far")
    assert checked.copied_chars == 15 + 27 and checked.share == pytest.approx(42 / len(text))
    assert checked.longest == checked.spans[1]
    assert checked.bracketed() == "xx [[the dog ran far]]!![[ quiet on the western front]]??"
    assert "".join(p for p, _ in checked.pieces()) == text
    line = novelty.summary_line([checked])
    assert "85.7% of 49 generated characters in spans of 10+" in line and "longest 27 characters" in line
    assert "corpus line 3" in line
    data = json.loads(json.dumps(checked.to_json()))
    assert data["copied_share"] == pytest.approx(42 / 49, abs=1e-6) and data["longest"]["corpus_line"] == 3
    assert data["spans"][0] == {
        "start": 3,
        "end": 18,
        "length": 15,
        "corpus_line": 2,
        "corpus_offset": CORPUS.index("the dog"),
        "occurrences": 1,
    }


def test_a_repeated_phrase_reports_its_first_line_and_overlapping_spans_count_once() -> None:
    index = novelty.from_bytes(CORPUS.encode("utf-8"))
    # " on the " occurs on lines 1 and 3; "cat sat on the western" joins line 1 to line 3.
    checked = novelty.check(index, "cat sat on the western", min_copy=8)
    assert [(s.start, s.end, s.corpus_line) for s in checked.spans] == [(0, 15, 1), (6, 22, 3)]  # quiet's t too
    assert checked.copied_chars == 22 and checked.share == 1.0
    assert checked.bracketed() == "[[cat sat on the western]]"
    short = novelty.check(index, " on the ", min_copy=8)
    assert short.spans[0].occurrences == 2 and short.spans[0].corpus_line == 1  # line 1 has the earliest


def test_nothing_copied_and_empty_text() -> None:
    index = novelty.from_bytes(CORPUS.encode("utf-8"))
    checked = novelty.check(index, "zzzz qqqq", min_copy=3)
    assert checked.spans == () and checked.share == 0.0 and checked.longest is None
    assert novelty.summary_line([checked]).endswith("; no span")
    empty = novelty.check(index, "", min_copy=3)
    assert empty.share == 0.0 and list(empty.pieces()) == []


def test_min_copy_must_be_positive() -> None:
    index = novelty.from_bytes(b"abc")
    for bad in (0, -1, True):
        with pytest.raises(UsageError, match="--min-copy"):
            novelty.check(index, "abc", min_copy=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("encoding", ["utf-8", "bytes"])
@pytest.mark.parametrize("val_fraction", [0.1, 0.37])
def test_train_bytes_is_the_training_split(tmp_path: Path, encoding: corpus.Encoding, val_fraction: float) -> None:
    text = "".join(random.Random(1).choice(ALPHABET) for _ in range(5000))
    path = tmp_path / "c.txt"
    path.write_text(text, encoding="utf-8", newline="")
    vocab, ids = corpus.load_corpus(path, encoding)
    train, _ = corpus.split(ids, val_fraction)
    n = novelty.train_bytes(path, encoding, val_fraction)
    if encoding == "bytes":
        assert n == len(train)
    else:
        assert path.read_bytes()[:n].decode("utf-8") == vocab.decode(train)


# --- the cache ---------------------------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHARLSTM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_corpus(path: Path, lines: int = 200) -> Path:
    path.write_text("".join(f"line {i} of the corpus, é {i * 7}\n" for i in range(lines)), encoding="utf-8")
    return path


def test_the_index_is_built_once_then_memory_mapped(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_corpus(tmp_path / "c.txt")
    first = novelty.load(path, "utf-8", 0.1)
    assert (
        first is not None and not first.reused and first.entry is not None and first.entry.parent == cache / "encoded"
    )
    n = novelty.train_bytes(path, "utf-8", 0.1)
    assert bytes(first.text) == path.read_bytes()[:n] and first.sa.dtype == np.int32
    assert len(first.newlines) == 180  # the training split: the first 90% of 200 lines
    monkeypatch.setattr(novelty, "_build", lambda *a: pytest.fail("built again"))
    again = novelty.load(path, "utf-8", 0.1)
    assert again is not None and again.reused and again.entry == first.entry
    assert isinstance(again.sa, np.memmap) and isinstance(again.text, np.memmap)
    digest = novelty.corpus_digest(path)
    assert novelty.cached(digest, "utf-8", 0.1) is not None and novelty.cached(digest, "bytes", 0.1) is None
    spans = novelty.find_spans(again, "xx line 17 of the corpus, é 119\nline 18 of", min_copy=20)
    assert [(s.start, s.corpus_line) for s in spans] == [(3, 18)]  # line 17 is the corpus's 18th line
    assert novelty.load(path, "utf-8", 0.2, build=False) is None  # another split: another index, not built here


def test_a_recorded_digest_finds_the_index_without_the_file_and_refuses_a_changed_file(
    cache: Path, tmp_path: Path
) -> None:
    path = write_corpus(tmp_path / "c.txt")
    digest = novelty.corpus_digest(path)
    with pytest.raises(CorpusError, match="training text is missing.*--corpus FILE"):
        novelty.load(tmp_path / "gone.txt", "utf-8", 0.1, digest=digest)
    assert novelty.load(path, "utf-8", 0.1, digest=digest) is not None
    moved = path.rename(tmp_path / "moved.txt")
    found = novelty.load(tmp_path / "c.txt", "utf-8", 0.1, digest=digest)  # the run's old path: gone, yet found
    assert found is not None and found.reused
    moved.write_text(moved.read_text(encoding="utf-8") + "one more line\n", encoding="utf-8")
    other = "0" * 64
    with pytest.raises(CorpusError, match="has changed since the run trained.*--corpus FILE"):
        novelty.load(moved, "utf-8", 0.1, digest=other)


def test_without_a_recorded_digest_the_vocabulary_catches_another_file(cache: Path, tmp_path: Path) -> None:
    path = write_corpus(tmp_path / "c.txt")
    vocab = Vocab("utf-8", tuple(sorted({ord(c) for c in path.read_text(encoding="utf-8")})))
    assert novelty.load(path, "utf-8", 0.1, vocab=vocab) is not None
    other = tmp_path / "other.txt"
    other.write_text("Zebras are not in the vocabulary\n" * 50, encoding="utf-8")
    with pytest.raises(CorpusError, match="vocabulary lacks.*--corpus FILE"):
        novelty.load(other, "utf-8", 0.1, vocab=vocab)


def test_too_little_memory_and_a_missing_package_are_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CorpusError, match=r"needs about 10\.3 GB of memory, 1\.0 GB are available"):
        novelty.check_memory(2_000_000_000, available=1_000_000_000)
    novelty.check_memory(1_000_000, available=1_000_000_000)
    assert novelty.memory_needed(2**31) > 9 * 2**31  # past 2 GiB the suffix array takes 8 bytes a position
    monkeypatch.setitem(sys.modules, "pydivsufsort", None)  # as if not installed
    with pytest.raises(UserError, match="pydivsufsort") as err:
        novelty.from_bytes(b"abc")
    assert 'pip install "charlstm[novelty]"' in str(err.value)


def test_an_unwritable_cache_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    monkeypatch.setenv("CHARLSTM_CACHE", str(blocker))
    path = write_corpus(tmp_path / "c.txt")
    with pytest.raises(CorpusError, match="cannot write"):
        novelty.load(path, "utf-8", 0.1)


def test_the_training_summary_shows_the_copied_share() -> None:
    from charlstm.training import runner

    checked = novelty.check(novelty.from_bytes(CORPUS.encode("utf-8")), "\nxx the dog ran far!!", "\n", min_copy=10)
    summary = runner.Summary(Path("runs/x"), 10, 1.0, 1.0, 100, 1.0, 1000.0, copied=checked)
    assert ("copied in the last sample", "75.0% of 20 chars in spans of 10+; longest 15 chars, corpus line 2") in (
        summary.rows()
    )
    assert summary.to_json()["copied"] == checked.to_json()
