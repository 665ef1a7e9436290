"""What the page shows for a text: every character's gates and states, and the model's next-character guesses.

The network reads the text exactly as `charlstm inspect` does (`inspection.record_traces`): from the run's
learned start state, after a newline unless the text starts with one, so a text reads as the start of a line
of training text and the values here equal inspect's. One compiled call returns the recorded quantities of
every layer and the 10 most likely next characters after each step.

Text lengths change with every keystroke, and JAX compiles once per input shape, so the ids are padded to
the next power of two (at least 64): the network reads left to right, so the padding after the text changes
nothing before it, and a session of typing compiles a handful of shapes instead of one per length.

One `Analyzer` per loaded run is shared by all requests; its lock makes one request at a time use the model,
so concurrent first requests compile a shape once, and two requests never compete for the CPU's cores.
"""

from __future__ import annotations

import codecs
import functools
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from charlstm.analysis import gates, inspection, placememory, text_properties
from charlstm.data import corpus
from charlstm.errors import UsageError
from charlstm.evaluation import longrange
from charlstm.training import rundir

if TYPE_CHECKING:
    from charlstm.api import Model

MAX_CHARS = 20_000  # the longest text one request may analyse (as `inspect --max-chars` reads by default)
TOP_NEXT = 10  # next characters listed after each step
TOP_CELLS = 5  # cells chosen per quantity, as many as `inspect --top` shows by default
MIN_BUCKET = 64  # the shortest padded length: a few keystrokes share one compilation


def quantities(cell: str) -> list[str]:
    """The names the page and the API use for what a cell type records, gates first (inspect's --show names)."""
    return list(gates.SHOW[cell])


def bucket(n: int) -> int:
    """The padded length of a sequence of `n` steps: the next power of two, at least MIN_BUCKET."""
    return max(MIN_BUCKET, 1 << (n - 1).bit_length())


@functools.lru_cache(maxsize=1)
def _forward() -> Any:
    """`model.apply_recording` over one sequence from the start state, with the top-k next characters."""
    import jax
    import jax.numpy as jnp

    from charlstm.nn import model

    def forward(params: Any, ids: Any, cfg: Any, names: tuple[str, ...], k: int) -> tuple[Any, Any, Any]:
        logits, _, rec = model.apply_recording(params, ids[None], model.start_carry(params, cfg, 1), cfg, names)
        probs, top = jax.lax.top_k(jax.nn.softmax(logits[0].astype(jnp.float32), axis=-1), k)
        return [{name: v[0] for name, v in layer.items()} for layer in rec], probs, top

    return jax.jit(forward, static_argnames=("cfg", "names", "k"))


class Analyzer:
    """A loaded run, ready to analyse texts; one per run, shared by the server's requests."""

    def __init__(self, model: Model, name: str) -> None:
        self.model = model
        self.name = name
        self.cfg = model.config.model
        self.vocab = model.vocab
        self.lock = threading.Lock()
        self.quantities = quantities(self.cfg.cell)
        # the recorded names (i, f, c, ...) of every quantity, in the order model.apply is asked for them
        self._letters = tuple(gates.SHOW[self.cfg.cell][q] for q in self.quantities)
        self._newline = self.vocab.symbols.index(ord("\n")) if ord("\n") in self.vocab.symbols else -1
        self._place: dict[str, Any] | None = None
        self._place_done = False
        self._place_lock = threading.Lock()  # one search per run, however many requests ask at once

    # --- checking a request ---------------------------------------------------------------------------------

    def check_text(self, text: object) -> tuple[np.ndarray, list[int]]:
        """The text's ids and the indices of the characters skipped because the run never saw them, or a
        UsageError saying what is wrong with it (not a string, empty, too long, not valid Unicode, or nothing
        the run knows)."""
        if not isinstance(text, str):
            raise UsageError("text must be a string", 'send {"text": "..."}')
        if text == "":
            raise UsageError("the text is empty", "type at least one character")
        if len(text) > MAX_CHARS:
            raise UsageError(
                f"the text has {len(text):,} characters, more than {MAX_CHARS:,}",
                f"send at most {MAX_CHARS:,} characters",
            )
        ids, dropped = corpus.encode_text(self.vocab, text, skip_unknown=True)
        return ids, corpus.unknown_positions(self.vocab, text) if dropped else []

    def check_layer(self, layer: object) -> int:
        """A 1-based layer number (None: the last layer, as inspect) -> the 0-based index."""
        if layer is None:
            return self.cfg.layers - 1
        if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= self.cfg.layers:
            raise UsageError(
                f"layer must be a whole number in 1..{self.cfg.layers} (got {layer!r})",
                f"the run has {self.cfg.layers} layer(s)",
            )
        return layer - 1

    def check_quantities(self, names: object) -> list[str]:
        """A list of quantity names (None: all of them)."""
        if names is None:
            return list(self.quantities)
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) for n in names)
            or any(n not in self.quantities for n in names)
        ):
            raise UsageError(
                f"quantities must be a non-empty list drawn from {', '.join(self.quantities)} (got {names!r})",
                f"{self.cfg.cell} runs record {', '.join(self.quantities)}",
            )
        return list(dict.fromkeys(names))

    # --- reading a text -------------------------------------------------------------------------------------

    def traces(self, ids: np.ndarray) -> tuple[list[dict[str, np.ndarray]], np.ndarray, np.ndarray, bool]:
        """Read ids [T] from the start state after a newline, as `inspection.record_traces` does: per layer
        {recorded name: [T, H]}, the top next-character probabilities and ids [T + primed, k], and whether a
        newline was read first (then row 0 of the top-k arrays is the guess for the text's first character)."""
        import jax.numpy as jnp

        seq = ids
        if self._newline >= 0 and (len(ids) == 0 or ids[0] != self._newline):
            seq = np.concatenate([[self._newline], ids]).astype(np.int32)
        primed = len(seq) > len(ids)
        padded = np.zeros(bucket(len(seq)), np.int32)
        padded[: len(seq)] = seq
        k = min(TOP_NEXT, len(self.vocab))
        with self.lock:
            rec, probs, top = _forward()(self.model.params, jnp.asarray(padded), self.cfg, self._letters, k)
            rec = [
                {name: np.asarray(v[int(primed) : len(seq)], np.float32) for name, v in layer.items()} for layer in rec
            ]
            probs, top = np.asarray(probs[: len(seq)]), np.asarray(top[: len(seq)])
        return rec, probs, top, primed

    def units(self, ids: np.ndarray) -> list[tuple[str, int]]:
        """(character, step whose values it shows): one step per character, or for a bytes run the step of a
        character's last byte (as inspect draws it)."""
        steps = [self.vocab.symbol(int(i)) for i in ids]
        if self.vocab.encoding == "utf-8":
            return [(ch, t) for t, ch in enumerate(steps)]
        dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return [(ch, t) for t, s in enumerate(steps) for ch in dec.decode(s.encode("latin-1"))]

    def analyze(self, text: object, layer: object = None, names: object = None) -> dict[str, Any]:
        """The JSON the page draws (see docs/serve.md, POST /api/analyze)."""
        ids, skipped = self.check_text(text)
        assert isinstance(text, str)
        lyr = self.check_layer(layer)
        wanted = self.check_quantities(names)
        start = time.perf_counter()
        rec, probs, top, primed = self.traces(ids)
        units = self.units(ids)
        steps = "".join(self.vocab.symbol(int(i)) for i in ids)
        props = text_properties.properties(steps, placememory.find_spans(steps))
        values, top_cells = {}, {}
        for q in wanted:
            x = rec[lyr][gates.SHOW[self.cfg.cell][q]]
            # Four decimals: finer than any colour, and far less JSON than float32's seventeen digits.
            values[q] = np.round(x.astype(np.float64), 4).tolist()
            picks = text_properties.pick_top(text_properties.correlations(x, props), min(TOP_CELLS, self.cfg.hidden))
            top_cells[q] = [{"cell": p.cell, "property": p.prop, "r": round(p.r, 4)} for p in picks]
        guesses = [self._guesses(probs[row], top[row]) for row in range(len(probs))]
        chars = [
            {"symbol": ch, "values": {q: values[q][t] for q in wanted}, "next": guesses[t + int(primed)]}
            for ch, t in units
        ]
        return {
            "run": self.name,
            "step": self.model.step,
            "cell": self.cfg.cell,
            "layers": self.cfg.layers,
            "layer": lyr + 1,
            "hidden": self.cfg.hidden,
            "quantities": wanted,
            "chars": chars,
            "start_next": guesses[0] if primed else None,
            # characters the run never saw: not read, so `chars` goes on after each as if it were not there
            "skipped": [{"index": k, "symbol": text[k]} for k in skipped],
            "top_cells": top_cells,
            "seconds": round(time.perf_counter() - start, 4),
        }

    def _guesses(self, probs: np.ndarray, ids: np.ndarray) -> list[dict[str, Any]]:
        return [{"symbol": self.vocab.symbol(int(i)), "p": round(float(p), 4)} for p, i in zip(probs, ids)]

    # --- the place-memory cell ------------------------------------------------------------------------------

    def place_cell(self) -> dict[str, Any] | None:
        """The cell that `charlstm inspect --file CORPUS` reports as holding the place name until its language
        word, for a run trained on a corpus with gap annotations (the bundled one); None for other runs.
        Computed once per run (reading 20,000 characters of the corpus), then kept."""
        with self._place_lock:
            if not self._place_done:
                self._place = self._find_place_cell()
                self._place_done = True
        return self._place

    def _find_place_cell(self) -> dict[str, Any] | None:
        corpus = rundir.RunDir(self.model.run_dir).read_info().get("corpus")
        path = Path(str(corpus)) if corpus else None
        if path is not None and path.is_file() and longrange.gaps_file_for(path) is not None:
            source = inspection.load_text(None, path, MAX_CHARS)
            with self.lock:
                report = inspection.analyse(
                    self.model.params, self.cfg, self.vocab, source.text, records=source.records, skip_unknown=True
                )
            if report.places is not None and report.places.cells:
                best = report.places.cells[0]
                memory = next(
                    q for q, letter in gates.SHOW[self.cfg.cell].items() if letter == gates.MEMORY[self.cfg.cell]
                )
                return {
                    "layer": best.layer + 1,
                    "cell": best.cell,
                    "quantity": memory,
                    "eta2": round(best.eta2, 4),
                    "chance": round(report.places.chance, 4),
                    "high": best.high,
                    "low": best.low,
                }
        return None

    def warm(self, lengths: Sequence[int] = (MIN_BUCKET,)) -> None:
        """Compile the analysis for the padded lengths of `lengths`, so the first requests answer at once."""
        some = self.vocab.symbols.index(ord(" ")) if ord(" ") in self.vocab.symbols else 0
        for n in lengths:
            self.traces(np.full(max(1, n - 1), some, np.int32))
