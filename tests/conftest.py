"""Settings for the whole test session.

Every test, and every CLI subprocess a test starts (they inherit the environment), uses a cache directory of
its own: downloads, encoded corpora and compiled XLA programs never go to the user's ~/.cache/charlstm. The
compiled programs are shared by the session's processes, as they are by a user's successive commands.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

_CACHE = tempfile.mkdtemp(prefix="charlstm-test-cache-")
os.environ["CHARLSTM_CACHE"] = _CACHE  # set at import, before any test module imports charlstm or JAX


@pytest.fixture(scope="session", autouse=True)
def _session_cache() -> Iterator[str]:
    yield _CACHE
    shutil.rmtree(_CACHE, ignore_errors=True)
