"""Deterministic generator of the essay corpus, ``corpora/essay.txt``: the place -> language memory across
ordinary sentences, read from easy to hard by a curriculum.

Every line names one of the 12 places of `langcorpus.PAIRS` and ends with the language spoken there, as in the
essay's example:

    Jammu is a beautiful place. I went there last year, but I couldn't enjoy it because I don't understand the
    Kashmiri language.

Between place and language come ordinary sentences that name no place and no language and use none of the
words a closing asks for a language with ("speak", "language", "learn", ...), so the only way to predict the
language is to remember the place across whatever came between. The openings, sentences and closings are
written out below; with a few lines of their own (ASIDES) they hold every printable ASCII character, so a
person's English text can be read.

The text comes in three parts (STAGES): the plain corpus's template first (one opening, one filler sentence,
one closing), where a small LSTM learns to hold a place at all; then paragraphs of OPENINGS, 0-5 MIDDLES and
CLOSINGS, the essay's sentence as a tenth of the lines, short association lines and the asides, with template
lines kept among them; the last tenth, the validation split, the same without the template.
`configs/default.yaml` reads the first part alone for its first steps (`data.curriculum`). How the mix, the
variety and the curriculum were chosen, and what the model learns from them, is measured in docs/corpus.md.

The gap file (``essay.gaps.json``) has `langcorpus`'s format. Run ``python -m charlstm.data.essaycorpus`` to
rewrite the committed files.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

from charlstm import resources
from charlstm.data.langcorpus import PAIRS, GapRecord, write_files

DEFAULT_SEED: int = 0
DEFAULT_CHARS: int = 1_200_000

TEXT_NAME = "essay.txt"

# The essay's sentence, word for word; "{p}" is the place, "{l}" the language.
ESSAY = (
    "{p} is a beautiful place. I went there last year, but I couldn't enjoy it because I don't understand the {l}"
    " language."
)

# How a paragraph names its place.
OPENINGS: tuple[str, ...] = (
    "{p} is a beautiful place.",
    "I went to {p}.",
    "I went to {p} last year.",
    "We spent a week in {p}.",
    "My friend lives in {p}.",
    "I grew up in {p}.",
    "Last summer I visited {p}.",
)

# Sentences that may stand between place and language: no place, no language, and none of the words a
# closing uses to ask for a language.
MIDDLES: tuple[str, ...] = (
    "It was fun.",
    "The old fort was quiet.",
    "We stayed for three days.",
    "It rained on Monday, so we stayed in.",
    "My sister, Meera, took a lot of photos.",
    "The bus left at 7:30 a.m.",
    "The fish curry was really good, and cheap too.",
    "A room cost Rs. 1,200 a night.",
    "Tickets were $15 each, which was fair.",
    "I lost my umbrella on the second day!",
    "Who knew a taxi ride could take 6 hours?",
    "The hotel (a cozy one near the lake) was clean.",
    "We got up early; the sun was rising over the hills.",
    '"Don\'t miss the museum," Kabir told us.',
    "Quinn and Yusuf got lost twice.",
    "Uncle Hari bought a new jacket there.",
    "Vikram says it was the best trip ever.",
    "We went in June of 2023.",
    "The view from the bridge was amazing.",
    "We ate rice every day.",
    "The streets were busy at night.",
    "I filled ten pages of my diary.",
    "We took about 100 photos.",
    "Our guide was very kind.",
    "The locals were kind to us.",
    "I was tired after the long day.",
)

# Lines of their own, with no place in them, for the characters the rest lacks: symbols a person may type
# (they made the memory slower to learn when they stood between place and language).
ASIDES: tuple[str, ...] = (
    "My email, Zoya_2019@example.com, filled up with booking receipts.",
    "The shop had a 20% discount & free sweets.",
    "We rated the hotel 4/5 (maybe 4.5).",
    "Our room was #58 on the top floor.",
    "Two + three = five days of rain; not bad.",
    "The sign said: OPEN 9-5 | CLOSED ON SUNDAY.",
    "The taxi meter read ~48 km; the driver wanted more.",
    "My notes are in C:\\trips\\diary.txt, with 300 photos.",
    "The Wi-Fi password was {guest}^2 <or> [guest]*, nobody could tell.",
    "Xavier typed `ok` and sent it.",
)

# How a paragraph asks for the language.
CLOSINGS: tuple[str, ...] = (
    "I don't speak {l}.",
    "I don't understand the {l} language.",
    "People there speak {l}.",
    "I want to learn {l}.",
    "Everyone there speaks {l}.",
)

# Short lines that tie a place to its language directly.
ASSOCIATIONS: tuple[str, ...] = (
    "People in {p} speak {l}.",
    "{l} is spoken in {p}.",
    "In {p}, people speak {l}.",
    "{p} is a beautiful place where people speak {l}.",
    "The language of {p} is {l}.",
    "Most people in {p} speak {l}.",
)

# Middles in a paragraph: a quarter of the paragraphs 0 or 1 (short gaps for every opening and closing), the
# rest 0 to MAX_MIDDLES.
_SHORT_SHARE = 0.25
MAX_MIDDLES = 5

# The plain paragraph, where the memory is learned first: one opening, FILLER 0-16 times (a quarter of them 0-2
# times), one closing.
TEMPLATE_OPENING = "I went to {p}."
FILLER = "It was fun."
TEMPLATE_CLOSING = "I don't speak {l}."

# The kinds of line: "template" (above), "paragraph" (an opening, middles and a closing), "essay" (the essay's
# sentence), "association" (a short line) and "aside" (one of ASIDES).
Kind = Literal["template", "paragraph", "essay", "association", "aside"]

# What the text is made of, part by part: (where the part ends, as a share of the text; the weights of its
# kinds of line). A curriculum reads them in this order (`data.curriculum` in configs/default.yaml). The template
# stays TEMPLATE_SHARE of the second part's lines, so the memory it taught keeps its gradient while the varied
# lines are learned; the last part, the validation split (`data.val_fraction`), has none, so it measures the
# varied text only.
TEMPLATE_SHARE = 0.15
VALIDATION_SHARE = 0.1
_VARIED: dict[Kind, float] = {"paragraph": 0.67, "essay": 0.1, "association": 0.2, "aside": 0.03}
STAGES: tuple[tuple[float, dict[Kind, float]], ...] = (
    (0.1, {"template": 1.0}),
    (1 - VALIDATION_SHARE, {"template": TEMPLATE_SHARE, **{k: w * (1 - TEMPLATE_SHARE) for k, w in _VARIED.items()}}),
    (1.0, _VARIED),
)


def _paragraph(rng: random.Random, kind: Kind) -> tuple[str, str, str]:
    """(before the place, between place and language, after the language) of one paragraph of `kind`."""
    if kind == "template":
        n_fill = rng.randint(0, 2) if rng.random() < 0.25 else rng.randint(0, 16)
        return _parts(TEMPLATE_OPENING + f" {FILLER}" * n_fill + " " + TEMPLATE_CLOSING)
    n_middle = rng.randint(0, 1) if rng.random() < _SHORT_SHARE else rng.randint(0, MAX_MIDDLES)
    middles = "".join(" " + rng.choice(MIDDLES) for _ in range(n_middle))
    return _parts(rng.choice(OPENINGS) + middles + " " + rng.choice(CLOSINGS))


def _parts(template: str) -> tuple[str, str, str]:
    """A place-first line's template as (before the place, between place and language, after the language)."""
    head, rest = template.split("{p}")
    between, tail = rest.split("{l}")
    return head, between, tail


def generate(seed: int = DEFAULT_SEED, n_chars: int = DEFAULT_CHARS) -> tuple[str, list[GapRecord]]:
    """Generate the corpus text and its place -> language gap records.

    Lines are appended until the text reaches ``n_chars`` characters, so the result is slightly longer than
    ``n_chars`` and always ends with a newline. The output depends only on ``seed`` and ``n_chars``.
    """
    if n_chars < 1:
        raise ValueError(f"n_chars must be positive, got {n_chars}")
    rng = random.Random(seed)
    lines: list[str] = []
    records: list[GapRecord] = []
    length = 0
    while length < n_chars:
        place, language = rng.choice(PAIRS)
        weights = next(w for end, w in STAGES if length < end * n_chars or end == STAGES[-1][0])
        kind = rng.choices(list(weights), weights=list(weights.values()))[0]
        template = rng.choice(ASSOCIATIONS) if kind == "association" else ""
        if kind == "aside" or (template and template.index("{p}") > template.index("{l}")):
            # No place -> language record: an aside names neither, and a language-first association names the
            # language before the place.
            line = rng.choice(ASIDES) if kind == "aside" else template.format(p=place, l=language)
            lines.append(line)
            length += len(line) + 1
            continue
        if kind == "essay":
            parts = _parts(ESSAY)
        elif kind == "association":
            parts = _parts(template)
        else:
            parts = _paragraph(rng, kind)
        head, between, tail = parts
        line = head + place + between + language + tail
        place_start = length + len(head)
        language_start = place_start + len(place) + len(between)
        records.append(
            GapRecord(
                place,
                language,
                place_start,
                place_start + len(place),
                language_start,
                language_start + len(language),
                len(between),
            )
        )
        lines.append(line)
        length += len(line) + 1  # + newline
    return "".join(line + "\n" for line in lines), records


def write(directory: Path, seed: int = DEFAULT_SEED, n_chars: int = DEFAULT_CHARS) -> tuple[Path, Path]:
    """Write ``essay.txt`` and ``essay.gaps.json`` into ``directory``; returns their paths."""
    text, records = generate(seed, n_chars)
    return write_files(Path(directory) / TEXT_NAME, text, records, seed, n_chars)


if __name__ == "__main__":
    out_dir = resources.data_dir("corpora")
    for written in write(out_dir):
        print(f"wrote {written} ({written.stat().st_size} bytes)")
