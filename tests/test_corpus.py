"""Tests for charlstm.data.corpus: reading files, the vocabulary, encoding, the split and the size check."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from charlstm.data import corpus
from charlstm.data.corpus import Vocab
from charlstm.errors import CorpusError

MIXED = "héllo wörld ✓ 日本語 🙂🎉\r\nΑλφα Привет مرحبا\r\nend\n"


def write(tmp_path: Path, data: bytes | str, name: str = "c.txt") -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_bytes(data.encode("utf-8"))  # write_bytes: no newline translation
    else:
        path.write_bytes(data)
    return path


# --- vocabulary and encoding -------------------------------------------------------------------------------


def test_vocab_is_sorted_set_of_characters(tmp_path: Path) -> None:
    vocab, ids = corpus.load_corpus(write(tmp_path, "banana bread\n"))
    assert vocab.encoding == "utf-8"
    assert [chr(s) for s in vocab.symbols] == sorted(set("banana bread\n"))
    assert len(vocab) == len(set("banana bread\n"))
    assert [vocab.symbol(i) for i in range(len(vocab))] == sorted(set("banana bread\n"))
    # ids index the sorted symbols
    assert "".join(vocab.symbol(int(i)) for i in ids) == "banana bread\n"


@pytest.mark.parametrize(
    "text",
    ["plain ASCII text, with punctuation!?\n", MIXED, "héllo wörld ✓ 日本語 🙂🎉", "a\r\nb\r\n\r\nc\rd\n", "🙂"],
    ids=["ascii", "mixed", "emoji", "crlf", "single-emoji"],
)
def test_load_encode_decode_round_trip(tmp_path: Path, text: str) -> None:
    vocab, ids = corpus.load_corpus(write(tmp_path, text))
    assert len(ids) == len(text)  # one id per character, not per byte
    assert ids.min() >= 0 and ids.max() < len(vocab)
    assert vocab.decode(ids) == text
    assert np.array_equal(vocab.encode(text), ids.astype(np.int32))
    assert set(vocab.symbols) == {ord(c) for c in text}


def test_windows_line_endings_are_kept(tmp_path: Path) -> None:
    vocab, ids = corpus.load_corpus(write(tmp_path, "one\r\ntwo\r\n"))
    assert ord("\r") in vocab.symbols and ord("\n") in vocab.symbols
    assert vocab.decode(ids) == "one\r\ntwo\r\n"
    cr, lf = vocab.symbols.index(ord("\r")), vocab.symbols.index(ord("\n"))
    assert list(ids[3:5]) == [cr, lf]


def test_dtype_fits_vocab(tmp_path: Path) -> None:
    small, ids = corpus.load_corpus(write(tmp_path, MIXED))
    assert ids.dtype == np.uint8
    big_text = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 300))  # 300 distinct CJK characters
    big, big_ids = corpus.load_corpus(write(tmp_path, big_text, "big.txt"))
    assert len(big) == 300 and big_ids.dtype == np.uint16
    assert big.decode(big_ids) == big_text


def test_byte_level_round_trips_arbitrary_bytes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = bytes(range(256)) + rng.integers(0, 256, size=5000, dtype=np.uint8).tobytes() + b"\xff\xfe\x00\xc3"
    vocab, ids = corpus.load_corpus(write(tmp_path, data), "bytes")
    assert vocab.encoding == "bytes"
    assert vocab.symbols == tuple(range(256))
    assert len(ids) == len(data)
    assert bytes(np.asarray(vocab.symbols, dtype=np.uint8)[ids]) == data


def test_byte_level_on_utf8_text(tmp_path: Path) -> None:
    vocab, ids = corpus.load_corpus(write(tmp_path, MIXED), "bytes")
    raw = MIXED.encode("utf-8")
    assert len(ids) == len(raw)  # one id per byte
    assert list(vocab.symbols) == sorted(set(raw))
    assert vocab.decode(ids) == MIXED
    assert np.array_equal(vocab.encode(MIXED), ids.astype(np.int32))


def test_encode_marks_unknown_characters(tmp_path: Path) -> None:
    vocab, _ = corpus.load_corpus(write(tmp_path, "abc"))
    ids = vocab.encode("abz🙂c")
    assert list(ids) == [0, 1, -1, -1, 2]


def test_vocab_json_round_trip(tmp_path: Path) -> None:
    for enc, data in (("utf-8", MIXED.encode("utf-8")), ("bytes", b"\x00\x01\xffabc")):
        vocab, _ = corpus.load_corpus(write(tmp_path, data), enc)  # type: ignore[arg-type]
        again = Vocab.from_json(vocab.to_json())
        assert again == vocab
        assert again.encoding == enc and again.symbols == vocab.symbols


def test_encoding_5mb_gives_correct_ids(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    alphabet = np.array(list("abcdefghij \n\r.,éü✓日本語🙂🎉ΩЖ"))
    chars = alphabet[rng.integers(0, len(alphabet), size=5_000_000 // 3)]
    text = "".join(chars.tolist())
    path = write(tmp_path, text)
    assert path.stat().st_size > 2_000_000
    vocab, ids = corpus.load_corpus(path)
    assert len(ids) == len(text)
    assert [chr(s) for s in vocab.symbols] == sorted(set(alphabet.tolist()))
    lookup = {chr(s): i for i, s in enumerate(vocab.symbols)}
    for pos in rng.integers(0, len(text), size=2000).tolist() + [0, len(text) - 1]:
        assert ids[pos] == lookup[text[pos]], pos
    assert vocab.decode(ids[-1000:]) == text[-1000:]
    assert vocab.decode(ids[123_456:124_000]) == text[123_456:124_000]


# --- errors --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data,offset",
    [
        (b"hello \xff world", 6),
        (b"caf\xc3\xa9 ok \xc3\x28 x", len("café ok ".encode())),  # bad continuation byte
        ("日本語".encode() + b" \xe6\x97", len("日本語 ".encode())),  # truncated at the end
        (b"\x80abc", 0),
    ],
)
def test_invalid_utf8_reports_byte_offset(tmp_path: Path, data: bytes, offset: int) -> None:
    with pytest.raises(CorpusError) as info:
        corpus.load_corpus(write(tmp_path, data))
    msg = str(info.value)
    assert re.search(rf"byte offset {offset}\b", msg), msg
    assert "--encoding bytes" in msg
    # ...and the same file loads as raw bytes
    _, ids = corpus.load_corpus(write(tmp_path, data), "bytes")
    assert len(ids) == len(data)


def test_nul_bytes_are_binary(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="binary") as info:
        corpus.load_corpus(write(tmp_path, b"text\x00\x01\x02more text"))
    assert "--encoding bytes" in str(info.value)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="empty"):
        corpus.load_corpus(write(tmp_path, b""))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="not found"):
        corpus.load_corpus(tmp_path / "nope.txt")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="directory"):
        corpus.load_corpus(tmp_path)


def test_unknown_symbols_with_given_vocab_raise(tmp_path: Path) -> None:
    vocab, _ = corpus.load_corpus(write(tmp_path, "abc abc\n"))
    with pytest.raises(CorpusError) as info:
        corpus.load_corpus(write(tmp_path, "abc xyz\n", "other.txt"), vocab=vocab)
    assert "xyz" in str(info.value)
    # known symbols encode with the given vocabulary (not a fresh one)
    v2, ids = corpus.load_corpus(write(tmp_path, "cab\n", "ok.txt"), vocab=vocab)
    assert v2 is vocab
    assert vocab.decode(ids) == "cab\n"
    assert list(ids) == [vocab.symbols.index(ord(c)) for c in "cab\n"]


# --- split and size ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,frac", [(1000, 0.1), (1001, 0.25), (10, 0.5), (7, 0.1), (3, 0.9)])
def test_split_keeps_order_and_sizes(n: int, frac: float) -> None:
    ids = np.arange(n)
    tr, va = corpus.split(ids, frac)
    assert len(tr) + len(va) == n
    assert len(va) == int(round(n * frac))
    assert np.array_equal(np.concatenate([tr, va]), ids)  # train first, validation is the end, no shuffling


def _reported_minimum(err: CorpusError) -> int:
    m = re.search(r"need at least ([\d,]+)", err.message)
    assert m, err.message
    return int(m.group(1).replace(",", ""))


@pytest.mark.parametrize(
    "total,batch,seq,frac",
    [
        (12, 8, 32, 0.1),
        (11, 8, 32, 0.05),
        (500, 64, 100, 0.1),
        (10, 2, 3, 0.5),
        (5, 1, 1, 0.9),
        (0, 3, 7, 0.3),
        (1, 8, 32, 0.9),
    ],
)
def test_check_size_minimum_is_sufficient_and_minimal(total: int, batch: int, seq: int, frac: float) -> None:
    tr, va = corpus.split(np.zeros(total), frac)
    with pytest.raises(CorpusError, match="too small") as info:
        corpus.check_size(len(tr), len(va), batch, seq, frac)
    need = _reported_minimum(info.value)
    assert f"batch_size={batch}" in info.value.message and f"seq_len={seq}" in info.value.message
    tr, va = corpus.split(np.zeros(need), frac)
    corpus.check_size(len(tr), len(va), batch, seq, frac)  # a corpus of exactly that size is enough
    tr, va = corpus.split(np.zeros(need - 1), frac)
    with pytest.raises(CorpusError):
        corpus.check_size(len(tr), len(va), batch, seq, frac)  # and one symbol fewer is not


@pytest.mark.parametrize("n_train,n_val", [(0, 1), (1, 0), (5, 0), (0, 0), (11, 1), (300, 2)])
def test_check_size_without_fraction_gives_a_sane_minimum(n_train: int, n_val: int) -> None:
    # Callers that do not pass the fraction get an estimate: it must not crash or be absurd.
    with pytest.raises(CorpusError) as info:
        corpus.check_size(n_train, n_val, 8, 32)
    need = _reported_minimum(info.value)
    assert 8 * 32 + 32 + 1 + 33 <= need < 100_000


def test_check_size_passes_a_real_corpus() -> None:
    vocab, ids = corpus.load_corpus(corpus.DEFAULT_CORPUS)
    tr, va = corpus.split(ids, 0.1)
    corpus.check_size(len(tr), len(va), 64, 100, 0.1)
    corpus.check_size(len(tr), len(va), 64, 100)
    assert vocab.decode(ids[:200]) == corpus.DEFAULT_CORPUS.read_bytes().decode("utf-8")[:200]


def test_resolve() -> None:
    assert corpus.resolve(None) == corpus.DEFAULT_CORPUS == corpus.resolve("essay")
    assert corpus.resolve("languages") == corpus.COMPARE_CORPUS
    assert corpus.resolve("some/file.txt") == Path("some/file.txt")
