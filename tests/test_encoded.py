"""The streaming encoder and the encoded-corpus cache: same results as the in-memory reader, chunk by chunk,
reused by later runs, rebuilt when the file changes, and the in-memory reader's errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from helpers import cli_env

from charlstm.data import batches, corpus, encoded
from charlstm.data.corpus import Vocab
from charlstm.errors import CorpusError

MIXED = "héllo wörld ✓ 日本語 🙂🎉\r\nΑλφα Привет مرحبا\r\nend\n"


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty cache directory."""
    monkeypatch.setenv("CHARLSTM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CHARLSTM_CACHE_MIN_MB", raising=False)
    return tmp_path / "cache"


def write(tmp_path: Path, data: bytes | str, name: str = "c.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


class Phases:
    """A progress callback that records which phases ran."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, phase: str, done: int, total: int) -> None:
        assert 0 <= done <= total
        if not self.seen or self.seen[-1] != phase:
            self.seen.append(phase)


def _same_as_in_memory(path: Path, encoding: str = "utf-8", chunk: int = encoded.CHUNK_BYTES) -> None:
    want_vocab, want = corpus.load_corpus(path, encoding)  # type: ignore[arg-type]
    enc = encoded.load(path, encoding, chunk_bytes=chunk)  # type: ignore[arg-type]
    assert enc.vocab == want_vocab
    assert enc.ids.dtype == want.dtype and isinstance(enc.ids, np.memmap)
    assert np.array_equal(enc.ids, want)


# --- the encoder ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64, 1 << 20])
def test_chunk_boundaries_inside_characters(tmp_path: Path, chunk: int) -> None:
    # 1-, 2-, 3- and 4-byte characters, cut by every chunk size: each must come out whole and in place.
    _same_as_in_memory(write(tmp_path, MIXED * 7), chunk=chunk)


def test_random_text_random_chunks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    alphabet = list("ab \n\ré✓日🙂Ж") + [
        chr(0x10FFFF),
        chr(0x7F),
        chr(0x80),
        chr(0x7FF),
        chr(0x800),
        chr(0xFFFF),
        chr(0x10000),
    ]
    for trial in range(12):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(1, 400))).tolist())
        path = write(tmp_path, text, f"r{trial}.txt")
        for chunk in rng.integers(1, 40, size=3).tolist():
            vocab, n = encoded.encode_to_disk(path, tmp_path / "ids.bin", "utf-8", chunk_bytes=chunk)
            ids = np.fromfile(tmp_path / "ids.bin", dtype=vocab.dtype)
            assert n == len(text) and vocab.decode(ids) == text, (trial, chunk)


@pytest.mark.parametrize("n_symbols,dtype", [(300, np.uint16), (70_000, np.int32)])
def test_ids_widen_when_the_vocabulary_outgrows_a_byte(tmp_path: Path, n_symbols: int, dtype: type) -> None:
    # ASCII first (ids start as uint8), then many symbols: the file is rewritten wider mid-stream.
    points = [p for p in range(0x4E00, 0x4E00 + n_symbols + 2048) if not 0xD800 <= p < 0xE000][: n_symbols - 3]
    text = "abc" * 500 + "".join(map(chr, points)) + "cab"
    path = write(tmp_path, text)
    vocab, n = encoded.encode_to_disk(path, tmp_path / "ids.bin", "utf-8", chunk_bytes=999)
    assert len(vocab) == n_symbols and np.dtype(vocab.dtype) == np.dtype(dtype)
    assert vocab.decode(np.fromfile(tmp_path / "ids.bin", dtype=vocab.dtype)) == text


def test_bytes_mode_takes_anything(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = b"\xff\xfe\x00\xc3" + bytes(range(256)) + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    path = write(tmp_path, data)
    for chunk in (1, 3, 4096):
        enc = encoded.load(path, "bytes", chunk_bytes=chunk)
        assert enc.vocab.symbols == tuple(range(256))
        assert bytes(np.asarray(enc.vocab.symbols, dtype=np.uint8)[enc.ids]) == data


# --- errors: the in-memory reader's, with offsets counted across chunks -----------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"hello \xff world",
        b"caf\xc3\xa9 ok \xc3\x28 x",
        "日本語".encode() + b" \xe6\x97",  # cut short at the end of the file
        b"\x80abc",
        "ab✓".encode() + b"\xf0\x9f\x98" + "✓✓".encode(),  # a 4-byte character missing its last byte
    ],
)
@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 5, 1 << 20])
def test_invalid_utf8_reports_the_file_offset(tmp_path: Path, data: bytes, chunk: int) -> None:
    with pytest.raises(UnicodeDecodeError) as expected:
        data.decode("utf-8")
    with pytest.raises(CorpusError) as info:
        encoded.load(write(tmp_path, data), chunk_bytes=chunk)
    assert re.search(rf"invalid UTF-8 at byte offset {expected.value.start}\b", str(info.value)), str(info.value)
    assert "--encoding bytes" in str(info.value)
    assert not any(p.name.endswith("-utf-8-v1") for p in (encoded.cache_root()).glob("*"))  # nothing half-made kept
    assert not list(encoded.cache_root().glob(".*"))


def test_nul_bytes_empty_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="binary.*--encoding bytes"):
        encoded.load(write(tmp_path, b"text\x00\x01 more"))
    with pytest.raises(CorpusError, match="empty"):
        encoded.load(write(tmp_path, b"", "empty.txt"))
    with pytest.raises(CorpusError, match="not found"):
        encoded.load(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="directory"):
        encoded.load(tmp_path)


def test_unwritable_cache_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = write(tmp_path, "not a directory", "blocker")
    monkeypatch.setenv("CHARLSTM_CACHE", str(blocker))
    with pytest.raises(CorpusError, match="cannot write the encoded-corpus cache.*CHARLSTM_CACHE"):
        encoded.load(write(tmp_path, MIXED))


# --- the cache --------------------------------------------------------------------------------------------------------


def test_second_load_reuses_without_reading_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, MIXED * 100)
    first = Phases()
    a = encoded.load(path, progress=first, chunk_bytes=7)  # small chunks: symbols first seen out of order
    assert not a.reused and first.seen == ["hashing", "encoding", "ordering", "done"]
    written = (a.entry / "ids.bin").stat().st_mtime_ns
    again = Phases()
    b = encoded.load(path, progress=again)
    assert b.reused and again.seen == ["reused"]  # size, mtime and inode unchanged: not even hashed
    assert b.entry == a.entry and (b.entry / "ids.bin").stat().st_mtime_ns == written
    assert np.array_equal(a.ids, b.ids) and a.vocab == b.vocab
    meta = json.loads((a.entry / "meta.json").read_text())
    assert meta["length"] == len(MIXED) * 100 and meta["size"] == path.stat().st_size


def test_touched_or_copied_file_is_hashed_but_not_reencoded(tmp_path: Path) -> None:
    path = write(tmp_path, MIXED)
    a = encoded.load(path)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    copy = write(tmp_path, MIXED, "copy.txt")
    for p in (path, copy):
        seen = Phases()
        b = encoded.load(p, progress=seen)
        assert b.reused and b.entry == a.entry and seen.seen == ["hashing", "reused"]


def test_changed_content_is_encoded_again(tmp_path: Path) -> None:
    path = write(tmp_path, "abcabc\n")
    a = encoded.load(path)
    st = path.stat()
    path.write_bytes(b"xyzxyz\n")  # same size, new content
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    b = encoded.load(path)
    assert not b.reused and b.entry != a.entry and b.vocab.decode(b.ids) == "xyzxyz\n"
    path.write_bytes(b"abcabcabc\n")  # new size, even with the first mtime put back
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    c = encoded.load(path)
    assert c.vocab.decode(c.ids) == "abcabcabc\n"
    assert a.vocab.decode(a.ids) == "abcabc\n"  # the old entry is untouched


def test_damaged_entry_is_rebuilt(tmp_path: Path) -> None:
    path = write(tmp_path, MIXED * 10)
    a = encoded.load(path)
    ids_file = a.entry / "ids.bin"
    del a
    ids_file.write_bytes(ids_file.read_bytes()[:-5])  # truncated, e.g. a full disk at the time
    b = encoded.load(path)
    assert not b.reused and b.vocab.decode(b.ids) == MIXED * 10


def test_two_writers_of_one_entry(tmp_path: Path) -> None:
    # Two processes of one job may encode the same corpus at once: the second rename finds the first's entry.
    path = write(tmp_path, MIXED)
    a = encoded.load(path)
    st = path.stat()
    encoded._build_entry(path, a.entry, "utf-8", "x" * 64, st, None, encoded.CHUNK_BYTES)
    assert encoded.load(path).reused
    assert [p.name for p in encoded.cache_root().iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_processes_sharing_a_cache_encode_once(tmp_path: Path) -> None:
    # The processes of a job on one host start together: one encodes, the others wait for it and reuse it.
    path = write(tmp_path, MIXED * 40_000)  # 2.8 MB, non-ASCII: the slow path, so the builds would overlap
    code = (
        "import sys; from pathlib import Path; "
        "from charlstm.data import encoded; print(encoded.load(Path(sys.argv[1])).reused)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], env=cli_env(), stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    assert sorted(p.communicate(timeout=60)[0].strip() for p in procs) == ["False", "True", "True"]


def test_encodings_have_separate_entries(tmp_path: Path) -> None:
    path = write(tmp_path, MIXED)
    u, b = encoded.load(path, "utf-8"), encoded.load(path, "bytes")
    assert u.entry != b.entry and len(u.ids) == len(MIXED) and len(b.ids) == len(MIXED.encode("utf-8"))


def test_a_resumed_runs_vocabulary(tmp_path: Path) -> None:
    run_vocab, _ = corpus.load_corpus(write(tmp_path, "abcdef xyz\n", "run.txt"))
    enc = encoded.load(write(tmp_path, "face bad\n"), vocab=run_vocab)
    assert enc.vocab is run_vocab and run_vocab.decode(enc.ids) == "face bad\n"
    again = encoded.load(tmp_path / "c.txt", vocab=run_vocab)  # the renumbered ids are cached as well
    assert np.array_equal(again.ids, enc.ids)
    with pytest.raises(CorpusError, match="not in the run's vocabulary: 'q'"):
        encoded.load(write(tmp_path, "quack\n", "q.txt"), vocab=Vocab("utf-8", tuple(map(ord, "\nacku"))))


def test_size_threshold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = write(tmp_path, MIXED)
    assert not encoded.use_cache(small)  # default: 32 MB
    monkeypatch.setenv("CHARLSTM_CACHE_MIN_MB", "0")
    assert encoded.use_cache(small)
    vocab, ids = encoded.load_any_size(small)
    assert isinstance(ids, np.memmap) and vocab.decode(ids) == MIXED
    monkeypatch.setenv("CHARLSTM_CACHE_MIN_MB", "lots")
    with pytest.raises(CorpusError, match="CHARLSTM_CACHE_MIN_MB"):
        encoded.use_cache(small)


def test_batches_from_a_memmap_read_only_their_windows(tmp_path: Path) -> None:
    # 256 MB of ids on disk (sparse, so instant): the split and a batch must not copy the array.
    big = tmp_path / "ids.bin"
    with big.open("wb") as fh:
        fh.truncate(256 << 20)
    ids = np.memmap(big, dtype=np.uint8, mode="r")
    tracemalloc.start()
    tr, va = corpus.split(ids, 0.1)
    b = batches.get_batch(tr, 1234, 64, 256, seed=0)
    r = batches.get_batch(tr, 7, 64, 256, seed=0, mode="random", rows=slice(32, 64))
    v = batches.eval_batches(va, 64, 256, 2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert b.x.shape == (64, 256) and r.x.shape == (32, 256) and len(v) == 2
    assert peak < 2 << 20, peak  # a few batches' worth, not 256 MB
