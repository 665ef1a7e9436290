"""Property signals of a text, one number per character, and the cells that track them.

The signals: inside quotes, inside brackets, distance since the last newline, distance since the last space,
and inside a place -> language gap of the bundled corpus. Each cell's trace is scored by its Pearson
correlation with each signal (`correlations`), and `pick_top` chooses the cells worth showing (`--top`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from charlstm.analysis.placememory import Span

PROPERTIES = (
    "inside quotes",
    "inside brackets",
    "distance since last newline",
    "distance since last space",
    "after the place name, before the language word",
)


def properties(steps: str, spans: Sequence[Span] = ()) -> dict[str, np.ndarray]:
    """One signal per property, the value after reading each character (an opening quote is inside, the
    closing one outside). Counters start as if a newline preceded the text, as the primed network reads it."""
    n = len(steps)
    quotes, brackets, line, word = (np.zeros(n) for _ in range(4))
    toggled, curly, depth, since_nl, since_sp = False, 0, 0, 0, 0
    for t, ch in enumerate(steps):
        if ch == '"':
            toggled = not toggled
        elif ch in "“«":
            curly += 1
        elif ch in "”»":
            curly = max(0, curly - 1)
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        since_nl = 0 if ch == "\n" else since_nl + 1
        since_sp = 0 if ch.isspace() else since_sp + 1
        quotes[t], brackets[t], line[t], word[t] = toggled or curly > 0, depth > 0, since_nl, since_sp
    gap = np.zeros(n)
    for s in spans:
        gap[s.start : s.end] = 1.0
    return dict(zip(PROPERTIES, (quotes, brackets, line, word, gap)))


def correlations(x: np.ndarray, props: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pearson r of every cell of x [T, H] with each signal; constant signals are left out, constant cells
    get r = 0 (a cell that never moves tracks nothing)."""
    xc = x.astype(np.float64) - x.mean(axis=0)
    xn = np.sqrt((xc * xc).sum(axis=0))
    out = {}
    for name, p in props.items():
        pc = p - p.mean()
        pn = np.sqrt(pc @ pc)
        if pn < 1e-12:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.nan_to_num((pc @ xc) / (pn * xn))
    return out


@dataclass(frozen=True)
class Pick:
    cell: int
    prop: str
    r: float


def pick_top(corr: dict[str, np.ndarray], k: int) -> list[Pick]:
    """K distinct cells with the strongest |r|, diverse first: the best cell of each property (properties
    taken by their best |r|), then the strongest remaining cells whatever they track. Sorted by |r|."""
    if not corr or k < 1:
        return []
    picks: dict[int, Pick] = {}
    for name in sorted(corr, key=lambda p: -np.abs(corr[p]).max()):
        order = [int(c) for c in np.argsort(-np.abs(corr[name])) if int(c) not in picks]
        if order and len(picks) < k:
            picks[order[0]] = Pick(order[0], name, float(corr[name][order[0]]))
    n_cells = len(next(iter(corr.values())))
    best = [max((Pick(c, p, float(corr[p][c])) for p in corr), key=lambda q: abs(q.r)) for c in range(n_cells)]
    for q in sorted(best, key=lambda q: -abs(q.r)):
        if len(picks) >= k:
            break
        picks.setdefault(q.cell, q)
    return sorted(picks.values(), key=lambda q: -abs(q.r))
