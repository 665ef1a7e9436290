"""Property tests: damaged run files and hostile requests.

Random bytes, random JSON, plausible-looking records with values of the wrong type, and truncations are
written into one artefact of one run (metrics.jsonl, run.json, config.yaml, vocab.json, a checkpoint's
metadata); then `runs`, `plot`, `sample`, `eval`, `export` and serve's `/api/runs` must each end with exit 0
or 1 (HTTP 200) and at most one error line, never a traceback, and leave the other run untouched. Serve's
request bodies get the same treatment: every answer is a 200 or a 4xx JSON object.

CHARLSTM_FUZZ_EXAMPLES sets the number of examples per test (default: a few, to keep the suite fast).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helpers
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import charlstm

starlette = pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
with warnings.catch_warnings():  # newer Starlette prefers httpx2 for its test client; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from charlstm.serve import app as serve_app  # noqa: E402

EXAMPLES = int(os.environ.get("CHARLSTM_FUZZ_EXAMPLES", "0"))
TINY = {"train.steps": 4, "train.eval_every": 2, "checkpoint.every": 2, "train.sample_length": 0}
OUTCOMES: dict[str, dict[str, int]] = {}  # what each command answered, for a run with many examples


def examples(default: int) -> int:
    return EXAMPLES or default


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs directory with two tiny runs: "a" gets damaged, "b" must stay as it is."""
    runs = tmp_path_factory.mktemp("fuzz") / "runs"
    charlstm.train(None, "tiny", TINY, runs_dir=runs, name="a", progress=False)
    shutil.copytree(runs / "a", runs / "b")
    return runs


def tally(name: str, outcome: str) -> None:
    OUTCOMES.setdefault(name, {}).setdefault(outcome, 0)
    OUTCOMES[name][outcome] += 1


def run_cli(*args: str | Path) -> tuple[int, str, str]:
    """The CLI in this process (`helpers.run_cli`): (exit code, stdout, stderr)."""
    proc = helpers.run_cli(args)
    return proc.returncode, proc.stdout, proc.stderr


def assert_clean(name: str, code: int, err: str) -> None:
    """Exit 0 or 1; at most one error line, the last, after any warnings; no traceback."""
    assert "Traceback" not in err, err
    assert code in (0, 1), (name, code, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    if code == 1:
        assert len(errors) == 1 and lines[-1] == errors[0], (name, err)
        assert all(ln.startswith(("error:", "warning:")) for ln in lines), (name, err)
    else:
        assert not errors, (name, err)
    tally(name, f"exit {code}")


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in (".lock", ".lock.pid")
    }


# --- what goes into a file ---------------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=8,
)
metric_rows = st.fixed_dictionaries(
    {"step": st.integers(-5, 1 << 70) | json_values},
    optional={k: json_values | st.floats() for k in ("loss", "val_loss", "time", "chars_per_s", "skipped")}
    | {"stopped_early": json_values},
)


@st.composite
def damage(draw: st.DrawFn, original: bytes) -> bytes:
    """New contents for a file that held `original`."""
    kind = draw(st.sampled_from(["bytes", "json", "truncate", "flip", "field"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "truncate":
        return original[: draw(st.integers(0, max(0, len(original) - 1)))]
    if kind == "flip":
        at = draw(st.integers(0, max(0, len(original) - 1)))
        return original[:at] + bytes([draw(st.integers(0, 255))]) + original[at + 1 :]
    try:  # one field of the parsed file replaced by any value
        data = yaml.safe_load(original.decode())
    except Exception:
        data = None
    if isinstance(data, dict) and data:
        key = draw(st.sampled_from(sorted(data, key=str)))
        inner = data[key]
        if isinstance(inner, dict) and inner and draw(st.booleans()):
            inner[draw(st.sampled_from(sorted(inner, key=str)))] = draw(json_values)
        else:
            data[key] = draw(json_values)
        return json.dumps(data).encode()
    return draw(st.binary(max_size=50))


ARTEFACTS = [
    "metrics.jsonl",
    "run.json",
    "config.yaml",
    "vocab.json",
    "checkpoints/4/meta/metadata",
    "checkpoints/4/_CHECKPOINT_METADATA",
]


@pytest.mark.slow
@settings(
    max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(data=st.data(), artefact=st.sampled_from(ARTEFACTS))
def test_a_damaged_run_file_is_one_line_and_harms_no_other_run(base: Path, data: st.DataObject, artefact: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = root / "runs"
        shutil.copytree(base, runs, symlinks=True)
        target = runs / "a" / artefact
        original = target.read_bytes()
        if artefact == "metrics.jsonl" and data.draw(st.booleans()):
            rows = data.draw(st.lists(metric_rows, min_size=1, max_size=4))
            new = original + b"".join(json.dumps(r).encode() + b"\n" for r in rows)
        else:
            new = data.draw(damage(original))
        target.write_bytes(new)
        before = digest(runs / "b")
        text = root / "text.txt"
        text.write_text("Jammu is a beautiful place.\n")
        commands: dict[str, list[str | Path]] = {
            "runs": ["runs", "--runs-dir", runs, "--json"],
            "runs table": ["runs", "--runs-dir", runs],
            "plot": ["plot", "a", "--runs-dir", runs],
            "sample": ["sample", "--runs-dir", runs, "--run", "a", "-n", "5"],
            "eval": ["eval", text, "--runs-dir", runs, "--run", "a"],
            "export": ["export", "--runs-dir", runs, "--run", "a", "--out", root / "exported.npz"],
        }
        for name, args in commands.items():
            code, _, err = run_cli("--color", "never", *args)
            assert_clean(name, code, err)
        with TestClient(serve_app.create_app(runs), raise_server_exceptions=False) as client:
            r = client.get("/api/runs")
            assert r.status_code == 200, r.text
            assert {row["name"] for row in r.json()["runs"]} >= {"b"}
            tally("GET /api/runs", str(r.status_code))
        assert digest(runs / "b") == before  # the other run is untouched
        assert {p.name for p in root.iterdir()} <= {"exported.npz", "runs", "text.txt"}


# --- serve's request bodies ----------------------------------------------------------------------------------------

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
texts = st.text(st.characters(codec="utf-8") | surrogates, max_size=60)
field_values = json_values | texts | st.integers(-(1 << 70), 1 << 70)


def body_for(fields: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    objects = st.dictionaries(st.sampled_from(fields) | st.text(max_size=6), field_values, max_size=5)
    return st.one_of(
        objects.map(lambda d: json.dumps(d).encode()),  # ensure_ascii: a surrogate goes as \ud800
        json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
        st.just(b"[" * 100_000 + b"]" * 100_000),  # deeply nested
        st.just(b'{"text": "' + b"a" * (serve_app.MAX_BODY + 10) + b'"}'),  # too large
    )


@pytest.fixture(scope="module")
def client(base: Path) -> Iterator[TestClient]:
    with TestClient(serve_app.create_app(base), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.slow
@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), path=st.sampled_from(["/api/analyze", "/api/sample"]))
def test_every_request_body_gets_a_200_or_a_4xx_json_object(client: TestClient, data: st.DataObject, path: str) -> None:
    fields = serve_app.ANALYZE_FIELDS if path == "/api/analyze" else serve_app.SAMPLE_FIELDS
    raw = data.draw(body_for(fields))
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    tally(f"POST {path}", str(r.status_code))
    assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text[:300], raw[:200])
    if r.status_code != 200:
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert isinstance(body, dict) and body["error"] and "\n" not in body["error"]


def rss() -> int:
    """This process's resident memory in bytes (the server runs in it, in a thread)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident memory from /proc")
def test_a_huge_chunked_body_is_refused_before_it_is_read(base: Path) -> None:
    """300 MB sent without a length: a 413, and the server's memory grows by about its limit, not the body."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(serve_app.create_app(base), log_level="critical"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)
    try:
        conn = socket.create_connection(sock.getsockname(), timeout=30)
        conn.sendall(b"POST /api/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        conn.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"a" * (1 << 16)
        sent, start, peak, sending = 0, rss(), [0], True

        def watch() -> None:
            while sending:
                peak[0] = max(peak[0], rss())
                time.sleep(0.005)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        with contextlib.suppress(OSError):
            while sent < 300 << 20:
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        sending = False
        watcher.join()
        answer = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in answer:
                part = conn.recv(65536)
                if not part:
                    break
                answer += part
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert peak[0] - start < 64 << 20, f"memory grew by {peak[0] - start:,} bytes for a {sent:,}-byte body"
        conn.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def test_outcomes_are_reported(record_property: Any) -> None:
    """Not a check: the tally of what the property tests above saw, as test properties (and on stdout)."""
    record_property("outcomes", json.dumps(OUTCOMES))
    print(json.dumps(OUTCOMES, indent=1))
