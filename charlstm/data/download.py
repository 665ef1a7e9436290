"""Downloadable corpora: fetched only by an explicit `charlstm corpus get NAME`, verified by checksum, cached.

Nothing here runs at training time: `charlstm train NAME` uses the cached file and says how to fetch it when
it is missing. A download goes to a temporary file that is renamed into place only after its checksum matches,
so a failed or corrupted download never leaves a partial file behind.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from charlstm.errors import CorpusError


@dataclass(frozen=True)
class Remote:
    url: str
    sha256: str
    size: int  # bytes
    description: str


REGISTRY: dict[str, Remote] = {
    "tinyshakespeare": Remote(
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        size=1_115_394,
        description="40,000 lines of Shakespeare, the standard char-rnn benchmark (1.1 MB)",
    ),
}


def cache_dir() -> Path:
    """$CHARLSTM_CACHE, else $XDG_CACHE_HOME/charlstm, else ~/.cache/charlstm."""
    if os.environ.get("CHARLSTM_CACHE"):
        return Path(os.environ["CHARLSTM_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "charlstm"


def cached_path(name: str) -> Path:
    return cache_dir() / "corpora" / f"{name}.txt"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def get(
    name: str,
    url: str | None = None,
    progress: Callable[[int, int], None] = lambda done, total: None,
    timeout: float = 60.0,
) -> Path:
    """Download corpus `name` (from `url` if given, e.g. a mirror) into the cache; return its path.

    An already cached file whose checksum matches is not fetched again.
    """
    import urllib.error  # here, not at the top: `cache_dir` is read at every start-up, and urllib is slow to import
    import urllib.request

    if name not in REGISTRY:
        raise CorpusError(f"unknown corpus '{name}'", f"downloadable corpora: {', '.join(sorted(REGISTRY))}")
    remote = REGISTRY[name]
    dest = cached_path(name)
    if dest.exists() and _sha256(dest) == remote.sha256:
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CorpusError(
            f"cannot create cache directory {dest.parent}: {err.strerror}", "set CHARLSTM_CACHE to a writable directory"
        ) from None
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url or remote.url, timeout=timeout) as resp, tmp.open("wb") as out:
            total = int(resp.headers.get("Content-Length") or remote.size)
            done = 0
            while block := resp.read(1 << 16):
                out.write(block)
                done += len(block)
                progress(done, total)
        got = _sha256(tmp)
        if got != remote.sha256:
            raise CorpusError(
                f"checksum mismatch for {name}: got sha256 {got[:12]}…, expected {remote.sha256[:12]}…",
                "the download is corrupted or the source changed; try again or pass --url with a good mirror",
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
        raise CorpusError(
            f"download of {name} failed: {reason}", "check the network connection, or pass --url with a mirror"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def resolve_name(name: str) -> Path | None:
    """The cached file of a downloadable corpus, or a CorpusError saying how to fetch it; None if not a name."""
    if name not in REGISTRY:
        return None
    path = cached_path(name)
    if not path.exists():
        raise CorpusError(f"corpus '{name}' is not downloaded yet", f"run: charlstm corpus get {name}")
    return path
