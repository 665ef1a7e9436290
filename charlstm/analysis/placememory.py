"""The place-memory finder: which cells hold the place name until the language word (`place_memory`).

In the bundled corpus a paragraph names a place and, after a stretch of filler, that place's language. The
gaps (`Span`: after the place name, until the language word) come from the corpus's own annotations when they
match the text (`spans_from_records`), else from scanning the text for the corpus's places (`find_spans`).
The statistic is the correlation ratio eta^2 (`group_sums`, `eta_squared`), with chance measured by shuffling.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from charlstm.data import langcorpus

# --- the gaps ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """After a place name until its language word: steps [start, end); `language` False if none follows."""

    place: str
    start: int
    end: int
    language: bool = True


def spans_from_records(records: Sequence[langcorpus.GapRecord], steps: str) -> list[Span] | None:
    """The bundled corpus's own annotations, when they match the text (else None: scan it instead)."""
    inside = [r for r in records if r.language_start <= len(steps)]
    if any(steps[r.place_start : r.place_end] != r.place for r in inside):
        return None  # characters were skipped or the file was edited: offsets no longer apply
    return [Span(r.place, r.place_end, r.language_start) for r in inside if r.language_start > r.place_end]


def find_spans(steps: str) -> list[Span]:
    """Scan for the places of `langcorpus.PAIRS`; each span runs to its language word on the same line,
    else to the end of the line (the paragraph)."""
    languages = dict(langcorpus.PAIRS)
    names = sorted(languages, key=len, reverse=True)  # "Tamil Nadu" before any shorter name it contains
    spans = []
    for m in re.finditer(r"\b(" + "|".join(map(re.escape, names)) + r")\b", steps):
        line_end = steps.find("\n", m.end())
        line_end = len(steps) if line_end < 0 else line_end
        lang = re.compile(r"\b" + re.escape(languages[m.group(1)]) + r"\b").search(steps, m.end(), line_end)
        end = lang.start() if lang else line_end
        if end > m.end():
            spans.append(Span(m.group(1), m.end(), end, lang is not None))
    return spans


# --- the place-memory finder -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaceCell:
    layer: int
    cell: int
    eta2: float  # between-place share of the state's variance over the gaps, distance effect removed
    eta2_end: float  # the same at the step just before each language word (nan without two places there)
    high: str  # place with the highest mean state over its gaps
    low: str


@dataclass(frozen=True)
class PlaceMemory:
    cells: list[PlaceCell]  # the best cells by eta2
    chance: float  # 95th percentile of the best cell's eta2 with the places shuffled across paragraphs
    chance_end: float  # the same for eta2_end
    paragraphs: int
    places: int


def group_sums(x: np.ndarray, group: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-group sums [n, H] of the rows of x [N, H] and counts [n], for groups 0..n-1 (`group` [N])."""
    sums = np.zeros((n, x.shape[1]))
    np.add.at(sums, group, x)
    return sums, np.bincount(group, minlength=n).astype(np.float64)


def eta_squared(sums: np.ndarray, counts: np.ndarray, sq: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Correlation ratio per column, from `group_sums` of the values, their column sums of squares `sq`, and
    `labels` putting each group in one of k classes: the between-class sum of squares over the total (0: the
    class explains nothing, 1: everything; a constant column gives 0).

    Shuffling classes across groups only relabels the groups, so each shuffle costs a [k, n] @ [n, H] product.
    """
    g = np.zeros((k, len(labels)))
    g[labels, np.arange(len(labels))] = 1.0
    gs, gn, n = g @ sums, g @ counts, counts.sum()
    grand = sums.sum(axis=0) ** 2 / n
    keep = gn > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(((gs[keep] ** 2 / gn[keep, None]).sum(axis=0) - grand) / (sq - grand))


def _with_chance(
    x: np.ndarray, paragraph: np.ndarray, labels: np.ndarray, k: int, shuffles: int, seed: int
) -> tuple[np.ndarray, float]:
    sums, counts = group_sums(x, paragraph, len(labels))
    sq = (x * x).sum(axis=0)
    rng = np.random.default_rng(seed)
    null = [eta_squared(sums, counts, sq, rng.permutation(labels), k).max() for _ in range(shuffles)]
    return eta_squared(sums, counts, sq, labels, k), float(np.percentile(null, 95))


def place_memory(
    states: Sequence[np.ndarray], spans: Sequence[Span], top: int = 3, shuffles: int = 200, seed: int = 0
) -> PlaceMemory | None:
    """Which cells hold the place name until the language word? `states`: per layer the memory trace [T, H].

    Statistic, per cell: over the gap positions (after the place name, before the language word), the share
    of the state's variance explained by which place the paragraph named (eta^2, one-way ANOVA's effect size),
    after removing what the input drives. The text in the gaps is the same filler for every place, so
    positions are aligned by their distance to the language word and the mean state at each distance is
    subtracted first; what is left can only come from memory, and a cell that stores the place keeps a
    place-specific offset through the gap (eta^2 near 1). `eta2_end` is the plain eta^2 at the last step
    before the language word, where the prediction is made. Positions of one paragraph are not independent
    and the best of many cells is reported, so chance is measured, not assumed: the places are shuffled
    across paragraphs (each paragraph kept whole) and the best cell's eta^2 recorded; the 95th percentile
    is the bar a reported cell should clear. None with too few paragraphs (two places, one seen twice).
    """
    spans = [s for s in spans if s.end > s.start]
    names = sorted({s.place for s in spans})
    if len(names) < 2 or len(spans) < len(names) + 1:
        return None
    k, labels = len(names), np.array([names.index(s.place) for s in spans])
    pos = np.concatenate([np.arange(s.start, s.end) for s in spans])
    paragraph = np.concatenate([np.full(s.end - s.start, j) for j, s in enumerate(spans)])
    distance = np.concatenate([s.end - np.arange(s.start, s.end) for s in spans])
    raw = np.concatenate([st[pos] for st in states], axis=1).astype(np.float64)  # [N, layers * H]
    sums, counts = group_sums(raw, distance, int(distance.max()) + 1)
    x = raw - (sums / np.maximum(counts, 1)[:, None])[distance]  # the input-driven part removed
    eta, chance = _with_chance(x, paragraph, labels, k, shuffles, seed)
    ends = [j for j, s in enumerate(spans) if s.language]
    eta_end, chance_end = np.full(x.shape[1], np.nan), float("nan")
    if len({labels[j] for j in ends}) >= 2 and len(ends) > len({labels[j] for j in ends}):
        end_x = np.concatenate([st[[spans[j].end - 1 for j in ends]] for st in states], axis=1).astype(np.float64)
        eta_end, chance_end = _with_chance(end_x, np.arange(len(ends)), labels[ends], k, shuffles, seed)
    place_sums, place_n = group_sums(raw, labels[paragraph], k)
    means = place_sums / np.maximum(place_n, 1)[:, None]
    hidden = states[0].shape[1]
    cells = [
        PlaceCell(
            int(j) // hidden,
            int(j) % hidden,
            float(eta[j]),
            float(eta_end[j]),
            names[int(means[:, j].argmax())],
            names[int(means[:, j].argmin())],
        )
        for j in np.argsort(-eta)[:top]
    ]
    return PlaceMemory(cells, chance, chance_end, len(spans), k)
