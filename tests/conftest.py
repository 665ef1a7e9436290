"""Settings for the whole test session.

Every test, and every CLI subprocess a test starts (they inherit the environment), uses a cache directory of
its own: downloads, encoded corpora and compiled XLA programs never go to the user's ~/.cache/charlstm. The
compiled programs are shared by the session's processes, as they are by a user's successive commands, and so
are they by the test processes of a parallel run (pytest -n): the workers inherit the directory the first
process made, and that process alone removes it at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("CHARLSTM_TEST_CACHE"):
    _CACHE = os.environ["CHARLSTM_TEST_CACHE"]  # a worker of a parallel run: the first process's directory
else:
    _CACHE = tempfile.mkdtemp(prefix="charlstm-test-cache-")
    os.environ["CHARLSTM_TEST_CACHE"] = _CACHE
os.environ["CHARLSTM_CACHE"] = _CACHE  # set at import, before any test module imports charlstm or JAX


def pytest_unconfigure(config: pytest.Config) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(_CACHE, ignore_errors=True)
