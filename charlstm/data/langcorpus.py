"""Deterministic generator of the plain bundled corpus, ``corpora/languages.txt`` (compare-rnn's).

The corpus exists to show why an LSTM beats a plain RNN: every paragraph line names a
place near its start and ends with the language spoken there, e.g.

    I went to Jammu. It was fun. It was fun. I don't speak Kashmiri.

(one paragraph per line). The sentence in between is one fixed, place-independent
filler sentence repeated 0 to 16 times, so the only way to predict the language
word is to remember the place across the gap (16 to 208 characters, in steps of 12).
The filler is deliberately low-entropy: with varied filler neither model learns
the dependency, with fixed filler an LSTM does and a tanh RNN does not.

What decides whether (and when) a small LSTM learns the dependency is the short end of
the gap range, hence the rules below (the measurements are in docs/corpus.md):

- Paragraphs reach down to a short gap (16 characters: "I went to Jammu. I don't
  speak Kashmiri."): the model learns to hold the place over a short gap first, then
  stretches it to long ones.
- One opening, one filler sentence and one closing: each sentence shape needs its own
  short end, and what is learned on one shape does not carry over to another.
- A quarter of the paragraphs are short (0-2 fillers), which brings the dependency
  earlier than a filler count uniform over 0-16.

About 30% of lines are short associations ("Bengali is spoken in West
Bengal.", "People in Kerala speak Malayalam.", and, drawn three times as often,
the essay's "Kerala is a beautiful place where people speak Malayalam.", the one
line that starts with a place) that teach the place -> language mapping at a short
distance. The place-first forms are recorded (gaps 7 and 41); the other is not, as
the language comes first.

Places are drawn uniformly from :data:`PAIRS`, so chance accuracy on the
language word is about 1/12.

Gap file format (``languages.gaps.json``), compact JSON with one record per line::

    {"seed": 0, "n_chars": 600000,
     "pairs": [["Jammu", "Kashmiri"], ...],
     "records": [
      [pair, place_start, place_end, language_start, language_end, gap],
      ...
     ]}

``pair`` indexes ``pairs``; offsets are Python ``str`` indices into the text
(which is ASCII, so they are also byte offsets); ``gap = language_start -
place_end``.

Run ``python -m charlstm.data.langcorpus`` to rewrite the committed files.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from charlstm import resources

PAIRS: tuple[tuple[str, str], ...] = (
    ("Jammu", "Kashmiri"),
    ("West Bengal", "Bengali"),
    ("Tamil Nadu", "Tamil"),
    ("Kerala", "Malayalam"),
    ("Punjab", "Punjabi"),
    ("Gujarat", "Gujarati"),
    ("Karnataka", "Kannada"),
    ("Maharashtra", "Marathi"),
    ("Odisha", "Odia"),
    ("Assam", "Assamese"),
    ("Andhra Pradesh", "Telugu"),
    ("Goa", "Konkani"),
)

DEFAULT_SEED: int = 0
DEFAULT_CHARS: int = 600_000

TEXT_NAME = "languages.txt"

# "{}" marks where the place goes. The place comes right before the full stop, so that
# with no filler the gap is short (16 characters); see the module docstring.
OPENING = "I went to {}."

# Free of any place or language name; one sentence, so the only thing the filler
# varies is its length and gaps grow in steps of 12 characters. Low entropy on
# purpose: with randomly chosen filler a 1x128 LSTM had not learned the dependency
# after 6M characters, because the filler soaked up the learning signal; with two
# sentences alternating it learned it more slowly than with one.
FILLER = "It was fun."
MAX_FILLERS = 16

# A paragraph is short (0 to _SHORT_MAX_FILLERS fillers) with probability
# _SHORT_SHARE, else it has 0 to MAX_FILLERS fillers, uniformly. The short ones are
# where the LSTM first learns to hold the place; see the module docstring.
_SHORT_SHARE = 0.25
_SHORT_MAX_FILLERS = 2

# The text before the language is the same for every language, so it gives no hint.
CLOSING = "I don't speak {}."

_PARAGRAPH_FRACTION = 0.7

# "{p}" = place, "{l}" = language. Place-first lines are recorded as gap records;
# "{l} is spoken in {p}." runs the other way and is not. The third, the essay's own
# opening, is the one line that starts with a place, so that `charlstm sample
# --prompt "Jammu"` (read after a newline) continues "Jammu is a beautiful place
# where people speak Kashmiri." instead of meeting a line start it never saw.
PLACE_LINE = "{p} is a beautiful place where people speak {l}."
ASSOCIATIONS: tuple[str, ...] = (
    "People in {p} speak {l}.",
    "{l} is spoken in {p}.",
    PLACE_LINE,
)
# The place line is drawn three times as often as each other form: as rare as the others, it was learned for
# some places only (docs/corpus.md, "Sampling from a line start").
_ASSOCIATION_WEIGHTS = (1, 1, 3)


@dataclass(frozen=True)
class GapRecord:
    """One place -> language dependency in the generated text.

    Offsets are character offsets into the text; ``gap`` is the number of
    characters between the end of the place name and the start of the
    language word (``language_start - place_end``).
    """

    place: str
    language: str
    place_start: int
    place_end: int
    language_start: int
    language_end: int
    gap: int


def _paragraph(rng: random.Random, offset: int) -> tuple[str, GapRecord]:
    """Build one long paragraph starting at ``offset`` in the full text."""
    place, language = rng.choice(PAIRS)
    if rng.random() < _SHORT_SHARE:
        n_fill = rng.randint(0, _SHORT_MAX_FILLERS)
    else:
        n_fill = rng.randint(0, MAX_FILLERS)
    opening, fillers, closing = OPENING, [FILLER] * n_fill, CLOSING

    head, tail = opening.split("{}")
    place_start = offset + len(head)
    place_end = place_start + len(place)
    before_language, after_language = closing.split("{}")
    middle = tail + "".join(" " + f for f in fillers) + " " + before_language
    language_start = place_end + len(middle)
    line = head + place + middle + language + after_language
    record = GapRecord(
        place=place,
        language=language,
        place_start=place_start,
        place_end=place_end,
        language_start=language_start,
        language_end=language_start + len(language),
        gap=language_start - place_end,
    )
    return line, record


def _association(rng: random.Random, offset: int) -> tuple[str, GapRecord | None]:
    """A short association line; the place-first form is returned with its record."""
    place, language = rng.choice(PAIRS)
    template = rng.choices(ASSOCIATIONS, weights=_ASSOCIATION_WEIGHTS)[0]
    line = template.format(p=place, l=language)
    if template.index("{p}") > template.index("{l}"):
        return line, None
    place_start = offset + template.index("{p}")
    place_end = place_start + len(place)
    language_start = offset + line.index(language, place_end - offset)
    return line, GapRecord(
        place,
        language,
        place_start,
        place_end,
        language_start,
        language_start + len(language),
        language_start - place_end,
    )


def generate(seed: int = DEFAULT_SEED, n_chars: int = DEFAULT_CHARS) -> tuple[str, list[GapRecord]]:
    """Generate the corpus text and its place -> language gap records.

    Lines are appended until the text reaches ``n_chars`` characters, so the
    result is slightly longer than ``n_chars`` and always ends with a newline.
    The output depends only on ``seed`` and ``n_chars``.
    """
    if n_chars < 1:
        raise ValueError(f"n_chars must be positive, got {n_chars}")
    rng = random.Random(seed)
    lines: list[str] = []
    records: list[GapRecord] = []
    length = 0
    record: GapRecord | None
    while length < n_chars:
        if rng.random() < _PARAGRAPH_FRACTION:
            line, record = _paragraph(rng, length)
        else:
            line, record = _association(rng, length)
        if record is not None:
            records.append(record)
        lines.append(line)
        length += len(line) + 1  # + newline
    return "".join(line + "\n" for line in lines), records


def _pair_index(record: GapRecord) -> int:
    return PAIRS.index((record.place, record.language))


def gaps_json(seed: int, n_chars: int, records: list[GapRecord]) -> str:
    """The gap file's text (its format is in the module docstring)."""
    # Hand-assembled so each record sits on its own line: small, diffable,
    # and still plain JSON.
    rows = ",\n".join(
        " "
        + json.dumps(
            [_pair_index(r), r.place_start, r.place_end, r.language_start, r.language_end, r.gap],
            separators=(",", ":"),
        )
        for r in records
    )
    pairs = json.dumps([list(p) for p in PAIRS])
    return (
        f'{{"seed": {json.dumps(seed)}, "n_chars": {json.dumps(n_chars)},\n'
        f' "pairs": {pairs},\n'
        f' "records": [\n{rows}\n ]}}\n'
    )


def write(directory: Path, seed: int = DEFAULT_SEED, n_chars: int = DEFAULT_CHARS) -> tuple[Path, Path]:
    """Write ``languages.txt`` and ``languages.gaps.json`` into ``directory``; returns their paths."""
    text, records = generate(seed, n_chars)
    return write_files(Path(directory) / TEXT_NAME, text, records, seed, n_chars)


def write_files(text_path: Path, text: str, records: list[GapRecord], seed: int, n_chars: int) -> tuple[Path, Path]:
    """Write a generated corpus and its gap file (``<stem>.gaps.json`` beside it); returns both paths.

    Both are written as raw UTF-8 bytes so line endings are ``\\n`` on every platform.
    """
    text_path.parent.mkdir(parents=True, exist_ok=True)
    gaps_path = text_path.with_name(text_path.stem + ".gaps.json")
    text_path.write_bytes(text.encode("utf-8"))
    gaps_path.write_bytes(gaps_json(seed, n_chars, records).encode("utf-8"))
    return text_path, gaps_path


def load_gaps(path: Path) -> list[GapRecord]:
    """Read a gap file written by :func:`write` back into records."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    pairs = [tuple(p) for p in data["pairs"]]
    records = []
    for pair, place_start, place_end, language_start, language_end, gap in data["records"]:
        place, language = pairs[pair]
        records.append(GapRecord(place, language, place_start, place_end, language_start, language_end, gap))
    return records


if __name__ == "__main__":
    out_dir = resources.data_dir("corpora")
    for written in write(out_dir):
        print(f"wrote {written} ({written.stat().st_size} bytes)")
