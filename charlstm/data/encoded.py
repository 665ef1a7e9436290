"""Large corpora: an on-disk cache of encoded ids, memory-mapped by training.

A corpus too large for memory (or merely large) is encoded once by the streaming encoder (`stream_encode`)
into an id file; training then memory-maps that file: batches gather their few windows from it and the kernel
pages in only what is read. Same vocabulary and ids as `corpus.load_corpus`, so the same training.

The cache lives in `$CHARLSTM_CACHE/encoded/` (see `download.cache_dir`), keyed by the content's sha256 and
the encoding, so copies and touched files reuse one entry. The hash is streamed too; a small record per
source path remembers (size, mtime, inode) -> hash so that later runs on an unchanged file skip even the
hashing pass. An entry is built in a private temporary directory and renamed into place, so concurrent runs
(several processes of one job) and crashes never leave a half-written entry that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlstm.data import corpus, download
from charlstm.data.corpus import Encoding, Vocab, open_corpus
from charlstm.data.stream_encode import CHUNK_BYTES, Progress, content_hash, encode_to_disk
from charlstm.errors import CorpusError

__all__ = [
    "CHUNK_BYTES",
    "Encoded",
    "Progress",
    "building",
    "cache_root",
    "content_hash",
    "file_digest",
    "guard_cache_write",
    "known_hash",
    "remember_hash",
    "write_entry",
    "write_json",
    "encode_to_disk",
    "load",
    "load_any_size",
    "min_bytes",
    "use_cache",
]

FORMAT = 1  # bump when the entry layout changes: old entries are then ignored, not misread
DEFAULT_MIN_MB = 32.0  # files at least this large go through the cache (override: $CHARLSTM_CACHE_MIN_MB)


@dataclass(frozen=True)
class Encoded:
    """A corpus from the cache: its vocabulary, its ids (read-only memmap) and where they live."""

    vocab: Vocab
    ids: np.ndarray
    entry: Path
    reused: bool  # True when an earlier run had already encoded this content
    seconds: float  # time spent hashing and encoding in this call


def min_bytes() -> int:
    """Size from which `charlstm train` encodes through the cache ($CHARLSTM_CACHE_MIN_MB, 0: always)."""
    raw = os.environ.get("CHARLSTM_CACHE_MIN_MB", "")
    try:
        mb = float(raw) if raw.strip() else DEFAULT_MIN_MB
    except ValueError:
        raise CorpusError(
            f"CHARLSTM_CACHE_MIN_MB={raw!r} is not a number", "set it to a size in MB, e.g. 32 (0: always cache)"
        ) from None
    return max(0, int(mb * (1 << 20)))


def use_cache(path: Path) -> bool:
    """Whether `path` is large enough to be encoded through the cache."""
    try:
        return path.is_file() and path.stat().st_size >= min_bytes()
    except OSError:
        return False  # the in-memory reader reports the problem with its usual message


def cache_root() -> Path:
    """Where the encoded corpora live: $CHARLSTM_CACHE/encoded (see `download.cache_dir`)."""
    return download.cache_dir() / "encoded"


def write_json(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _stat_key(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "dev": st.st_dev}


def known_hash(path: Path, st: os.stat_result) -> str | None:
    """The hash recorded for this path when it had exactly this size, mtime and inode, else None."""
    record = cache_root() / "stat" / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32] + ".json")
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("sha256") if data.get("stat") == _stat_key(st) else None


def remember_hash(path: Path, st: os.stat_result, digest: str) -> None:
    record = cache_root() / "stat" / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32] + ".json")
    record.parent.mkdir(parents=True, exist_ok=True)
    write_json(record, {"path": str(path.resolve()), "stat": _stat_key(st), "sha256": digest})


def file_digest(
    path: Path, st: os.stat_result, progress: Progress | None = None, chunk_bytes: int = CHUNK_BYTES
) -> str:
    """The sha256 of `path` (whose stat is `st`): the remembered one while the file is unchanged, else hashed
    now and remembered, so that a large corpus is hashed once, not at every use."""
    digest = known_hash(path, st)
    if digest is None:
        digest = content_hash(path, progress, chunk_bytes)
        guard_cache_write(lambda: remember_hash(path, st, digest))
    return digest


def _read_entry(entry: Path) -> tuple[Vocab, np.ndarray] | None:
    """A complete cache entry as (vocab, memmapped ids); None when absent or damaged."""
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            return None
        vocab = Vocab(encoding=meta["encoding"], symbols=tuple(int(s) for s in meta["symbols"]))
        dtype, n = np.dtype(meta["dtype"]), int(meta["length"])
        if (entry / "ids.bin").stat().st_size != n * dtype.itemsize or dtype != np.dtype(vocab.dtype):
            return None
        return vocab, np.memmap(entry / "ids.bin", dtype=dtype, mode="r", shape=(n,))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_readable(path: Path, encoding: Encoding) -> os.stat_result:
    """The checks `corpus.load_corpus` makes before reading: exists, a file, not empty, not binary."""
    with open_corpus(path) as fh:
        head = fh.read(1 << 20)
        st = os.fstat(fh.fileno())
    if not head:
        raise CorpusError(f"corpus is empty: {path}", "pass a file with text in it")
    if encoding == "utf-8" and b"\x00" in head:
        raise CorpusError(
            f"corpus looks binary (contains NUL bytes): {path}", "pass --encoding bytes to train on it anyway"
        )
    return st


def load(
    path: Path,
    encoding: Encoding = "utf-8",
    vocab: Vocab | None = None,
    progress: Progress | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Encoded:
    """(vocab, memmapped ids) of a corpus through the cache, encoding it on first use.

    With `vocab` given (a resumed run), the ids are under that vocabulary; symbols it lacks are an error.
    """
    tic = time.perf_counter()
    st = _check_readable(path, encoding)
    digest = file_digest(path, st, progress, chunk_bytes)
    entry = cache_root() / f"{digest[:32]}-{encoding}-v{FORMAT}"
    found = _read_entry(entry)
    reused = found is not None
    if found is None:
        with building(entry):  # another process of this host encoding the same file: wait for it, then reuse
            found = _read_entry(entry)
            reused = found is not None
            if found is None:
                guard_cache_write(lambda: _build_entry(path, entry, encoding, digest, st, progress, chunk_bytes))
                found = _read_entry(entry)
        if found is None:
            raise CorpusError(
                f"the encoded cache entry {entry} is unreadable right after writing it",
                "check the disk, or delete the directory and retry",
            )
    own_vocab, ids = found
    if progress:
        progress("reused" if reused else "done", st.st_size, st.st_size)
    if vocab is not None and vocab != own_vocab:
        ids = _under_vocab(path, entry, own_vocab, ids, vocab)
        own_vocab = vocab
    return Encoded(own_vocab, ids, entry, reused, time.perf_counter() - tic)


@contextlib.contextmanager
def building(entry: Path) -> Iterator[None]:
    """An exclusive lock (flock) on building one entry, so that the processes of a job sharing a cache
    encode a corpus once, not once each. Without flock (or the cache unwritable), no lock: still correct,
    as each build goes through its own temporary directory."""
    try:
        import fcntl

        (entry.parent / "locks").mkdir(parents=True, exist_ok=True)
        fh = open(entry.parent / "locks" / f"{entry.name}.lock", "a")
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()  # releases the lock


def guard_cache_write(fn: Callable[[], None]) -> None:
    """Run `fn`, which writes the cache; a full disk or an unwritable directory becomes a CorpusError."""
    try:
        fn()
    except OSError as err:
        raise CorpusError(
            f"cannot write the encoded-corpus cache in {cache_root()}: {err.strerror or err}",
            "free disk space, or set CHARLSTM_CACHE to a writable directory",
        ) from None


def _build_entry(
    src: Path,
    entry: Path,
    encoding: Encoding,
    digest: str,
    st: os.stat_result,
    progress: Progress | None,
    chunk_bytes: int,
) -> None:
    def fill(tmp: Path) -> None:
        tic = time.perf_counter()
        vocab, n = encode_to_disk(src, tmp / "ids.bin", encoding, progress, chunk_bytes)
        write_json(
            tmp / "meta.json",
            {
                "format": FORMAT,
                "source": str(src.resolve()),
                "sha256": digest,
                "encoding": encoding,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "length": n,
                "dtype": np.dtype(vocab.dtype).name,
                "symbols": list(vocab.symbols),
                "seconds": round(time.perf_counter() - tic, 3),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )

    write_entry(entry, fill, lambda: _read_entry(entry) is not None)


def write_entry(entry: Path, fill: Callable[[Path], None], complete: Callable[[], bool]) -> None:
    """Make the cache directory `entry` atomically: `fill` writes its files into a private temporary directory,
    which is then renamed into place, so that no reader ever sees half an entry. When `entry` already exists,
    a `complete` one (another process finished first) is kept; a damaged one is replaced."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        fill(tmp)
        try:
            os.rename(tmp, entry)
        except OSError:
            if complete():  # another process finished the same entry first: use theirs
                return
            # A damaged entry (a crash or a full disk while an older version wrote it): set it aside, retry.
            os.rename(entry, tmp.with_name(tmp.name + ".damaged"))
            os.rename(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(tmp.with_name(tmp.name + ".damaged"), ignore_errors=True)


def _under_vocab(path: Path, entry: Path, own: Vocab, ids: np.ndarray, vocab: Vocab) -> np.ndarray:
    """Ids of a cached corpus renumbered into another vocabulary (a resumed run's), cached next to it."""
    if own.encoding != vocab.encoding:
        raise CorpusError(
            f"{path} is encoded as {own.encoding} but the run's vocabulary is {vocab.encoding}",
            f"resume with --encoding {vocab.encoding}",
        )
    mapped = vocab.encode_points(np.asarray(own.symbols, dtype=np.int64))
    if (mapped < 0).any():
        missing = np.asarray(own.symbols)[mapped < 0][:10]
        shown = "".join(chr(p) for p in missing) if vocab.encoding == "utf-8" else str(missing.tolist())
        raise CorpusError(
            f"{path} has symbols not in the run's vocabulary: {shown!r}", "train on a corpus that has them"
        )
    name = f"ids-{hashlib.sha256(vocab.to_json().encode()).hexdigest()[:16]}.bin"
    target, dtype = entry / name, np.dtype(vocab.dtype)
    if not (target.exists() and target.stat().st_size == len(ids) * dtype.itemsize):
        tmp = entry / f".{name}.{os.getpid()}.tmp"
        table = mapped.astype(dtype)

        def write() -> None:
            with tmp.open("wb") as out:
                for a in range(0, len(ids), CHUNK_BYTES):
                    table[ids[a : a + CHUNK_BYTES]].tofile(out)
            os.replace(tmp, target)

        guard_cache_write(write)
    return np.memmap(target, dtype=dtype, mode="r", shape=(len(ids),))


def load_any_size(
    path: Path, encoding: Encoding = "utf-8", vocab: Vocab | None = None, progress: Progress | None = None
) -> tuple[Vocab, np.ndarray]:
    """`corpus.load_corpus` for a file of any size: through the cache from `min_bytes()` up (same results)."""
    if use_cache(path):
        enc = load(path, encoding, vocab, progress)
        return enc.vocab, enc.ids
    return corpus.load_corpus(path, encoding, vocab)
