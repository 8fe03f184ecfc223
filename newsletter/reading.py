"""What an article's words come to: how many, how long they take to read, a card-sized
summary when the source gave none."""

from __future__ import annotations

import math

# Adults read non-fiction at about 238 words a minute (Brysbaert, 2019).
WORDS_PER_MINUTE = 238


def word_count(text: str) -> int:
    return len(text.split())


def reading_minutes(text: str) -> int:
    return max(1, math.ceil(word_count(text) / WORDS_PER_MINUTE))


def summarize(text: str, words: int = 60) -> str:
    """The first paragraph, cut to `words` words: a card-sized summary for an article
    whose source gave none."""
    first = next((block for block in text.split("\n\n") if block.strip()), "")
    tokens = first.split()
    if len(tokens) <= words:
        return " ".join(tokens)
    return " ".join(tokens[:words]).rstrip(",;:") + "…"
