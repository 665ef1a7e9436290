"""Held-out sentences for the prompt check: shapes the bundled corpora never use.

Each is a prompt with a place ("{p}") that ends where the language spoken there belongs. None of their
openings, text in between or closings is one of the essay corpus's (`essaycorpus`; a test checks it), so a model
that gets them right remembers the place across text it never saw, rather than a template. Each sentence is
asked about one place; the places cycle through `langcorpus.PAIRS` so every place is asked twice.
"""

from __future__ import annotations

HELDOUT: tuple[str, ...] = (
    "My grandmother's house is in {p}. Every summer we go there. The neighbours only speak",
    "Last Diwali we visited {p}. The sweets were wonderful. At the shop, the woman spoke to me in",
    "I took a job in {p} last month. The office is nice, but my boss writes every email in",
    "We were in {p} for the festival. There was music everywhere. I tried to sing along, but the songs were in",
    "{p} has lovely beaches and very kind people. Still, I wish I knew more",
    "After a long flight I finally reached {p}. The driver smiled and said something in",
    "I have a pen pal in {p}. She writes to me every month. Her letters are in",
    "My uncle retired to {p}. He says the hardest part is that he can't speak",
    "Our school trip went to {p} in 2018. We saw a play there, and it was performed in",
    "The conference was held in {p}. The talks were in English, but at dinner everyone switched to",
    "When I lived in {p}, I took night classes to study",
    "My best friend just came back from {p}, and now she keeps saying words in",
    "There is a small village in {p} where my father was born. People there still mostly speak",
    "We rented a flat in {p} for three months. Our landlord only knows",
    "The documentary was about {p}. It had subtitles, because everyone in it spoke",
    "I met my wife in {p}. At our wedding, the priest said the prayers in",
    "My cousin is a teacher in {p}. She teaches children to read and write in",
    "We got lost on the way to {p}, so we asked a farmer for help. He answered in",
    "The museum in {p} was full of old books, and most of them were in",
    "I watched a film set in {p} last night. It was dubbed, but the original was in",
    "A man from {p} sat next to me on the train. He was on the phone, talking loudly in",
    "If you move to {p}, the first thing you should do is learn",
    "Everyone in my office in {p} is friendly, and they are teaching me some",
    "I bought a map of {p} at the airport. All the street names were printed in",
)
