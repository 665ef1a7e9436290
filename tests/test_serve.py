"""`charlstm serve`: the JSON endpoints (through Starlette's test client), the page in a real headless Chromium,
and a bounded load test against a real server on loopback.

One tiny run trained on the bundled corpus serves every test. Values are checked against what `charlstm
inspect` computes (`inspection.record_traces`, `inspection.analyse`) and samples against `Model.sample`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

starlette = pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
with warnings.catch_warnings():  # newer Starlette prefers httpx2 for its test client; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from helpers import assert_clean_error, cli_env  # noqa: E402

import charlstm  # noqa: E402
from charlstm import resources  # noqa: E402
from charlstm.analysis import gates, inspection  # noqa: E402
from charlstm.serve import analysis  # noqa: E402
from charlstm.serve import app as serve_app  # noqa: E402

JAMMU = "Jammu is a beautiful place. I went there with my family and I learned a little Kashmiri"
LINES = ["Jammu is a beautiful place.", "Goa is a place by the sea.", "I went to Kerala."]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("serve") / "runs"
    overrides = {"train.steps": 4, "train.eval_every": 2, "train.log_every": 1, "checkpoint.every": 2}
    charlstm.train(None, "tiny", overrides, runs_dir=runs, name="tiny", progress=False)
    return runs


@pytest.fixture(scope="module")
def model(runs_dir: Path) -> charlstm.Model:
    return charlstm.load("tiny", runs_dir=runs_dir)


@pytest.fixture(scope="module")
def client(runs_dir: Path) -> Iterator[TestClient]:
    with TestClient(serve_app.create_app(runs_dir), raise_server_exceptions=False) as c:
        yield c


# --- endpoints ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_runs_lists_the_runs_by_name(client: TestClient) -> None:
    r = client.get("/api/runs")
    assert r.status_code == 200
    data = r.json()
    assert data["default"] == "tiny" and [row["name"] for row in data["runs"]] == ["tiny"]
    assert "path" not in data["runs"][0] and data["runs"][0]["cell"] == "lstm"


@pytest.mark.slow
def test_run_detail_has_config_curves_and_inspects_place_cell(client: TestClient, model: charlstm.Model) -> None:
    r = client.get("/api/runs/tiny")
    assert r.status_code == 200
    d = r.json()
    assert d["config"] == model.config.model_dump() and d["checkpoint"] == model.step == 4
    assert d["quantities"] == ["forget", "input", "output", "cell", "hidden"]
    assert d["curves"]["steps"] and len(d["curves"]["steps"]) == len(d["curves"]["loss"])
    assert d["curves"]["val_steps"] == [2, 4] and d["curves"]["total_steps"] == 4
    # the cell `charlstm inspect --file corpora/essay.txt` reports first: the run trained on the default corpus
    corpus = resources.data_dir("corpora") / "essay.txt"
    source = inspection.load_text(None, corpus, analysis.MAX_CHARS)
    report = inspection.analyse(model.params, model.config.model, model.vocab, source.text, records=source.records)
    assert report.places is not None
    best = report.places.cells[0]
    assert d["place_cell"]["cell"] == best.cell and d["place_cell"]["layer"] == best.layer + 1
    assert d["place_cell"]["quantity"] == "cell" and d["place_cell"]["high"] == best.high


@pytest.mark.slow
def test_the_page_and_its_files_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for src in ("/static/app.js", "/static/style.css"):
        assert src in page.text and client.get(src).status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from elsewhere: works offline


@pytest.mark.slow
def test_analyze_gives_inspects_values_and_the_top_ten(client: TestClient, model: charlstm.Model) -> None:
    text = "\n".join(LINES) + "\n" + JAMMU
    r = client.post("/api/analyze", json={"run": "tiny", "text": text})
    assert r.status_code == 200
    d = r.json()
    hidden = model.config.model.hidden
    assert d["quantities"] == ["forget", "input", "output", "cell", "hidden"] and d["layer"] == 1
    assert "".join(c["symbol"] for c in d["chars"]) == text
    ids = model.vocab.encode(text).astype(np.int32)
    traces = inspection.record_traces(
        model.params, model.config.model, ids, ("f", "i", "o", "c", "h"), prime=model.vocab.symbols.index(ord("\n"))
    )[0]
    for name, letter in gates.SHOW["lstm"].items():
        got = np.array([c["values"][name] for c in d["chars"]])
        assert got.shape == (len(text), hidden)
        np.testing.assert_allclose(got, traces[letter], atol=6e-5)
    for c in d["chars"]:
        probs = [g["p"] for g in c["next"]]
        assert len(probs) == 10 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    assert len(d["start_next"]) == 10
    # the top guess after the text is what greedy sampling writes next
    greedy = model.sample(text, length=1, greedy=True)[0][-1]
    assert d["chars"][-1]["next"][0]["symbol"] == greedy
    # the top cells are the ones `inspect --top 5 --show cell` picks for this text
    report = inspection.analyse(model.params, model.config.model, model.vocab, text, top=5, show="cell")
    assert [t["cell"] for t in d["top_cells"]["cell"]] == [s.cell for s in report.selected]


@pytest.mark.slow
def test_analyze_one_quantity_and_a_text_starting_a_line(client: TestClient) -> None:
    r = client.post("/api/analyze", json={"run": "tiny", "text": "\nGoa", "layer": 1, "quantities": ["forget"]})
    d = r.json()
    assert r.status_code == 200 and list(d["chars"][0]["values"]) == ["forget"] and list(d["top_cells"]) == ["forget"]
    assert d["start_next"] is None  # the text's own newline starts the line: nothing is read before it


def _events(body: str) -> list[tuple[str, Any]]:
    out = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields.get("event", "message"), json.loads(fields["data"])))
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {"prompt": "Jammu", "length": 600, "seed": 3, "temperature": 0.8, "top_k": 5},
        {"prompt": "", "length": 40, "seed": 1, "top_p": 0.9},
        {"prompt": "Goa ", "length": 30, "greedy": True},
        {"prompt": "Goa", "length": 900, "seed": 2, "stop": ["e "]},
    ],
)
def test_sample_streams_what_model_sample_gives(
    client: TestClient, model: charlstm.Model, options: dict[str, Any]
) -> None:
    r = client.post("/api/sample", json={"run": "tiny", **options})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.text)
    assert events[-1][0] == "done" and all(kind == "message" for kind, _ in events[:-1])
    pieces = [data["text"] for _, data in events[:-1]]
    want = model.sample(options["prompt"] or None, **{k: v for k, v in options.items() if k != "prompt"})[0]
    assert "".join(pieces) == want
    assert len(pieces) >= 2  # the prompt as read, then the generated text in pieces


@pytest.mark.slow
def test_sample_with_novelty_ends_with_the_copied_spans(client: TestClient, model: charlstm.Model) -> None:
    options = {"prompt": "I went", "length": 300, "seed": 2}
    r = client.post("/api/sample", json={"run": "tiny", **options, "novelty": True, "min_copy": 2})
    assert r.status_code == 200
    events = _events(r.text)
    assert [kind for kind, _ in events[-2:]] == ["novelty", "done"]
    text = "".join(data["text"] for kind, data in events if kind == "message")
    assert text == model.sample("I went", length=300, seed=2)[0]
    assert events[-2][1] == model.novelty(text, prompt="I went", min_copy=2).to_json()
    assert events[-2][1]["spans"] and events[-2][1]["min_copy"] == 2
    plain = _events(client.post("/api/sample", json={"run": "tiny", **options}).text)
    assert "novelty" not in [kind for kind, _ in plain]


BAD = [
    ("post", "/api/sample", {"run": "tiny", "novelty": "yes"}, 400, "novelty must be true or false"),
    ("post", "/api/sample", {"run": "tiny", "novelty": True, "min_copy": 0}, 400, "min_copy must be"),
    ("post", "/api/analyze", {"run": "nope", "text": "Goa"}, 404, "no run named"),
    ("post", "/api/analyze", {"run": "../tiny", "text": "Goa"}, 404, "no run named"),
    ("post", "/api/analyze", {"run": 7, "text": "Goa"}, 400, "run must be"),
    ("post", "/api/analyze", {"run": "tiny", "text": ""}, 400, "empty"),
    ("post", "/api/analyze", {"run": "tiny"}, 400, "text must be a string"),
    ("post", "/api/analyze", {"run": "tiny", "text": "a" * 20_001}, 400, "more than 20,000"),
    ("post", "/api/analyze", {"run": "tiny", "text": "☃é"}, 400, "no character of the text"),
    ("post", "/api/analyze", '{"run": "tiny", "text": "J\\ud800"}', 400, "not valid Unicode: character 2"),
    ("post", "/api/analyze", '{"run": "tiny", "text": "Goa", "\\ud800": 1}', 400, "unknown field(s): '\\ud800'"),
    ("post", "/api/analyze", {"run": "tiny", "text": "Goa", "layer": 2}, 400, "layer must be"),
    ("post", "/api/analyze", {"run": "tiny", "text": "Goa", "layer": "1"}, 400, "layer must be"),
    ("post", "/api/analyze", {"run": "tiny", "text": "Goa", "layer": True}, 400, "layer must be"),
    ("post", "/api/analyze", {"run": "tiny", "text": "Goa", "quantities": ["update"]}, 400, "quantities"),
    ("post", "/api/analyze", {"run": "tiny", "text": "Goa", "quantities": []}, 400, "quantities"),
    ("post", "/api/analyze", {"run": "tiny", "text": "Goa", "colour": "red"}, 400, "unknown field"),
    ("post", "/api/analyze", "not json", 400, "not JSON"),
    ("post", "/api/analyze", ["Goa"], 400, "JSON object"),
    ("post", "/api/analyze", "x" * (2 << 20), 413, "request body"),
    ("post", "/api/sample", {"run": "nope"}, 404, "no run named"),
    ("post", "/api/sample", {"run": "tiny", "temperature": 0}, 400, "temperature"),
    ("post", "/api/sample", {"run": "tiny", "temperature": "hot"}, 400, "temperature"),
    ("post", "/api/sample", {"run": "tiny", "top_k": -1}, 400, "top_k"),
    ("post", "/api/sample", {"run": "tiny", "top_k": 10_000}, 400, "top-k"),
    ("post", "/api/sample", {"run": "tiny", "top_p": 1.5}, 400, "top-p"),
    ("post", "/api/sample", {"run": "tiny", "length": 0}, 400, "length"),
    ("post", "/api/sample", {"run": "tiny", "length": 10**9}, 400, "length"),
    ("post", "/api/sample", {"run": "tiny", "length": 2.5}, 400, "length"),
    ("post", "/api/sample", {"run": "tiny", "seed": -1}, 400, "seed"),
    ("post", "/api/sample", {"run": "tiny", "greedy": "yes"}, 400, "greedy"),
    ("post", "/api/sample", {"run": "tiny", "prompt": 5}, 400, "prompt must be"),
    ("post", "/api/sample", '{"run": "tiny", "prompt": "\\udcff"}', 400, "not valid Unicode"),
    ("post", "/api/sample", {"run": "tiny", "seed": 1 << 32}, 400, "seed must be a whole number in 0..4294967295"),
    ("post", "/api/sample", {"run": "tiny", "prompt": "a" * 20_001}, 400, "more than 20,000"),
    ("post", "/api/sample", {"run": "tiny", "stop": "\n"}, 400, "stop must be a list"),
    ("post", "/api/sample", {"run": "tiny", "stop": [""]}, 400, "stop must be a list of up to 16 non-empty"),
    ("post", "/api/sample", {"run": "tiny", "stop": ["\u2603"]}, 400, "can never be generated"),
    ("get", "/api/runs/nope", None, 404, "no run named"),
    ("get", "/api/nothing", None, 404, "Not Found"),
    ("get", "/api/analyze", None, 405, "Method Not Allowed"),
    ("get", "/static/nothing.js", None, 404, "Not Found"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"), BAD, ids=[f"{m} {p} {str(b)[:40]}" for m, p, b, _, _ in BAD]
)
def test_bad_input_gets_a_4xx_json_error(
    client: TestClient, method: str, path: str, body: Any, status: int, words: str
) -> None:
    if method == "get":
        r = client.get(path)
    elif isinstance(body, str):
        r = client.post(path, content=body.encode("utf-8"))
    else:
        r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and words in r.json()["error"], r.text
    # and the server goes on serving
    assert client.post("/api/analyze", json={"run": "tiny", "text": "Goa"}).status_code == 200


@pytest.mark.slow
def test_unknown_characters_are_skipped_marked_and_counted(client: TestClient) -> None:
    text = "Goa ☃is é"
    r = client.post("/api/analyze", json={"run": "tiny", "text": text, "quantities": ["cell"]})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["skipped"] == [{"index": 4, "symbol": "☃"}, {"index": 8, "symbol": "é"}]
    clean = client.post("/api/analyze", json={"run": "tiny", "text": "Goa is ", "quantities": ["cell"]}).json()
    assert got["chars"] == clean["chars"]  # read as if they were not there
    r = client.post("/api/sample", json={"run": "tiny", "prompt": "Goa ☃", "length": 5})
    first = _events(r.text)[0][1]
    assert r.status_code == 200 and first == {"text": "Goa ", "skipped": [{"index": 4, "symbol": "☃"}]}


@pytest.mark.slow
def test_damaged_runs_are_404_or_listed_as_damaged(runs_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name in ("cfg", "metrics", "ok"):
        shutil.copytree(runs_dir / "tiny", runs / name)
    (runs / "cfg" / "config.yaml").write_text("model: [\n")
    (runs / "metrics" / "metrics.jsonl").write_text('[1, 2]\n{"step": 1}\n')
    with TestClient(serve_app.create_app(runs), raise_server_exceptions=False) as c:
        listed = {r["name"]: r["status"] for r in c.get("/api/runs").json()["runs"]}
        assert listed == {"cfg": "damaged", "metrics": "damaged", "ok": "finished"}
        r = c.post("/api/analyze", json={"run": "cfg", "text": "Goa"})
        assert r.status_code == 404 and "damaged config.yaml" in r.json()["error"]


# --- the command line --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(2, 130), (15, 143)])
def test_ctrl_c_and_sigterm_stop_the_server_with_their_exit_codes(runs_dir: Path, signum: int, code: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "charlstm.cli", "serve", "--runs-dir", str(runs_dir), "--port", "0"],
        env=cli_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    while "serving" not in proc.stderr.readline():
        assert proc.poll() is None, proc.stderr.read()
    time.sleep(2)  # uvicorn takes the signals over once it runs
    proc.send_signal(signum)
    assert proc.wait(timeout=60) == code
    assert proc.stderr.read().strip() == "stopped"


def test_loopback_and_the_runs_directory_of_run() -> None:
    assert serve_app.is_loopback("127.0.0.1") and serve_app.is_loopback("::1") and serve_app.is_loopback("localhost")
    assert not serve_app.is_loopback("0.0.0.0") and not serve_app.is_loopback("example.org")


@pytest.mark.slow
def test_run_elsewhere_lists_its_own_directory(runs_dir: Path, tmp_path: Path) -> None:
    assert serve_app.choose_runs(None, tmp_path) == (tmp_path, None)
    assert serve_app.choose_runs(str(runs_dir / "tiny"), tmp_path) == (runs_dir.resolve(), "tiny")
    assert serve_app.choose_runs("tiny", runs_dir) == (runs_dir, "tiny")


BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("starlette", "uvicorn"):
            raise ImportError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
sys.argv = ["charlstm", "serve", "--runs-dir", sys.argv[1]]
from charlstm import cli
cli.main()
"""


@pytest.mark.slow
def test_without_the_serve_extra_one_line_names_the_install(runs_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK, str(runs_dir)],
        env={**cli_env(), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_clean_error(proc, 'pip install "charlstm[serve]"', "starlette", code=1)


@pytest.mark.slow
def test_serve_help_imports_neither_jax_nor_starlette() -> None:
    code = (
        "import sys; from charlstm import cli; sys.argv = ['charlstm', 'serve', '--help']\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'jax', 'starlette', 'uvicorn'}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--open" in proc.stdout and proc.stdout.strip().splitlines()[-1] == "[]"


# --- a real server on loopback -----------------------------------------------------------------------------------


class Server:
    """The app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, runs_dir: Path) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(serve_app.create_app(runs_dir), log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@pytest.fixture(scope="module")
def server(runs_dir: Path) -> Iterator[Server]:
    with Server(runs_dir) as s:
        yield s


REQUESTS = 15  # per client: 16 at once keep every client waiting on the others


@pytest.mark.slow
def test_load_16_clients_by_15_analyses(server: Server, record_property: Any) -> None:
    import httpx

    body = {"run": "tiny", "text": JAMMU, "quantities": ["cell"]}
    httpx.post(f"{server.url}/api/analyze", json=body, timeout=120).raise_for_status()  # load and compile first

    def client(k: int) -> list[float]:
        times = []
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for j in range(REQUESTS):
                start = time.perf_counter()
                r = c.post("/api/analyze", json={**body, "text": JAMMU[: 20 + (k + j) % 60]})
                times.append(time.perf_counter() - start)
                assert r.status_code == 200, r.text
                assert len(r.json()["chars"]) == 20 + (k + j) % 60
        return times

    with ThreadPoolExecutor(16) as pool:
        times = sorted(t for ts in pool.map(client, range(16)) for t in ts)
    assert len(times) == 16 * REQUESTS
    p95 = times[int(0.95 * len(times)) - 1]
    record_property("analyze_p95_s", p95)
    print(
        f"\n16 clients x {REQUESTS} analyses: median {statistics.median(times) * 1000:.1f} ms, "
        f"p95 {p95 * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms"
    )
    assert p95 < 10.0  # bounded: a 2-core machine shared with other work still answers every one


# --- the page in a real browser ----------------------------------------------------------------------------------


def chromium() -> str:
    found = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


class Browser:
    """Headless Chromium driven over its DevTools protocol (one page, one websocket)."""

    def __init__(self, binary: str, profile: Path) -> None:
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "about:blank",
        ]
        self.proc = subprocess.Popen([binary, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            assert time.monotonic() < deadline and self.proc.poll() is None, "chromium did not start"
            time.sleep(0.1)
        port = port_file.read_text().splitlines()[0]
        import httpx
        from websockets.sync.client import connect

        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=30).json()
        page = next(t for t in targets if t["type"] == "page")
        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=1 << 26))
        self.next_id = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    def eval(self, expression: str) -> Any:
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.eval(expression):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}; status: " + str(
                self.eval("document.getElementById('status').textContent")
            )
            time.sleep(0.1)

    def close(self) -> None:
        self.stack.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def type_and_screenshot(binary: str, url: str, text: str, profile: Path, png: Path) -> dict[str, Any]:
    """Open the page, type `text` into the box, wait for the colours and the guesses, save a screenshot."""
    browser = Browser(binary, profile)
    try:
        browser.send("Page.enable")
        browser.send("Page.navigate", url=url)
        browser.wait_for(
            "document.querySelectorAll('#run option').length > 0 && "
            "document.getElementById('quantity').options.length > 0"
        )
        browser.eval("document.getElementById('text').focus()")
        browser.send("Input.insertText", text=text)  # as typed: the box's input event fires
        browser.wait_for(
            f"document.querySelectorAll('#rows .ch').length >= {len(text)} && "
            "document.querySelectorAll('#next li').length === 10"
        )
        seen = browser.eval("""({
            colours: new Set([...document.querySelectorAll('#rows .ch')].map(s => s.style.background)).size,
            typed: [...document.querySelector('#rows .line').querySelectorAll('.ch')].map(s => s.textContent).join(''),
            next: [...document.querySelectorAll('#next li .sym')].map(s => s.textContent),
            cell: document.getElementById('cell').value, mode: document.getElementById('mode').value,
            error: document.getElementById('status').classList.contains('error')})""")
        shot = browser.send("Page.captureScreenshot", format="png")
        png.write_bytes(base64.b64decode(shot["data"]))
        return seen
    finally:
        browser.close()


@pytest.mark.slow
def test_the_page_in_headless_chromium(server: Server, runs_dir: Path, model: charlstm.Model, tmp_path: Path) -> None:
    binary = chromium()
    png = tmp_path / "serve.png"
    seen = type_and_screenshot(binary, f"{server.url}/", JAMMU, tmp_path / "profile", png)
    assert not seen["error"]
    assert seen["typed"] == JAMMU and seen["colours"] > 3 and len(seen["next"]) == 10
    place = serve_app.Runs(runs_dir).get("tiny").place_cell()
    assert place is not None and seen["mode"] == "one" and seen["cell"] == str(place["cell"])  # preselected
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


if __name__ == "__main__":  # python tests/test_serve.py RUNS_DIR OUT.png: the picture in docs/serve.md
    with Server(Path(sys.argv[1])) as live:
        profile = Path(sys.argv[2]).with_suffix(".profile")
        shutil.rmtree(profile, ignore_errors=True)
        print(type_and_screenshot(chromium(), f"{live.url}/", JAMMU, profile, Path(sys.argv[2])))
        shutil.rmtree(profile, ignore_errors=True)
    sys.exit(0)
