"""`charlstm runs` and `charlstm plot` (charlstm.analysis.runs, plots.runs_chart): run directories written as the
trainer
writes them (config.yaml, run.json, metrics.jsonl, checkpoint folders, the lock), read back without JAX."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, assert_clean_error, assert_ok, cli_env, run_cli

from charlstm import config
from charlstm.analysis import plots, png_charts
from charlstm.analysis import runs as runs_lib
from charlstm.data.corpus import Vocab
from charlstm.errors import RunError, UserError
from charlstm.training import rundir

VOCAB = Vocab(encoding="utf-8", symbols=tuple(ord(c) for c in "\n abc"))
T0 = time.mktime(time.strptime("2026-01-02T03:04:05", "%Y-%m-%dT%H:%M:%S"))


def make_run(
    runs_dir: Path,
    name: str,
    *,
    steps: int = 100,
    created: str = "2026-01-02T03:04:05",
    rows: list[dict] | None = None,
    ckpts: tuple[int, ...] = (),
    cell: str = "lstm",
) -> rundir.RunDir:
    """A run directory as `charlstm train` leaves it: config, vocabulary, run.json, metric rows, checkpoints."""
    cfg = config.load("tiny", [f"train.steps={steps}", f"model.cell={cell}"])
    run = rundir.create(runs_dir, name, cfg, VOCAB, ROOT / "corpora" / "languages.txt")
    rundir.write_json(run.info_file, {"corpus": "/data/text.txt", "created": created})
    run.metrics_file.write_text("".join(json.dumps(r) + "\n" for r in rows or []), encoding="utf-8")
    for step in ckpts:
        (run.checkpoints / str(step)).mkdir(parents=True)
    return run


def train_row(step: int, loss: float, cps: float = 1000.0, skipped: bool = False, t: float | None = None) -> dict:
    return {
        "step": step,
        "loss": loss,
        "grad_norm": 1.0,
        "lr": 1e-3,
        "chars_per_s": cps,
        "skipped": skipped,
        "time": T0 + step if t is None else t,
    }


def val_row(step: int, loss: float) -> dict:
    return {"step": step, "val_loss": loss, "val_bpc": loss / math.log(2), "time": T0 + step + 0.5}


def finished_rows() -> list[dict]:
    """A run of 100 steps: validation loss 2.5 at step 50 (the best), 2.7 at step 100 (the last)."""
    return [train_row(50, 3.0, 900), val_row(50, 2.5), train_row(100, 2.0, 1100), val_row(100, 2.7)]


# --- status --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "ckpts", "locked", "want"),
    [
        ([train_row(10, 2.0)], [10], True, ("running", "")),
        ([train_row(100, 2.0), val_row(100, 1.9)], [50, 100], False, ("finished", "")),
        ([train_row(100, 2.0)], [50], False, ("finished", "")),  # metrics reached train.steps
        ([train_row(40, 2.0)], [37, 40], False, ("interrupted", "")),  # Ctrl-C saves the step it stopped at
        ([train_row(35, 2.0)], [37], False, ("interrupted", "")),
        ([train_row(40, 2.0), train_row(41, math.nan, skipped=True)], [40], False, ("failed", "non-finite loss")),
        ([train_row(60, 2.0)], [40], False, ("failed", "killed or crashed")),  # steps past the newest checkpoint
        ([train_row(10, 2.0)], [], False, ("failed", "no checkpoint")),
        ([], [], False, ("failed", "no checkpoint")),
    ],
)
def test_status_rules(rows: list[dict], ckpts: list[int], locked: bool, want: tuple[str, str]) -> None:
    assert runs_lib.status_of(100, rows, ckpts, locked) == want


def test_summary_of_a_run(tmp_path: Path) -> None:
    rows = [*finished_rows()[:3], train_row(90, 2.0, 1000), val_row(100, 2.7)]
    run = make_run(tmp_path, "a", rows=rows, ckpts=(50, 100))
    s = runs_lib.summarize(run)
    assert (s.name, s.corpus, s.size) == ("a", "/data/text.txt", "lstm 1x32")
    assert (s.step, s.steps, s.checkpoint) == (100, 100, 100)
    assert s.best_val_loss == 2.5 and s.last_val_loss == 2.7  # best is the lowest, last the newest
    assert s.chars_per_s == 1000.0  # the median of 900, 1100, 1000
    assert s.wall_s == pytest.approx(100.5)  # creation (T0) to the last row (T0 + 100.5)
    assert s.status == "finished"
    j = s.to_json()
    assert j["best_val_bpc"] == pytest.approx(2.5 / math.log(2)) and j["created"] == "2026-01-02T03:04:05"
    assert json.loads(json.dumps(j)) == j


def test_a_held_lock_is_running(tmp_path: Path) -> None:
    run = make_run(tmp_path, "live", rows=[train_row(10, 2.0)], ckpts=())
    with rundir.Lock(run):
        assert runs_lib.summarize(run).status == "running"
    assert runs_lib.summarize(run).status == "failed"  # released without a checkpoint


def test_list_newest_first_skips_latest_and_non_runs(tmp_path: Path) -> None:
    make_run(tmp_path, "old", created="2025-05-05T00:00:00", rows=[train_row(10, 2.0)], ckpts=(10,))
    make_run(tmp_path, "new", created="2026-06-06T00:00:00", rows=[train_row(10, 2.0)], ckpts=(10,), cell="gru")
    (tmp_path / "notes").mkdir()  # not a run: no config.yaml
    listed = runs_lib.list_runs(tmp_path)
    assert [r.name for r in listed] == ["new", "old"]  # `latest` (a link to "new") is not listed twice
    assert [r.status for r in listed] == ["interrupted", "interrupted"] and listed[0].cell == "gru"
    with pytest.raises(RunError, match="no runs directory"):
        runs_lib.list_runs(tmp_path / "missing")


def test_a_damaged_config_is_listed_as_damaged(tmp_path: Path) -> None:
    make_run(tmp_path, "ok", rows=[train_row(100, 1.0)], ckpts=(100,))
    bad = make_run(tmp_path, "bad")
    bad.config_file.write_text("model: {cell: transformer}\n", encoding="utf-8")
    by_name = {r.name: r for r in runs_lib.list_runs(tmp_path)}
    assert by_name["ok"].status == "finished"
    assert by_name["bad"].status == "damaged" and "damaged config.yaml" in by_name["bad"].reason


# --- curves, smoothing, CSV ----------------------------------------------------------------------------------


def test_ema_is_bias_corrected() -> None:
    assert runs_lib.ema([5.0, 5.0, 5.0], 0.9) == pytest.approx([5.0, 5.0, 5.0])  # no pull toward 0 at the start
    assert runs_lib.ema([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    w = 0.5  # by hand: a1 = 0.5 * 1, a2 = 0.25 + 0.5 * 3 = 1.75; corrected by 1 - w^n
    assert runs_lib.ema([1.0, 3.0], w) == pytest.approx([1.0, 1.75 / 0.75])


def test_curves_leave_out_skipped_steps(tmp_path: Path) -> None:
    rows = [train_row(10, 3.0), train_row(11, math.inf, skipped=True), train_row(20, 2.0), val_row(20, 2.2)]
    c = runs_lib.read_curves(make_run(tmp_path, "r", rows=rows))
    assert (c.steps, c.loss, c.val_steps, c.val_loss, c.total_steps) == ([10, 20], [3.0, 2.0], [20], [2.2], 100)
    assert c.minutes == pytest.approx([10 / 60, 20 / 60]) and c.val_minutes == pytest.approx([20.5 / 60])


def test_csv_has_every_point(tmp_path: Path) -> None:
    a = runs_lib.read_curves(make_run(tmp_path, "a", rows=[train_row(10, 3.0), train_row(20, 1.0), val_row(20, 2.0)]))
    b = runs_lib.read_curves(make_run(tmp_path, "b", rows=[train_row(10, 4.0)]))
    runs_lib.write_csv([a, b], tmp_path / "c.csv", smooth=0.5)
    with (tmp_path / "c.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["split"], r["step"]) for r in rows] == [
        ("a", "train", "10"),
        ("a", "train", "20"),
        ("a", "val", "20"),
        ("b", "train", "10"),
    ]
    assert float(rows[1]["loss"]) == 1.0 and float(rows[1]["loss_smoothed"]) == pytest.approx((0.25 * 3 + 0.5) / 0.75)
    assert rows[2]["loss_smoothed"] == "" and float(rows[2]["minutes"]) == pytest.approx(20.5 / 60, abs=1e-4)


def test_runs_chart_tells_runs_apart() -> None:
    a = runs_lib.Curves(
        "first",
        steps=[1, 2, 3],
        loss=[3.0, 2.0, 1.5],
        minutes=[0.1, 0.2, 0.3],
        val_steps=[3],
        val_loss=[1.8],
        val_minutes=[0.3],
        total_steps=3,
    )
    b = runs_lib.Curves("second", steps=[1, 2, 3], loss=[2.5, 2.4, 2.3], minutes=[0.1, 0.2, 0.3], total_steps=10)
    plain = plots.runs_chart([a, b], width=80, height=16, color=False)
    assert "a first" in plain and "b second" in plain and "uppercase: validation" in plain and "\x1b" not in plain
    assert "A" in plain.split("uppercase")[1]  # the validation point of run a
    coloured = plots.runs_chart([a, b], width=80, height=16, color=True)
    assert "\x1b[" in coloured and "thin: validation" in coloured
    assert "10" in plots.runs_chart([a, b], whole_run=True, color=False).splitlines()[-2]  # axis to train.steps
    assert "minutes" in plots.runs_chart([a], x="minutes", log_y=True, color=False)
    assert "no data" in plots.runs_chart([runs_lib.Curves("empty")], color=False)


def test_png_needs_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(UserError, match="matplotlib") as err:
        png_charts.save_runs_png([runs_lib.Curves("a", steps=[1], loss=[1.0])], tmp_path / "x.png")
    assert 'pip install "charlstm[plots]"' in err.value.hint


def test_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    c = runs_lib.Curves(
        "a", steps=[1, 2], loss=[2.0, 1.0], minutes=[0.1, 0.2], val_steps=[2], val_loss=[1.5], val_minutes=[0.2]
    )
    png_charts.save_runs_png([c], tmp_path / "x.png", x="minutes", log_y=True)
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the commands --------------------------------------------------------------------------------------------


def test_runs_command(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_run(runs, "done", created="2026-01-01T00:00:00", rows=finished_rows(), ckpts=(100,))
    make_run(runs, "stopped", created="2026-01-03T00:00:00", rows=[train_row(30, 2.2)], ckpts=(30,))
    proc = run_cli(["runs", "--runs-dir", runs, "--json"])
    assert_ok(proc)
    listed = json.loads(proc.stdout)
    assert [(r["name"], r["status"], r["step"], r["steps"]) for r in listed] == [
        ("stopped", "interrupted", 30, 100),
        ("done", "finished", 100, 100),
    ]
    assert listed[1]["best_val_loss"] == 2.5 and listed[1]["last_val_loss"] == 2.7
    table = run_cli(["runs", "--runs-dir", runs], env={"COLUMNS": "200"})
    assert_ok(table)
    lines = table.stdout.splitlines()
    stopped, done = (next(ln for ln in lines if name in ln) for name in ("stopped", "done"))
    assert lines.index(stopped) < lines.index(done)  # newest first
    assert "interrupted" in stopped and "30/100" in stopped and " text " in stopped  # the corpus, /data/text.txt
    assert "finished" in done and "2.5000/3.607" in done and "2.7000/3.895" in done and "lstm 1x32" in done
    assert "\x1b" not in table.stdout
    assert_clean_error(run_cli(["runs", "--runs-dir", tmp_path / "none"]), "no runs directory", code=1)
    empty = run_cli(["runs", "--runs-dir", tmp_path, "--json"])  # a folder without runs: an empty list
    assert_ok(empty)
    assert json.loads(empty.stdout) == []


def test_plot_command(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_run(runs, "one", rows=finished_rows(), ckpts=(100,))
    make_run(runs, "two", rows=[train_row(10, 3.5), train_row(20, 3.0), val_row(20, 3.1)], ckpts=(20,))
    out = tmp_path / "curves.csv"
    proc = run_cli(["plot", "one", "two", "--runs-dir", runs, "--out", out], env={"COLUMNS": "100"})
    assert_ok(proc)
    assert "a one" in proc.stdout and "b two" in proc.stdout and f"wrote {out}" in proc.stderr
    with out.open() as f:
        assert {r["run"] for r in csv.DictReader(f)} == {"one", "two"}
    latest = run_cli(["plot", "--runs-dir", runs, "--x", "minutes"])  # no RUN: the newest, runs/latest
    assert_ok(latest)
    assert "a two" in latest.stdout and "minutes" in latest.stdout
    bad_out = run_cli(["plot", "one", "--runs-dir", runs, "--out", tmp_path / "c.txt"])
    assert_clean_error(bad_out, ".csv or .png", code=2)
    assert_clean_error(run_cli(["plot", "one", "--runs-dir", runs, "--smooth", "1"]), "--smooth", code=2)
    assert_clean_error(run_cli(["plot", "nope", "--runs-dir", runs]), "run not found", code=1)
    assert_clean_error(run_cli(["plot", "one", "--runs-dir", runs, "--x", "hours"]), "hours", code=2)


@pytest.mark.slow
def test_plot_follow_waits_for_the_trainer(tmp_path: Path) -> None:
    """--follow draws until the run's lock is released, and its last picture (here the CSV) has every row."""
    runs = tmp_path / "runs"
    run = make_run(runs, "live", rows=[train_row(10, 3.0)], ckpts=())
    out = tmp_path / "live.csv"
    with rundir.Lock(run):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "charlstm.cli",
                "plot",
                "live",
                "--runs-dir",
                str(runs),
                "--follow",
                "--out",
                str(out),
            ],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3.0)
        assert proc.poll() is None, proc.communicate()  # still following
        with run.metrics_file.open("a", encoding="utf-8") as f:
            f.write(json.dumps(train_row(20, 2.0)) + "\n" + json.dumps(val_row(20, 2.1)) + "\n")
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "a live" in stdout
    with out.open() as f:
        assert [(r["split"], r["step"]) for r in csv.DictReader(f)] == [("train", "10"), ("train", "20"), ("val", "20")]
