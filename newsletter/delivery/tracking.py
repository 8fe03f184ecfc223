"""Counted links: the issue's links rewritten to a short signed redirect on our own server.

Each distinct http(s) link of an approved issue (articles, the intro's and notes' links;
not our own unsubscribe, archive and web pages) gets an index in the order it first
appears, stored in `issue_links` with its text, once per issue (a resumed send reuses
them). The sent message links to `{base_url}/c/<issue>-<index>-<mac>`: the MAC (80 bits
of HMAC-SHA256 with the newsletter's key, as row_tokens.py) makes a tampered or invented
link a 404, and the server redirects only to the URL stored for that index, never to one
the request names. With `[tracking] per_subscriber = true` the link also carries
`?r=<reader token>`, a signed token naming the ledger row, filled per recipient like the
other placeholders (one HMAC a message, however many links). The preview, the archive and
the web version keep direct links: only sent messages are rewritten.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from lxml import html as lxml_html
from sqlmodel import Session, col, select

from newsletter import signing
from newsletter.models import IssueLink
from newsletter.signing import base36

_HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(https?://[^"'<>\s]+)\2""", re.IGNORECASE)
_TEXT_URL = re.compile(r"https?://[^\s<>\"')\]]+")
LINK_TOKEN = re.compile(r"([0-9a-z]{1,12})-([0-9a-z]{1,6})-([a-z2-7]{16})\Z")
MAX_LINKS = 500


@dataclass(frozen=True)
class Link:
    index: int
    url: str
    title: str


def _mac(key: bytes, newsletter: str, issue_id: int, index: int) -> str:
    return signing.sign(key, signing.LINK, newsletter, issue_id, index)


def link_token(key: bytes, newsletter: str, issue_id: int, index: int) -> str:
    return f"{base36(issue_id)}-{base36(index)}-{_mac(key, newsletter, issue_id, index)}"


def read_link_token(key: bytes, newsletter: str, token: str) -> tuple[int, int] | None:
    """(issue, index) of a valid link token, else None (tampered, made with another key)."""
    match = LINK_TOKEN.fullmatch(token) if len(token) <= 40 else None
    if match is None:
        return None
    issue_id = signing.canonical_int(match.group(1), 36)
    index = signing.canonical_int(match.group(2), 36)
    if (
        issue_id is None
        or index is None
        or not signing.verify(key, signing.LINK, match.group(3), newsletter, issue_id, index)
    ):
        return None
    return issue_id, index


def open_token(key: bytes, newsletter: str, issue_id: int) -> str:
    """The open pixel's token: the issue only."""
    return f"{base36(issue_id)}-{signing.sign(key, signing.OPEN, newsletter, issue_id)}"


def read_open_token(key: bytes, newsletter: str, token: str) -> int | None:
    match = re.fullmatch(r"([0-9a-z]{1,12})-([a-z2-7]{16})", token[:40])
    issue_id = signing.canonical_int(match.group(1), 36) if match else None
    if issue_id is None or not signing.same(open_token(key, newsletter, issue_id), token):
        return None
    return issue_id


def extract(page: str, own: str) -> list[Link]:
    """The page's distinct links in the order they first appear, with the first non-empty
    text that links each (a headline, a phrase of the intro), our own pages left out."""
    found: dict[str, str] = {}
    document = lxml_html.fromstring(page) if page.strip() else None
    if document is None:
        return []
    for anchor in document.iter("a"):
        url = (anchor.get("href") or "").strip()
        if not url.lower().startswith(("http://", "https://")) or url.startswith(own):
            continue
        if "%%" in url:
            continue
        text = " ".join("".join(str(part) for part in anchor.itertext()).split())
        if url not in found or (not found[url] and text):
            found[url] = text
    items = list(found.items())[:MAX_LINKS]
    return [Link(i, url, title[:300]) for i, (url, title) in enumerate(items)]


def register(session: Session, issue_id: int, page: str, own: str) -> list[Link]:
    """The issue's links, stored the first time a send asks (later sends read them back,
    so an index means the same URL in every message of the issue). Does not commit."""
    stored = session.exec(
        select(IssueLink).where(IssueLink.issue_id == issue_id).order_by(col(IssueLink.index))
    ).all()
    if stored:
        return [Link(row.index, row.url, row.title) for row in stored]
    links = extract(page, own)
    for link in links:
        session.add(IssueLink(issue_id=issue_id, index=link.index, url=link.url, title=link.title))
    session.flush()
    return links


def rewrite(
    html_part: str, text_part: str, target: dict[str, str], reader: bool
) -> tuple[str, str]:
    """Both parts with each counted link replaced by its redirect (`target`: each counted
    URL to its redirect URL); with `reader`, each redirect gains `?r=%%reader%%`."""
    suffix = "?r=%%reader%%" if reader else ""
    counted = target.keys()

    def in_html(match: re.Match[str]) -> str:
        url = html.unescape(match.group(3))
        if url not in counted:
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{target[url]}{suffix}{match.group(2)}"

    def in_text(match: re.Match[str]) -> str:
        url = match.group(0)
        trail = ""
        while url and url[-1] in ".,;:!?" and url not in counted:
            url, trail = url[:-1], url[-1] + trail
        if url not in counted:
            return match.group(0)
        return f"{target[url]}{suffix}{trail}"

    return _HREF.sub(in_html, html_part), _TEXT_URL.sub(in_text, text_part)


def with_pixel(html_part: str, src: str, reader: bool) -> str:
    """The open-counting image, last in the body: 1 pixel, empty alt (screen readers skip
    it), no border."""
    suffix = "?r=%%reader%%" if reader else ""
    pixel = (
        f'<img src="{src}{suffix}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0" />'
    )
    at = html_part.lower().rfind("</body>")
    return html_part + pixel if at < 0 else html_part[:at] + pixel + html_part[at:]
