"""The prompt check: sampled as a user samples it, does the model name the right language for each place?

Every prompt is read from a line start, as `charlstm sample` reads it, and sampled `samples` times at
temperature 1 and once greedily. A continuation is right when the first language it names (before the line
ends; a name may start in the prompt, as "Punjab" goes on "i is spoken in Punjab.") is the one spoken at the
prompt's place; naming none, or another first, is wrong. Three kinds of prompt:

- "P", the place alone (`charlstm sample --prompt "Jammu"`), and "I went to P", the bundled corpora's plain
  paragraph opening: the model must write a line of its own that gets to the right language;
- the essay's sentence up to "... I don't understand the", for every place;
- the held-out sentences (`heldout.HELDOUT`), shapes the corpus never uses, each asked about one place.

This measures what a user sees, from the start state, where the long-range accuracy (`longrange`) scores the
language word mid-text of the corpus itself.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from charlstm.config import ModelConfig
from charlstm.data import essaycorpus, langcorpus
from charlstm.data.corpus import Vocab
from charlstm.evaluation import heldout
from charlstm.nn import model, sampling

# Characters generated per prompt: a whole line after "P" (the longest paragraphs of the corpus are ~400
# characters), a few words after a prompt that ends where the language belongs.
_LINE_CHARS = 512
_FRAME_CHARS = 48

ESSAY_PROMPT = essaycorpus.ESSAY.split(" {l}")[0]  # "{p} is a beautiful place. ... because I don't understand the"


@dataclass(frozen=True)
class PromptResult:
    prompt: str
    language: str  # the language of the prompt's place
    right: float  # share of sampled continuations whose first language named is `language`
    greedy: bool | None  # whether the greedy continuation's is (None: not asked)
    greedy_text: str  # the greedy continuation, up to the end of its line


KINDS = ("places", "went", "essay", "heldout")  # the prompt lists of a PromptCheck


@dataclass(frozen=True)
class PromptCheck:
    places: list[PromptResult]  # "P" for every place
    went: list[PromptResult]  # "I went to P" for every place
    essay: list[PromptResult]  # the essay's sentence for every place
    heldout: list[PromptResult]  # every held-out sentence, each with its place
    samples: int  # sampled continuations per prompt (plus one greedy)

    def worst(self) -> float:
        """The lowest share over every place's "P", "I went to P" and essay prompts."""
        return min(r.right for r in self.places + self.went + self.essay)

    def essay_mean(self) -> float:
        """The mean share right over the essay's sentence for every place."""
        return float(np.mean([r.right for r in self.essay])) if self.essay else float("nan")

    def heldout_mean(self) -> float:
        """The mean share right over the held-out sentences."""
        return float(np.mean([r.right for r in self.heldout])) if self.heldout else float("nan")

    def results(self) -> list[tuple[str, PromptResult]]:
        """Every result with its kind (a name of KINDS)."""
        return [(kind, r) for kind in KINDS for r in getattr(self, kind)]

    def to_json(self) -> dict[str, object]:
        return {
            "samples": self.samples,
            "worst": self.worst(),
            "heldout_mean": self.heldout_mean(),
            **{kind: [asdict(r) for r in getattr(self, kind)] for kind in KINDS},
        }


def _language_pattern() -> re.Pattern[str]:
    # "Tamil Nadu" is a place, not the language Tamil; longer names first so "Punjabi" wins over a prefix.
    names = sorted((lang for _, lang in langcorpus.PAIRS), key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(n) + (r"(?! Nadu)" if n == "Tamil" else "") for n in names) + r")\b")


_LANGUAGE = _language_pattern()


def first_language(continuation: str, prompt: str = "") -> str | None:
    """The first language of `langcorpus.PAIRS` that `continuation` names before its first newline, if any; a
    name may begin in `prompt`'s last word ("Punjab" + "i is spoken ..." names Punjabi)."""
    line = prompt + continuation.split("\n")[0]
    found = next((m for m in _LANGUAGE.finditer(line) if m.end() > len(prompt)), None)
    return found.group(1) if found else None


def heldout_prompts() -> list[tuple[str, str, str]]:
    """(prompt, place, language) for every held-out sentence; the places cycle through PAIRS."""
    pairs = langcorpus.PAIRS
    return [(s.format(p=pairs[k % len(pairs)][0]), *pairs[k % len(pairs)]) for k, s in enumerate(heldout.HELDOUT)]


def pairs_for(corpus_path: Path, vocab: Vocab) -> list[tuple[str, str]] | None:
    """The (place, language) pairs of an annotated corpus whose names the vocabulary can read, else None."""
    from charlstm.evaluation import longrange

    gaps = longrange.gaps_file_for(corpus_path)
    if gaps is None:
        return None
    pairs = sorted({(r.place, r.language) for r in langcorpus.load_gaps(gaps)}, key=langcorpus.PAIRS.index)
    if not pairs or not _readable(vocab, [p + lang for p, lang in pairs]):
        return None
    return pairs


def _readable(vocab: Vocab, texts: list[str]) -> bool:
    return not (vocab.encode("\n".join(texts)) < 0).any()


def _ask(
    params: model.Params,
    cfg: ModelConfig,
    vocab: Vocab,
    prompt: str,
    language: str,
    length: int,
    samples: int,
    seed: int,
    greedy: bool = True,
) -> PromptResult:
    """Sample `prompt`'s continuation `samples` times (and greedily); score each by the first language named."""
    newline = sampling.newline_id(vocab)
    opts = sampling.SampleOptions(length, seed=seed, num_samples=samples, newline_id=newline, chunk=length)
    rests = [t[len(prompt) :] for t in sampling.sample_text(params, cfg, vocab, prompt, opts)]
    best = ""
    if greedy:
        greedy_opts = sampling.SampleOptions(length, greedy=True, newline_id=newline, chunk=length)
        (best,) = (t[len(prompt) :] for t in sampling.sample_text(params, cfg, vocab, prompt, greedy_opts))
    return PromptResult(
        prompt,
        language,
        float(np.mean([first_language(r, prompt) == language for r in rests])),
        first_language(best, prompt) == language if greedy else None,
        best.split("\n")[0],
    )


def run(
    params: model.Params, cfg: ModelConfig, vocab: Vocab, pairs: list[tuple[str, str]], samples: int = 20, seed: int = 0
) -> PromptCheck:
    """Every prompt kind for every place (see the module docstring). A kind whose prompts have characters the
    vocabulary lacks (the essay's comma, on the plain corpus) is left out: its list is empty."""
    languages = dict(pairs)

    def ask(prompt: str, language: str, length: int, greedy: bool = True) -> PromptResult:
        return _ask(params, cfg, vocab, prompt, language, length, samples, seed, greedy)

    essay = [(ESSAY_PROMPT.format(p=place), language) for place, language in pairs]
    held = [(prompt, language) for prompt, place, language in heldout_prompts() if place in languages]
    return PromptCheck(
        places=[ask(place, language, _LINE_CHARS) for place, language in pairs],
        # Not greedily: a greedy paragraph of the plain corpus never ends (the filler is always likeliest).
        went=[ask(f"I went to {place}", language, _LINE_CHARS, greedy=False) for place, language in pairs],
        essay=[ask(p, lang, _FRAME_CHARS) for p, lang in essay] if _readable(vocab, [p for p, _ in essay]) else [],
        heldout=[ask(p, lang, _FRAME_CHARS) for p, lang in held] if _readable(vocab, [p for p, _ in held]) else [],
        samples=samples,
    )


def rows(check: PromptCheck) -> tuple[list[str], list[list[str]]]:
    """A table: per place, how many of the samples were right for each kind of prompt; "✗" marks a wrong greedy
    continuation."""
    n = check.samples
    mark = lambda r: f"{round(r.right * n)}" + (" ✗" if r.greedy is False else "")  # noqa: E731
    held: dict[str, list[PromptResult]] = {}
    for r in check.heldout:
        held.setdefault(r.language, []).append(r)
    essay = {e.language: mark(e) for e in check.essay}
    cols = ["place", "language", '"P"', '"I went to P"', "the essay's sentence", "held-out sentences"]
    body = [
        [
            p.prompt,
            p.language,
            mark(p),
            mark(w),
            essay.get(p.language, "—"),
            ", ".join(map(mark, held.get(p.language, []))) or "—",
        ]
        for p, w in zip(check.places, check.went)
    ]
    return cols, body
