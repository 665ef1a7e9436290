"""Turning an id array into [batch, time] input/target pairs.

Every batch is a pure function of (data, step, seed), so the data position of a run is just its step: resume
needs nothing else and two runs with the same seed see the same batches.

- "stream" (char-rnn style): the corpus is cut into contiguous streams read left to right, so the hidden
  state carried from one batch to the next is the state of the text just before. Each epoch the cut points
  shift by a random offset (< seq_len) so window boundaries differ; every stream restarts from the start
  state at epoch start. With `line_restarts` > 0, that share of the rows are not streams: each window of
  theirs starts at a random line start (its first input is the newline) and is read from the start state,
  the way `sample` reads a prompt, so the model learns to read from the state it is sampled from.
  A `curriculum` of (step, share) stages narrows both to the first `share` of the text from each stage's step
  on (each stage lays its streams out anew, from the start state): on a text ordered from easy to hard, as the
  bundled corpus is, the first steps read the easy part only.
- "random": independent random windows, every one read from the start state.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Batch(NamedTuple):
    x: np.ndarray  # [B, T] input ids
    y: np.ndarray  # [B, T] target ids (x shifted by one)
    reset: np.ndarray  # [B] bool: rows whose state restarts from the start state before this window


def stream_layout(n: int, batch_size: int, seq_len: int) -> tuple[int, int]:
    """(stream length, steps per epoch) for `n` ids; one seq_len is reserved for the epoch offset."""
    stream_len = (n - 1 - seq_len) // batch_size
    return stream_len, stream_len // seq_len


def _windows(ids: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    # A gather of B x (T + 1) elements: on a memory-mapped corpus only those pages are read, never the whole.
    chunk = np.asarray(ids[starts[:, None] + np.arange(seq_len + 1)], dtype=np.int32)
    return chunk[:, :-1], chunk[:, 1:]


Curriculum = tuple[tuple[int, float], ...]  # (first step, share of the text read from it on), by step


def stage(step: int, curriculum: Curriculum) -> tuple[int, float]:
    """(first step, share of the text) of the curriculum stage `step` is in; (0, 1.0) without a curriculum."""
    current = (0, 1.0)
    for first, share in curriculum:
        if step >= first:
            current = (first, share)
    return current


def restart_rows(batch_size: int, line_restarts: float) -> int:
    """How many of a batch's rows restart at a line start every window (at least one when the share is > 0)."""
    return min(batch_size - 1, max(1, round(line_restarts * batch_size))) if line_restarts > 0 else 0


def line_start_windows(ids: np.ndarray, n: int, seq_len: int, rng: np.random.Generator, newline: int) -> np.ndarray:
    """`n` window starts, each at the first newline within seq_len ids of a random position (or at that
    position when none is near, or the corpus has no newline)."""
    last = len(ids) - seq_len - 1  # the last start of a whole window
    starts = rng.integers(0, max(0, last - seq_len) + 1, size=n)  # room to look seq_len ids ahead
    if newline < 0:
        return starts
    near = np.minimum(starts[:, None] + np.arange(seq_len), last)
    found = np.asarray(ids[near]) == newline
    return np.where(found.any(axis=1), near[np.arange(n), found.argmax(axis=1)], starts)


def stream_batch(
    ids: np.ndarray,
    step: int,
    batch_size: int,
    seq_len: int,
    seed: int,
    rows: slice = slice(None),
    line_restarts: float = 0.0,
    newline: int = -1,
    curriculum: Curriculum = (),
) -> Batch:
    """Batch number `step` of contiguous streams (see module docstring); only `rows` of it (one process's share).

    The first rows are the streams; the last `restart_rows(batch_size, line_restarts)` start at a line.
    """
    first, share = stage(step, curriculum)
    if share < 1.0:  # at least enough text for one window per stream
        ids = ids[: max(int(len(ids) * share), (batch_size + 1) * (seq_len + 1))]
    n_restart = restart_rows(batch_size, line_restarts)
    n_stream = batch_size - n_restart
    stream_len, per_epoch = stream_layout(len(ids), n_stream, seq_len)
    epoch, k = divmod(step - first, per_epoch)
    offset = int(np.random.default_rng([seed, epoch]).integers(0, seq_len)) if seq_len > 1 else 0
    starts = np.arange(n_stream) * stream_len + offset + k * seq_len
    reset = np.full(batch_size, k == 0)
    if n_restart:  # drawn for the whole batch, then sliced: the same global batch on every process
        restarts = line_start_windows(ids, n_restart, seq_len, np.random.default_rng([seed, step, 2]), newline)
        starts = np.concatenate([starts, restarts])
        reset[n_stream:] = True
    x, y = _windows(ids, starts[rows], seq_len)
    return Batch(x, y, reset=reset[rows])


def random_batch(
    ids: np.ndarray, step: int, batch_size: int, seq_len: int, seed: int, rows: slice = slice(None)
) -> Batch:
    """Batch number `step` of independent random windows; only `rows` of it (one process's share)."""
    # All starts are drawn, then sliced: every process sees the same global batch, whatever its share.
    starts = np.random.default_rng([seed, step, 1]).integers(0, len(ids) - seq_len, size=batch_size)
    x, y = _windows(ids, starts[rows], seq_len)
    return Batch(x, y, reset=np.ones(len(x), bool))


def get_batch(
    ids: np.ndarray,
    step: int,
    batch_size: int,
    seq_len: int,
    seed: int,
    mode: str = "stream",
    rows: slice = slice(None),
    line_restarts: float = 0.0,
    newline: int = -1,
    curriculum: Curriculum = (),
) -> Batch:
    """Dispatch on the configured batching mode; `rows` picks one process's rows of the global batch. Random
    windows all start from the start state, so the line restarts concern streams only; the curriculum too."""
    if mode == "stream":
        return stream_batch(ids, step, batch_size, seq_len, seed, rows, line_restarts, newline, curriculum)
    return random_batch(ids, step, batch_size, seq_len, seed, rows)


def eval_batches(ids: np.ndarray, batch_size: int, seq_len: int, max_batches: int) -> list[Batch]:
    """Validation batches: contiguous streams from offset 0, state carried, at most `max_batches`.

    The batch size shrinks to fit small validation sets so that every validation set of at least
    seq_len + 1 symbols yields one batch.
    """
    batch_size = max(1, min(batch_size, (len(ids) - 1) // seq_len))
    stream_len = (len(ids) - 1) // batch_size
    n = min(stream_len // seq_len, max_batches)
    base = np.arange(batch_size) * stream_len
    return [Batch(*_windows(ids, base + k * seq_len, seq_len), reset=np.full(batch_size, k == 0)) for k in range(n)]
