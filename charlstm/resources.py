"""Where the bundled configs and corpora are, however charlstm was installed.

The repository keeps them at the top level (`configs/`, `corpora/`); the wheel ships them inside the package
(`charlstm/configs/`, `charlstm/corpora/`, see `package-dir` in pyproject.toml). So an installed copy finds them
with `importlib.resources`, and a source checkout (an editable install, or the tree on sys.path) finds them
beside the package directory.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

DataDir = Literal["configs", "corpora"]


def data_dir(name: DataDir) -> Path:
    """The directory of the bundled `configs` or `corpora`, as a real path (callers glob it and open its files)."""
    packaged = resources.files("charlstm").joinpath(name)
    # A zipped install gives a path-like object that is not on the file system; such an install is not supported.
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parent.parent / name
    if source.is_dir():
        return source
    # Not raised: an absent directory lists no configs and finds no bundled corpus, and those errors say so.
    return Path(str(packaged))
