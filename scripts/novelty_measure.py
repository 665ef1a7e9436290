"""The measurements behind copied-text detection (docs/novelty.md), each printed as the docs quote it.

    python scripts/novelty_measure.py matches FILE...   # unseen text against its corpus: the default --min-copy
    python scripts/novelty_measure.py build FILE        # building the cached index: time and peak memory
    python scripts/novelty_measure.py mix OUT --mb 100  # a large corpus of varied text to build it on

`matches` splits each FILE as training does (the last 10% held out), indexes the training split and prints the
distribution of the longest verbatim match starting at each character of the held-out split, and the share of
its characters inside spans of at least N characters for several N. `build` runs in a fresh cache
($CHARLSTM_CACHE is set to a temporary directory), so it measures a first build, then a reuse.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from charlstm.data import corpus
from charlstm.evaluation import novelty

THRESHOLDS = (12, 16, 20, 24, 28, 32, 40, 48, 64)


def matches(paths: list[Path]) -> None:
    for path in paths:
        text = path.read_text(encoding="utf-8")
        k = corpus.train_length(len(text), 0.1)
        index = novelty.from_bytes(text[:k].encode("utf-8"))
        unseen = text[k:]
        tic = time.perf_counter()
        ms = novelty.matching_statistics(index, unseen)
        seconds = time.perf_counter() - tic
        pct = [int(np.percentile(ms, q)) for q in (50, 90, 99, 99.9)]
        print(f"{path.name}: {len(unseen):,} held-out characters against {k:,} ({len(unseen) / seconds:,.0f} chars/s)")
        print(
            f"  longest match per character: median {pct[0]}, 90% {pct[1]}, 99% {pct[2]}, 99.9% {pct[3]}, "
            f"max {int(ms.max())}"
        )
        for n in THRESHOLDS:
            inside = np.zeros(len(unseen), dtype=bool)
            for i in np.flatnonzero(ms >= n):
                inside[i : i + ms[i]] = True
            print(f"  N={n}: {inside.mean():.2%} of the characters in spans of N+")


def build(path: Path) -> None:
    os.environ["CHARLSTM_CACHE"] = tempfile.mkdtemp(prefix="charlstm-novelty-")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    index = novelty.load(path, "utf-8", 0.1)
    assert index is not None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    again = novelty.load(path, "utf-8", 0.1)
    assert again is not None and again.reused
    sample = path.read_text(encoding="utf-8", errors="replace")[:2000]
    tic = time.perf_counter()
    novelty.check(again, sample)
    check_s = time.perf_counter() - tic
    size = sum(f.stat().st_size for f in index.entry.iterdir()) if index.entry else 0
    print(
        f"{path.name}: {path.stat().st_size / 1e6:.1f} MB, training split {len(index.text) / 1e6:.1f} MB, "
        f"suffix array {index.sa.dtype}"
    )
    print(
        f"  first use (hash, build, write): {index.seconds:.2f} s, peak memory {peak:,.0f} MB "
        f"(the process before: {base:,.0f} MB); cache entry {size / 1e6:,.0f} MB"
    )
    print(f"  later use (memory-mapped): {again.seconds * 1000:.1f} ms; checking 2,000 characters: {check_s:.2f} s")


def mix(out: Path, mb: float) -> None:
    """Varied text: the Python sources of this interpreter's library, then of its installed packages."""
    target, written = int(mb * 1e6), 0
    roots = [Path(os.__file__).parent, Path(np.__file__).parent.parent]  # the standard library, site-packages
    with out.open("wb") as fh:
        for root in roots:
            for src in sorted(root.rglob("*.py")):
                data = src.read_bytes().replace(b"\x00", b"")
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError:
                    continue
                data = data[: target - written]
                while data and (data[-1] & 0xC0) == 0x80:  # never cut a character in two
                    data = data[:-1]
                fh.write(data)
                written += len(data)
                if written >= target - 4:
                    print(f"wrote {out}: {written:,} bytes")
                    return
    sys.exit(f"only {written:,} bytes of Python sources found under {roots}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("matches").add_argument("files", nargs="+", type=Path)
    sub.add_parser("build").add_argument("file", type=Path)
    p = sub.add_parser("mix")
    p.add_argument("out", type=Path)
    p.add_argument("--mb", type=float, default=100.0)
    args = parser.parse_args()
    if args.what == "matches":
        matches(args.files)
    elif args.what == "build":
        build(args.file)
    else:
        mix(args.out, args.mb)
