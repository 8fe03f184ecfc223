"""Bylines into names. "A and B", "A, B & C" and "By A" all mean several people, and a name
is matched ignoring case and runs of spaces."""

from __future__ import annotations

import re
from collections.abc import Iterable

_SPACE = re.compile(r"\s+")
_BY = re.compile(r"^\s*(?:written\s+)?by[:\s]+", re.IGNORECASE)
_SEPARATORS = re.compile(r"\s*(?:,|;|\s&\s|\band\b|\+)\s*", re.IGNORECASE)


def author_key(name: str) -> str:
    return _SPACE.sub(" ", name).strip().casefold()


def split_byline(byline: str) -> list[str]:
    text = _BY.sub("", _SPACE.sub(" ", byline).strip())
    names = [part.strip(" .") for part in _SEPARATORS.split(text)]
    return [name for name in names if name and not name.casefold().startswith("http")]


def unique_names(bylines: Iterable[str]) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    for byline in bylines:
        for name in split_byline(byline):
            key = author_key(name)
            if key not in seen:
                seen.add(key)
                names.append(name)
    return names
