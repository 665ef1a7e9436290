"""The web application of `charlstm serve`: one page, its static files, and the JSON endpoints it calls.

    GET  /                  the page (static/index.html)
    GET  /api/runs          the runs in the runs directory, as `charlstm runs --json` lists them
    GET  /api/runs/{run}    one run: its config, loss curves from metrics.jsonl, and the place-memory cell
    POST /api/analyze       {"run", "text", "layer", "quantities"} -> per character its values and next guesses
    POST /api/sample        {"run", "prompt", "length", "temperature", ...} -> the sample as server-sent events

The client names runs by the names /api/runs lists, never by path, so a request cannot reach outside the runs
directory. Every bad request gets a 4xx JSON body {"error": ..., "hint": ...}; the model work runs in
Starlette's thread pool, so a long analysis never stops the server from answering others. docs/serve.md has
the request and response fields.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import signal
import socket
import threading
import webbrowser
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from charlstm.analysis import runs as runs_lib
from charlstm.config import MAX_SEED
from charlstm.data import corpus
from charlstm.errors import RunError, UsageError, UserError
from charlstm.evaluation.novelty import MIN_COPY
from charlstm.nn.sampling import SampleOptions
from charlstm.serve import analysis
from charlstm.training import rundir

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 1 << 20  # bytes: 20,000 characters fit many times over, even written as JSON escapes
MAX_SAMPLE = 5_000  # characters one sample request may generate
MAX_STOPS = 16  # stop texts one sample request may pass
# The fields of a sample request: the run, the prompt, the options of one sample, and the copied-text check.
SAMPLE_FIELDS = ("run", "prompt", *(f for f in SampleOptions.FIELDS if f != "num_samples"), "novelty", "min_copy")
ANALYZE_FIELDS = ("run", "text", "layer", "quantities")


class Runs:
    """The runs directory and the models loaded from it: each run loaded (and its analysis compiled) once,
    on first use, then shared by every request."""

    def __init__(self, runs_dir: Path, default: str | None = None, load: Callable[[Path], Any] | None = None) -> None:
        self.runs_dir = runs_dir
        self.default = default
        self._load = load or _load_latest
        self._models: dict[str, analysis.Analyzer] = {}
        self._lock = threading.Lock()  # guards _loading
        self._loading: dict[str, threading.Lock] = {}  # one per run: a second request waits for the first load

    def listed(self) -> list[runs_lib.RunSummary]:
        return runs_lib.list_runs(self.runs_dir)

    def default_name(self, listed: list[runs_lib.RunSummary]) -> str | None:
        """The run the page opens with: the one given to `serve --run`, else runs/latest, else the newest."""
        names = [r.name for r in listed]
        if self.default in names:
            return self.default
        try:
            latest = rundir.resolve(None, self.runs_dir).path.resolve().name
        except UserError:
            latest = None
        return latest if latest in names else (names[0] if names else None)

    def summary(self, name: object) -> runs_lib.RunSummary:
        """The listed run of that name; RunError for anything else (a path, a name not in the list)."""
        if name is None:
            name = self.default_name(self.listed())
        if not isinstance(name, str) or not name:
            raise UsageError(f"run must be a run name (got {name!r})", "pick one of GET /api/runs")
        found = next((r for r in self.listed() if r.name == name), None)
        if found is None:
            raise RunError(f"no run named {name!r} in the runs directory", "pick one of GET /api/runs")
        return found

    def get(self, name: object) -> analysis.Analyzer:
        """The loaded model of a listed run (loaded now if it is the first request for it)."""
        if isinstance(name, str) and name in self._models:  # listed when it was loaded: skip reading the directory
            return self._models[name]
        run = self.summary(name)
        with self._lock:
            lock = self._loading.setdefault(run.name, threading.Lock())
        with lock:
            if run.name not in self._models:
                analyzer = analysis.Analyzer(self._load(run.path), run.name)
                analyzer.warm()
                self._models[run.name] = analyzer
            return self._models[run.name]


def _load_latest(path: Path) -> Any:
    from charlstm import api

    return api.load(path, "latest", runs_dir=path.parent, on_warning=lambda message: None)


# --- requests and errors -------------------------------------------------------------------------------------


class BadRequest(Exception):
    """A request the server refuses, with its HTTP status."""

    def __init__(self, status: int, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint


def _status(err: UserError) -> int:
    """400 for a bad value, 404 for a run that is not there (or has no loadable checkpoint), 422 otherwise."""
    if isinstance(err, UsageError):
        return 400
    return 404 if isinstance(err, RunError) else 422


def error_response(status: int, message: str, hint: str = "") -> JSONResponse:
    return JSONResponse({"error": message, "hint": hint}, status_code=status)


def _too_large(size: str) -> BadRequest:
    return BadRequest(
        413,
        f"the request body has {size} bytes, more than {MAX_BODY:,}",
        f"send at most {analysis.MAX_CHARS:,} characters of text",
    )


async def _read_body(request: Request) -> bytes:
    """The body, read only up to MAX_BODY: a larger one (announced, or sent chunked without a length) is a 413
    before more of it is held in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _too_large(f"{int(declared):,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _too_large(f"over {MAX_BODY:,}")
        chunks.append(chunk)
    return b"".join(chunks)


async def _body(request: Request, fields: tuple[str, ...]) -> dict[str, Any]:
    """The request's JSON object, with only known fields."""
    raw = await _read_body(request)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest(400, "the request body is not JSON", 'send e.g. {"text": "Jammu"}') from None
    if not isinstance(body, dict):
        raise BadRequest(400, "the request body must be a JSON object", 'send e.g. {"text": "Jammu"}')
    unknown = sorted(set(body) - set(fields))
    if unknown:
        named = ", ".join(ascii(k) for k in unknown[:10])  # ascii(): a key may hold a lone surrogate
        raise BadRequest(400, f"unknown field(s): {named}", f"the fields are: {', '.join(fields)}")
    return body


def _int(body: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadRequest(400, f"{key} must be a whole number in {lo}..{hi} (got {value!r})")
    return value


def _texts(body: dict[str, Any], key: str, most: int) -> tuple[str, ...]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or len(value) > most:
        raise BadRequest(400, f"{key} must be a list of up to {most} non-empty strings (got {value!r})")
    return tuple(value)


def _number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(400, f"{key} must be a number (got {value!r})")
    return float(value)


# --- endpoints -------------------------------------------------------------------------------------------------


def create_app(runs_dir: Path, default_run: str | None = None, runs: Runs | None = None) -> Starlette:
    """The application serving the runs of `runs_dir`, opening on `default_run` (a run name)."""
    runs = runs or Runs(runs_dir, default_run)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def list_runs(request: Request) -> Response:
        listed = await run_in_threadpool(runs.listed)
        rows = [{k: v for k, v in r.to_json().items() if k != "path"} for r in listed]
        return JSONResponse({"runs": rows, "default": runs.default_name(listed)})

    async def run_detail(request: Request) -> Response:
        def detail() -> dict[str, Any]:
            run = runs.summary(request.path_params["run"])
            analyzer = runs.get(run.name)
            curves = runs_lib.read_curves(rundir.RunDir(run.path))
            summary = {k: v for k, v in run.to_json().items() if k != "path"}
            return {
                "name": run.name,
                "summary": summary,
                "config": analyzer.model.config.model_dump(),
                "checkpoint": analyzer.model.step,
                "quantities": analyzer.quantities,
                "vocab_size": len(analyzer.vocab),
                "place_cell": analyzer.place_cell(),
                "curves": {
                    "steps": curves.steps,
                    "loss": curves.loss,
                    "val_steps": curves.val_steps,
                    "val_loss": curves.val_loss,
                    "total_steps": curves.total_steps,
                },
            }

        return JSONResponse(await run_in_threadpool(detail))

    async def analyze(request: Request) -> Response:
        body = await _body(request, ANALYZE_FIELDS)

        def work() -> dict[str, Any]:
            analyzer = runs.get(body.get("run"))
            return analyzer.analyze(body.get("text"), body.get("layer"), body.get("quantities"))

        return JSONResponse(await run_in_threadpool(work))

    async def sample(request: Request) -> Response:
        body = await _body(request, SAMPLE_FIELDS)
        prompt = body.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise BadRequest(400, f"prompt must be a string (got {prompt!r})")
        if prompt is not None and len(prompt) > analysis.MAX_CHARS:
            raise BadRequest(400, f"the prompt has {len(prompt):,} characters, more than {analysis.MAX_CHARS:,}")
        greedy, novelty = body.get("greedy", False), body.get("novelty", False)
        for key, flag in (("greedy", greedy), ("novelty", novelty)):
            if not isinstance(flag, bool):
                raise BadRequest(400, f"{key} must be true or false (got {flag!r})")
        min_copy = _int(body, "min_copy", MIN_COPY, 1, MAX_SAMPLE)
        options = SampleOptions(
            length=_int(body, "length", 500, 1, MAX_SAMPLE),
            temperature=_number(body, "temperature", 1.0),
            top_k=_int(body, "top_k", 0, 0, 1 << 20),
            top_p=_number(body, "top_p", 1.0),
            greedy=greedy,
            seed=_int(body, "seed", 0, 0, MAX_SEED),
            stop=_texts(body, "stop", MAX_STOPS),
        )

        def start() -> tuple[analysis.Analyzer, Iterator[str], list[dict[str, Any]]]:
            analyzer = runs.get(body.get("run"))
            if novelty:  # a missing or changed training text is an error answer, before the stream starts
                analyzer.model.novelty_index()
            # An empty box samples from a line start, as `charlstm sample` without --prompt; characters the run
            # never saw are skipped, and the first event says which.
            pieces = analyzer.model.stream(prompt or None, options, skip_unknown=True)  # checks options now
            where = corpus.unknown_positions(analyzer.vocab, prompt) if prompt else []
            return analyzer, pieces, [{"index": k, "symbol": (prompt or "")[k]} for k in where]

        analyzer, pieces, skipped = await run_in_threadpool(start)
        return StreamingResponse(
            _events(analyzer, pieces, skipped, min_copy if novelty else 0),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def bad_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BadRequest)
        return error_response(exc.status, exc.message, exc.hint)

    async def user_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UserError)
        return error_response(_status(exc), exc.message, exc.hint)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, str(exc.detail), "see docs/serve.md for the endpoints")

    routes = [
        Route("/", page),
        Route("/api/runs", list_runs),
        Route("/api/runs/{run}", run_detail),
        Route("/api/analyze", analyze, methods=["POST"]),
        Route("/api/sample", sample, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {BadRequest: bad_request, UserError: user_error, HTTPException: http_error}
    return Starlette(routes=routes, exception_handlers=handlers)


def _events(
    analyzer: analysis.Analyzer, pieces: Iterator[str], skipped: list[dict[str, Any]], min_copy: int = 0
) -> Iterator[str]:
    """The sample as server-sent events: one `data: {"text": ...}` per piece (the prompt as read first, with the
    prompt's characters that were `skipped`), with `min_copy` an `event: novelty` (the copied spans of the
    generated text, as `sample --novelty --json` gives them), then `event: done`. Each piece is generated under
    the model's lock, so samples and analyses take turns."""
    texts: list[str] = []
    while True:
        with analyzer.lock:
            piece = next(pieces, None)
        if piece is None:
            break
        event = {"text": piece} if texts else {"text": piece, "skipped": skipped}
        texts.append(piece)
        yield f"data: {json.dumps(event)}\n\n"
    if min_copy and texts:
        checked = analyzer.model.novelty("".join(texts), prompt=texts[0], min_copy=min_copy)
        yield f"event: novelty\ndata: {json.dumps(checked.to_json())}\n\n"
    yield "event: done\ndata: {}\n\n"


# --- the server ------------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def choose_runs(run: str | None, runs_dir: Path) -> tuple[Path, str | None]:
    """(the runs directory to list, the run to open with) for `serve --run RUN --runs-dir DIR`: a RUN given
    as a path elsewhere lists its own directory's runs, so the page can always pick it by name."""
    if run is None:
        return runs_dir, None
    path = rundir.resolve(run, runs_dir).path.resolve()
    if path.parent != runs_dir.resolve():
        return path.parent, path.name
    return runs_dir, path.name


def serve(runs_dir: Path, run: str | None, host: str, port: int, open_browser: bool, log: Callable[[str], None]) -> int:
    """Load the opening run, listen on host:port and serve until Ctrl-C or SIGTERM; returns that signal's number."""
    import uvicorn

    runs_dir, name = choose_runs(run, runs_dir)
    runs = Runs(runs_dir, name)
    listed = runs.listed()
    first = runs.default_name(listed)
    if first is None:
        raise RunError(f"no runs in {runs_dir}", "train one with `charlstm train`, or pass --runs-dir DIR")
    try:  # bound first, so a port in use is one clear error rather than uvicorn's log and exit
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as err:
        raise RunError(
            f"cannot listen on {host}:{port}: {err.strerror or err}", "pick another --port, or stop what uses it"
        ) from None
    log(f"loading {first} and compiling its analysis")
    runs.get(first).place_cell()  # the page asks for it first: answer at once
    url = f"http://{'[' + host + ']' if ':' in host else host}:{sock.getsockname()[1]}/"
    log(f"serving {len(listed)} run(s) of {runs_dir} at {url} (Ctrl-C to stop)")
    if open_browser:
        threading.Timer(1.0, webbrowser.open, (url,)).start()  # once uvicorn is accepting on the socket
    server = _server_class()(uvicorn.Config(create_app(runs_dir, runs=runs), log_level="warning"))
    server.run(sockets=[sock])
    return server.stopped_by


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, stopped by SIGINT or SIGTERM as usual, but remembering the signal instead of raising
        it again inside the event loop (which would leave its tasks pending, each with a traceback)."""

        stopped_by = 0

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in originals.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig: int, frame: Any) -> None:
            self.stopped_by = self.stopped_by or sig
            super().handle_exit(sig, frame)

    return Server
