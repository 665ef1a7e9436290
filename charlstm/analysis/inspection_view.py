"""What `charlstm inspect` shows of a `Report`, as a `heatmap.View`: a coloured line per selected cell and per
place-memory cell, the place-memory table, the gate-saturation tables and the notes.

heatmap.py draws any view and knows nothing about LSTMs; this module decides what is drawn, and how each
quantity is scaled: gates around 0.5 on a fixed 0..1 scale, states around 0, each line to its own largest |value|.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from charlstm.analysis import heatmap
from charlstm.analysis.gates import LONG_NAMES, MEMORY, SATURATED, SIGMOID_GATES

if TYPE_CHECKING:
    from charlstm.analysis.inspection import Report


def inspect_view(report: Report, run_label: str, display_chars: int, notes: Sequence[str] = ()) -> heatmap.View:
    """Everything `charlstm inspect` shows, as a heatmap.View: the selected cells, the place-memory cells, tables."""
    units = report.units[:display_chars]
    view = heatmap.View(f"charlstm inspect: {run_label}")
    view.header.append(
        f"{report.cell_type} {report.layers}x{report.hidden} · {len(report.units):,} characters read · "
        f"layer {report.layer + 1} · showing the {LONG_NAMES[report.quantity]}"
    )
    shown = {report.quantity} | ({MEMORY[report.cell_type]} if report.place_traces else set())
    for q in sorted(shown):
        if q in SIGMOID_GATES[report.cell_type]:
            view.legends.append(
                ("0 shut", "1 open", f"{LONG_NAMES[q]}: diverging around 0.5 (white), the same scale for every line")
            )
        else:
            view.legends.append(
                (
                    f"-max|{q}|",
                    f"+max|{q}|",
                    f"{LONG_NAMES[q]}: diverging around 0 (white), blue negative, "
                    "red positive; each line scaled to its own largest |value|",
                )
            )

    def row(title: str, q: str, values: np.ndarray) -> heatmap.Row:
        cut = [(g, float(values[t])) for g, t in units]
        vals = [v for _, v in cut] or [0.0]
        m = max(abs(v) for v in vals) or 1.0  # the displayed stretch uses the whole colour range
        scale = (
            heatmap.Scale(0.0, 0.5, 1.0, q) if q in SIGMOID_GATES[report.cell_type] else heatmap.Scale(-m, 0.0, m, q)
        )
        return heatmap.Row(f"{title} · {q} from {min(vals):+.2f} to {max(vals):+.2f}", cut, scale)

    for s in report.selected:
        tracks = f" · tracks {s.prop} (r = {s.r:+.2f})" if s.prop is not None and s.r is not None else ""
        view.rows.append(row(f"layer {s.layer + 1} · cell {s.cell}", s.quantity, s.values))
        view.rows[-1].title += tracks
    memory = MEMORY[report.cell_type]
    pm = report.places
    if pm is not None:
        above = [p for p in pm.cells if p.eta2 > pm.chance]
        for p, values in list(zip(pm.cells, report.place_traces))[: max(1, min(2, len(above)))]:
            verdict = "" if p.eta2 > pm.chance else " (not above chance)"
            view.rows.append(
                row(
                    f"place memory · layer {p.layer + 1} · cell {p.cell} · η² {p.eta2:.2f} over the gap, chance "
                    f"{pm.chance:.2f}{verdict} · highest for {p.high}, lowest for {p.low}",
                    memory,
                    values,
                )
            )

        def num(x: float) -> str:
            return "—" if np.isnan(x) else f"{x:.3f}"

        table = [[str(p.layer + 1), str(p.cell), num(p.eta2), num(p.eta2_end), p.high, p.low] for p in pm.cells]
        table.append(["chance", "", num(pm.chance), num(pm.chance_end), "", ""])
        view.tables.append(
            (
                f"place memory: cells whose {memory} holds the place name until the language word "
                f"({pm.paragraphs} paragraphs, {pm.places} places)",
                ["layer", "cell", "η² gap", "η² at word", "highest for", "lowest for"],
                table,
            )
        )
        view.notes.append(
            "η² gap: share of the cell's variance over the gaps (after the place name, before the language word; "
            "the mean at each distance to the word removed) explained by which place was named; η² at word: "
            "the same at the last step before the word; chance: 95th percentile of the best cell's η² with "
            "the places shuffled across paragraphs"
        )
        if not above:
            view.notes.append(
                "no cell holds the place above chance yet: train longer (the default config's 5000 steps)"
            )
    lo, hi = SATURATED
    for k, layer in enumerate(report.saturation):
        view.tables.append(
            (
                f"layer {k + 1}: gate saturation (share of steps x cells)",
                ["gate", f"left < {lo}", "between", f"right > {hi}", "cells left", "cells right"],
                [
                    [
                        LONG_NAMES[s.gate].replace(" gate", ""),
                        f"{s.left:.1%}",
                        f"{s.between:.1%}",
                        f"{s.right:.1%}",
                        f"{s.cells_left}/{report.hidden}",
                        f"{s.cells_right}/{report.hidden}",
                    ]
                    for s in layer
                ],
            )
        )
    if report.saturation:
        view.notes.append("gate saturation: cells left/right = cells saturated more than half the time")
    if len(report.units) > len(units):
        view.notes.append(
            f"showing the first {len(units):,} of {len(report.units):,} characters read (--display-chars)"
        )
    view.notes += list(report.notes) + list(notes)
    return view
