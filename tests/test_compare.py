"""charlstm.analysis.compare (its sizing and outputs) / plots and `charlstm compare-rnn`: gap buckets, matched
sizes, a short run and its files."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import assert_clean_error, assert_ok, run_cli

from charlstm import config
from charlstm.analysis import compare, compare_output, compare_sizing, linechart, plots, png_charts
from charlstm.data import corpus
from charlstm.errors import ConfigError, UserError
from charlstm.evaluation import longrange
from charlstm.nn import model

# Seconds, not minutes: a tiny model, a few steps, a few long-range records.
SMOKE = [
    "train.steps=4",
    "train.eval_every=2",
    "train.eval_batches=2",
    "data.seq_len=32",
    "data.batch_size=4",
    "model.hidden=16",
    "optim.warmup_steps=1",
    "train.patience=0",
]


# --- gap buckets --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gap, bucket", [(0, 0), (24, 0), (25, 1), (49, 1), (50, 2), (99, 2), (100, 3), (199, 3), (200, 4), (10**6, 4)]
)
def test_bucket_edges(gap: int, bucket: int) -> None:
    assert longrange.bucket_of(gap) == bucket


def test_bucket_labels_and_no_bucket() -> None:
    assert [longrange.bucket_label(lo, hi) for lo, hi in longrange.BUCKETS] == [
        "<25",
        "25-50",
        "50-100",
        "100-200",
        "200+",
    ]
    with pytest.raises(ValueError):
        longrange.bucket_of(-1)


def test_accuracy_from_weights_buckets_by_count() -> None:
    res = [
        longrange.BucketResult(lb, n, acc, 1.0)
        for lb, n, acc in [
            ("<25", 5, 1.0),
            ("25-50", 5, 1.0),
            ("50-100", 5, 1.0),
            ("100-200", 30, 0.9),
            ("200+", 10, 0.5),
        ]
    ]
    r = compare.CellResult(
        compare_sizing.CellSpec("lstm", 8, 1), compare.CellCurves(), 1.0, 1.0, 1.0, res, np.ones(3), np.ones(3)
    )
    assert r.accuracy_from(100) == pytest.approx((30 * 0.9 + 10 * 0.5) / 40)
    empty = compare.CellResult(
        compare_sizing.CellSpec("rnn", 8, 1), compare.CellCurves(), 1.0, 1.0, 1.0, None, np.ones(3), np.ones(3)
    )
    assert math.isnan(empty.accuracy_from(100))


# --- matched sizes ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("start_state", ["learned", "zeros"])
@pytest.mark.parametrize(
    "options",
    [{"cell": "lstm"}, {"cell": "gru", "embed": 5}, {"cell": "rnn", "layers": 2}, {"tie_embed": True, "embed": 12}],
)
def test_param_count_is_the_models(options: dict, start_state: str) -> None:
    """compare-rnn counts what the model has: no learned start state with start_state=zeros, say."""
    cfg = config.ModelConfig(**{"layers": 1, "hidden": 12, "start_state": start_state, **options})
    params = model.init_params(cfg, 17, jax.random.PRNGKey(0))
    assert model.param_count_of(cfg, 17) == model.param_count(params)


@pytest.mark.slow
@pytest.mark.parametrize("vocab", [30, 65, 256])
@pytest.mark.parametrize("hidden", [128, 256])
def test_matched_parameter_counts(vocab: int, hidden: int) -> None:
    cfg = config.load("compare-rnn", [f"model.hidden={hidden}"])
    plan = {s.cell: s for s in compare_sizing.plan_cells(cfg, ("rnn", "lstm", "gru"), vocab, "params")}
    target = model.param_count_of(cfg.model, vocab)
    assert plan["lstm"].hidden == hidden and plan["lstm"].params == target
    for cell in ("rnn", "gru"):
        assert abs(plan[cell].params - target) / target < 0.01, (cell, plan[cell], target)
        sized = compare_sizing.sized(cfg.model, cell, plan[cell].hidden)
        assert plan[cell].params == model.param_count_of(sized, vocab)
    assert plan["rnn"].hidden > plan["gru"].hidden > plan["lstm"].hidden  # fewer gates, wider layer


def test_match_hidden_is_the_closest_width() -> None:
    base = config.ModelConfig(cell="lstm", layers=2, hidden=100)
    target = model.param_count_of(base, 50)
    for cell in ("rnn", "gru"):
        h = compare_sizing.match_hidden(base, cell, target, 50)

        def err(width: int) -> int:
            return abs(model.param_count_of(compare_sizing.sized(base, cell, width), 50) - target)

        assert err(h) <= err(h - 1) and err(h) <= err(h + 1)


def test_match_hidden_uses_one_width() -> None:
    cfg = config.load("compare-rnn")
    assert {s.hidden for s in compare_sizing.plan_cells(cfg, ("rnn", "lstm", "gru"), 40, "hidden")} == {
        cfg.model.hidden
    }
    with pytest.raises(UserError):
        compare_sizing.plan_cells(cfg, ("rnn",), 40, "width")


def test_parse_cells() -> None:
    assert compare.parse_cells("rnn, LSTM,gru") == ("rnn", "lstm", "gru")
    for bad in ("", "rnn,foo", "lstm,lstm", ","):
        with pytest.raises(UserError):
            compare.parse_cells(bad)


def test_cell_config() -> None:
    cfg = config.load("compare-rnn", ["train.steps=8", "train.eval_every=100"])
    c = compare_sizing.cell_config(cfg, compare_sizing.CellSpec("rnn", 99, 0), clip=False)
    assert (c.model.cell, c.model.hidden, c.optim.clip_norm) == ("rnn", 99, 0.0)
    assert c.train.eval_every == 2  # at least MIN_EVALS validation points
    assert compare_sizing.cell_config(cfg, compare_sizing.CellSpec("rnn", 99, 0)).optim.clip_norm == cfg.optim.clip_norm


def test_cell_config_is_validated() -> None:
    tied = config.load("compare-rnn", ["model.embed=64", "model.hidden=64", "model.tie_embed=true"])
    c = compare_sizing.cell_config(tied, compare_sizing.CellSpec("gru", 99, 0))
    assert (c.model.hidden, c.model.embed, c.model.tie_embed) == (99, 99, True)  # the tied embedding follows the width
    normed = config.load("compare-rnn", ["model.cell=lstm", "model.layer_norm=true"])
    assert compare_sizing.cell_config(normed, compare_sizing.CellSpec("lstm", 99, 0)).model.layer_norm
    with pytest.raises(ConfigError, match="layer_norm"):
        compare_sizing.cell_config(normed, compare_sizing.CellSpec("rnn", 99, 0))


# --- a short run --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled_run() -> compare.CompareResult:
    cfg = config.load("compare-rnn", SMOKE)
    return compare.run(cfg, None, ("rnn", "lstm"), grad_k=20, longrange_records=24)


@pytest.mark.slow
def test_run_on_the_bundled_corpus(bundled_run: compare.CompareResult) -> None:
    r = bundled_run
    assert [c.spec.cell for c in r.cells] == ["rnn", "lstm"]
    assert r.longrange_note is None and r.chance == pytest.approx(1 / 12)
    for c in r.cells:
        assert c.curves.steps == c.curves.val_steps == [1, 2, 3, 4]  # MIN_EVALS: 4 points
        assert math.isfinite(c.val_loss) and c.bits_per_char == pytest.approx(c.val_loss / math.log(2))
        assert c.grad_init.shape == c.grad_final.shape == (21,)
        assert [b.label for b in c.longrange or []] == ["<25", "25-50", "50-100", "100-200", "200+"]
        assert sum(b.count for b in c.longrange or []) == 24
        assert c.diverged is None
    # Same seed and batches: identical first-step data, so both cells start near the loss of uniform logits,
    # ln(vocabulary size) (measured: RNN 0.14 and LSTM 0.04 nats above it).
    uniform = math.log(len(set(corpus.COMPARE_CORPUS.read_text(encoding="utf-8"))))
    for c in r.cells:
        assert abs(c.curves.loss[0] - uniform) < 0.25, (c.spec.cell, c.curves.loss[0], uniform)


@pytest.mark.slow
def test_outputs_parse(bundled_run: compare.CompareResult, tmp_path: Path) -> None:
    written = compare_output.write_outputs(bundled_run, tmp_path, png=png_charts.have_matplotlib())
    names = {p.name for p in written}
    assert {"train.csv", "val.csv", "gradflow.csv", "longrange.csv", "summary.json"} <= names
    with (tmp_path / "train.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["cell"] for r in rows} == {"rnn", "lstm"} and float(rows[0]["loss"]) > 0
    with (tmp_path / "gradflow.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2 * 2 * 21
    with (tmp_path / "longrange.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2 * 5
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [c["cell"] for c in summary["cells"]] == ["rnn", "lstm"] and summary["config"]["train"]["steps"] == 4
    assert len(summary["cells"][1]["longrange"]) == 5
    if png_charts.have_matplotlib():
        for name in ("loss.png", "longrange.png", "gradflow.png", "grad_norm.png"):
            assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_png_without_matplotlib_is_a_user_error(
    bundled_run: compare.CompareResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib...` raise ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert not png_charts.have_matplotlib()
    with pytest.raises(UserError, match="matplotlib"):
        png_charts.save_pngs(bundled_run, tmp_path)


@pytest.mark.slow
def test_charts_render(bundled_run: compare.CompareResult) -> None:
    texts = plots.charts(bundled_run, width=90, height=16, color=False)
    assert len(texts) == 4
    for t in texts:
        assert "\x1b" not in t and "rnn" in t and "lstm" in t
    assert "chance" in texts[1] and "1e" in texts[2]  # the accuracy chart's chance line; log-scale ticks
    coloured = plots.charts(bundled_run, width=90, height=16, color=True)
    assert all("\x1b[" in t for t in coloured)


def test_chart_edge_cases() -> None:
    nan, zero = (
        linechart.Series("rnn", [1, 2, 3], [float("nan"), 0.0, 1e-3], label="rnn"),
        linechart.Series("lstm", [], []),
    )
    assert "1e" in linechart.chart([nan, zero], title="t", xlabel="x", ylabel="y", log_y=True, color=False)
    assert "no data" in linechart.chart([zero], title="t", xlabel="x", ylabel="y", color=False)


def write_plain_corpus(path: Path) -> Path:
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran"]
    path.write_text(" ".join(rng.choice(words, 4000)) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_corpus_without_gaps_skips_long_range(tmp_path: Path) -> None:
    text = write_plain_corpus(tmp_path / "plain.txt")
    res = compare.run(config.load("compare-rnn", SMOKE), text, ("lstm",), grad_k=10)
    assert res.chance is None and "no gap annotations" in (res.longrange_note or "")
    assert res.cells[0].longrange is None and math.isnan(res.cells[0].accuracy_from(100))
    assert compare_output.longrange_rows(res) == ([], [])
    assert "longrange.csv" not in {p.name for p in compare_output.write_outputs(res, tmp_path / "out", png=False)}


@pytest.mark.slow
def test_divergence_is_reported_and_measured_at_the_last_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An RNN that explodes without clipping stops training; the comparison goes on with its last evaluated
    parameters instead of failing."""

    def exploding_fit(cfg, state, tr, va, *, emit, **kw):
        emit(compare.loop.StepEvent(1, 3.0, 1e3, 1e-3, 1e5, skipped=False))
        emit(compare.loop.EvalEvent(1, 3.0, state.params))
        raise compare.loop.NonFiniteError("10 consecutive steps had a non-finite loss or gradient (last at step 11)")

    monkeypatch.setattr(compare.loop, "fit", exploding_fit)
    messages: list[str] = []
    reporter = compare.NullReporter()
    reporter.message = messages.append  # type: ignore[method-assign]
    res = compare.run(
        config.load("compare-rnn", SMOKE),
        write_plain_corpus(tmp_path / "p.txt"),
        ("rnn",),
        clip=False,
        reporter=reporter,
        grad_k=10,
    )
    r = res.cells[0]
    assert r.diverged and "non-finite" in r.diverged and any("non-finite" in m for m in messages)
    assert r.val_loss == 3.0 and np.isfinite(r.grad_final).all()


@pytest.mark.slow
def test_mismatched_gaps_file_is_skipped(tmp_path: Path) -> None:
    text = write_plain_corpus(tmp_path / "languages.txt")
    (tmp_path / "languages.gaps.json").write_bytes((corpus.CORPORA_DIR / "languages.gaps.json").read_bytes())
    res = compare.run(config.load("compare-rnn", SMOKE), text, ("rnn",), grad_k=10)
    assert "does not match" in (res.longrange_note or "") and res.cells[0].longrange is None


# --- the command --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_compare_rnn(tmp_path: Path) -> None:
    text = write_plain_corpus(tmp_path / "plain.txt")
    args = ["compare-rnn", text, "--steps", "3", "--cells", "rnn,gru", "--no-clip", "--out", tmp_path / "out"]
    for s in SMOKE[1:]:
        args += ["--set", s]
    proc = run_cli(args, cwd=tmp_path, timeout=300)
    assert_ok(proc)
    assert "compare-rnn" in proc.stdout and "rnn" in proc.stdout and "gru" in proc.stdout
    assert "no clipping" in proc.stdout  # the grad-norm chart says clipping was off
    assert "no gap annotations" in proc.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["clip"] is False


def test_cli_compare_rnn_bad_cells(tmp_path: Path) -> None:
    assert_clean_error(run_cli(["compare-rnn", "--cells", "rnn,transformer"], cwd=tmp_path), "--cells", code=2)


def test_plateau_counts_only_real_gains_in_loss_or_accuracy() -> None:
    p = compare.Plateau(patience=2)
    p.update(250, 1.0)
    assert p.bad_evals == 0 and p.best == 1.0
    p.update(500, 0.99)  # 1%: noise, not a gain (MIN_LOSS_GAIN is 2%)
    assert p.bad_evals == 1 and p.best == 0.99
    p.update(750, 0.97)  # 2% below the best so far: a gain
    assert p.bad_evals == 0 and p.best_step == 750
    p.accuracy = 0.5  # the first accuracy measured is a gain
    p.update(1000, 0.97)
    assert p.bad_evals == 0 and p.best_accuracy == 0.5
    p.accuracy = 0.53  # under MIN_ACCURACY_GAIN
    p.update(1250, 0.969)
    assert p.bad_evals == 1 and not p.triggered
    p.accuracy = 0.52
    p.update(1500, 0.97)
    assert p.triggered
    assert not compare.Plateau(patience=0, bad_evals=5).triggered  # 0: never stops


@pytest.mark.slow
def test_a_cell_that_stopped_improving_stops_before_the_budget(tmp_path: Path) -> None:
    text = write_plain_corpus(tmp_path / "p.txt")
    cfg = config.load("compare-rnn", [*SMOKE, "train.steps=40", "optim.lr=1e-7", "train.patience=1"])
    res = compare.run(cfg, text, ("rnn", "lstm"), grad_k=10)
    for cell in res.cells:  # a learning rate this small changes nothing: the second evaluation stops it
        assert cell.steps == 4 and cell.curves.val_steps == [2, 4] and cell.curves.steps[-1] == 4
    cols, rows = compare_output.summary_rows(res)
    assert rows[0][cols.index("steps")] == "4"
    summary = json.loads(
        (compare_output.write_outputs(res, tmp_path / "out", png=False)[-1]).read_text(encoding="utf-8")
    )
    assert [c["steps"] for c in summary["cells"]] == [4, 4]
