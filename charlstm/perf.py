"""Process-level speed settings, applied once at start-up before JAX allocates anything.

glibc's malloc hands large blocks back to the kernel as soon as they are freed: blocks above the mmap
threshold are unmapped, and free memory at the top of the heap beyond the trim threshold is released. A
training step allocates and frees the same large buffers (activations, gradients) every step, so each step
pays again for page faults and zeroing of memory it just returned. Raising both thresholds keeps that memory
in the process; measured on 2 cores this is worth up to a third of a small model's step time (see
benchmarks/README.md). The cost is that the process keeps its peak heap until it exits, which a training or
sampling run does anyway.

Set CHARLSTM_MALLOC_TUNING=0 to skip it (e.g. to measure the difference). A no-op off glibc.
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

# The largest mmap threshold glibc accepts on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX, 32 MiB): blocks below it come
# from the heap and are reused. Blocks above it still use mmap, so a huge buffer is still returned when freed.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024  # keep up to 1 GiB of free heap instead of trimming it after each step
TOP_PAD = 64 * 1024 * 1024  # grow the heap in 64 MiB steps rather than one page-fault-sized request at a time

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
    ok = all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    _applied = ok
    return ok


def malloc_tuned() -> bool:
    """Whether `tune_malloc` has put its settings in effect in this process."""
    return bool(_applied)
