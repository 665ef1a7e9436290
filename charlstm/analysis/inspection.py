"""`charlstm inspect`: run a trained network over a text, record its gates and states, and explain its cells.

The network reads the text once (batch 1, from the zero state after a priming newline, as `sample` does),
with `model.apply_recording` returning every layer's gates and states as [T, H] traces. From them:

* property signals of the text, one number per character: inside quotes, inside brackets, distance since the
  last newline, distance since the last space, and inside a place -> language gap of the bundled corpus;
* per cell, the Pearson correlation of its trace with each signal, to pick the cells worth showing (`--top`);
* gate saturation: the share of time a gate is < 0.1 (shut), > 0.9 (open) or in between, as in Karpathy,
  Johnson & Fei-Fei, "Visualizing and Understanding Recurrent Networks" (2015);
* the place-memory finder (`place_memory`): which cells hold the place name until the language word.

Layers are numbered from 1 for the user and cells from 0 (an index into the hidden vector).
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from charlstm.analysis import heatmap
from charlstm.data import corpus, langcorpus
from charlstm.data.corpus import Vocab
from charlstm.errors import UsageError, UserError

LONG_NAMES = {
    "i": "input gate i",
    "f": "forget gate f",
    "o": "output gate o",
    "c": "cell state c",
    "h": "hidden state h",
    "r": "reset gate r",
    "z": "update gate z",
}
SHOW = {
    "lstm": {"forget": "f", "input": "i", "output": "o", "cell": "c", "hidden": "h"},
    "gru": {"update": "z", "reset": "r", "hidden": "h"},
    "rnn": {"hidden": "h"},
}
SIGMOID_GATES = {"lstm": ("i", "f", "o"), "gru": ("r", "z"), "rnn": ()}
MEMORY = {"lstm": "c", "gru": "h", "rnn": "h"}  # the state that carries information across time
SATURATED = (0.1, 0.9)
PROPERTIES = (
    "inside quotes",
    "inside brackets",
    "distance since last newline",
    "distance since last space",
    "after the place name, before the language word",
)
_CELL_NAMES = {"lstm": "an LSTM", "gru": "a GRU", "rnn": "a plain RNN"}


def resolve_show(cell: str, show: str | None) -> str:
    """--show NAME -> the recorded quantity; names another cell type has get an error that says what to use."""
    if show is None:
        return MEMORY[cell]
    name, table = show.strip().lower(), SHOW[cell]
    if name in table:
        return table[name]
    allowed = ", ".join(table)
    if cell == "gru" and name in ("forget", "input"):
        hint = "use --show update (z: how much of the old state it keeps) or --show reset (r)"
        raise UsageError(f"a GRU has no {name} gate", hint)
    if any(name in t for t in SHOW.values()):
        what = "state" if name in ("cell", "hidden") else "gate"
        only = ": it records only the hidden state" if cell == "rnn" else ""
        raise UsageError(
            f"{_CELL_NAMES[cell]} has no {name} {what}{only}", f"use --show {allowed.replace(', ', ', --show ')}"
        )
    raise UsageError(f"unknown --show value '{show}'", f"for {_CELL_NAMES[cell]} run use one of: {allowed}")


# --- the text ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    text: str
    records: list[langcorpus.GapRecord] | None  # gap annotations when the file is the bundled corpus
    truncated: bool = False  # True when the file goes on past max_chars


def load_text(text: str | None, file: Path | None, max_chars: int) -> Source:
    """--text or --file (exactly one) -> the text to read, cut to `max_chars`, with gap records if any."""
    if text is not None and file is not None:
        raise UsageError("--text and --file both given", "pass only one")
    if text is None and file is None:
        raise UsageError("nothing to read", 'pass --text "..." or --file FILE')
    if max_chars < 1:
        raise UsageError(f"--max-chars must be at least 1 (got {max_chars})", "e.g. --max-chars 20000")
    records = None
    if file is not None:
        from charlstm.evaluation import longrange

        try:  # only what is read (a huge file is not loaded); newline="" keeps "\r\n" as the model saw it
            with open(file, encoding="utf-8", newline="") as f:
                text = f.read(max_chars + 1)
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"cannot read {file}: {err}", "pass a UTF-8 text file") from None
        gaps = longrange.gaps_file_for(file)
        records = langcorpus.load_gaps(gaps) if gaps is not None else None
    assert text is not None
    if text == "":
        raise UsageError("the text is empty", "pass at least one character")
    return Source(text[:max_chars], records, len(text) > max_chars)


@dataclass(frozen=True)
class Encoded:
    ids: np.ndarray  # [T] int32, one per step
    steps: str  # one character per step (for a bytes run, each byte as latin-1): what the signals read
    units: list[tuple[str, int]]  # (glyph to draw, step whose value it shows)
    dropped: int  # characters skipped because the vocabulary lacks them


def encode(vocab: Vocab, text: str, skip_unknown: bool = False) -> Encoded:
    """Text -> step ids; for a bytes run a multi-byte character shows the value after its last byte."""
    ids, dropped = corpus.encode_text(vocab, text, skip_unknown=skip_unknown)
    steps = "".join(vocab.symbol(int(i)) for i in ids)
    if vocab.encoding == "utf-8":
        units = [(heatmap.glyph(ch), t) for t, ch in enumerate(steps)]
    else:
        dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        units = [(heatmap.glyph(ch), t) for t, b in enumerate(steps.encode("latin-1")) for ch in dec.decode(bytes([b]))]
    return Encoded(ids, steps, units, dropped)


@functools.lru_cache(maxsize=1)
def _apply_recording() -> Any:
    import jax

    from charlstm.nn import model

    return jax.jit(model.apply_recording, static_argnames=("cfg", "record"))


def record_traces(
    params: Any, cfg: Any, ids: np.ndarray, names: Sequence[str], prime: int = -1
) -> list[dict[str, np.ndarray]]:
    """Per layer, {name: [T, H]} of the recorded quantities for ids [T] read from the start state.

    With `prime` >= 0 (the newline id) that character is read first, unless the text starts with it, and its
    step is dropped: the text then starts like a line of training text, as in `sample`.
    """
    import jax.numpy as jnp

    from charlstm.nn import model

    seq = np.asarray(ids, np.int32)
    if prime >= 0 and (len(seq) == 0 or seq[0] != prime):
        seq = np.concatenate([[prime], seq]).astype(np.int32)
    skip = len(seq) - len(ids)
    _, _, rec = _apply_recording()(params, jnp.asarray(seq[None]), model.start_carry(params, cfg, 1), cfg, tuple(names))
    return [{k: np.asarray(v[0, skip:], np.float32) for k, v in layer.items()} for layer in rec]


# --- property signals --------------------------------------------------------------------------------------


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


# --- gate saturation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Saturation:
    gate: str
    left: float  # share of (step, cell) values < 0.1
    between: float
    right: float  # share > 0.9
    cells_left: int  # cells left-saturated more than half the time
    cells_right: int


def saturation(gates: dict[str, np.ndarray], lo: float = SATURATED[0], hi: float = SATURATED[1]) -> list[Saturation]:
    """For each gate trace [T, H]: how often it is shut, open or in between, overall and per cell."""
    out = []
    for name, g in gates.items():
        left, right = (g < lo).mean(axis=0), (g > hi).mean(axis=0)
        out.append(
            Saturation(
                name,
                float(left.mean()),
                float(1.0 - left.mean() - right.mean()),
                float(right.mean()),
                int((left > 0.5).sum()),
                int((right > 0.5).sum()),
            )
        )
    return out


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


# --- the whole analysis ------------------------------------------------------------------------------------


@dataclass
class Selected:
    layer: int
    cell: int
    quantity: str
    values: np.ndarray  # [T]
    prop: str | None = None
    r: float | None = None


@dataclass
class Report:
    cell_type: str
    layers: int
    hidden: int
    quantity: str
    layer: int  # 0-based
    units: list[tuple[str, int]]
    selected: list[Selected]
    saturation: list[list[Saturation]]
    places: PlaceMemory | None
    place_traces: list[np.ndarray]  # the memory trace [T] of each reported place cell
    notes: list[str] = field(default_factory=list)


def analyse(
    params: Any,
    cfg: Any,
    vocab: Vocab,
    text: str,
    *,
    layer: int | None = None,
    cells: Sequence[int] = (),
    top: int | None = None,
    show: str | None = None,
    records: Sequence[langcorpus.GapRecord] | None = None,
    skip_unknown: bool = False,
) -> Report:
    """Read `text` with the network (`cfg` a ModelConfig) and gather everything `inspect` shows."""
    quantity = resolve_show(cfg.cell, show)
    if layer is not None and not 1 <= layer <= cfg.layers:
        raise UsageError(f"--layer {layer} is out of range: the run has {cfg.layers} layer(s)", f"use 1..{cfg.layers}")
    bad = [c for c in cells if not 0 <= c < cfg.hidden]
    if bad:
        raise UsageError(f"--cell {bad[0]} is out of range: layers have {cfg.hidden} cells", f"use 0..{cfg.hidden - 1}")
    if cells and top is not None:
        raise UsageError("--cell and --top both given", "pass --cell N to pick cells, or --top K to let inspect pick")
    if top is not None and top < 1:
        raise UsageError(f"--top must be at least 1 (got {top})", "e.g. --top 5")
    enc = encode(vocab, text, skip_unknown)
    names = tuple(dict.fromkeys(SIGMOID_GATES[cfg.cell] + (MEMORY[cfg.cell], quantity)))
    prime = vocab.symbols.index(ord("\n")) if ord("\n") in vocab.symbols else -1
    traces = record_traces(params, cfg, enc.ids, names, prime)
    lyr = cfg.layers - 1 if layer is None else layer - 1
    x = traces[lyr][quantity]
    spans = spans_from_records(records, enc.steps) if records is not None and not enc.dropped else None
    spans = find_spans(enc.steps) if spans is None else spans
    notes = [f"skipped {enc.dropped} character(s) the run's vocabulary lacks"] if enc.dropped else []
    if cells:
        selected = [Selected(lyr, c, quantity, x[:, c]) for c in dict.fromkeys(cells)]
    else:
        corr = correlations(x, properties(enc.steps, spans))
        picks = pick_top(corr, min(top or 5, cfg.hidden))
        selected = [Selected(lyr, p.cell, quantity, x[:, p.cell], p.prop, p.r) for p in picks]
        if not picks:
            notes.append("no property varies over this text: showing the first cells; pass longer text or --cell N")
            selected = [Selected(lyr, c, quantity, x[:, c]) for c in range(min(top or 5, cfg.hidden))]
    sat = [saturation({g: tr[g] for g in SIGMOID_GATES[cfg.cell]}) for tr in traces] if SIGMOID_GATES[cfg.cell] else []
    places = place_memory([tr[MEMORY[cfg.cell]] for tr in traces], spans)
    if places is None and spans:
        notes.append(
            "place memory needs paragraphs of at least two places, one of them twice: try --file corpora/languages.txt"
        )
    place_traces = [traces[p.layer][MEMORY[cfg.cell]][:, p.cell] for p in (places.cells if places else [])]
    return Report(
        cfg.cell, cfg.layers, cfg.hidden, quantity, lyr, enc.units, selected, sat, places, place_traces, notes
    )


# --- the view of an inspection report ------------------------------------------------------------------------


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
