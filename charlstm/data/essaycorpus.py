"""Deterministic generator of the essay corpus, ``corpora/essay.txt``: the place -> language memory across
varied text, ordered from easy to hard for a curriculum.

Every line names one of the 12 places of `langcorpus.PAIRS` and ends with the language spoken there, as in the
essay's example:

    Jammu is a beautiful place. I went there last year, but I couldn't enjoy it because I don't understand the
    Kashmiri language.

Between place and language there is ordinary text that names no place and no language and uses none of the
words a closing asks for a language with ("speak", "language", "learn", ...), so the only way to predict the
language is to remember the place across whatever came between. Openings, sentences in between (with slots:
people, numbers, times, prices) and closings are drawn from many shapes; the essay's own sentence is a tenth of
the lines from the second part on; every printable ASCII character occurs, so a person's English text can be
read.

The text comes in parts (STAGES), each adding one kind of variety to the one before: the plain corpus's
template first (one opening, one filler sentence, one closing: where a small LSTM learns the memory at all),
then varied sentences between the template's opening and closing, then varied openings, then everything.
`configs/essay.yaml` reads them in that order (`data.curriculum`). What a 1 x 128 LSTM learns from it, and what
it does not (the memory carries over to varied text between a known opening and closing, not to new openings
or closings), is measured in docs/corpus.md.

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

# Words that fill the slots of the sentences below, written `{name}` in them ("|" between words).
_SLOT_WORDS = {
    "name": (
        "Ravi|Meera|Arjun|Zoya|Vikram|Uma|Yusuf|Priya|Quinn|Xavier|Farah|Kabir|Leela|Nikhil|Olivia|Hari|"
        "Divya|Esha|Rohan|Tara|Sam|Anil|Ben|Chitra|Gita|Imran|Jaya|Mohan|Nisha|Wendy"
    ),
    "rel": (
        "brother|sister|cousin|friend|uncle|aunt|grandmother|grandfather|colleague|neighbour|mother|father|"
        "roommate|wife|husband|son|daughter"
    ),
    "n": "two|three|four|five|six|seven|ten|2|3|4|5|6|8|9|12",
    "num": "17|24|30|45|58|61|75|99|100|120|250|300|480|1,000",
    "time": "6:45|7:30|5:10|9:00|10:15|11:50|2:20|4:05|8:40|3:35",
    "ampm": "a.m.|p.m.|in the morning|at night|in the evening",
    "price": "Rs. 250|Rs. 80|Rs. 1,200|$15|$4.50|about 300 rupees|Rs. 75|$9.99|Rs. 640",
    "food": (
        "rice|tea|mangoes|fish curry|sweets|bread|coconut water|lentils|chai|samosas|ice cream|coffee|"
        "fried snacks|fruit"
    ),
    "sight": (
        "temple|market|lake|fort|beach|museum|garden|station|bridge|palace|river|hill|harbour|park|"
        "bazaar|church|mosque|waterfall"
    ),
    "adj": "quiet|crowded|old|huge|clean|noisy|green|cheap|busy|small|famous|lovely|strange|peaceful|dusty|bright",
    "weather": "cold|hot|rainy|foggy|sunny|windy|humid|cloudy|freezing|perfect",
    "day": "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday",
    "month": "January|February|March|April|May|June|July|August|September|October|November|December",
    "season": "summer|winter|spring|autumn|year|month|week",
    "year": "1998|2004|2010|2015|2019|2021|2023|2024",
    "thing": "phone|umbrella|camera|wallet|hat|bag|ticket|charger|book|jacket",
    "feel": "happy|tired|hungry|excited|sleepy|lost|calm|sick|bored|sad",
    "vehicle": "bus|train|taxi|boat|car|bike|rickshaw|plane",
}
SLOTS: dict[str, tuple[str, ...]] = {slot: tuple(words.split("|")) for slot, words in _SLOT_WORDS.items()}

# How a paragraph names its place. The place may stand anywhere in the sentence.
OPENINGS: tuple[str, ...] = (
    "{p} is a beautiful place.",
    "I went to {p}.",
    "I went to {p} last year.",
    "Last {season} I went to {p}.",
    "We spent a week in {p}.",
    "We spent {n} days in {p}.",
    "My {rel} lives in {p}.",
    "My {rel} moved to {p} in {year}.",
    "I grew up in {p}.",
    "Have you ever been to {p}?",
    "{p} was the first stop on our trip.",
    "Our trip to {p} was my {rel}'s idea.",
    "In {month}, my {rel} and I flew to {p}.",
    "{p} is famous for its {sight}s.",
    "Everyone told me to visit {p}.",
    "The {vehicle} to {p} took {n} hours.",
    "I moved to {p} for work.",
    "A friend of mine comes from {p}.",
    "{name} invited us to {p} for a wedding.",
    "This year we finally visited {p}.",
    "{p} is where my {rel} was born.",
    "We drove to {p} in an old car.",
    "I spent my holidays in {p}.",
    "After college I worked in {p} for a while.",
    "{name} and I took the night train to {p}.",
    "I have been to {p} {n} times.",
    "The flight to {p} was late.",
    "Last week I came back from {p}.",
    "We stayed with {name}'s family in {p}.",
    "My first trip alone was to {p}.",
)

# Sentences that may stand between place and language: no place, no language, and none of the words a
# closing uses to ask for a language. Together they use every printable ASCII character.
MIDDLES: tuple[str, ...] = (
    "It was fun.",
    "The {sight} was {adj}.",
    "We stayed for {n} days.",
    "It rained on {day}, so we stayed in.",
    "My {rel}, {name}, took a lot of photos.",
    "The {vehicle} left at {time} {ampm}.",
    "The {food} was really good, and cheap too.",
    "A room cost {price} a night.",
    "We walked to the {sight} after lunch.",
    "It was {weather} most of the time.",
    "I lost my {thing} on the second day!",
    "Who knew a {vehicle} ride could take {n} hours?",
    "{name} said it was the best trip ever.",
    "The hotel (a small one near the {sight}) was {adj}.",
    "We got up early; the sun was rising over the {sight}.",
    "Tickets were {price} each, which was fair.",
    "There's a {adj} {sight} near the station.",
    "I'd love to go back someday.",
    "We ate {food} every day.",
    "Our guide was {num} years old and very kind.",
    "The view from the {sight} was amazing.",
    "The streets were {adj} at night.",
    '"Don\'t miss the {sight}," {name} told us.',
    "I filled {n} pages of my diary.",
    "We took about {num} photos.",
    "My email, {name}_{year}@example.com, filled up with booking receipts.",
    "The shop had a 20% discount & free {food}.",
    "We rated the hotel 4/5 (maybe 4.5).",
    "Our room was #{num} on the top floor.",
    "Two + three = five days of rain; not bad.",
    "The sign said: OPEN 9-5 | CLOSED ON {day}.",
    "The taxi meter read ~{num} km; the driver wanted more.",
    "My notes are in C:\\trips\\diary.txt, with {num} photos.",
    "The Wi-Fi password was {{guest}}^2 <or> [guest]*, nobody could tell.",
    "{name} typed `ok` and sent it.",
    "I was {feel} after the long day.",
    "We had {food} and {food} for dinner.",
    "The {vehicle} was full, so we waited an hour.",
    "On {day} we went to the {sight}.",
    "The {sight} opens at {time}.",
    "My {rel} bought a new {thing} there.",
    "Everything was so {adj}!",
    "We met a {adj} old man near the {sight}.",
    "It was {weather} and {weather}, but we did not mind.",
    "I paid {price} for a {thing}.",
    "{name} got lost twice.",
    "The best part was the {sight}.",
    "We left on {day}, {month} {n}.",
    "The locals were kind to us.",
    "I slept for {n} hours on the {vehicle}.",
    "Is there anything better than {food} in the rain?",
    "We were {feel}, {feel} and a bit {feel}.",
    "At {time} the {sight} was already {adj}.",
    "My {rel} was {feel} all week.",
    "The roads were {adj}, the air was {weather}.",
    "Nobody had told us about the {sight}.",
    "I still have the {thing} I bought there.",
    "We went in {month} of {year}.",
    "Prices were low: {food} for {price}.",
    "It's a {adj} place; go if you can.",
    "It was my {rel}'s {num}th trip, or so {name} says.",
)

# A closing: an optional lead-in, then a core that asks for the language.
LEAD_INS: tuple[str, ...] = (
    "",
    "The only problem was that ",
    "I couldn't enjoy it because ",
    "It was hard because ",
    "Sadly, ",
    "To be honest, ",
    "But ",
    "Still, ",
    "I found out that ",
    "Of course, ",
    "The funny thing is that ",
    "I went there last year, but I couldn't enjoy it because ",
)
CORES: tuple[str, ...] = (
    "I don't understand the {l} language.",
    "I don't speak {l}.",
    "I don't speak any {l}.",
    "I can't speak {l}.",
    "people there speak {l}.",
    "most people there speak {l}.",
    "everyone there speaks {l}.",
    "the local language is {l}.",
    "the language there is {l}.",
    "I want to learn {l}.",
    "I learned a few words of {l}.",
    "I am learning {l} now.",
    "everyone around me was speaking {l}.",
    "the signs were written in {l}.",
    "the menu was only in {l}.",
    "my {rel} speaks {l} at home.",
    "the songs were all in {l}.",
    "the film was in {l}.",
    "I bought a book to learn {l}.",
    "next time I will learn some {l} first.",
    "they talked to us in {l}.",
    "I could not read the signs in {l}.",
    "the people there mostly talk in {l}.",
    "my {rel} taught me to count in {l}.",
    "I only know how to say thank you in {l}.",
    "the guide spoke {l} all the time.",
    "the newspaper was in {l}.",
    "I wish I could speak {l}.",
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

# Sentences between opening and closing in a paragraph: none with probability _DIRECT_SHARE, else 1 to
# MAX_MIDDLES of them.
_DIRECT_SHARE = 0.3
MAX_MIDDLES = 6

# The plain paragraph, where the memory is learned first: one opening, FILLER 0-16 times (a quarter of them 0-2
# times), one closing.
TEMPLATE_OPENING = "I went to {p}."
FILLER = "It was fun."
TEMPLATE_CLOSING = "I don't speak {l}."

# The kinds of line: "template" (above), "middles" (the template's opening and closing around varied sentences),
# "openings" (any opening, varied sentences, the template's closing), "paragraph" (any opening, sentences and
# closing), "essay" (the essay's sentence) and "association" (a short line).
Kind = Literal["template", "middles", "openings", "paragraph", "essay", "association"]

# What the text is made of, part by part: (where the part ends, as a share of the text; the weights of its
# kinds of line). Each part adds one kind of variety to the last, the order a curriculum reads them in
# (`data.curriculum` in configs/essay.yaml); the last part is also the validation split's.
STAGES: tuple[tuple[float, dict[Kind, float]], ...] = (
    (0.1, {"template": 1.0}),
    (0.3, {"template": 0.2, "middles": 0.5, "essay": 0.1, "association": 0.2}),
    (0.55, {"template": 0.15, "middles": 0.15, "openings": 0.4, "essay": 0.1, "association": 0.2}),
    (1.0, {"template": 0.15, "openings": 0.1, "paragraph": 0.5, "essay": 0.1, "association": 0.15}),
)


def fill(rng: random.Random, template: str) -> str:
    """`template` with each `{slot}` of SLOTS replaced by a random word ("{{" and "}}" are literal braces)."""
    out, k = [], 0
    while k < len(template):
        if template.startswith("{{", k) or template.startswith("}}", k):
            out.append(template[k])
            k += 2
        elif template[k] == "{":
            end = template.index("}", k)
            out.append(rng.choice(SLOTS[template[k + 1 : end]]))
            k = end + 1
        else:
            out.append(template[k])
            k += 1
    return "".join(out)


def _upper_first(s: str) -> str:
    return s[:1].upper() + s[1:]


def _split(rng: random.Random, template: str, slot: str) -> tuple[str, str]:
    """`template` cut at `slot` ("{p}" or "{l}"), each side's other slots filled."""
    head, tail = template.split(slot)
    return fill(rng, head), fill(rng, tail)


def _paragraph(rng: random.Random, kind: Kind) -> tuple[str, str, str]:
    """(before the place, between place and language, after the language) of one paragraph of `kind`."""
    if kind == "template":
        n_fill = rng.randint(0, 2) if rng.random() < 0.25 else rng.randint(0, 16)
        return _paragraph_parts(rng, TEMPLATE_OPENING, f" {FILLER}" * n_fill, TEMPLATE_CLOSING)
    opening = TEMPLATE_OPENING if kind == "middles" else rng.choice(OPENINGS)
    n_middle = 0 if rng.random() < _DIRECT_SHARE else rng.randint(1, MAX_MIDDLES)
    middles = "".join(" " + fill(rng, rng.choice(MIDDLES)) for _ in range(n_middle))
    closing = TEMPLATE_CLOSING
    if kind == "paragraph":
        lead_in, core = rng.choice(LEAD_INS), rng.choice(CORES)
        closing = lead_in + core if lead_in else _upper_first(core)
    return _paragraph_parts(rng, opening, middles, closing)


def _paragraph_parts(rng: random.Random, opening: str, middles: str, closing: str) -> tuple[str, str, str]:
    head, after_place = _split(rng, opening, "{p}")
    before_language, tail = _split(rng, closing, "{l}")
    return head, after_place + middles + " " + before_language, tail


def _association(rng: random.Random) -> tuple[str, str, str] | str:
    """A short line; the place-first forms as (before, between, after), a language-first form as a template."""
    template = rng.choice(ASSOCIATIONS)
    if template.index("{p}") > template.index("{l}"):
        return template
    return _parts(template)


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
        parts: tuple[str, str, str] | str
        if kind == "essay":
            parts = _parts(ESSAY)
        elif kind == "association":
            parts = _association(rng)
        else:
            parts = _paragraph(rng, kind)
        if isinstance(parts, str):  # language first: no place -> language record
            line = parts.format(p=place, l=language)
        else:
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
