"""Tests for charlstm.data.batches: stream and random training batches, and validation batches."""

from __future__ import annotations

import numpy as np
import pytest

from charlstm.data import batches

# ids equal to their own positions make every check about *where* a window reads from exact.
N, B, T = 2_000, 4, 16


@pytest.fixture
def ids() -> np.ndarray:
    return np.arange(N, dtype=np.int32)


def _per_epoch(n: int = N, b: int = B, t: int = T) -> int:
    return batches.stream_layout(n, b, t)[1]


def test_stream_layout_matches_sizes() -> None:
    stream_len, per_epoch = batches.stream_layout(N, B, T)
    assert stream_len == (N - 1 - T) // B
    assert per_epoch == stream_len // T
    assert per_epoch >= 1


def test_stream_y_is_x_shifted_by_one(ids: np.ndarray) -> None:
    words = np.random.default_rng(0).integers(0, 50, size=N).astype(np.uint8)  # real-looking ids
    for step in range(0, 3 * _per_epoch(), 7):
        b = batches.stream_batch(words, step, B, T, seed=3)
        assert b.x.shape == b.y.shape == (B, T)
        assert b.x.dtype == np.int32
        pos = batches.stream_batch(ids, step, B, T, seed=3).x  # where each input came from
        assert np.array_equal(b.x, words[pos])
        assert np.array_equal(b.y, words[pos + 1])


def test_stream_windows_are_contiguous_rows(ids: np.ndarray) -> None:
    b = batches.stream_batch(ids, 5, B, T, seed=0)
    assert np.array_equal(b.x, b.x[:, :1] + np.arange(T))
    assert np.array_equal(b.y, b.x + 1)


def test_stream_continues_where_previous_batch_ended(ids: np.ndarray) -> None:
    per_epoch = _per_epoch()
    for seed in (0, 1, 7):
        for epoch in range(3):
            first = epoch * per_epoch
            prev = batches.stream_batch(ids, first, B, T, seed)
            for step in range(first + 1, first + per_epoch):
                cur = batches.stream_batch(ids, step, B, T, seed)
                # each stream's next input is the target that ended the previous batch: no gap, no overlap
                assert np.array_equal(cur.x[:, 0], prev.y[:, -1]), (seed, step)
                assert np.array_equal(cur.x[:, 0], prev.x[:, -1] + 1)
                prev = cur


def test_streams_are_disjoint_and_cover_the_epoch(ids: np.ndarray) -> None:
    per_epoch = _per_epoch()
    seen = np.concatenate([batches.stream_batch(ids, s, B, T, seed=2).x.ravel() for s in range(per_epoch)])
    assert len(np.unique(seen)) == len(seen) == B * T * per_epoch  # every position read once per epoch


def test_reset_only_at_epoch_start(ids: np.ndarray) -> None:
    per_epoch = _per_epoch()
    resets = [batches.stream_batch(ids, s, B, T, seed=0).reset for s in range(3 * per_epoch)]
    assert all(r.shape == (B,) and r.dtype == bool for r in resets)
    assert [s for s, r in enumerate(resets) if r.any()] == [0, per_epoch, 2 * per_epoch]
    assert all(resets[s].all() for s in (0, per_epoch, 2 * per_epoch))  # every stream restarts at epoch start


def test_line_restarts_rows_start_at_a_newline_from_the_start_state() -> None:
    nl = 0
    ids = np.random.default_rng(0).integers(1, 20, 5_000)
    ids[np.random.default_rng(1).choice(5_000, 500, replace=False)] = nl  # lines of ~10 ids
    b, t = 8, 16
    assert batches.restart_rows(b, 0.25) == 2 and batches.restart_rows(b, 0.01) == 1 and batches.restart_rows(b, 0) == 0
    streams_only = batches.stream_batch(ids, 0, b - 2, t, 4)
    for step in range(40):
        batch = batches.stream_batch(ids, step, b, t, seed=4, line_restarts=0.25, newline=nl)
        restart = batch.x[-2:]
        assert batch.reset[-2:].all()  # restart rows always read from the start state
        for row in restart:  # at a line start, unless no newline was within t ids of the drawn position
            assert row[0] == nl or nl not in row
        assert np.array_equal(batch.y[:, :-1], batch.x[:, 1:])
        again = batches.stream_batch(ids, step, b, t, seed=4, line_restarts=0.25, newline=nl)
        assert np.array_equal(batch.x, again.x)  # a pure function of (seed, step): resume sees the same rows
        # a process's rows of the same global batch
        part = batches.stream_batch(ids, step, b, t, seed=4, line_restarts=0.25, newline=nl, rows=slice(5, 8))
        assert np.array_equal(part.x, batch.x[5:]) and np.array_equal(part.reset, batch.reset[5:])
    # over many windows most restart rows start with the newline (one lies within t ids with probability ~0.8)
    firsts = np.concatenate(
        [batches.stream_batch(ids, s, b, t, 4, line_restarts=0.25, newline=nl).x[-2:, 0] for s in range(200)]
    )
    assert (firsts == nl).mean() > 0.7
    # the other rows are the streams of a batch of b - 2 rows: carried, reset only at epoch start
    mixed = batches.stream_batch(ids, 0, b, t, 4, line_restarts=0.25, newline=nl)
    assert np.array_equal(mixed.x[:-2], streams_only.x) and mixed.reset[:-2].all()
    later = batches.stream_batch(ids, 1, b, t, 4, line_restarts=0.25, newline=nl)
    assert not later.reset[:-2].any()
    # without newlines in the vocabulary the rows start anywhere, still from the start state
    assert batches.stream_batch(ids, 3, b, t, 4, line_restarts=0.25).reset[-2:].all()


def test_epoch_offsets_differ_and_stay_below_seq_len(ids: np.ndarray) -> None:
    per_epoch = _per_epoch()
    for seed in range(5):
        offsets = [int(batches.stream_batch(ids, e * per_epoch, B, T, seed).x[0, 0]) for e in range(8)]
        assert all(0 <= o < T for o in offsets), offsets
        assert len(set(offsets)) > 1, (seed, offsets)
        # all streams of an epoch share the offset: stream b starts b * stream_len later
        stream_len = batches.stream_layout(N, B, T)[0]
        b0 = batches.stream_batch(ids, per_epoch, B, T, seed)
        assert np.array_equal(b0.x[:, 0], offsets[1] + np.arange(B) * stream_len)


@pytest.mark.parametrize(
    "n,b,t", [(N, B, T), (2 * 8 + 2 + 1, 2, 2), (8 * 32 + 32 + 1, 8, 32), (997, 3, 1), (501, 7, 5)]
)
def test_every_index_in_range_for_several_epochs(n: int, b: int, t: int) -> None:
    ids = np.arange(n)
    per_epoch = _per_epoch(n, b, t)
    assert per_epoch >= 1
    for seed in (0, 1):
        for step in range(4 * per_epoch + 1):
            batch = batches.stream_batch(ids, step, b, t, seed)
            assert batch.x.shape == (b, t)
            assert batch.x.min() >= 0 and batch.y.max() <= n - 1  # fancy indexing would wrap or raise otherwise
            assert np.array_equal(batch.y, batch.x + 1)


def test_stream_deterministic_and_seed_dependent(ids: np.ndarray) -> None:
    later = 3 * _per_epoch() + 2
    for step in (0, 1, later):
        a, b = batches.stream_batch(ids, step, B, T, 5), batches.stream_batch(ids, step, B, T, 5)
        assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) and np.array_equal(a.reset, b.reset)
    differ = [
        not np.array_equal(batches.stream_batch(ids, later, B, T, s).x, batches.stream_batch(ids, later, B, T, 5).x)
        for s in range(6)
        if s != 5
    ]
    assert any(differ)


def test_random_batches(ids: np.ndarray) -> None:
    n = len(ids)
    for step in range(50):
        b = batches.random_batch(ids, step, B, T, seed=1)
        assert b.reset.shape == (B,) and b.reset.all()
        assert b.x.shape == b.y.shape == (B, T)
        assert b.x.min() >= 0 and b.y.max() <= n - 1
        assert np.array_equal(b.y, b.x + 1)
        assert np.array_equal(b.x, b.x[:, :1] + np.arange(T))
        again = batches.random_batch(ids, step, B, T, seed=1)
        assert np.array_equal(b.x, again.x)
    assert not np.array_equal(batches.random_batch(ids, 3, B, T, 1).x, batches.random_batch(ids, 3, B, T, 2).x)
    assert not np.array_equal(batches.random_batch(ids, 3, B, T, 1).x, batches.random_batch(ids, 4, B, T, 1).x)


def test_random_batches_reach_the_last_window() -> None:
    ids = np.arange(T + 2)  # only two possible windows
    starts = {int(batches.random_batch(ids, s, 4, T, 0).x[r, 0]) for s in range(30) for r in range(4)}
    assert starts == {0, 1}


def test_get_batch_dispatches(ids: np.ndarray) -> None:
    s = batches.get_batch(ids, 3, B, T, 0, "stream")
    assert np.array_equal(s.x, batches.stream_batch(ids, 3, B, T, 0).x)
    r = batches.get_batch(ids, 3, B, T, 0, "random")
    assert np.array_equal(r.x, batches.random_batch(ids, 3, B, T, 0).x)


def test_eval_batches_smallest_validation_set() -> None:
    ids = np.arange(T + 1)
    out = batches.eval_batches(ids, 64, T, max_batches=20)
    assert len(out) == 1
    assert out[0].x.shape == (1, T)
    assert np.array_equal(out[0].x[0], np.arange(T)) and np.array_equal(out[0].y[0], np.arange(1, T + 1))
    assert out[0].reset.all()
    assert batches.eval_batches(np.arange(T), 64, T, 20) == []  # too short for one window


@pytest.mark.parametrize("n,b,t", [(3 * 16 + 1, 8, 16), (100, 64, 10), (1_000, 4, 16), (10_001, 8, 32)])
def test_eval_batches_shrink_and_stay_in_range(n: int, b: int, t: int) -> None:
    ids = np.arange(n)
    out = batches.eval_batches(ids, b, t, max_batches=1_000)
    assert out, "a validation set of at least seq_len + 1 ids yields a batch"
    rows = out[0].x.shape[0]
    assert 1 <= rows <= b
    assert rows == min(b, (n - 1) // t)
    for k, batch in enumerate(out):
        assert batch.x.shape == (rows, t)
        assert (batch.reset == (k == 0)).all()
        assert batch.y.max() <= n - 1 and np.array_equal(batch.y, batch.x + 1)
    # the windows never read a position twice
    seen = np.concatenate([batch.x.ravel() for batch in out])
    assert len(np.unique(seen)) == len(seen)


def test_eval_batches_streams_continue() -> None:
    ids = np.arange(5_000)
    out = batches.eval_batches(ids, 4, 16, max_batches=50)
    assert out[0].x[0, 0] == 0  # from offset 0, no random shift
    for prev, cur in zip(out, out[1:]):
        assert np.array_equal(cur.x[:, 0], prev.y[:, -1])
        assert not cur.reset.any()


def test_eval_batches_at_most_max_batches() -> None:
    ids = np.arange(5_000)
    assert len(batches.eval_batches(ids, 4, 16, max_batches=3)) == 3
    assert len(batches.eval_batches(ids, 4, 16, max_batches=1)) == 1
    full = batches.eval_batches(ids, 4, 16, max_batches=10_000)
    assert len(full) == (4_999 // 4) // 16
    first3 = batches.eval_batches(ids, 4, 16, max_batches=3)
    assert all(np.array_equal(a.x, b.x) for a, b in zip(first3, full))


def test_a_curriculum_reads_a_growing_prefix_and_restarts_its_streams_at_each_stage(ids: np.ndarray) -> None:
    stages = ((0, 0.25), (30, 0.5), (60, 1.0))
    assert [batches.stage(s, stages) for s in (0, 29, 30, 59, 60, 10**6)] == [
        (0, 0.25),
        (0, 0.25),
        (30, 0.5),
        (30, 0.5),
        (60, 1.0),
        (60, 1.0),
    ]
    assert batches.stage(5, ()) == (0, 1.0)
    nl = 7  # every 7th id (7, 14, ...) stands for a newline: restart rows start at one
    for step, share in [(0, 0.25), (29, 0.25), (30, 0.5), (59, 0.5)]:
        b = batches.stream_batch(ids, step, B, T, seed=1, line_restarts=0.25, newline=nl, curriculum=stages)
        assert b.y.max() < N * share  # the streams and the restarted rows read only the stage's prefix
    # each stage lays its streams out anew over its prefix, starting from the start state
    assert batches.stream_batch(ids, 30, B, T, seed=1, curriculum=stages).reset.all()
    assert not batches.stream_batch(ids, 31, B, T, seed=1, curriculum=stages).reset.any()
    whole = batches.stream_batch(ids, 60, B, T, seed=1, curriculum=stages)
    assert whole.y.max() >= N * 0.5 and whole.reset.all()
    # past the last stage, batches are those of a run without a curriculum counted from that stage's step
    np.testing.assert_array_equal(whole.x, batches.stream_batch(ids, 0, B, T, seed=1).x)
    # the same step, the same batch: resume needs nothing but the step
    again = batches.stream_batch(ids, 45, B, T, seed=1, curriculum=stages)
    np.testing.assert_array_equal(again.x, batches.stream_batch(ids, 45, B, T, seed=1, curriculum=stages).x)


def test_the_training_display_says_what_a_curriculum_reads() -> None:
    import io

    from rich.console import Console

    from charlstm import ui

    stages = [[0, 0.1], [1000, 1.0]]
    line = "curriculum: the first 10% of the text from step 0, all of the text from step 1,000"
    assert ui.curriculum_line(stages).startswith(line + " (") and "validation loss stays high" in ui.curriculum_line(
        stages
    )
    assert ui.curriculum_line([]) == ui.curriculum_line([[0, 1.0]]) == ui.curriculum_line(None) == ""
    out = io.StringIO()
    info = {"cell": "lstm", "layers": 1, "hidden": 8, "params": 1, "vocab": 3, "train_chars": 9, "val_chars": 1}
    ui.TrainingDisplay(console=Console(file=out, width=200)).start({**info, "run": "r", "curriculum": stages})
    assert line in out.getvalue()
    plain = io.StringIO()
    ui.TrainingDisplay(console=Console(file=plain, width=200)).start({**info, "run": "r", "curriculum": []})
    assert "curriculum" not in plain.getvalue()
