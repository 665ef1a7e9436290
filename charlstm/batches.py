"""Turning an id array into [batch, time] input/target pairs.

Every batch is a pure function of (data, step, seed), so the data position of a run is just its step: resume
needs nothing else and two runs with the same seed see the same batches.

- "stream" (char-rnn style): the corpus is cut into `batch_size` contiguous streams read left to right, so the
  hidden state carried from one batch to the next is the state of the text just before. Each epoch the cut
  points shift by a random offset (< seq_len) so window boundaries differ; every stream restarts from the
  start state at epoch start, and with `reset_rate` > 0 a random share of streams restarts at every window.
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


def stream_batch(ids: np.ndarray, step: int, batch_size: int, seq_len: int, seed: int, rows: slice = slice(None),
                 reset_rate: float = 0.0) -> Batch:
    """Batch number `step` of contiguous streams (see module docstring); only `rows` of it (one process's share)."""
    stream_len, per_epoch = stream_layout(len(ids), batch_size, seq_len)
    epoch, k = divmod(step, per_epoch)
    offset = int(np.random.default_rng([seed, epoch]).integers(0, seq_len)) if seq_len > 1 else 0
    starts = np.arange(batch_size) * stream_len + offset + k * seq_len
    x, y = _windows(ids, starts[rows], seq_len)
    # Drawn for the whole batch, then sliced, like the starts: the same global mask on every process.
    reset = np.random.default_rng([seed, step, 2]).random(batch_size) < reset_rate if reset_rate > 0 else \
        np.zeros(batch_size, bool)
    return Batch(x, y, reset=(reset | (k == 0))[rows])


def random_batch(ids: np.ndarray, step: int, batch_size: int, seq_len: int, seed: int, rows: slice = slice(None),
                 reset_rate: float = 0.0) -> Batch:
    """Batch number `step` of independent random windows; only `rows` of it (one process's share)."""
    # All starts are drawn, then sliced: every process sees the same global batch, whatever its share.
    starts = np.random.default_rng([seed, step, 1]).integers(0, len(ids) - seq_len, size=batch_size)
    x, y = _windows(ids, starts[rows], seq_len)
    return Batch(x, y, reset=np.ones(len(x), bool))


def get_batch(ids: np.ndarray, step: int, batch_size: int, seq_len: int, seed: int, mode: str = "stream",
              rows: slice = slice(None), reset_rate: float = 0.0) -> Batch:
    """Dispatch on the configured batching mode; `rows` picks one process's rows of the global batch."""
    return (stream_batch if mode == "stream" else random_batch)(ids, step, batch_size, seq_len, seed, rows, reset_rate)


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
