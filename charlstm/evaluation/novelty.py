"""Copied text: which spans of a generated text occur verbatim in the run's training text.

A character model that has over-fitted reproduces its corpus; a sample then reads well because it is the corpus.
This module finds, for every character of a generated text, the longest string starting there that occurs in
the training split (its matching statistics), and marks the spans of at least `MIN_COPY` characters.

The index is a suffix array of the training split's UTF-8 bytes (for a run on `--encoding bytes`, its raw bytes),
built by libdivsufsort (`pydivsufsort`) in C: about a second for a megabyte, well under a minute for 100 MB.
It is built once per corpus content and kept in the charlstm cache beside the encoded corpora
(`$CHARLSTM_CACHE/encoded/`, same hashing and same atomic writes as `charlstm.data.encoded`), then
memory-mapped: a later check reads only the pages its binary searches touch. Each lookup is a binary search
of the suffix array (O(m log n) for a pattern of m bytes); the matching statistics need about two lookups per
character, because a match at i, less its first character, is a match at i + 1 (ms[i+1] >= ms[i] - 1).

Matching is on bytes, but every pattern starts and ends at a character boundary of the generated text, so a
match is whole characters; UTF-8 is self-synchronising, so a byte match that starts on a lead byte starts on a
character boundary of the corpus too. docs/novelty.md has the measurements behind `MIN_COPY`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from charlstm.data import corpus, encoded
from charlstm.data.corpus import Encoding, Vocab
from charlstm.errors import CorpusError, UsageError, UserError
from charlstm.evaluation import MIN_COPY as MIN_COPY  # the one default, defined where the CLI reads it

FORMAT = 1  # bump when the index entry's layout changes: old entries are then ignored, not misread
CHUNK = 1 << 24  # bytes read at a time when a file is scanned
SUMMARY_MAX_BYTES = 256 << 20  # the end-of-training summary builds an index for training text up to this size
INSTALL_HINT = 'pip install "charlstm[novelty]" (or pip install pydivsufsort)'


def _divsufsort() -> ModuleType:
    """pydivsufsort, imported on first use; a one-line error naming the install command where it is missing."""
    try:
        import pydivsufsort
    except ImportError:
        raise UserError("copied-text detection needs the pydivsufsort package", INSTALL_HINT) from None
    module: ModuleType = pydivsufsort
    return module


# --- the index ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Index:
    """A searchable training text: its bytes, their suffix array and where its lines start.

    The arrays are memory-mapped from the cache (copy-on-write: the C search takes writable buffers; nothing is
    ever written) or held in memory (`from_bytes`)."""

    text: np.ndarray  # uint8: the training split's bytes
    sa: np.ndarray  # int32 (int64 from 2 GiB): the suffixes of `text` in sorted order
    newlines: np.ndarray  # int64: the byte offset of every newline of `text`, ascending
    entry: Path | None = None  # the cache directory it was read from
    reused: bool = False  # True when an earlier use had built it
    seconds: float = 0.0  # time spent finding or building it

    def find(self, pattern: bytes) -> tuple[int, int]:
        """(occurrences of `pattern` in the text, its first row in the suffix array)."""
        count, left = _divsufsort().sa_search(self.text, self.sa, pattern)
        return int(count), int(left or 0)

    def first_offset(self, pattern: bytes) -> int:
        """The byte offset of the earliest occurrence of `pattern` (which must occur)."""
        count, left = self.find(pattern)
        rows = self.sa[left : left + min(count, 100_000)]  # all of them, unless the pattern is very common
        return int(rows.min())

    def line_of(self, offset: int) -> int:
        """The 1-based line of the text at byte `offset`: the newlines before it, plus one."""
        return int(np.searchsorted(self.newlines, offset, side="left")) + 1


def index_arrays(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(suffix array, newline offsets) of a uint8 array. The suffix array is int32 below 2 GiB, else int64."""
    sa = _divsufsort().divsufsort(data)
    return sa, newline_offsets(data)


def newline_offsets(data: np.ndarray) -> np.ndarray:
    """The offsets of the b"\\n" bytes of `data`, scanned a chunk at a time (no n-byte temporary)."""
    parts = [np.flatnonzero(data[a : a + CHUNK] == 10) + a for a in range(0, len(data), CHUNK)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def from_bytes(data: bytes) -> Index:
    """An index of `data` in memory, not cached: for short texts and tests."""
    if not data:
        raise CorpusError("the training text is empty", "train on a file with text in it")
    arr = np.frombuffer(data, dtype=np.uint8).copy()  # writable, as the C search needs
    sa, newlines = index_arrays(arr)
    return Index(arr, sa, newlines)


# --- matching ----------------------------------------------------------------------------------------------------


def char_offsets(data: bytes) -> np.ndarray:
    """The byte offset where each character of UTF-8 `data` starts, plus len(data) at the end."""
    raw = np.frombuffer(data, dtype=np.uint8)
    return np.append(np.flatnonzero((raw & 0xC0) != 0x80), len(raw)).astype(np.int64)


def matching_statistics(index: Index, text: str) -> np.ndarray:
    """For each character i of `text`, the length in characters of the longest string starting at i that occurs
    in the indexed text.

    Each step starts from what the previous one proved (its match less one character), so the number of searches
    is about twice the length of `text` instead of its length times the match lengths."""
    data = corpus.text_bytes(text)
    starts = char_offsets(data)
    n = len(starts) - 1
    ms = np.zeros(n, dtype=np.int64)
    k = 0
    for i in range(n):
        k = max(k - 1, 0)
        while i + k < n and index.find(data[starts[i] : starts[i + k + 1]])[0] > 0:
            k += 1
        ms[i] = k
    return ms


@dataclass(frozen=True)
class Span:
    """A copied span: characters start..end of the generated text occur verbatim in the training text."""

    start: int  # characters into the generated text (the prompt is not counted)
    end: int  # exclusive
    corpus_offset: int  # byte offset of its earliest occurrence in the training text
    corpus_line: int  # the 1-based line of the corpus file where that occurrence starts
    occurrences: int  # how many times it occurs in the training text

    @property
    def length(self) -> int:
        return self.end - self.start

    def to_json(self) -> dict[str, int]:
        return {
            "start": self.start,
            "end": self.end,
            "length": self.length,
            "corpus_line": self.corpus_line,
            "corpus_offset": self.corpus_offset,
            "occurrences": self.occurrences,
        }


def check_min_copy(min_copy: int) -> None:
    """A UsageError unless the shortest span counted is a whole number of at least 1 character."""
    if isinstance(min_copy, bool) or not isinstance(min_copy, int) or min_copy < 1:
        raise UsageError(f"--min-copy must be at least 1 character (got {min_copy!r})", f"the default is {MIN_COPY}")


def find_spans(index: Index, text: str, min_copy: int = MIN_COPY) -> list[Span]:
    """The maximal copied spans of `text` of at least `min_copy` characters, in order of their start.

    A span is maximal: it cannot be extended on either side and still occur. Two spans overlap where the text
    joins two passages of the corpus (the join itself occurs in neither)."""
    check_min_copy(min_copy)
    ms = matching_statistics(index, text)
    data = corpus.text_bytes(text)
    starts = char_offsets(data)
    spans = []
    for i in np.flatnonzero(ms >= min_copy):
        if i > 0 and ms[i] < ms[i - 1]:  # inside the span that starts before it
            continue
        end = int(i + ms[i])
        pattern = data[starts[i] : starts[end]]
        count, _ = index.find(pattern)
        offset = index.first_offset(pattern)
        spans.append(Span(int(i), end, offset, index.line_of(offset), count))
    return spans


def covered(spans: list[Span] | tuple[Span, ...], n: int) -> np.ndarray:
    """A boolean per character of a text of `n` characters: inside some span."""
    inside = np.zeros(n, dtype=bool)
    for s in spans:
        inside[s.start : s.end] = True
    return inside


@dataclass(frozen=True)
class Novelty:
    """A sample checked against the training text: the prompt, the generated text and its copied spans."""

    prompt: str
    text: str  # the generated text, which alone is checked
    spans: tuple[Span, ...]
    min_copy: int

    @property
    def sample(self) -> str:
        """The prompt and the generated text, as `Model.sample` returns them."""
        return self.prompt + self.text

    @property
    def copied_chars(self) -> int:
        """Characters of the generated text inside a span (overlaps counted once)."""
        return int(covered(self.spans, len(self.text)).sum())

    @property
    def share(self) -> float:
        """The share of the generated characters inside a span, 0..1."""
        return self.copied_chars / len(self.text) if self.text else 0.0

    @property
    def longest(self) -> Span | None:
        return max(self.spans, key=lambda s: (s.length, -s.start)) if self.spans else None

    def pieces(self) -> Iterator[tuple[str, bool]]:
        """The generated text cut into (piece, copied) runs, for display."""
        inside = covered(self.spans, len(self.text))
        a = 0
        for b in range(1, len(self.text) + 1):
            if b == len(self.text) or inside[b] != inside[a]:
                yield self.text[a:b], bool(inside[a])
                a = b

    def bracketed(self) -> str:
        """The generated text with each copied run between [[ and ]] (the form without colour)."""
        return "".join(f"[[{p}]]" if copied else p for p, copied in self.pieces())

    def to_json(self) -> dict[str, object]:
        longest = self.longest
        return {
            "min_copy": self.min_copy,
            "generated_chars": len(self.text),
            "copied_chars": self.copied_chars,
            "copied_share": round(self.share, 6),
            "longest": longest.to_json() if longest else None,
            "spans": [s.to_json() for s in self.spans],
        }


def check(index: Index, sample: str, prompt: str = "", min_copy: int = MIN_COPY) -> Novelty:
    """`sample` (which starts with `prompt`) checked for copies of the training text in what follows the prompt."""
    text = sample[len(prompt) :] if sample.startswith(prompt) else sample
    return Novelty(prompt, text, tuple(find_spans(index, text, min_copy)), min_copy)


def summary_line(checked: list[Novelty]) -> str:
    """One line for all samples: the share of generated characters in copied spans and the longest span."""
    total = sum(len(c.text) for c in checked)
    copied = sum(c.copied_chars for c in checked)
    share = copied / total if total else 0.0
    line = f"copied from the training text: {share:.1%} of {total:,} generated characters"
    line += f" in spans of {checked[0].min_copy}+ characters" if checked else ""
    spans = [(s, i) for i, c in enumerate(checked) for s in c.spans]
    if not spans:
        return line + "; no span"
    span, i = max(spans, key=lambda si: si[0].length)
    where = f" of sample {i + 1}" if len(checked) > 1 else ""
    return (
        f"{line}; longest {span.length} characters{where} (characters {span.start}..{span.end}), "
        f"corpus line {span.corpus_line:,}"
    )


# --- the cached index of a corpus --------------------------------------------------------------------------------


def train_bytes(path: Path, encoding: Encoding, val_fraction: float) -> int:
    """The byte length of a corpus file's training split: its first `corpus.train_length` characters (bytes with
    the bytes encoding), found by counting UTF-8 lead bytes a chunk at a time."""
    counts = []
    with corpus.open_corpus(path) as fh:
        while block := fh.read(CHUNK):
            raw = np.frombuffer(block, dtype=np.uint8)
            counts.append(len(raw) if encoding == "bytes" else int(np.count_nonzero((raw & 0xC0) != 0x80)))
    n = sum(counts)
    k = corpus.train_length(n, val_fraction)
    if encoding == "bytes" or k == n:
        return k if encoding == "bytes" else path.stat().st_size
    before = 0
    for j, c in enumerate(counts):
        if before + c > k:
            with corpus.open_corpus(path) as fh:
                fh.seek(j * CHUNK)
                raw = np.frombuffer(fh.read(CHUNK), dtype=np.uint8)
            return j * CHUNK + int(np.flatnonzero((raw & 0xC0) != 0x80)[k - before])
        before += c
    raise AssertionError("unreachable: k < n")


def memory_needed(n_bytes: int) -> int:
    """Bytes of memory building the index of `n_bytes` of text takes: the text and its suffix array (4 bytes a
    position below 2 GiB, 8 above), plus the newline offsets and some slack."""
    return n_bytes * (1 + (4 if n_bytes < 2**31 else 8)) + n_bytes // 8 + (64 << 20)


def memory_available() -> int | None:
    """MemAvailable of /proc/meminfo (Linux), else the physical memory, else None (unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(n_bytes: int, available: int | None = None) -> None:
    """A CorpusError when indexing `n_bytes` needs more memory than is available."""
    available = memory_available() if available is None else available
    need = memory_needed(n_bytes)
    if available is not None and need > available:
        raise CorpusError(
            f"indexing the {n_bytes / 1e6:,.0f} MB training text for copied-text detection needs about "
            f"{need / 1e9:.1f} GB of memory, {available / 1e9:.1f} GB are available",
            "free memory, or leave out --novelty",
        )


def entry_path(digest: str, encoding: Encoding, val_fraction: float) -> Path:
    """The cache directory of the index of one corpus content's training split."""
    return encoded.cache_root() / f"{digest[:32]}-{encoding}-val{val_fraction!r}-sa-v{FORMAT}"


def _open_entry(entry: Path) -> Index | None:
    """A complete index entry, memory-mapped; None when absent or damaged."""
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            return None
        n, n_lines, dtype = int(meta["length"]), int(meta["lines"]), np.dtype(meta["sa_dtype"])
        sizes = {"text.bin": n, "sa.bin": n * dtype.itemsize, "newlines.bin": n_lines * 8}
        if any((entry / name).stat().st_size != size for name, size in sizes.items()):
            return None
        return Index(
            np.memmap(entry / "text.bin", dtype=np.uint8, mode="c", shape=(n,)),
            np.memmap(entry / "sa.bin", dtype=dtype, mode="c", shape=(n,)),
            np.memmap(entry / "newlines.bin", dtype=np.int64, mode="r", shape=(n_lines,))
            if n_lines
            else np.zeros(0, np.int64),
            entry,
            reused=True,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cached(digest: str, encoding: Encoding, val_fraction: float) -> Index | None:
    """The index of a corpus content already in the cache, without reading the corpus; None when not built."""
    return _open_entry(entry_path(digest, encoding, val_fraction))


def corpus_digest(path: Path) -> str:
    """The sha256 of a corpus file, remembered per path while the file is unchanged (see `encoded`); an unwritable
    cache only means hashing again next time."""
    with corpus.open_corpus(path) as fh:
        st = os.fstat(fh.fileno())
    digest = encoded.known_hash(path, st)
    if digest is None:
        digest = encoded.content_hash(path)
        with contextlib.suppress(OSError):
            encoded.remember_hash(path, st, digest)
    return digest


def load(
    path: Path,
    encoding: Encoding,
    val_fraction: float,
    *,
    digest: str | None = None,
    vocab: Vocab | None = None,
    build: bool = True,
) -> Index | None:
    """The index of the training split of the corpus `path`, from the cache, built there on first use.

    `digest`: the sha256 the run recorded of its corpus; its index is used even when the file is gone, and a
    file with another content is an error. Without one (a run from before it was recorded), the file's symbols
    must be those of the run's `vocab`. With `build` False, None instead of building."""
    tic = time.perf_counter()
    if digest is not None and (found := cached(digest, encoding, val_fraction)) is not None:
        return _timed(found, tic)
    if not path.is_file():
        raise CorpusError(
            f"the training text is missing: {path} (moved or deleted since the run trained)",
            "pass the file it trained on with --corpus FILE",
        )
    own = corpus_digest(path)
    if digest is not None and own != digest:
        raise CorpusError(
            f"{path} has changed since the run trained on it (its sha256 differs)",
            "pass the file it trained on with --corpus FILE",
        )
    entry = entry_path(own, encoding, val_fraction)
    found = _open_entry(entry)
    if found is None and not build:
        return None
    if found is None:
        if digest is None and vocab is not None:
            _check_vocab(path, vocab)
        with encoded.building(entry):  # another process building the same index: wait for it, then reuse
            found = _open_entry(entry)
            if found is None:
                _build(path, entry, encoding, val_fraction, own)
                found = _open_entry(entry)
                if found is None:
                    raise CorpusError(
                        f"the index {entry} is unreadable right after writing it",
                        "check the disk, or delete the directory and retry",
                    )
                found = Index(found.text, found.sa, found.newlines, entry, reused=False)
    return _timed(found, tic)


def _timed(index: Index, tic: float) -> Index:
    return Index(index.text, index.sa, index.newlines, index.entry, index.reused, time.perf_counter() - tic)


def _check_vocab(path: Path, vocab: Vocab) -> None:
    """A CorpusError when the file has symbols the run's vocabulary lacks: it is not what the run trained on."""
    from charlstm.data import stream_encode

    seen = np.zeros(stream_encode.N_POINTS[vocab.encoding], dtype=bool)
    with corpus.open_corpus(path) as fh:
        for points in stream_encode.iter_points(fh, vocab.encoding):
            seen[points] = True
    own = np.zeros_like(seen)
    own[np.asarray(vocab.symbols, dtype=np.int64)] = True
    if (seen & ~own).any():
        raise CorpusError(
            f"{path} has characters the run's vocabulary lacks: it changed since the run trained on it",
            "pass the file it trained on with --corpus FILE",
        )


def _build(path: Path, entry: Path, encoding: Encoding, val_fraction: float, digest: str) -> None:
    """Build the index of the training split of `path` into the cache directory `entry`."""
    n = train_bytes(path, encoding, val_fraction)
    check_memory(n)
    tic = time.perf_counter()
    data = np.fromfile(path, dtype=np.uint8, count=n)
    sa, newlines = index_arrays(data)

    def fill(tmp: Path) -> None:
        data.tofile(tmp / "text.bin")
        sa.tofile(tmp / "sa.bin")
        newlines.tofile(tmp / "newlines.bin")
        encoded.write_json(
            tmp / "meta.json",
            {
                "format": FORMAT,
                "source": str(path.resolve()),
                "sha256": digest,
                "encoding": encoding,
                "val_fraction": val_fraction,
                "length": n,
                "lines": len(newlines),
                "sa_dtype": sa.dtype.name,
                "seconds": round(time.perf_counter() - tic, 3),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )

    encoded.guard_cache_write(lambda: encoded.write_entry(entry, fill, lambda: _open_entry(entry) is not None))
