"""The prompt check: sampled as a user samples it, does the model name the right language for each place?

For every place P of an annotated corpus (see `langcorpus`), two prompts read from a line start, as
`charlstm sample` reads them:

- "P": the corpus has one line that starts with a place, "P is a beautiful place where people speak L.";
- "I went to P": the paragraph goes on with any number of fillers and ends "I don't speak L.".

A sample is right when its whole line (prompt and continuation, up to the newline) is a line the corpus could
hold for P and its language L: any of its line forms, word for word. Where a place is the start of its
language's name ("Punjab", "Punjabi") the prompt "P" may also go on "Punjabi is spoken in Punjab.", which is
right too.

Each prompt is sampled `samples` times at temperature 1, and "P" once greedily too (a greedy paragraph never
ends: the filler is always the likeliest next sentence). This measures what a user sees, from the start
state, where the long-range accuracy (`longrange`) scores the language word mid-text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlstm.config import ModelConfig
from charlstm.data import langcorpus
from charlstm.data.corpus import Vocab
from charlstm.nn import model, sampling

# Characters generated per prompt: the longest place line, and twice the longest paragraph of the corpus (a
# sampled one may repeat its filler more often than any paragraph did, and still end right).
_LINE_CHARS = 64
_PARAGRAPH_CHARS = 512


@dataclass(frozen=True)
class PlaceResult:
    place: str
    language: str
    line: float  # share of samples of "P" whose line is right (see the module docstring)
    line_greedy: bool
    went: float  # share of samples of "I went to P" whose paragraph is right, ending "I don't speak L."


@dataclass(frozen=True)
class PromptCheck:
    places: list[PlaceResult]
    samples: int  # sampled continuations per prompt (plus one greedy)

    def worst(self) -> float:
        """The lowest share over every place and both prompts."""
        return min(min(p.line, p.went) for p in self.places)

    def greedy_correct(self) -> int:
        """Places whose greedy continuation of "P" was right."""
        return sum(p.line_greedy for p in self.places)

    def to_json(self) -> dict[str, object]:
        return {"samples": self.samples, "places": [p.__dict__ for p in self.places]}


def pairs_for(corpus_path: Path, vocab: Vocab) -> list[tuple[str, str]] | None:
    """The (place, language) pairs of an annotated corpus whose characters the vocabulary has, else None."""
    from charlstm.evaluation import longrange

    gaps = longrange.gaps_file_for(corpus_path)
    if gaps is None:
        return None
    pairs = sorted({(r.place, r.language) for r in langcorpus.load_gaps(gaps)}, key=langcorpus.PAIRS.index)
    text = "\n".join(
        langcorpus.PLACE_LINE.format(p=p, l=lang) + langcorpus.OPENING.format(p) + langcorpus.CLOSING.format(lang)
        for p, lang in pairs
    )
    if not pairs or (vocab.encode(text) < 0).any():
        return None
    return pairs


def right_line(line: str | None, place: str, language: str) -> bool:
    """Whether `line` (None: unfinished) is a line the corpus could hold for this place and language."""
    if line is None:
        return False
    if line in {t.format(p=place, l=language) for t in langcorpus.ASSOCIATIONS}:
        return True
    filler = re.escape(" " + langcorpus.FILLER)
    opening, closing = (
        re.escape(s.format(x)) for s, x in ((langcorpus.OPENING, place), (langcorpus.CLOSING, language))
    )
    return re.fullmatch(f"{opening}(?:{filler})* {closing}", line) is not None


def _lines(
    params: model.Params, cfg: ModelConfig, vocab: Vocab, prompt: str, opts: sampling.SampleOptions
) -> list[str | None]:
    """The rest of the line after `prompt` in each sample (None where no newline came within the budget)."""
    texts = sampling.sample_text(params, cfg, vocab, prompt, opts)
    return [t[len(prompt) :].split("\n")[0] if "\n" in t[len(prompt) :] else None for t in texts]


def run(
    params: model.Params, cfg: ModelConfig, vocab: Vocab, pairs: list[tuple[str, str]], samples: int = 20, seed: int = 0
) -> PromptCheck:
    """Both prompts for every place; an unfinished line (no newline within the budget) counts as wrong."""
    line_start = sampling.newline_id(vocab)
    line_opts = sampling.SampleOptions(_LINE_CHARS, seed=seed, num_samples=samples, newline_id=line_start)
    greedy_opts = sampling.SampleOptions(_LINE_CHARS, greedy=True, newline_id=line_start)
    went_opts = sampling.SampleOptions(_PARAGRAPH_CHARS, seed=seed, num_samples=samples, newline_id=line_start)
    results = []
    for place, language in pairs:
        went = langcorpus.OPENING.format(place)[:-1]  # "I went to P", without its full stop
        share = lambda prompt, rests: float(np.mean([right(prompt, r) for r in rests]))  # noqa: E731
        right = lambda prompt, rest: rest is not None and right_line(prompt + rest, place, language)  # noqa: E731
        (greedy,) = _lines(params, cfg, vocab, place, greedy_opts)
        results.append(
            PlaceResult(
                place,
                language,
                share(place, _lines(params, cfg, vocab, place, line_opts)),
                right(place, greedy),
                share(went, _lines(params, cfg, vocab, went, went_opts)),
            )
        )
    return PromptCheck(results, samples)


def rows(check: PromptCheck) -> tuple[list[str], list[list[str]]]:
    """A table: per place, the share right of each prompt's samples and whether greedy was right."""
    mark = lambda ok: "yes" if ok else "NO"  # noqa: E731
    n = check.samples
    cols = ["place", "language", f'"P": right of {n}', "greedy", f'"I went to P": right of {n}']
    body = [
        [p.place, p.language, f"{round(p.line * n)}", mark(p.line_greedy), f"{round(p.went * n)}"] for p in check.places
    ]
    return cols, body
