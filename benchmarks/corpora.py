"""Corpora of other sizes for the sizing measurements, built offline and deterministically:

shakespeare-100k.txt  the first 100,000 characters of tiny-shakespeare (~100 KB);
python-stdlib.txt     the standard library's own Python source (every .py file outside the test suites,
                      sorted by path, lines with characters outside printable ASCII dropped): ~10 MB of text
                      every Python install has; its exact size depends on the Python version.

  python benchmarks/corpora.py --shakespeare ../shared/corpora/tinyshakespeare.txt --out /tmp/corpora
"""

from __future__ import annotations

import argparse
import hashlib
import sysconfig
from pathlib import Path

_SKIP = {"site-packages", "test", "tests", "idlelib", "lib2to3"}  # test suites, the IDE, and installed packages


def python_stdlib() -> str:
    """This Python's standard-library source as one text."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        if _SKIP & set(path.relative_to(root).parts):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = [line for line in text.splitlines() if all(" " <= ch <= "~" or ch == "\t" for ch in line)]
        out.append(f"# {path.relative_to(root).as_posix()}\n" + "\n".join(lines) + "\n")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shakespeare", type=Path, required=True, help="tinyshakespeare.txt")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    texts = {
        "shakespeare-100k.txt": args.shakespeare.read_text(encoding="utf-8")[:100_000],
        "python-stdlib.txt": python_stdlib(),
    }
    for name, text in texts.items():
        data = text.encode("utf-8")
        (args.out / name).write_bytes(data)
        print(f"{name}: {len(text):,} chars, {len(set(text))} distinct, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
