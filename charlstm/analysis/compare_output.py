"""What `compare-rnn` shows and writes of a finished comparison: the summary and long-range tables, and with
--out every curve as CSV, a JSON summary and (with matplotlib) the charts as PNG.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from charlstm.analysis import png_charts

if TYPE_CHECKING:
    from charlstm.analysis.compare import CompareResult

# --- tables ------------------------------------------------------------------------------------------------


def _f(x: float, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def summary_rows(result: CompareResult) -> tuple[list[str], list[list[str]]]:
    """The per-cell table: size, validation loss, speed, time, accuracy at long gaps, and with a prompt check the
    worst place's share of right samples for "P", "I went to P" and the essay's sentence, and the held-out mean."""
    cols = ["cell", "hidden", "params", "steps", "val loss", "bits/char", "chars/s", "time", "acc gap≥100"]
    checked = any(r.prompt_check for r in result.cells)
    cols += ['worst "P"', 'worst "I went to P"', "worst essay", "held-out"] if checked else []
    rows = []
    for r in result.cells:
        row = [
            r.spec.cell,
            str(r.spec.hidden),
            f"{r.spec.params:,}",
            f"{r.steps:,}",
            _f(r.val_loss, 4),
            _f(r.bits_per_char),
            f"{r.chars_per_s:,.0f}",
            f"{r.seconds:.1f} s",
            _f(r.accuracy_from(100), 2),
        ]
        if checked:
            check = r.prompt_check
            row += [
                _f(min((p.right for p in check.places), default=math.nan), 2) if check else "—",
                _f(min((p.right for p in check.went), default=math.nan), 2) if check else "—",
                _f(min((p.right for p in check.essay), default=math.nan), 2) if check else "—",
                _f(check.heldout_mean(), 2) if check else "—",
            ]
        rows.append(row)
    return cols, rows


def longrange_rows(result: CompareResult) -> tuple[list[str], list[list[str]]]:
    """Language-word accuracy and loss (nats per word) by gap bucket, one column pair per cell."""
    measured = [r for r in result.cells if r.longrange]
    if not measured:
        return [], []
    cols = ["gap", "n"] + [f"{r.spec.cell} {m}" for r in measured for m in ("acc", "loss")]
    rows = []
    buckets = [r.longrange or [] for r in measured]  # every measured cell has its buckets
    for k, b in enumerate(buckets[0]):
        rows.append(
            [b.label, str(b.count)] + [v for cell in buckets for v in (_f(cell[k].accuracy, 2), _f(cell[k].loss, 2))]
        )
    return cols, rows


# --- files -------------------------------------------------------------------------------------------------


def _write_csv(path: Path, header: list[str], rows: Sequence[Sequence[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None  # JSON has no NaN


def write_outputs(result: CompareResult, out: Path, png: bool = True) -> list[Path]:
    """Every curve as CSV, a JSON summary, and (with `png`) the charts as PNG, which needs matplotlib."""
    out.mkdir(parents=True, exist_ok=True)
    steps = [
        [r.spec.cell, s, loss, g]
        for r in result.cells
        for s, loss, g in zip(r.curves.steps, r.curves.loss, r.curves.grad_norm)
    ]
    _write_csv(out / "train.csv", ["cell", "step", "loss", "grad_norm"], steps)
    val = [[r.spec.cell, s, v] for r in result.cells for s, v in zip(r.curves.val_steps, r.curves.val_loss)]
    _write_csv(out / "val.csv", ["cell", "step", "val_loss"], val)
    grads = [
        [r.spec.cell, when, k, float(v)]
        for r in result.cells
        for when, prof in (("init", r.grad_init), ("final", r.grad_final))
        for k, v in enumerate(prof)
    ]
    _write_csv(out / "gradflow.csv", ["cell", "when", "k", "grad_norm"], grads)
    written = [out / "train.csv", out / "val.csv", out / "gradflow.csv"]
    if any(r.longrange for r in result.cells):
        by_gap = [[r.spec.cell, b.label, b.count, b.accuracy, b.loss] for r in result.cells for b in r.longrange or []]
        header = ["cell", "gap", "count", "accuracy", "loss"]
        _write_csv(out / "longrange.csv", header, by_gap)
        written.append(out / "longrange.csv")
    if any(r.prompt_check for r in result.cells):
        pc_rows = [
            [r.spec.cell, kind, p.prompt, p.language, p.right, p.greedy]
            for r in result.cells
            if r.prompt_check
            for kind, p in r.prompt_check.results()
        ]
        header = ["cell", "kind", "prompt", "language", "right", "greedy"]
        _write_csv(out / "prompt_check.csv", header, pc_rows)
        written.append(out / "prompt_check.csv")
    summary = {
        "corpus": str(result.corpus),
        "match": result.match,
        "clip": result.clip,
        "chance": result.chance,
        "longrange_note": result.longrange_note,
        "config": result.config.model_dump(),
        "cells": [
            {
                "cell": r.spec.cell,
                "hidden": r.spec.hidden,
                "params": r.spec.params,
                "steps": r.steps,
                "val_loss": _num(r.val_loss),
                "bits_per_char": _num(r.bits_per_char),
                "chars_per_s": r.chars_per_s,
                "seconds": r.seconds,
                "accuracy_gap_100_plus": _num(r.accuracy_from(100)),
                "diverged": r.diverged,
                "longrange": [
                    {"gap": b.label, "count": b.count, "accuracy": _num(b.accuracy), "loss": _num(b.loss)}
                    for b in r.longrange or []
                ],
                "prompt_check": r.prompt_check.to_json() if r.prompt_check else None,
            }
            for r in result.cells
        ],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    written.append(out / "summary.json")
    if png:
        written += png_charts.save_pngs(result, out)
    return written
