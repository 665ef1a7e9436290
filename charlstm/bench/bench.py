"""`charlstm bench`: training and sampling speed after compilation, memory, and how close to the machine's peak.

Everything that is compared is measured in one process, in alternating rounds (charlstm, then PyTorch, then
charlstm ...; the order flips every round), and ratios are the median of the per-round ratios. On a shared
or throttled machine absolute times drift by tens of percent within minutes; ratios of back-to-back runs do not.
The fractions of the machine's ceilings are computed the same way: each round also times a large fp32 GEMM
(training) and the model's batch-1 matmuls alone (sampling at batch 1, which reads every weight once per
character; see `charlstm.bench.probes`).

The pieces: `timing` describes each timed task once and runs the alternating rounds; `charlstm_side` and, for
`--vs-torch`, `torch_side` (the only module that imports PyTorch) are the two models it times; `startup` measures
compile time and the first sampled character in fresh processes. This module sets them up, turns the rounds'
timings into the figures of a `BenchResult`, and lays those out for the terminal (`rows`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import platform
import resource
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from charlstm import perf
from charlstm.bench import probes, startup
from charlstm.bench.charlstm_side import CharlstmSide
from charlstm.bench.timing import Rounds, Tasks, measure_rounds, tasks
from charlstm.config import Config
from charlstm.errors import UsageError, UserError
from charlstm.nn import model

if TYPE_CHECKING:
    from charlstm.bench.torch_side import TorchSide

VOCAB = 96  # synthetic character ids: printable ASCII plus a little; the speed depends on V only through the head
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


def sample_weight_bytes(cfg: Config, vocab_size: int) -> float:
    """Bytes of weights one character of batch-1 sampling reads, in the dtype its matmuls read them in."""
    itemsize = np.dtype(jnp.dtype(cfg.model.compute_dtype)).itemsize
    return float(sum(k * n for k, n in model.matmul_shapes(cfg.model, vocab_size)) * itemsize)


def gpu_status() -> str:
    gpus = [d for d in jax.devices() if d.platform != "cpu"]
    return ", ".join(str(d.device_kind) for d in gpus) if gpus else "none available (JAX sees only the CPU)"


def peak_rss_mb() -> float:
    """ru_maxrss is in KiB on Linux, bytes on macOS."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024 if platform.system() == "Darwin" else 1024)


def torch_available() -> bool:
    """Whether PyTorch is installed, found without importing it (its libraries would count in the peak memory)."""
    return importlib.util.find_spec("torch") is not None


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
        raise UsageError(
            f"--timed-steps and --rounds must be at least 1 (got {steps}, {rounds})", "e.g. --timed-steps 5"
        )
    if vs_torch and not torch_available():
        raise UserError("--vs-torch needs PyTorch, which is not installed", TORCH_HINT)
    d = cfg.data
    log("timing start-up: two fresh processes, the second with the first one's compilation cache")
    cold, cached = startup.measure_startup(cfg, vocab_size)
    log(
        f"compiling the training step ({cfg.model.layers}x{cfg.model.hidden} {cfg.model.cell}, "
        f"B{d.batch_size}, T{d.seq_len})"
    )
    ours = CharlstmSide(cfg, vocab_size)
    gemm = probes.gemm_probe()
    weight_bytes = sample_weight_bytes(cfg, vocab_size)
    b1_matmuls = probes.matmul_chain_probe(model.matmul_shapes(cfg.model, vocab_size), cfg.model.compute_dtype)
    rss = peak_rss_mb()  # before PyTorch adds its own libraries and buffers
    theirs = None
    if vs_torch:
        try:
            from charlstm.bench.torch_side import TorchSide
        except ImportError as err:
            raise UserError(f"--vs-torch: PyTorch is installed but does not import ({err})", TORCH_HINT) from None
        log("building the PyTorch model with the same weights")
        theirs = TorchSide(cfg, vocab_size, ours.params0, np.asarray(ours.x), np.asarray(ours.y))

    todo = tasks(cfg, steps)
    timed = measure_rounds(todo, rounds, ours, theirs, gemm, b1_matmuls, log)

    per_char = model.train_flops_per_char(cfg.model, vocab_size)
    train_s, b1_s, chain_s = timed.ours.seconds["train"], timed.ours.seconds["b1"], timed.chain_s
    train_speed = timed.ours.chars_per_s(todo.train)
    # Each round's achieved FLOP/s over that round's GEMM: both saw the same machine load.
    fraction = statistics.median(per_char * todo.train.chars / t / p for t, p in zip(train_s, timed.gemm_flops))
    b1_fraction = statistics.median(todo.b1.chars / t * s for t, s in zip(b1_s, chain_s))
    torch_numbers = None if theirs is None else _torch_numbers(todo, timed, ours.first_loss, theirs)
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
        train_chars_per_s=train_speed,
        sample_b1_chars_per_s=timed.ours.chars_per_s(todo.b1),
        sample_b64_chars_per_s=timed.ours.chars_per_s(todo.b64),
        train_flops_per_char=per_char,
        achieved_gflops=per_char * train_speed / 1e9,
        matmul_peak_gflops=statistics.median(timed.gemm_flops) / 1e9,
        fraction_of_peak=fraction,
        sample_weight_mb=weight_bytes / 2**20,
        sample_b1_matmul_gb_per_s=weight_bytes / statistics.median(chain_s) / 1e9,
        sample_b1_ceiling_chars_per_s=1 / statistics.median(chain_s),
        sample_b1_fraction_of_ceiling=b1_fraction,
        train_step_temp_mb=ours.temp_mb,
        peak_rss_mb=rss,
        malloc_tuned=perf.malloc_tuned(),
        cpu=perf.cpu_name(),
        cores=os.cpu_count() or 1,
        gpu=gpu_status(),
        jax_version=jax.__version__,
        load_avg=os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0,
        torch=torch_numbers,
    )


def _torch_numbers(todo: Tasks, timed: Rounds, our_first_loss: float, theirs: TorchSide) -> TorchNumbers:
    """PyTorch's medians over rounds, and the medians of charlstm's per-round ratios to them."""
    ours, their = timed.ours.seconds, timed.theirs.seconds
    ratio = {t.name: statistics.median(b / a for a, b in zip(ours[t.name], their[t.name])) for t in todo}
    return TorchNumbers(
        version=theirs.version,
        device=theirs.device.type,
        train_chars_per_s=timed.theirs.chars_per_s(todo.train),
        sample_b1_chars_per_s=timed.theirs.chars_per_s(todo.b1),
        sample_b64_chars_per_s=timed.theirs.chars_per_s(todo.b64),
        train_ratio=ratio["train"],
        sample_b1_ratio=ratio["b1"],
        sample_b64_ratio=ratio["b64"],
        sample_b1_ratio_ceiling=statistics.median(t / todo.b1.chars / s for t, s in zip(their["b1"], timed.chain_s)),
        initial_loss_diff=abs(our_first_loss - theirs.first_loss),
        threads={name: max(set(counts), key=counts.count) for name, counts in timed.theirs.threads.items()},
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
