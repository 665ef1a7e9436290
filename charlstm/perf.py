"""Process-level settings, applied once at start-up before JAX creates a backend or allocates anything.

glibc's malloc hands large blocks back to the kernel as soon as they are freed: blocks above the mmap
threshold (at most 32 MiB) get their own mapping, unmapped on free, and free memory at the top of the heap
beyond the trim threshold is released. XLA allocates a step's temporary buffers (activations saved for the
backward pass, gradients) as large blocks and frees them when the step ends, so every step paid again for
page faults and zeroing of memory it had just returned: in a profile of a 2x128 LSTM step, the first
writes into fresh buffers (copies, broadcasts) took a third of the step. Serving every block from the heap
(no mmap) and not trimming it keeps that memory in the process, already faulted in, for the next step. The
cost is that the process keeps its peak heap until it exits, which a training or sampling run does anyway.

That holds only in glibc's main arena. XLA allocates a step's buffers from its worker threads, which glibc
serves from per-thread arenas whose heaps are at most 64 MiB: a larger block (the 2x256 model's 193 MiB of
step temporaries) is mmapped whatever M_MMAP_MAX says, and unmapped when freed, so every step faulted in all
of it again (55,000 minor page faults per step, measured). One arena (M_ARENA_MAX 1) sends every thread to
the main heap, where the settings above hold: 0 page faults per step and a 1.3x faster 2x256 step.

Set CHARLSTM_MALLOC_TUNING=0 to skip it (e.g. to measure the difference). A no-op off glibc.

On a GPU, XLA is not deterministic by default: the embedding's gradient is a scatter-add done with atomics,
and the autotuner may choose different kernels in each process. Two identical 150-step runs on an H100
ended apart (train loss 1.9478 vs 1.9528 at step 120, val 1.8933 vs 1.8896 at step 150). `deterministic_gpu`
asks XLA for run-to-run identical results, so the same seed and config give the same numbers there as on a
CPU (measured: identical in every logged number), at a cost in speed (benchmarks/README.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
M_ARENA_MAX = -8

SETTINGS = (
    (M_MMAP_MAX, 0),  # no block gets its own mapping: even a step's 400 MiB of activations come from the heap
    (M_MMAP_THRESHOLD, 32 * 1024 * 1024),  # (the largest accepted; also stops glibc's dynamic threshold)
    (M_TRIM_THRESHOLD, 2**31 - 1),  # keep up to 2 GiB of free heap rather than trimming it after each step
    (M_TOP_PAD, 64 * 1024 * 1024),  # grow the heap in 64 MiB steps, not one request at a time
    (M_ARENA_MAX, 1),  # every thread allocates from the main heap, the one the settings above govern
)

DETERMINISTIC_GPU_FLAG = "--xla_gpu_deterministic_ops=true"

_applied: bool | None = None


def tune_malloc() -> bool:
    """Raise glibc's mmap/trim thresholds once per process; returns whether the settings are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("CHARLSTM_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt  # absent on musl: nothing to tune there
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all([mallopt(param, value) == 1 for param, value in SETTINGS])  # a list: apply all, even after a failure
    _applied = ok
    return ok


def malloc_tuned() -> bool:
    """Whether `tune_malloc` has put its settings in effect in this process."""
    return bool(_applied)


def deterministic_gpu() -> None:
    """Add XLA's deterministic-GPU flag to XLA_FLAGS (read when JAX creates its GPU backend; ignored on a CPU).

    A setting of the flag already in XLA_FLAGS wins, so `XLA_FLAGS=--xla_gpu_deterministic_ops=false` opts out.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_gpu_deterministic_ops" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_GPU_FLAG}".strip()
