"""What must be true of an email before anyone gets it.

The limits are the clients': Gmail clips a message whose HTML passes about 102 KB (hiding the
footer and its unsubscribe link) and drops a <style> block over 16 KB; many clients block
scripts, remote stylesheets and plain-http content. Checks read the part a subscriber would
get (placeholders filled with a sample recipient) and the template itself (for the links a
send will fill in).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import lxml.html
from lxml import etree

from newsletter import languages
from newsletter.config import Config
from newsletter.editorial.issue_file import IssueFile
from newsletter.editorial.render import (
    RenderedIssue,
    Template,
    personalize,
    reader_name,
    sample_recipient,
)

HTML_LIMIT = 100 * 1024
HTML_WARNING = 80 * 1024
STYLE_LIMIT = 16 * 1024


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning"]
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Email:
    """What the checks read: the parts as a subscriber gets them, their templates (for the
    links a send fills in), the parsed HTML and its links, and the issue's own fields."""

    html: str
    text: str
    html_template: Template
    text_template: Template
    article_urls: list[str]
    postal_address: str | None
    intro: str
    root: Any  # lxml's document

    @functools.cached_property
    def links(self) -> list[tuple[str, str]]:
        """(href, scheme) of every anchor with an address, mailto: aside."""
        found = []
        for anchor in self.root.iter("a"):
            if anchor.get("href") is None:
                continue  # an anchor without an address is text, not a link
            href = (anchor.get("href") or "").strip()
            scheme = urlsplit(href).scheme
            if scheme != "mailto":
                found.append((href, scheme))
        return found


Check = Callable[[Email], Iterator[Finding]]


def _error(code: str, message: str) -> Finding:
    return Finding("error", code, message)


def _warning(code: str, message: str) -> Finding:
    return Finding("warning", code, message)


def size(html: str) -> Iterator[Finding]:
    length = len(html.encode("utf-8"))
    if length > HTML_LIMIT:
        yield _error(
            "size", f"the HTML is {length / 1024:.0f} KB; Gmail clips messages over about 102 KB"
        )
    elif length > HTML_WARNING:
        yield _warning(
            "size", f"the HTML is {length / 1024:.0f} KB, close to Gmail's 102 KB clipping"
        )


def doctype(html: str) -> Iterator[Finding]:
    if not re.match(r"\s*<!doctype html", html, re.I):
        yield _error("doctype", "no <!doctype html> at the start of the HTML")


def lang(email: Email) -> Iterator[Finding]:
    if not (email.root.get("lang") or "").strip():
        yield _error("lang", "<html> has no lang attribute")


def styles(email: Email) -> Iterator[Finding]:
    """style-size (Gmail drops a block over 16 KB) and remote-css (@import)."""
    for style in email.root.iter("style"):
        length = len((style.text or "").encode("utf-8"))
        if length > STYLE_LIMIT:
            yield _error(
                "style-size",
                f"a <style> block is {length / 1024:.0f} KB; Gmail drops those over 16 KB",
            )
        if "@import" in (style.text or ""):
            yield _error("remote-css", "a <style> block @imports a remote stylesheet")


def stylesheets(email: Email) -> Iterator[Finding]:
    for link in email.root.iter("link"):
        if "stylesheet" in (link.get("rel") or "").lower():
            yield _error("remote-css", f"remote stylesheet {link.get('href')}")


def scripts(email: Email) -> Iterator[Finding]:
    if any(True for _ in email.root.iter("script")):
        yield _error("script", "the HTML contains a <script>; mail clients block it")


def images(email: Email) -> Iterator[Finding]:
    """alt text on every image, and https sources."""
    for image in email.root.iter("img"):
        src = image.get("src") or ""
        if image.get("alt") is None:
            yield _error("alt", f"image {src or '(no src)'} has no alt text")
        if urlsplit(src).scheme != "https":
            yield _error("link", f"image {src or '(empty)'} is not an https URL")


def links(email: Email) -> Iterator[Finding]:
    for href, scheme in email.links:
        if scheme != "https":
            kind = "relative" if not scheme else f"{scheme}:"
            yield _error("link", f"link {href or '(empty)'} is {kind}, not https")


def unsubscribe(email: Email) -> Iterator[Finding]:
    if "unsubscribe_url" not in email.html_template.names():
        yield _error("unsubscribe", "the HTML part has no unsubscribe link")
    else:
        holders = [a for a in email.root.iter("a") if "/unsubscribe" in (a.get("href") or "")]
        if not any("".join(str(t) for t in a.itertext()).strip() for a in holders):
            yield _error("unsubscribe", "the unsubscribe link has no visible text")
    if "unsubscribe_url" not in email.text_template.names():
        yield _error("unsubscribe", "the text part has no unsubscribe link")


def text_part(email: Email) -> Iterator[Finding]:
    """text (not empty) and text-mismatch (every link and article in both parts)."""
    if not email.text.strip():
        yield _error("text", "the text part is empty")
        return
    html_links = [href for href, _ in email.links]
    for url in dict.fromkeys(html_links):
        if url not in email.text:
            yield _error("text-mismatch", f"the text part lacks the link {url}")
    for url in email.article_urls:
        if url not in email.text or url not in html_links:
            part = "text" if url not in email.text else "HTML"
            yield _error("text-mismatch", f"the {part} part lacks the article {url}")


def postal_address(email: Email) -> Iterator[Finding]:
    if not email.postal_address:
        yield _warning(
            "postal-address", "no postal address in the footer: set [newsletter] postal_address"
        )


def intro(email: Email) -> Iterator[Finding]:
    if not email.intro.strip():
        yield _warning("intro", "the issue has no introduction")


# The checks of a parsed email, in the order their findings are reported.
CHECKS: tuple[Check, ...] = (
    lang, styles, stylesheets, scripts, images, links, unsubscribe, text_part, postal_address,
    intro,
)  # fmt: skip


def check_email(
    html: str,
    text: str,
    html_template: Template,
    text_template: Template,
    article_urls: list[str],
    *,
    postal_address: str | None = None,
    intro: str = "",
) -> list[Finding]:
    """Every check's findings: the raw HTML's first (size, doctype), then, when it parses,
    each of CHECKS."""
    findings = [*size(html), *doctype(html)]
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return [*findings, _error("parse", "the HTML cannot be parsed")]
    email = Email(
        html, text, html_template, text_template, article_urls, postal_address, intro, root
    )
    for check in CHECKS:
        findings.extend(check(email))
    return findings


def has_errors(findings: list[Finding]) -> bool:
    return any(finding.level == "error" for finding in findings)


def findings_report(slug: str, findings: list[Finding]) -> dict[str, Any]:
    """`issue check --json` (and the checks in `issue render --json`)."""
    return {
        "slug": slug,
        "ok": not has_errors(findings),
        "findings": [finding.as_dict() for finding in findings],
    }


def check_rendered(config: Config, issue: IssueFile, rendered: RenderedIssue) -> list[Finding]:
    """Check what a subscriber would get: the parts filled for a sample recipient."""
    recipient = sample_recipient(config, rendered.slug)
    return [
        *_untranslated(config),
        *check_email(
            personalize(rendered.html, recipient, reader_name(config), "html"),
            personalize(rendered.text, recipient, reader_name(config), "text"),
            rendered.html,
            rendered.text,
            [article.url for article in rendered.articles],
            postal_address=config.postal_address,
            intro=issue.intro,
        ),
    ]


def _untranslated(config: Config) -> Iterator[Finding]:
    """A newsletter's own theme may write messages the language's catalogue lacks: they
    show in English. The project's own are held complete by its tests, unless the language
    is one only the theme's catalogue brings: then every message is looked at."""
    if config.theme is None or config.language == languages.SOURCE:
        return
    if config.language in languages.available():
        wanted = languages.theme_messages(config.theme)
    else:
        wanted = languages.messages(config.theme)
    left = languages.missing(config.language, wanted, config.theme)
    if left:
        shown = "; ".join(repr(message) for message in left[:5])
        yield _warning(
            "translation",
            f"{len(left)} messages are not in the {config.language} catalogue and show in "
            f"English: {shown}",
        )
