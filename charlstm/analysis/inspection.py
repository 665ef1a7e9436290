"""`charlstm inspect`: run a trained network over a text, record its gates and states, and explain its cells.

The network reads the text once (batch 1, from the run's start state after a priming newline, as `sample`
does), with `model.apply_recording` returning every layer's gates and states as [T, H] traces. `analyse`
gathers from them everything inspect shows, as a `Report`:

* the cells worth showing: those asked for with --cell, or those whose trace correlates best with a property
  signal of the text (`text_properties`);
* gate saturation per layer (`gates`);
* the place-memory finder (`placememory`): which cells hold the place name until the language word.

`inspection_view` turns a report into what the terminal (and `--html`) shows.
Layers are numbered from 1 for the user and cells from 0 (an index into the hidden vector).
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from charlstm.analysis import heatmap
from charlstm.analysis.gates import MEMORY, SIGMOID_GATES, Saturation, resolve_show, saturation
from charlstm.analysis.placememory import PlaceMemory, find_spans, place_memory, spans_from_records
from charlstm.analysis.text_properties import correlations, pick_top, properties
from charlstm.data import corpus, langcorpus
from charlstm.data.corpus import Vocab
from charlstm.errors import UsageError, UserError

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


SKIPPED_GLYPH = "\ufffd"  # where a character the run's vocabulary lacks was skipped


@dataclass(frozen=True)
class Encoded:
    ids: np.ndarray  # [T] int32, one per step
    steps: str  # one character per step (for a bytes run, each byte as latin-1): what the signals read
    units: list[tuple[str, int]]  # (glyph to draw, step whose value it shows)
    dropped: int  # symbols skipped because the vocabulary lacks them
    skipped: str = ""  # the characters skipped, in text order


def encode(vocab: Vocab, text: str, skip_unknown: bool = True) -> Encoded:
    """Text -> step ids; for a bytes run a multi-byte character shows the value after its last byte.

    A character the vocabulary lacks is skipped (the network never reads it) and drawn as SKIPPED_GLYPH with
    the value of the step before it, which is the state it left unchanged; `skip_unknown=False` makes it an
    error instead.
    """
    ids, dropped = corpus.encode_text(vocab, text, skip_unknown=skip_unknown)
    steps = "".join(vocab.symbol(int(i)) for i in ids)
    where = corpus.unknown_positions(vocab, text) if dropped else []
    if vocab.encoding == "utf-8":
        units, t = [], 0
        marks = set(where)
        for k in range(len(text)):
            if k in marks:
                units.append((SKIPPED_GLYPH, max(t - 1, 0)))
            else:
                units.append((heatmap.glyph(steps[t]), t))
                t += 1
    else:
        dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        units = [(heatmap.glyph(ch), t) for t, b in enumerate(steps.encode("latin-1")) for ch in dec.decode(bytes([b]))]
    return Encoded(ids, steps, units, dropped, "".join(text[k] for k in where))


def skipped_note(skipped: str) -> str:
    """What inspect says about the characters it skipped."""
    n = len(skipped)
    shown = "".join(dict.fromkeys(skipped))[:10]
    noun = "character" if n == 1 else "characters"
    return f"skipped {n:,} {noun} not in the run's vocabulary ({shown!r}), drawn as {SKIPPED_GLYPH}"


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
    skip_unknown: bool = True,
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
    notes = [skipped_note(enc.skipped)] if enc.skipped else []
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
