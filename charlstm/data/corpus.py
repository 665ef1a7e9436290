"""Text in, integer ids out: reading corpora, the vocabulary, and the train/validation split.

Encoding is vectorised with NumPy (code points -> ids through a lookup table), so a 100 MB file encodes in
seconds instead of minutes in a per-character Python loop.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from charlstm import resources
from charlstm.data import download
from charlstm.errors import CorpusError, UsageError, UserError

CORPORA_DIR = resources.data_dir("corpora")
DEFAULT_CORPUS = CORPORA_DIR / "essay.txt"  # what `charlstm train` reads with no corpus given
# compare-rnn's: one known sentence between place and language, so the cells differ only in how far back they carry it
COMPARE_CORPUS = CORPORA_DIR / "languages.txt"

Encoding = Literal["utf-8", "bytes"]


@dataclass(frozen=True)
class Vocab:
    """Sorted symbols of a corpus: Unicode code points (utf-8) or byte values (bytes)."""

    encoding: Encoding
    symbols: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def dtype(self) -> type:
        return np.uint8 if len(self) <= 256 else np.uint16 if len(self) <= 65536 else np.int32

    @functools.cached_property
    def _table(self) -> np.ndarray:
        # Built once per Vocab: prompts, eval files and the long-range records all encode through it.
        table = np.full(0x110000 if self.encoding == "utf-8" else 256, -1, dtype=np.int32)
        table[np.asarray(self.symbols, dtype=np.int64)] = np.arange(len(self), dtype=np.int32)
        return table

    def encode_points(self, points: np.ndarray) -> np.ndarray:
        """Map code points (or bytes) to ids; -1 marks symbols not in the vocabulary."""
        return self._table[points]

    def encode(self, text: str) -> np.ndarray:
        """Ids of `text`; -1 for characters the vocabulary does not have."""
        return self.encode_points(to_points(text_bytes(text), self.encoding))

    def decode(self, ids: np.ndarray | list[int]) -> str:
        """Text of `ids` (bytes that do not form valid UTF-8 are shown as U+FFFD)."""
        points = np.asarray(self.symbols, dtype=np.uint32)[np.asarray(ids, dtype=np.int64)]
        if self.encoding == "bytes":
            return points.astype(np.uint8).tobytes().decode("utf-8", errors="replace")
        return points.astype("<u4").tobytes().decode("utf-32-le")

    def symbol(self, i: int) -> str:
        """One id as printable text."""
        return chr(self.symbols[i]) if self.encoding == "utf-8" else bytes([self.symbols[i]]).decode("latin-1")

    def to_json(self) -> str:
        return json.dumps({"encoding": self.encoding, "symbols": list(self.symbols)})

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        data = json.loads(text)
        return cls(encoding=data["encoding"], symbols=tuple(int(s) for s in data["symbols"]))


def text_bytes(text: str, source: str = "the text", error: type[UserError] = UsageError) -> bytes:
    """`text` as UTF-8. A lone surrogate (JSON's "\\ud800", or a command-line byte that was not UTF-8) has no
    UTF-8 form: an `error` naming where it is."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise error(
            f"{source} is not valid Unicode: character {err.start + 1} is {text[err.start]!r}, a lone surrogate "
            "(half of a pair, or a byte that was not UTF-8)",
            "send UTF-8 text",
        ) from None


def to_points(
    data: bytes,
    encoding: Encoding,
    source: str = "",
    hint: str = "pass --encoding bytes to train on raw bytes, or re-save the file as UTF-8",
) -> np.ndarray:
    """Bytes -> array of code points (utf-8, validated) or byte values; invalid UTF-8 is a CorpusError naming
    `source` (a file) with `hint`."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if encoding == "bytes" or not (raw >= 0x80).any():  # ASCII: bytes are the code points
        return raw
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(
            f"invalid UTF-8 at byte offset {err.start}{' of ' + source if source else ''}", hint
        ) from None
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def build_vocab(points: np.ndarray, encoding: Encoding) -> Vocab:
    """The sorted set of symbols present in `points`."""
    present = np.flatnonzero(np.bincount(points, minlength=1))
    return Vocab(encoding=encoding, symbols=tuple(int(p) for p in present))


def open_corpus(path: Path, what: str = "corpus") -> BinaryIO:
    """Open a corpus (or another text file: `what` names it) for reading, turning file-system problems into
    one-line errors."""
    if not path.exists():
        raise CorpusError(f"{what} not found: {path}", "check the path, or run `charlstm train` for the default corpus")
    if path.is_dir():
        raise CorpusError(f"{what} is a directory: {path}", "pass a text file")
    if not path.is_file():  # a device or a pipe (/dev/zero) may never end: reading it would fill the memory
        raise CorpusError(f"{what} {path} is not a regular file", "pass a text file; save a stream to a file first")
    try:
        return path.open("rb")
    except OSError as err:
        raise CorpusError(f"cannot read {what} {path}: {err.strerror}", "check the file's permissions") from None


def read_bytes(path: Path, what: str = "corpus") -> bytes:
    """Read a whole corpus file (errors as in `open_corpus`)."""
    with open_corpus(path, what) as fh:
        try:
            return fh.read()
        except OSError as err:
            raise CorpusError(f"cannot read {what} {path}: {err.strerror}", "check the file's permissions") from None


def load_corpus(path: Path, encoding: Encoding = "utf-8", vocab: Vocab | None = None) -> tuple[Vocab, np.ndarray]:
    """Read a file into (vocab, ids) in memory. With `vocab` given, encode with it and reject unknown symbols."""
    data = read_bytes(path)
    if not data:
        raise CorpusError(f"corpus is empty: {path}", "pass a file with text in it")
    if encoding == "utf-8" and b"\x00" in data[: 1 << 20]:
        raise CorpusError(
            f"corpus looks binary (contains NUL bytes): {path}", "pass --encoding bytes to train on it anyway"
        )
    if vocab is not None:  # a resumed run's: the file must not bring new symbols
        ids, _ = known_ids(
            vocab,
            to_points(data, encoding),
            source=str(path),
            error=CorpusError,
            hint="train on a corpus that has them",
        )
        return vocab, ids.astype(vocab.dtype)
    points = to_points(data, encoding)
    del data
    vocab = build_vocab(points, encoding)
    return vocab, vocab.encode_points(points).astype(vocab.dtype)


def encode_text(
    vocab: Vocab,
    text: str,
    *,
    source: str = "the text",
    skip_unknown: bool = False,
    error: type[UserError] = UsageError,
    hint: str = "",
) -> tuple[np.ndarray, int]:
    """`known_ids` of a string (a prompt, a text to inspect or score)."""
    points = to_points(text_bytes(text, source), vocab.encoding)
    return known_ids(vocab, points, source=source, skip_unknown=skip_unknown, error=error, hint=hint)


def unknown_positions(vocab: Vocab, text: str) -> list[int]:
    """The indices in `text` of the characters (some of) whose symbols the vocabulary lacks: what was skipped
    when `text` was read with `skip_unknown`, for showing where."""
    data = text_bytes(text)
    unknown = vocab.encode_points(to_points(data, vocab.encoding)) < 0
    if vocab.encoding == "utf-8":
        return [int(i) for i in np.flatnonzero(unknown)]
    raw = np.frombuffer(data, dtype=np.uint8)
    char_of_byte = np.cumsum((raw & 0xC0) != 0x80) - 1  # a UTF-8 continuation byte belongs to the one before
    return sorted({int(c) for c in char_of_byte[unknown]})


def known_ids(
    vocab: Vocab,
    points: np.ndarray,
    *,
    source: str = "the text",
    skip_unknown: bool = False,
    error: type[UserError] = UsageError,
    hint: str = "",
) -> tuple[np.ndarray, int]:
    """The int32 ids of `points` (from `to_points`) and how many symbols the vocabulary lacks.

    A symbol the vocabulary lacks is an `error` naming up to ten of them, with `hint` saying how to fix it
    (default: drop them, or pass --skip-unknown); with `skip_unknown` it is dropped and counted instead.
    Nothing left to encode is an error either way.
    """
    ids = vocab.encode_points(points)
    unknown = ids < 0
    n = int(unknown.sum())
    if n and not skip_unknown:
        shown = unknown_examples(points, ids, vocab.encoding)
        noun, them = ("character", "it") if n == 1 else ("characters", "them")
        raise error(
            f"{source} has {n:,} {noun} not in the run's vocabulary: {shown!r}",
            hint or f"drop {them}, or pass --skip-unknown",
        )
    if n == len(ids):
        raise error(f"no character of {source} is in the run's vocabulary", "use characters from the training text")
    return ids[~unknown].astype(np.int32), n


def unknown_examples(points: np.ndarray, ids: np.ndarray, encoding: Encoding, limit: int = 10) -> str:
    """Up to `limit` distinct symbols that encoded to -1, for error messages."""
    bad = sorted({int(p) for p in points[ids < 0][:10_000]})[:limit]
    return "".join(chr(p) for p in bad) if encoding == "utf-8" else str(bad)


def split(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Hold out the last `val_fraction` of the corpus for validation (no shuffling: no leakage)."""
    n_train = train_length(len(ids), val_fraction)
    return ids[:n_train], ids[n_train:]


def train_length(n: int, val_fraction: float) -> int:
    """How many of a corpus's `n` symbols `split` trains on (the rest is the validation split)."""
    return n - int(round(n * val_fraction))


def check_size(n_train: int, n_val: int, batch_size: int, seq_len: int, val_fraction: float | None = None) -> None:
    """Fail with the minimum size when the corpus cannot fill one training and one validation batch.

    Pass the configured `val_fraction` for an exact minimum; without it the fraction is estimated from the
    split (which is unreliable for tiny corpora, where rounding dominates).
    """
    need_train = batch_size * seq_len + seq_len + 1
    need_val = seq_len + 1
    if n_train < need_train or n_val < need_val:
        total = n_train + n_val
        frac = val_fraction if val_fraction is not None else (n_val / total if 0 < n_val < total else 0.1)

        def fits(n: int) -> bool:  # the same rounding as `split`
            nv = int(round(n * frac))
            return n - nv >= need_train and nv >= need_val

        # Analytic estimate, then walk to the exact smallest size that `split` turns into two full sets.
        need = max(need_train + need_val, int(need_train / (1 - frac)), int(need_val / frac))
        while not fits(need):
            need += 1
        while need > 1 and fits(need - 1):
            need -= 1
        raise CorpusError(
            f"corpus too small: {total:,} symbols, need at least {need:,} for batch_size={batch_size}, "
            f"seq_len={seq_len} and the validation split",
            "use a larger file or lower data.batch_size / data.seq_len",
        )


def resolve(corpus: str | Path | None, default: Path = DEFAULT_CORPUS) -> Path:
    """A corpus argument -> a file path; None (or "") means `default`, the bundled default corpus unless given."""
    if corpus is None or str(corpus) == "":
        return default
    path = Path(corpus)
    if path.exists():
        return path
    bundled = CORPORA_DIR / f"{corpus}.txt"
    if bundled.exists():
        return bundled
    return download.resolve_name(str(corpus)) or path


def list_corpora() -> list[tuple[str, str, str]]:
    """(name, where, description) of the bundled and downloadable corpora."""
    rows = [(p.stem, str(p), "bundled") for p in sorted(CORPORA_DIR.glob("*.txt"))]
    for name, remote in sorted(download.REGISTRY.items()):
        cached = download.cached_path(name)
        rows.append(
            (
                name,
                str(cached) if cached.exists() else "not downloaded (charlstm corpus get " + name + ")",
                remote.description,
            )
        )
    return rows
