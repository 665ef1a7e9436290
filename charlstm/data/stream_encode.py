"""The streaming encoder: a text file of any size -> an id file, in one pass and constant memory.

Each chunk is decoded (a UTF-8 character split across chunk boundaries is carried over to the next chunk),
mapped to provisional ids in first-seen order and appended to the id file. When the pass ends the vocabulary
is known; a cheap second pass over the id file (1-4 bytes per character, not the text) renumbers the ids to
the sorted vocabulary, so the result is exactly what `corpus.load_corpus` gives in memory. `encoded` keeps
the results in a cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from charlstm.data.corpus import Encoding, Vocab, open_corpus
from charlstm.errors import CorpusError

CHUNK_BYTES = 4 << 20  # larger chunks were no faster and took more memory (docs/performance.md)
N_POINTS = {"utf-8": 0x110000, "bytes": 256}

# (phase, bytes done, bytes total); phases: "hashing", "encoding", "ordering", then "done" or "reused".
Progress = Callable[[str, int, int], None]


def content_hash(path: Path, progress: Progress | None = None, chunk_bytes: int = CHUNK_BYTES) -> str:
    """sha256 of a file, read in chunks (constant memory)."""
    h = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with open_corpus(path) as fh:
        while block := fh.read(chunk_bytes):
            h.update(block)
            done += len(block)
            if progress:
                progress("hashing", done, total)
    return h.hexdigest()


def _split_utf8(data: bytes) -> int:
    """Length of the prefix of `data` that ends on a character boundary (at most 3 bytes are held back)."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 == 0x80:  # continuation byte: keep looking for the lead byte
            continue
        need = 1 if b < 0x80 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4  # bytes the character needs
        return len(data) - back if need > back else len(data)
    return len(data)  # only continuation bytes: invalid, and decoding says where


def iter_points(
    fh: BinaryIO, encoding: Encoding, chunk_bytes: int = CHUNK_BYTES, progress: Progress | None = None, total: int = 0
) -> Iterator[np.ndarray]:
    """Code points (utf-8, validated) or byte values of a file, one array per chunk.

    A character split by a chunk boundary is completed from the next chunk; invalid UTF-8 raises the same
    CorpusError as the in-memory reader, with the offset counted from the start of the file.
    """
    pending, offset, done = b"", 0, 0  # offset: file position of pending[0]
    while True:
        block = fh.read(chunk_bytes)
        done += len(block)
        data = pending + block
        if not data:
            return
        raw = np.frombuffer(data, dtype=np.uint8)
        if encoding == "bytes" or not (raw >= 0x80).any():  # ASCII: the bytes are the code points
            pending, cut = b"", len(data)
            points = raw
        else:
            cut = _split_utf8(data) if block else len(data)  # at the end, an unfinished character is an error
            pending = data[cut:]
            try:
                text = data[:cut].decode("utf-8")
            except UnicodeDecodeError as err:
                raise CorpusError(
                    f"invalid UTF-8 at byte offset {offset + err.start}",
                    "pass --encoding bytes to train on raw bytes, or re-save the file as UTF-8",
                ) from None
            points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        offset += cut
        if progress:
            progress("encoding", done, total)
        if len(points):
            yield points
        if not block:
            return


def _dtype_for(n_symbols: int) -> np.dtype:
    """The id dtype of a vocabulary of this size (the same rule as `Vocab.dtype`)."""
    return np.dtype(np.uint8 if n_symbols <= 256 else np.uint16 if n_symbols <= 65536 else np.int32)


def _widen(path: Path, old: np.dtype, new: np.dtype) -> None:
    """Rewrite an id file in a wider dtype (the vocabulary outgrew the old one), chunk by chunk."""
    tmp = path.with_name(path.name + ".wide")
    src = np.memmap(path, dtype=old, mode="r") if path.stat().st_size else np.zeros(0, old)
    with tmp.open("wb") as out:
        for a in range(0, len(src), CHUNK_BYTES):
            src[a : a + CHUNK_BYTES].astype(new).tofile(out)
    del src
    os.replace(tmp, path)


class _Numbering:
    """Provisional ids, handed out in order of first appearance as the stream reveals symbols."""

    def __init__(self, n_points: int) -> None:
        self.table = np.full(n_points, -1, dtype=np.int32)  # code point -> provisional id
        self.order: list[np.ndarray] = []  # provisional id -> code point, in pieces
        self.count = 0
        self.bytes_known = b""  # byte values (code points < 256) already numbered
        self.byte_table = bytearray(256)  # byte value -> provisional id, for bytes.translate

    def add(self, new: np.ndarray) -> None:
        ids = np.arange(self.count, self.count + len(new), dtype=np.int32)
        self.table[new] = ids
        self.order.append(new.astype(np.int64))
        self.count += len(new)
        small = new < 256
        self.bytes_known += new[small].astype(np.uint8).tobytes()
        for point, i in zip(new[small].tolist(), ids[small].tolist()):
            if i < 256:
                self.byte_table[point] = i

    def encode(self, points: np.ndarray, dtype: np.dtype) -> bytes:
        """Provisional ids of a chunk as `dtype` bytes, numbering its new symbols first."""
        if points.dtype == np.uint8:  # ASCII or raw bytes: bytes.translate runs at memory speed, a gather does not
            buf = points.tobytes()
            if rest := buf.translate(None, self.bytes_known):
                self.add(np.unique(np.frombuffer(rest, dtype=np.uint8)))
            if self.count <= 256 and dtype == np.uint8:
                return buf.translate(self.byte_table)
        ids = self.table[points]
        missing = ids < 0
        if missing.any():
            self.add(np.unique(points[missing]))
            ids = self.table[points]
        return ids.astype(dtype).tobytes()


def encode_to_disk(
    src: Path, dst: Path, encoding: Encoding, progress: Progress | None = None, chunk_bytes: int = CHUNK_BYTES
) -> tuple[Vocab, int]:
    """Stream `src` into an id file `dst` under the corpus's own (sorted) vocabulary; returns (vocab, length).

    Memory stays at a few chunks whatever the file size: ids are written as they are produced, in the
    narrowest dtype the vocabulary seen so far needs (widened in place if it outgrows it).
    """
    num = _Numbering(N_POINTS[encoding])
    n, dtype = 0, _dtype_for(1)
    total = src.stat().st_size
    out = dst.open("wb")
    try:
        with open_corpus(src) as fh:
            for points in iter_points(fh, encoding, chunk_bytes, progress, total):
                chunk = num.encode(points, dtype)
                if _dtype_for(num.count) != dtype:  # rare, and early in a file: new symbols show up early
                    out.close()
                    _widen(dst, dtype, _dtype_for(num.count))
                    dtype = _dtype_for(num.count)
                    out = dst.open("ab")
                    chunk = num.encode(points, dtype)
                out.write(chunk)
                n += len(points)
    finally:
        out.close()
    if n == 0:
        raise CorpusError(f"corpus is empty: {src}", "pass a file with text in it")
    order = np.concatenate(num.order)  # provisional id -> code point
    rank = np.empty(num.count, dtype=np.int64)
    rank[np.argsort(order, kind="stable")] = np.arange(num.count)  # provisional id -> sorted id
    if not np.array_equal(rank, np.arange(num.count)):
        _renumber(dst, dtype, rank.astype(dtype), progress)
    return Vocab(encoding=encoding, symbols=tuple(int(p) for p in np.sort(order))), n


def _renumber(path: Path, dtype: np.dtype, table: np.ndarray, progress: Progress | None) -> None:
    """ids <- table[ids] over an id file, in place and in chunks."""
    mm = np.memmap(path, dtype=dtype, mode="r+")
    step = max(1, CHUNK_BYTES // dtype.itemsize)
    # uint8 ids: bytes.translate wants a full 256-entry table (values past the vocabulary never occur).
    byte_table = np.resize(table, 256).astype(np.uint8).tobytes() if dtype == np.uint8 else None
    for a in range(0, len(mm), step):
        block = mm[a : a + step]
        block[:] = np.frombuffer(block.tobytes().translate(byte_table), np.uint8) if byte_table else table[block]
        if progress:
            progress("ordering", min(a + step, len(mm)) * dtype.itemsize, len(mm) * dtype.itemsize)
    mm.flush()
    del mm
