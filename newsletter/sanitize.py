"""Article HTML made safe to put in an email, and turned into text (the words' numbers are
reading.py's).

nh3 (ammonia) keeps structure and drops scripts, styles, event attributes and any URL scheme
but http(s) and mailto. Relative links are made absolute on the way through, because an
email has no base URL to resolve them against.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin

import lxml.html
import nh3
from lxml import etree

_URL_ATTRIBUTES = {"href", "src", "cite", "poster"}
_ALLOWED_SCHEMES = {"http", "https", "mailto"}
_SPACE = re.compile(r"\s+")


def clean_html(fragment: str, base_url: str | None = None) -> str:
    def absolutize(_tag: str, attribute: str, value: str) -> str | None:
        if attribute in _URL_ATTRIBUTES and base_url:
            return urljoin(base_url, value.strip())
        return value

    cleaned = nh3.clean(
        fragment,
        url_schemes=_ALLOWED_SCHEMES,
        attribute_filter=absolutize,
        strip_comments=True,
        link_rel="noopener noreferrer",
    )
    return cleaned.strip()


_CARD_TAGS = {
    "p",
    "br",
    "a",
    "em",
    "strong",
    "b",
    "i",
    "u",
    "s",
    "q",
    "cite",
    "code",
    "abbr",
    "sub",
    "sup",
    "ul",
    "ol",
    "li",
    "blockquote",
    "span",
}


def card_html(fragment: str) -> str:
    """A summary fit for an email card: text-level markup only (no images, tables, figures
    or headings from the source's layout), and links only to https or mailto: another
    link keeps its words and loses its address, rather than failing the issue's checks."""
    return nh3.clean(
        fragment,
        tags=_CARD_TAGS,
        attributes={"a": {"href"}},
        url_schemes={"https", "mailto"},
        link_rel="noopener noreferrer",
        strip_comments=True,
    ).strip()


def html_to_text(fragment: str) -> str:
    """Visible words of an HTML fragment, paragraphs separated by blank lines."""
    if not fragment.strip():
        return ""
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (etree.ParserError, ValueError):
        return _SPACE.sub(" ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()
    blocks: list[str] = []
    for element in root.iter("p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"):
        if element.getparent() is not None and element.getparent().tag in ("li", "blockquote"):
            continue
        text = _SPACE.sub(" ", element.text_content()).strip()
        if text:
            blocks.append(text)
    if not blocks:
        text = _SPACE.sub(" ", root.text_content()).strip()
        return text
    return "\n\n".join(blocks)


def paragraphs_to_html(text: str) -> str:
    """Plain text (blank-line separated paragraphs) as escaped `<p>` elements."""
    paragraphs = [_SPACE.sub(" ", block).strip() for block in re.split(r"\n\s*\n", text)]
    return "\n".join(f"<p>{html.escape(p, quote=False)}</p>" for p in paragraphs if p)


_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ATTR = r"""\b{}\s*=\s*["']([^"']+)["']"""


def first_image(fragment: str, base: str) -> str | None:
    """The first picture, at the largest size its `srcset` offers: cards show it at 180 or
    552 CSS pixels, and a phone's screen wants two or three device pixels for each."""
    tag = _IMG.search(fragment)
    if tag is None:
        return None
    src = re.search(_ATTR.format("src"), tag[0], re.IGNORECASE)
    srcset = re.search(_ATTR.format("srcset"), tag[0], re.IGNORECASE)
    best, widest = (src[1] if src else None), 0
    for candidate in srcset[1].split(",") if srcset else []:
        parts = candidate.split()
        if len(parts) == 2 and parts[1][:-1].isdigit() and parts[1][-1] in "wx":
            width = int(parts[1][:-1]) * (1000 if parts[1][-1] == "x" else 1)
            if width > widest:
                best, widest = parts[0], width
    return urljoin(base, best) if best else None
