"""`charlstm corpus get`: download from a loopback server, checksum, cache, and clean failures."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import assert_clean_error, run_cli

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "tinyshakespeare.txt"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging each request to stderr (where the command's own error line goes)."""

    def log_message(self, format: str, *args: object) -> None: ...


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving the real file and a wrong one."""
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is absent: the test serves a real copy of tinyshakespeare.txt from there")
    root = tmp_path_factory.mktemp("www")
    shutil.copy(SHARED, root / "input.txt")
    (root / "wrong.txt").write_text("not shakespeare\n" * 1000)
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _cli(args: list[str], cwd: Path, cache: Path):  # type: ignore[no-untyped-def]
    return run_cli(args, cwd=cwd, env={"CHARLSTM_CACHE": str(cache)})


@pytest.mark.slow
def test_get_verifies_caches_and_trains_by_name(server: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = _cli(["corpus", "get", "tinyshakespeare", "--url", f"{server}/input.txt"], tmp_path, cache)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path.read_bytes() == SHARED.read_bytes()
    assert not list(path.parent.glob("*.part"))
    listed = _cli(["corpus", "list"], tmp_path, cache)
    assert "tinyshakespeare" in listed.stdout and "languages" in listed.stdout
    trained = _cli(
        [
            "train",
            "tinyshakespeare",
            "--config",
            "tiny",
            "--set",
            "train.steps=2",
            "--set",
            "train.eval_every=2",
            "--set",
            "checkpoint.every=2",
            "--name",
            "ts",
            "--quiet",
        ],
        tmp_path,
        cache,
    )
    assert trained.returncode == 0, trained.stderr
    assert "tinyshakespeare" in (tmp_path / "runs" / "ts" / "run.json").read_text()


@pytest.mark.slow
def test_wrong_checksum_leaves_no_file(server: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = _cli(["corpus", "get", "tinyshakespeare", "--url", f"{server}/wrong.txt"], tmp_path, cache)
    assert_clean_error(proc, "checksum mismatch", code=1)
    assert not any(p.is_file() for p in cache.rglob("*"))


@pytest.mark.slow
def test_failed_download_leaves_no_file(server: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = _cli(["corpus", "get", "tinyshakespeare", "--url", f"{server}/missing.txt"], tmp_path, cache)
    assert_clean_error(proc, "download of tinyshakespeare failed", code=1)
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_train_by_name_before_download_says_how(tmp_path: Path) -> None:
    proc = _cli(["train", "tinyshakespeare", "--config", "tiny"], tmp_path, tmp_path / "empty-cache")
    assert_clean_error(proc, "not downloaded yet", "charlstm corpus get tinyshakespeare", code=1)
