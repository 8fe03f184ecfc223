"""Saved article texts: what an editor gets by selecting a whole article page and pasting it.

The text carries the site's chrome ("News Feed", "Show More"), the headline, "N min read",
the headline again with the photo caption (the image's alt text and caption), the body, and
an author card ("Avatar", name, role, biography, "Read more"). The layout is that of
`samples/texts/putin-negotiations.txt`. Such a text has no URL and rarely a full date, so
those come from the command line or the source's config.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

from newsletter.collect.article import ArticleData, AuthorProfile
from newsletter.collect.authors import author_key, split_byline, unique_names
from newsletter.collect.fetch import Document
from newsletter.errors import SourceError
from newsletter.reading import reading_minutes, summarize
from newsletter.sanitize import paragraphs_to_html
from newsletter.urls import canonical_url, is_web_url

CHROME = {
    "news feed",
    "show more",
    "show less",
    "read more",
    "menu",
    "search",
    "subscribe",
    "sign in",
    "log in",
    "share",
    "avatar",
    "advertisement",
    "support us",
    "become a member",
    "copy link",
    "skip to content",
    "close",
}
_MIN_READ = re.compile(r"^(\d{1,3})\s*min(?:ute)?s?\.?\s+read$", re.IGNORECASE)
_CAPTION = re.compile(
    r"\((?:photo|photograph|illustration|image|video)\b|\b(?:photo|credit):|getty images",
    re.IGNORECASE,
)
_DATE_FORMATS = ("%B %d, %Y %I:%M %p", "%b %d, %Y %I:%M %p", "%B %d, %Y", "%b %d, %Y")


def parse_text(
    document: Document, url: str | None, published: datetime | None, zone: tzinfo
) -> ArticleData:
    try:
        text = document.content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SourceError(
            f"{document.location}: not UTF-8 text (byte {error.start}); "
            "convert it, e.g. iconv -f WINDOWS-1251 -t UTF-8"
        ) from None
    if "\x00" in text:
        raise SourceError(f"{document.location}: binary data, not a saved article text")
    if not url:
        raise SourceError(f"{document.location}: a saved text has no URL: pass --url URL")
    if not is_web_url(url):
        raise SourceError(f"{document.location}: --url {url!r} is not an http(s) URL")

    lines = [" ".join(line.split()) for line in text.splitlines()]
    title, minutes, start = _headline(lines, document.location)
    author_at, card_names = _author_card(lines, start)
    body_lines = lines[start:author_at]
    byline = next((ln for ln in body_lines[:3] if ln.lower().startswith("by ")), None)
    if byline:
        body_lines.remove(byline)
    authors = unique_names([byline or "", *card_names])
    date_line, found_date = _date_line(body_lines[:4], zone)
    if date_line is not None:
        body_lines.remove(date_line)
    published = published or found_date
    if published is None:
        raise SourceError(
            f"{document.location}: no publication date in the text: pass --published ISO"
        )

    paragraphs = [p for p in _blocks(body_lines) if p.lower() not in CHROME]
    if not paragraphs:
        raise SourceError(f"{document.location}: no article body found after the headline")
    body_text = "\n\n".join(paragraphs)
    return ArticleData(
        url=canonical_url(url),
        title=title,
        authors=authors,
        published=published,
        kind="text",
        summary_html=paragraphs_to_html(summarize(body_text)),
        body_html=paragraphs_to_html(body_text),
        reading_minutes=minutes or reading_minutes(body_text),
        profiles=_profile(lines, author_at, card_names),
    )


def _profile(lines: list[str], at: int, names: list[str]) -> tuple[AuthorProfile, ...]:
    """The author card after the body: name, a short role line, then the bio (up to "Read
    more" or the end). Only for a card naming one person (a shared card's bio is whose?)."""
    if len(names) != 1:
        return ()
    rest = [ln for ln in lines[at:] if ln and ln.lower() != "avatar"]
    if rest and author_key(rest[0]) == author_key(names[0]):
        rest = rest[1:]
    while rest and rest[-1].lower() in CHROME:
        rest.pop()
    role = rest[0] if rest and len(rest[0].split()) <= 6 and len(rest) > 1 else ""
    bio = " ".join(rest[1:] if role else rest)
    if not role and not bio:
        return ()
    return (AuthorProfile(names[0], role=role[:120], bio=bio[:1200]),)


def _headline(lines: list[str], location: str) -> tuple[str, int | None, int]:
    """(headline, minutes, index where the body starts)."""
    read_at = next((i for i, ln in enumerate(lines) if _MIN_READ.match(ln)), None)
    if read_at is None:
        first = next((i for i, ln in enumerate(lines) if ln and ln.lower() not in CHROME), None)
        if first is None:
            raise SourceError(f"{location}: empty text, no headline")
        return lines[first], None, first + 1
    title = next((ln for ln in reversed(lines[:read_at]) if ln and ln.lower() not in CHROME), None)
    if title is None:
        raise SourceError(f"{location}: no headline before the 'min read' line")
    found = _MIN_READ.match(lines[read_at])
    assert found is not None
    minutes = int(found[1])
    start = read_at + 1
    # The block right after "N min read" that repeats the headline is the lead image:
    # its alt text (the headline) and its caption. Neither belongs in the body.
    if start < len(lines) and lines[start] == title:
        start += 1
        while start < len(lines) and lines[start] and _CAPTION.search(lines[start]):
            start += 1
    return title, minutes, start


def _author_card(lines: list[str], start: int) -> tuple[int, list[str]]:
    """(index where the author card starts, author names); the end of the text when none."""
    for i in range(len(lines) - 1, start - 1, -1):
        if lines[i].lower() == "avatar":
            name = next((ln for ln in lines[i + 1 :] if ln), "")
            return i, split_byline(name) if name else []
    blocks = [(i, ln) for i, ln in enumerate(lines[start:], start) if ln]
    while blocks and blocks[-1][1].lower() in CHROME:
        blocks.pop()
    # Without "Avatar": a short name line, an optional short role, then a bio that starts
    # with that name.
    if len(blocks) > 3:
        bio = blocks[-1][1]
        for index, name in (blocks[-3], blocks[-2]):
            if len(name.split()) <= 5 and author_key(bio).startswith(author_key(name)):
                return index, split_byline(name)
    end = blocks[-1][0] + 1 if blocks else len(lines)
    return end, []


def _blocks(lines: list[str]) -> list[str]:
    """Each non-empty line is a paragraph: pasted article text has one line per paragraph."""
    return [line for line in lines if line]


def _date_line(lines: list[str], zone: tzinfo) -> tuple[str | None, datetime | None]:
    for line in lines:
        cleaned = line.replace(".", "").replace("Sept ", "Sep ")
        for fmt in _DATE_FORMATS:
            try:
                return line, datetime.strptime(cleaned, fmt).replace(tzinfo=zone)
            except ValueError:
                continue
    return None, None
