"""`charlstm bench`: training and sampling speed after compilation, memory, and how close to the machine's peak.

Everything that is compared is measured in one process, in alternating rounds (charlstm, then PyTorch, then
charlstm ...; the order flips every round), and ratios are the median of the per-round ratios. On a shared
or throttled machine absolute times drift by tens of percent within minutes; ratios of back-to-back runs do not.
The fractions of the machine's ceilings are computed the same way: each round also times a large fp32 GEMM
(training) and the model's batch-1 matmuls alone (sampling at batch 1, which reads every weight once per
character; see `charlstm.bench.probes`).

Compilation is measured where a user meets it, at the start of a process: two fresh Python processes share an
empty temporary compilation cache, the first compiles (cold) and fills it, the second loads what it can from it
(cached, as a second `charlstm sample` or `train` of the same model does). Each reports the seconds from its
start to the first sampled character (JAX import, random weights, compiling and running the first 512-character
chunk) and the time to compile the training step.

PyTorch (the optional `bench` extra) is imported only for `--vs-torch`. Its model is the one `charlstm
export` writes (embedding -> nn.LSTM/GRU/RNN -> linear) loaded with the same weights, trained with Adam and
global-norm clipping as charlstm is, and sampled with the per-character Python loop people write. On a CPU
each of its measurements runs at 1 thread and at torch's default thread count, and the faster one counts.
Where JAX runs on an NVIDIA GPU and torch has CUDA, torch runs there too (cuDNN's LSTM), so both sides use
the same device.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from charlstm import config as config_lib
from charlstm import perf
from charlstm.bench import probes
from charlstm.config import Config
from charlstm.errors import UsageError, UserError
from charlstm.nn import cells, export, model, sampling
from charlstm.training import loop as training

VOCAB = 96  # synthetic character ids: printable ASCII plus a little; the speed depends on V only through the head
SAMPLE_B1_CHARS = 512  # characters generated per round at batch 1 (one compiled chunk of 512)
SAMPLE_B64_CHARS = 256  # characters per stream per round at batch 64
# Every timed measurement starts with a pause and an untimed warm-up of the side being measured, so each side
# runs hot on a machine the other has left. PyTorch's OpenMP workers spin on after each parallel region, and
# without the pause charlstm's batch-1 sampling right after torch's lost 25-45% to a spinning thread (2x128:
# 45-53k chars/s vs 70-80k alone); the warm-up wakes the measured side's own threads and caches.
SETTLE_S = 0.1
WARM_CHARS = 64  # characters per stream sampled to warm up before a timed sampling run
TORCH_HINT = "install it with: pip install 'charlstm[bench]'  (CPU build: pip install torch==2.13.0)"


@dataclass(frozen=True)
class TorchNumbers:
    """PyTorch's figures on the same model, and charlstm's speed relative to them (> 1: charlstm is faster)."""

    version: str
    device: str  # "cpu" or "cuda"
    train_chars_per_s: float
    sample_b1_chars_per_s: float
    sample_b64_chars_per_s: float
    train_ratio: float
    sample_b1_ratio: float
    sample_b64_ratio: float
    sample_b1_ratio_ceiling: float  # the ratio if charlstm's sampling took only its matmuls' time
    initial_loss_diff: float  # |charlstm - torch| first-batch loss on the same weights: the models are the same
    threads: dict[str, int]  # per task (train, b1, b64): the thread count, 1 or torch's default, that won most rounds


@dataclass(frozen=True)
class BenchResult:
    """One `charlstm bench` run; speeds are medians over rounds, after compilation."""

    cell: str
    layers: int
    hidden: int
    batch_size: int
    seq_len: int
    vocab_size: int
    compute_dtype: str
    params: int
    steps_per_round: int
    rounds: int
    compile_s: float  # lowering + XLA compilation of the training step in a fresh process, nothing cached (wall clock)
    compile_cpu_s: float  # the same in CPU seconds of that process: what it costs on an idle machine
    compile_cached_s: float  # the same in a second process, with the first one's compilation cache
    first_char_s: float  # from a fresh process's start to its first sampled character, nothing cached
    first_char_cached_s: float  # the same with the compilation cache
    train_chars_per_s: float  # forward, backward, clipping, AdamW update; synced every step as `train` does
    sample_b1_chars_per_s: float
    sample_b64_chars_per_s: float
    train_flops_per_char: float  # model FLOPs: 6 x the matmul multiply-adds per character (gathers count 0)
    achieved_gflops: float
    matmul_peak_gflops: float  # fp32 GEMM measured in this process
    fraction_of_peak: float
    sample_weight_mb: float  # weights read per character at batch 1 (every matmul weight, in the compute dtype)
    sample_b1_matmul_gb_per_s: float  # those bytes over the time of the model's batch-1 matmuls alone
    sample_b1_ceiling_chars_per_s: float  # one character per pass of those matmuls, nothing else
    sample_b1_fraction_of_ceiling: float
    train_step_temp_mb: float  # XLA's temporary buffers for one step (activations kept for backward, mostly)
    peak_rss_mb: float  # the process's peak resident memory before PyTorch is loaded
    malloc_tuned: bool
    cpu: str
    cores: int
    gpu: str
    jax_version: str
    load_avg: float  # the 1-minute load average at the end: other work on the machine makes absolute times drift
    torch: TorchNumbers | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def matmul_shapes(cfg: Config, vocab_size: int) -> list[tuple[int, int]]:
    """The [K, N] weight matrices one character goes through, in order: per layer W_ih and W_hh, then the head.
    Layer 0's input projection is a row gather (no matmul), so its W_ih is not among them."""
    m, g = cfg.model, cells.GATES[cfg.model.cell] * cfg.model.hidden
    shapes = []
    for k in range(m.layers):
        shapes += ([(m.hidden, g)] if k > 0 else []) + [(m.hidden, g)]
    return shapes + [(m.hidden, vocab_size)]


def train_flops_per_char(cfg: Config, vocab_size: int) -> float:
    """6 FLOPs per weight per character (2 forward, 4 backward) for every matmul weight (`matmul_shapes`).
    Folding a learned embedding into layer 0's table (once per step, not per character) and the elementwise
    gate operations count nothing."""
    return 6.0 * sum(k * n for k, n in matmul_shapes(cfg, vocab_size))


def sample_weight_bytes(cfg: Config, vocab_size: int) -> float:
    """Bytes of weights one character of batch-1 sampling reads, in the dtype its matmuls read them in."""
    itemsize = np.dtype(jnp.dtype(cfg.model.compute_dtype)).itemsize
    return float(sum(k * n for k, n in matmul_shapes(cfg, vocab_size)) * itemsize)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_status() -> str:
    gpus = [d for d in jax.devices() if d.platform != "cpu"]
    return ", ".join(str(d.device_kind) for d in gpus) if gpus else "none available (JAX sees only the CPU)"


def peak_rss_mb() -> float:
    """ru_maxrss is in KiB on Linux, bytes on macOS."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024 if platform.system() == "Darwin" else 1024)


class _Charlstm:
    """The jitted training step and sampler on fixed random batches, ready to time."""

    def __init__(self, cfg: Config, vocab_size: int) -> None:
        self.cfg = cfg
        ids, self.x, self.y, self.reset = _step_inputs(cfg, vocab_size)
        self.state = training.init_state(cfg, vocab_size)
        self.params0 = jax.tree_util.tree_map(jnp.copy, self.state.params)  # the train step donates the state
        self.step = training.make_train_step(cfg).lower(self.state, self.x, self.y, self.reset).compile()
        mem = self.step.memory_analysis()
        self.temp_mb = float(getattr(mem, "temp_size_in_bytes", 0) or 0) / 2**20
        self.first_loss = self.train(1)[1]
        self.prompt = ids[0, :1]
        self.sample(1, SAMPLE_B1_CHARS), self.sample(64, SAMPLE_B64_CHARS)  # compile both batch sizes

    def train(self, steps: int) -> tuple[float, float]:
        """(seconds, last loss) for `steps` updates, synced every step as the training loop is."""
        tic, loss = time.perf_counter(), 0.0
        for _ in range(steps):
            self.state, m = self.step(self.state, self.x, self.y, self.reset)
            loss = float(m["loss"])
        return time.perf_counter() - tic, loss

    def sample(self, batch: int, length: int) -> float:
        """Seconds for `sampling.generate` (chunks of up to 512 characters, each one jitted scan) of `length` per
        stream."""
        opts = sampling.SampleOptions(length=length, num_samples=batch, temperature=1.0)
        return probes.timed(
            lambda: [np.asarray(c) for c in sampling.generate(self.state.params, self.cfg.model, self.prompt, opts)]
        )


def _step_inputs(cfg: Config, vocab_size: int) -> tuple[np.ndarray, jax.Array, jax.Array, jax.Array]:
    """Fixed random ids [B, T + 1], and the x, y and reset arguments of a training step made from them."""
    d = cfg.data
    ids = np.random.default_rng(0).integers(0, vocab_size, (d.batch_size, d.seq_len + 1)).astype(np.int32)
    return ids, jnp.asarray(ids[:, :-1]), jnp.asarray(ids[:, 1:]), jnp.zeros(d.batch_size, bool)


@dataclass(frozen=True)
class Startup:
    """What one fresh process measured (see `startup_probe`)."""

    first_char_s: float
    compile_s: float
    compile_cpu_s: float


def startup_probe(t0: float) -> None:
    """The body of a fresh process (`measure_startup` starts it): read {"config", "vocab_size"} as JSON on
    stdin, sample the first chunk from random weights, then compile the training step; print a `Startup` as
    JSON. `t0` is the clock when the process began, before it imported JAX."""
    job = json.load(sys.stdin)
    cfg, vocab_size = config_lib.from_dict(job["config"]), int(job["vocab_size"])
    params = model.init_params(cfg.model, vocab_size, jax.random.PRNGKey(0))
    opts = sampling.SampleOptions(length=SAMPLE_B1_CHARS)
    np.asarray(next(sampling.generate(params, cfg.model, np.zeros(1, np.int32), opts)))
    first_char_s = time.perf_counter() - t0
    _, x, y, reset = _step_inputs(cfg, vocab_size)
    state = training.init_state(cfg, vocab_size)
    tic, cpu = time.perf_counter(), time.process_time()
    training.make_train_step(cfg).lower(state, x, y, reset).compile()
    print(json.dumps(dataclasses.asdict(Startup(first_char_s, time.perf_counter() - tic, time.process_time() - cpu))))


def measure_startup(cfg: Config, vocab_size: int) -> tuple[Startup, Startup]:
    """(cold, cached): two fresh processes in turn on one empty temporary compilation cache."""
    code = "import time; t0 = time.perf_counter(); from charlstm.bench import bench; bench.startup_probe(t0)"
    job = json.dumps({"config": cfg.model_dump(), "vocab_size": vocab_size})
    results = []
    with tempfile.TemporaryDirectory(prefix="charlstm-bench-cache-") as cache:
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
        for _ in range(2):
            proc = subprocess.run([sys.executable, "-c", code], input=job, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"the start-up probe failed (exit {proc.returncode}): {last}")
            results.append(Startup(**json.loads(proc.stdout.strip().splitlines()[-1])))
    return results[0], results[1]


class _Torch:
    """The same network in PyTorch, as a user writes it (eager autograd, a Python loop for sampling)."""

    def __init__(self, cfg: Config, vocab_size: int, params: model.Params, x: np.ndarray, y: np.ndarray) -> None:
        import torch
        from torch import nn

        self.torch, m, self.vocab_size = torch, cfg.model, vocab_size
        on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
        self.device = torch.device("cuda" if on_gpu else "cpu")
        torch.manual_seed(0)
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[m.cell]
        e = m.embed or vocab_size  # model.embed 0: one-hot input, exported as a frozen identity embedding
        self.net = nn.ModuleDict(
            {
                "embedding": nn.Embedding(vocab_size, e),
                "rnn": rnn_cls(e, m.hidden, num_layers=m.layers),  # time-major, like charlstm inside
                "head": nn.Linear(m.hidden, vocab_size),
            }
        )
        sd = export.torch_state_dict(params, cfg, vocab_size)
        # The start state (h0, c0) is an input of nn.LSTM, not a module weight; at initialisation it is zeros,
        # which is nn.LSTM's default state, so both sides time the same computation.
        weights = {k: v for k, v in sd.items() if k not in ("h0", "c0")}
        self.net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
        self.net.to(self.device)
        self.net["embedding"].weight.requires_grad_(bool(m.embed))
        self.trainable = [p for p in self.net.parameters() if p.requires_grad]
        o = cfg.optim  # charlstm's AdamW with weight_decay 0 is Adam; the lr schedule is not worth a comparison
        self.opt = torch.optim.Adam(self.trainable, lr=o.lr, betas=(o.b1, o.b2))
        self.clip = o.clip_norm
        self.x, self.y = (torch.from_numpy(np.asarray(a).T.copy()).long().to(self.device) for a in (x, y))
        self.state: Any = None
        # On a loaded machine an OpenMP barrier waits for a descheduled thread, and one thread can beat two
        # by 10x, or lose by 2x a minute later. So on a CPU torch runs every measurement at 1 thread and at
        # its default, and counts the faster: a baseline that is never handicapped by its thread count.
        self.counts = [torch.get_num_threads()] if on_gpu else sorted({1, torch.get_num_threads()})
        self.first_loss = self.train(1)[1]
        for n in self.counts:  # warm up oneDNN's kernels at each thread count
            torch.set_num_threads(n)
            self.train(1), self.sample(1, 8), self.sample(64, 8)

    def fastest(self, fn: Callable[[], float]) -> tuple[float, int]:
        """`fn` timed at each thread count: the shorter time, and the thread count that gave it."""
        times = {}
        for n in self.counts:
            self.torch.set_num_threads(n)
            times[n] = fn()
        best = min(times, key=times.__getitem__)
        return times[best], best

    def forward(self, ids: Any, state: Any) -> tuple[Any, Any]:
        out, state = self.net["rnn"](self.net["embedding"](ids), state)
        return self.net["head"](out), state

    def train(self, steps: int) -> tuple[float, float]:
        torch = self.torch
        tic, loss = time.perf_counter(), 0.0
        for _ in range(steps):
            self.opt.zero_grad(set_to_none=True)
            logits, state = self.forward(self.x, self.state)
            # Truncated BPTT, as in charlstm: the state is carried, its gradient is not.
            self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            out = torch.nn.functional.cross_entropy(logits.reshape(-1, self.vocab_size), self.y.reshape(-1))
            out.backward()
            if self.clip > 0:
                torch.nn.utils.clip_grad_norm_(self.trainable, self.clip)
            self.opt.step()
            loss = out.item()
        return time.perf_counter() - tic, loss

    def sample(self, batch: int, length: int) -> float:
        """A per-character loop: run one step, softmax, draw, feed the draw back in."""
        torch = self.torch
        tic = time.perf_counter()
        with torch.no_grad():
            tok, state = torch.zeros((1, batch), dtype=torch.long, device=self.device), None
            for _ in range(length):
                logits, state = self.forward(tok, state)
                tok = torch.multinomial(torch.softmax(logits[0], dim=-1), 1).T
            tok.cpu()  # on a GPU the loop only queued the work: wait for the last draw
        return time.perf_counter() - tic


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def run(
    cfg: Config,
    steps: int = 5,
    rounds: int = 5,
    vs_torch: bool = False,
    vocab_size: int = VOCAB,
    log: Callable[[str], None] = lambda _: None,
) -> BenchResult:
    """Benchmark `cfg`'s model: `rounds` rounds of `steps` timed training steps and one sample per batch size."""
    if steps < 1 or rounds < 1:
        raise UsageError(f"--steps and --rounds must be at least 1 (got {steps}, {rounds})", "e.g. --steps 5")
    if vs_torch and not torch_available():
        raise UserError("--vs-torch needs PyTorch, which is not installed", TORCH_HINT)
    d = cfg.data
    log("timing start-up: two fresh processes, the second with the first one's compilation cache")
    cold, cached = measure_startup(cfg, vocab_size)
    log(
        f"compiling the training step ({cfg.model.layers}x{cfg.model.hidden} {cfg.model.cell}, "
        f"B{d.batch_size}, T{d.seq_len})"
    )
    ours = _Charlstm(cfg, vocab_size)
    gemm = probes.gemm_probe()
    weight_bytes = sample_weight_bytes(cfg, vocab_size)
    b1_matmuls = probes.matmul_chain_probe(matmul_shapes(cfg, vocab_size), cfg.model.compute_dtype)
    rss = peak_rss_mb()  # before PyTorch adds its own libraries and buffers
    theirs = None
    if vs_torch:
        log("building the PyTorch model with the same weights")
        theirs = _Torch(cfg, vocab_size, ours.params0, np.asarray(ours.x), np.asarray(ours.y))

    # One round: every measurement once, charlstm and torch back to back (order flipped on odd rounds).
    names = ("train", "b1", "b64")
    work = {
        "train": lambda impl: impl.train(steps)[0],
        "b1": lambda impl: impl.sample(1, SAMPLE_B1_CHARS),
        "b64": lambda impl: impl.sample(64, SAMPLE_B64_CHARS),
    }
    warm = {
        "train": lambda impl: impl.train(1),
        "b1": lambda impl: impl.sample(1, WARM_CHARS),
        "b64": lambda impl: impl.sample(64, WARM_CHARS),
    }
    chars = {"train": steps * d.batch_size * d.seq_len, "b1": SAMPLE_B1_CHARS, "b64": 64 * SAMPLE_B64_CHARS}

    def measure(n: str, impl: Any) -> float:
        time.sleep(SETTLE_S)
        warm[n](impl)
        return work[n](impl)

    ours_t: dict[str, list[float]] = {n: [] for n in names}
    theirs_t: dict[str, list[float]] = {n: [] for n in names}
    theirs_threads: dict[str, list[int]] = {n: [] for n in names}
    peaks: list[float] = []
    chain_s: list[float] = []
    for r in range(rounds):
        log(f"round {r + 1}/{rounds}")
        for n in names:
            for side in ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours"):
                if side == "ours":
                    ours_t[n].append(measure(n, ours))
                elif theirs is not None:
                    t, threads = theirs.fastest(lambda: measure(n, theirs))
                    theirs_t[n].append(t)
                    theirs_threads[n].append(threads)
        peaks.append(gemm())
        chain_s.append(b1_matmuls())

    per_char = train_flops_per_char(cfg, vocab_size)
    speed = {n: statistics.median(chars[n] / t for t in ours_t[n]) for n in names}
    # Each round's achieved FLOP/s over that round's GEMM: both saw the same machine load.
    fraction = statistics.median(per_char * chars["train"] / t / p for t, p in zip(ours_t["train"], peaks))
    b1_fraction = statistics.median(chars["b1"] / t * s for t, s in zip(ours_t["b1"], chain_s))
    torch_numbers = None
    if theirs is not None:
        import torch

        ratio = {n: statistics.median(b / a for a, b in zip(ours_t[n], theirs_t[n])) for n in names}
        torch_numbers = TorchNumbers(
            version=torch.__version__,
            device=theirs.device.type,
            train_chars_per_s=statistics.median(chars["train"] / t for t in theirs_t["train"]),
            sample_b1_chars_per_s=statistics.median(chars["b1"] / t for t in theirs_t["b1"]),
            sample_b64_chars_per_s=statistics.median(chars["b64"] / t for t in theirs_t["b64"]),
            train_ratio=ratio["train"],
            sample_b1_ratio=ratio["b1"],
            sample_b64_ratio=ratio["b64"],
            sample_b1_ratio_ceiling=statistics.median(t / chars["b1"] / s for t, s in zip(theirs_t["b1"], chain_s)),
            initial_loss_diff=abs(ours.first_loss - theirs.first_loss),
            threads={n: max(set(v), key=v.count) for n, v in theirs_threads.items()},
        )
    m = cfg.model
    return BenchResult(
        cell=m.cell,
        layers=m.layers,
        hidden=m.hidden,
        batch_size=d.batch_size,
        seq_len=d.seq_len,
        vocab_size=vocab_size,
        compute_dtype=m.compute_dtype,
        params=model.param_count(ours.params0),
        steps_per_round=steps,
        rounds=rounds,
        compile_s=cold.compile_s,
        compile_cpu_s=cold.compile_cpu_s,
        compile_cached_s=cached.compile_s,
        first_char_s=cold.first_char_s,
        first_char_cached_s=cached.first_char_s,
        train_chars_per_s=speed["train"],
        sample_b1_chars_per_s=speed["b1"],
        sample_b64_chars_per_s=speed["b64"],
        train_flops_per_char=per_char,
        achieved_gflops=per_char * speed["train"] / 1e9,
        matmul_peak_gflops=statistics.median(peaks) / 1e9,
        fraction_of_peak=fraction,
        sample_weight_mb=weight_bytes / 2**20,
        sample_b1_matmul_gb_per_s=weight_bytes / statistics.median(chain_s) / 1e9,
        sample_b1_ceiling_chars_per_s=1 / statistics.median(chain_s),
        sample_b1_fraction_of_ceiling=b1_fraction,
        train_step_temp_mb=ours.temp_mb,
        peak_rss_mb=rss,
        malloc_tuned=perf.malloc_tuned(),
        cpu=cpu_name(),
        cores=os.cpu_count() or 1,
        gpu=gpu_status(),
        jax_version=jax.__version__,
        load_avg=os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0,
        torch=torch_numbers,
    )


def rows(res: BenchResult) -> list[tuple[str, str]]:
    """The result as (metric, value) rows for the terminal table."""
    out = [
        ("model", f"{res.layers}x{res.hidden} {res.cell}, {res.params:,} params, {res.compute_dtype}"),
        ("batch x seq_len", f"{res.batch_size} x {res.seq_len} (vocab {res.vocab_size})"),
        (
            "compile (train step)",
            f"{res.compile_s:.2f} s ({res.compile_cpu_s:.2f} CPU s); {res.compile_cached_s:.2f} s cached",
        ),
        (
            "first sampled character",
            f"{res.first_char_s:.2f} s after process start; {res.first_char_cached_s:.2f} s cached",
        ),
        ("train chars/s", f"{res.train_chars_per_s:,.0f}"),
        ("sampling chars/s, batch 1", f"{res.sample_b1_chars_per_s:,.0f}"),
        ("sampling chars/s, batch 64", f"{res.sample_b64_chars_per_s:,.0f}"),
        (
            "model FLOP/s (train)",
            f"{res.achieved_gflops:.1f} GFLOP/s ({res.train_flops_per_char / 1e6:.2f} MFLOP/char)",
        ),
        ("fp32 matmul peak (measured)", f"{res.matmul_peak_gflops:.1f} GFLOP/s"),
        ("fraction of peak", f"{res.fraction_of_peak:.0%}"),
        (
            "batch-1 matmuls alone",
            f"{res.sample_b1_ceiling_chars_per_s:,.0f} chars/s ({res.sample_weight_mb:.1f} MiB of weights per char at "
            f"{res.sample_b1_matmul_gb_per_s:.0f} GB/s); "
            f"sampling reaches {res.sample_b1_fraction_of_ceiling:.0%} of it",
        ),
        ("train step temp memory", f"{res.train_step_temp_mb:.1f} MiB"),
        ("peak resident memory", f"{res.peak_rss_mb:.0f} MiB"),
        ("malloc tuning", "on" if res.malloc_tuned else "off"),
        ("machine", f"{res.cpu}, {res.cores} cores, load average {res.load_avg:.1f}; GPU: {res.gpu}"),
    ]
    if res.torch is not None:
        t = res.torch
        out += [
            (
                f"torch {t.version} ({t.device}) train chars/s",
                f"{t.train_chars_per_s:,.0f}  (charlstm {t.train_ratio:.2f}x)",
            ),
            (
                "torch sampling chars/s, batch 1",
                f"{t.sample_b1_chars_per_s:,.0f}  (charlstm {t.sample_b1_ratio:.1f}x; "
                f"its matmuls alone {t.sample_b1_ratio_ceiling:.1f}x)",
            ),
            (
                "torch sampling chars/s, batch 64",
                f"{t.sample_b64_chars_per_s:,.0f}  (charlstm {t.sample_b64_ratio:.1f}x)",
            ),
            ("same model check", f"first-batch loss differs by {t.initial_loss_diff:.1e}"),
            ("torch's faster threads (train, b1, b64)", ", ".join(str(t.threads[k]) for k in ("train", "b1", "b64"))),
        ]
    return out
