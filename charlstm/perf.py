"""Process-level settings, applied once at start-up before JAX creates a backend or allocates anything.

glibc's malloc hands large blocks back to the kernel as soon as they are freed: blocks above the mmap
threshold get their own mapping, unmapped on free, and free memory at the top of the heap beyond the trim
threshold is released. XLA allocates a step's temporary buffers (activations saved for the backward pass,
gradients) as large blocks and frees them when the step ends, so every step would pay again for page faults
and zeroing of memory it had just returned. Serving every block from the heap (no mmap) and not trimming it
keeps that memory in the process, already faulted in, for the next step; the process keeps its peak heap
until it exits, which a training or sampling run does anyway.

That holds only in glibc's main arena: XLA's worker threads get per-thread arenas whose heaps are capped at
64 MiB, and a larger block is mmapped there whatever M_MMAP_MAX says. One arena (M_ARENA_MAX 1) sends every
thread to the main heap, where the settings above hold. The measurements are in docs/performance.md.

Set CHARLSTM_MALLOC_TUNING=0 to skip it (e.g. to measure the difference). A no-op off glibc.

Every process that samples or trains compiles its programs with XLA first, seconds for a training step,
paid again by every `charlstm sample`. `compile_cache` points JAX's persistent compilation cache at
$CHARLSTM_CACHE/xla, so a later process with the same model and options loads the compiled programs from
disk instead (CHARLSTM_CACHE set to the empty string turns it off).

On a GPU, XLA is not deterministic by default (the embedding's gradient is a scatter-add done with atomics,
and the autotuner may choose different kernels in each process). `deterministic_gpu` asks XLA for
run-to-run identical results, so the same seed and config give the same numbers there as on a CPU, at a
cost in speed (docs/performance.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys
from pathlib import Path

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

COMPILE_CACHE_MAX_BYTES = 2**30  # least recently used programs are deleted beyond this

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


def compile_cache_dir() -> Path | None:
    """Where compiled XLA programs are kept: $CHARLSTM_CACHE/xla (see `download.cache_dir`), or None when
    CHARLSTM_CACHE is set to the empty string."""
    if os.environ.get("CHARLSTM_CACHE", None) == "":
        return None
    from charlstm.data import download  # JAX-free

    return download.cache_dir() / "xla"


def compile_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache in `compile_cache_dir()`; returns the directory in use.

    Works before or after JAX is imported: without JAX it sets the environment variables JAX reads when it
    starts (so the command line stays JAX-free until a command needs it), with JAX it updates the config. A
    cache directory the user chose for JAX (JAX_COMPILATION_CACHE_DIR or jax.config) is left as it is.
    Every program is cached whatever its compile time: on a CPU even a small one costs more to compile than
    to read back. The cache keeps at most 1 GiB, dropping the least recently used programs.
    """
    path = compile_cache_dir()
    if path is None:
        return None
    jax = sys.modules.get("jax")
    if jax is None:
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(path))
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(COMPILE_CACHE_MAX_BYTES))
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_compilation_cache_max_size", COMPILE_CACHE_MAX_BYTES)
    return path


def cpu_name() -> str:
    """The processor's model name (/proc/cpuinfo), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
