"""The prompt check: sampled as a user samples it, does the model name the right language for each place?

For every place P of an annotated corpus (see `langcorpus`), two prompts read from a line start, as
`charlstm sample` reads them:

- "P": the one line of the corpus that starts with a place, "P is a beautiful place where people speak L.", so
  the share of samples that continue it word for word (and end the line there) is the share that got it right;
- "I went to P": the paragraph goes on with any number of fillers, and is right when it ends "I don't speak L.".

Each prompt is sampled `samples` times at temperature 1 and once greedily. This measures what a user sees,
from the start state, where the long-range accuracy (`longrange`) scores the language word mid-text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlstm import langcorpus, model, sampling
from charlstm.config import ModelConfig
from charlstm.corpus import Vocab

# Characters generated per prompt: the longest place line, and the longest paragraph (16 fillers) plus slack.
_LINE_CHARS = 64
_PARAGRAPH_CHARS = 256


@dataclass(frozen=True)
class PlaceResult:
    place: str
    language: str
    line: float  # share of samples of "P" that continue "P is a beautiful place where people speak L."
    line_greedy: bool
    went: float  # share of samples of "I went to P" whose paragraph ends "I don't speak L."
    went_greedy: bool


@dataclass(frozen=True)
class PromptCheck:
    places: list[PlaceResult]
    samples: int  # sampled continuations per prompt (plus one greedy)

    def worst(self) -> float:
        """The lowest share over every place and both prompts."""
        return min(min(p.line, p.went) for p in self.places)

    def greedy_correct(self) -> int:
        """Greedy continuations that were right, of 2 per place."""
        return sum(p.line_greedy + p.went_greedy for p in self.places)

    def to_json(self) -> dict[str, object]:
        return {"samples": self.samples, "places": [p.__dict__ for p in self.places]}


def pairs_for(corpus_path: Path, vocab: Vocab) -> list[tuple[str, str]] | None:
    """The (place, language) pairs of an annotated corpus whose characters the vocabulary has, else None."""
    from charlstm import longrange

    gaps = longrange.gaps_file_for(corpus_path)
    if gaps is None:
        return None
    pairs = sorted({(r.place, r.language) for r in langcorpus.load_gaps(gaps)}, key=langcorpus.PAIRS.index)
    text = "".join(p + l for p, l in pairs) + langcorpus.PLACE_LINE + langcorpus.OPENING + langcorpus.CLOSING + "\n"
    if not pairs or (vocab.encode(text) < 0).any():
        return None
    return pairs


def _continuations(params: model.Params, cfg: ModelConfig, vocab: Vocab, prompt: str, length: int, samples: int,
                   seed: int) -> tuple[list[str], str]:
    """`samples` sampled lines (temperature 1) and the greedy line after `prompt`, each cut at its newline."""
    line_start = sampling.newline_id(vocab)
    sampled = sampling.SampleOptions(length, seed=seed, num_samples=samples, newline_id=line_start)
    greedy = sampling.SampleOptions(length, greedy=True, newline_id=line_start)
    cut = lambda t: t[len(prompt):].split("\n")[0] if "\n" in t[len(prompt):] else None  # noqa: E731
    texts = sampling.sample_text(params, cfg, vocab, prompt, sampled)
    return [cut(t) for t in texts], cut(sampling.sample_text(params, cfg, vocab, prompt, greedy)[0])


def run(params: model.Params, cfg: ModelConfig, vocab: Vocab, pairs: list[tuple[str, str]], samples: int = 20,
        seed: int = 0) -> PromptCheck:
    """Both prompts for every place; an unfinished line (no newline within the budget) counts as wrong."""
    results = []
    for place, language in pairs:
        line_rest = langcorpus.PLACE_LINE.format(p=place, l=language)[len(place):]
        lines, line_greedy = _continuations(params, cfg, vocab, place, _LINE_CHARS, samples, seed)
        went_prompt = langcorpus.OPENING.format(place)[:-1]  # "I went to P", without its full stop
        ending = " " + langcorpus.CLOSING.format(language)
        paragraphs, went_greedy = _continuations(params, cfg, vocab, went_prompt, _PARAGRAPH_CHARS, samples, seed)
        right_line = lambda s: s == line_rest  # noqa: E731
        right_went = lambda s: s is not None and s.endswith(ending)  # noqa: E731
        results.append(PlaceResult(place, language, float(np.mean([right_line(s) for s in lines])),
                                   right_line(line_greedy), float(np.mean([right_went(s) for s in paragraphs])),
                                   right_went(went_greedy)))
    return PromptCheck(results, samples)


def rows(check: PromptCheck) -> tuple[list[str], list[list[str]]]:
    """A table: per place, the share right of each prompt's samples and whether greedy was right."""
    mark = lambda ok: "yes" if ok else "NO"  # noqa: E731
    n = check.samples
    cols = ["place", "language", f'"P": right of {n}', "greedy", f'"I went to P": right of {n}', "greedy"]
    body = [[p.place, p.language, f"{round(p.line * n)}", mark(p.line_greedy), f"{round(p.went * n)}",
             mark(p.went_greedy)] for p in check.places]
    return cols, body
