"""RSS 0.9x/1.0/2.0 and Atom feeds, through feedparser.

feedparser recovers from broken XML with a loose parser and half-read entries; we refuse such
a feed instead, so a truncated download never replaces good stored articles with fragments.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin
from xml.sax import SAXParseException

import feedparser
from lxml import etree

from newsletter.collect.article import ArticleData
from newsletter.collect.authors import unique_names
from newsletter.collect.fetch import Document, as_utf8, decode
from newsletter.errors import SourceError
from newsletter.reading import reading_minutes, summarize
from newsletter.sanitize import clean_html, first_image, html_to_text, paragraphs_to_html
from newsletter.urls import canonical_url, is_web_url


def parse_feed(document: Document) -> tuple[list[ArticleData], list[str]]:
    """The feed's articles and a warning per entry that had to be skipped."""
    # A non-UTF-8 feed without a declared encoding is refused, not guessed; a mislabelled one
    # is read in its real encoding (fetch.decode), and feedparser is given that text.
    document = as_utf8(document, decode(document))
    headers = {"content-location": document.base_url or ""}
    if document.content_type:
        headers["content-type"] = document.content_type
    parsed = feedparser.parse(document.content, response_headers=headers, sanitize_html=False)
    error = parsed.get("bozo_exception")
    if isinstance(error, SAXParseException):
        raise SourceError(
            f"{document.location}: malformed XML at line {error.getLineNumber()}, "
            f"column {error.getColumnNumber()}: {error.getMessage()}"
        )
    if not parsed.get("version"):
        raise SourceError(f"{document.location}: not an RSS or Atom feed")
    if not parsed.entries:
        raise SourceError(f"{document.location}: the feed has no entries")
    feed_authors = [a.get("name", "") for a in parsed.feed.get("authors", []) if a.get("name")]
    captions = _media_captions(document.content)
    if len(captions) != len(parsed.entries):
        captions = [""] * len(parsed.entries)
    articles: list[ArticleData] = []
    warnings: list[str] = []
    for number, (entry, caption) in enumerate(zip(parsed.entries, captions, strict=True), 1):
        try:
            articles.append(_entry(entry, document, feed_authors, caption))
        except SourceError as skipped:
            warnings.append(f"{document.location}: entry {number}: {skipped}")
    return articles, warnings


_MEDIA = "{http://search.yahoo.com/mrss/}"


def _media_captions(content: bytes) -> list[str]:
    """Each entry's Media RSS caption (media:description of its picture), in order, which
    feedparser drops when it sits inside media:content. Read with a parser that fetches
    nothing and expands no entities; a feed it cannot read gives none."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(content, parser)
    except etree.XMLSyntaxError:
        return []
    captions = []
    for item in root.iter("item", "{http://www.w3.org/2005/Atom}entry",
                          "{http://purl.org/rss/1.0/}item"):  # fmt: skip
        found = item.find(f".//{_MEDIA}content/{_MEDIA}description")
        if found is None:
            found = item.find(f".//{_MEDIA}description")
        words = "".join(str(part) for part in found.itertext()) if found is not None else ""
        text = " ".join(words.split())
        captions.append(text[:300])
    return captions


def _entry(
    entry: Any, document: Document, feed_authors: list[str], caption: str = ""
) -> ArticleData:
    title = " ".join(str(entry.get("title", "")).split())
    link = entry.get("link") or ""
    guid = entry.get("id") or None
    if not link and guid and is_web_url(guid):
        link = guid
    if not link:
        raise SourceError(f"{title or 'untitled'!r} has no link; skipped")
    if not title:
        raise SourceError(f"{link} has no title; skipped")
    published = _time(entry)
    if published is None:
        raise SourceError(f"{title!r} has no publication date; skipped")
    base = document.base_url if document.is_remote else None
    url = canonical_url(link, base)

    content = _content(entry)
    summary_raw = str(entry.get("summary", ""))
    if content and summary_raw and html_to_text(summary_raw) == html_to_text(content):
        summary_raw = ""  # many feeds repeat the whole body as the description
    body_html = clean_html(content, url)
    summary_html = clean_html(summary_raw, url)
    body_text = html_to_text(body_html)
    if not summary_html and body_text:
        summary_html = paragraphs_to_html(summarize(body_text))
    words = body_text or html_to_text(summary_html)

    bylines = [a.get("name", "") for a in entry.get("authors", []) if a.get("name")]
    if not bylines and entry.get("author"):
        bylines = [str(entry["author"])]
    tags = [str(t["term"]).strip() for t in entry.get("tags", []) if t.get("term")]
    return ArticleData(
        url=url,
        title=title,
        authors=unique_names(bylines or feed_authors),
        published=published,
        kind="feed",
        summary_html=summary_html,
        body_html=body_html,
        image=_image(entry, content or summary_raw, url),
        image_caption=caption,
        tags=list(dict.fromkeys(tags)),
        reading_minutes=reading_minutes(words),
        guid=str(guid) if guid else None,
    )


def _time(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            # feedparser normalises to UTC in a struct_time; timegm reads it as UTC.
            return datetime.fromtimestamp(calendar.timegm(value), UTC)
    return None


def _content(entry: Any) -> str:
    contents = entry.get("content") or []
    html_parts = [c for c in contents if "html" in str(c.get("type", ""))]
    chosen = html_parts or contents
    if not chosen:
        return ""
    value = str(chosen[0].get("value", ""))
    if "html" not in str(chosen[0].get("type", "html")):
        return paragraphs_to_html(value)
    return value


def _image(entry: Any, html: str, base: str) -> str | None:
    candidates: list[str] = []
    for media in entry.get("media_content", []):
        if media.get("medium", "image") == "image" or str(media.get("type", "")).startswith(
            "image"
        ):
            candidates.append(media.get("url", ""))
    candidates += [thumb.get("url", "") for thumb in entry.get("media_thumbnail", [])]
    for link in entry.get("links", []):
        if link.get("rel") == "enclosure" and str(link.get("type", "")).startswith("image"):
            candidates.append(link.get("href", ""))
    for candidate in candidates:
        if candidate:
            return urljoin(base, candidate.strip())
    return first_image(html, base)
