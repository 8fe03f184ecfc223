"""What must be true of an email before anyone gets it.

The limits are the clients': Gmail clips a message whose HTML passes about 102 KB (hiding the
footer and its unsubscribe link) and drops a <style> block over 16 KB; many clients block
scripts, remote stylesheets and plain-http content. Checks read the part a subscriber would
get (placeholders filled with a sample recipient) and the template itself (for the links a
send will fill in).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import lxml.html
from lxml import etree

from newsletter.config import Config
from newsletter.editorial.issue_file import IssueFile
from newsletter.editorial.render import RenderedIssue, Template, personalize, sample_recipient

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
    findings: list[Finding] = []

    def error(code: str, message: str) -> None:
        findings.append(Finding("error", code, message))

    def warning(code: str, message: str) -> None:
        findings.append(Finding("warning", code, message))

    size = len(html.encode("utf-8"))
    if size > HTML_LIMIT:
        error("size", f"the HTML is {size / 1024:.0f} KB; Gmail clips messages over about 102 KB")
    elif size > HTML_WARNING:
        warning("size", f"the HTML is {size / 1024:.0f} KB, close to Gmail's 102 KB clipping")
    if not re.match(r"\s*<!doctype html", html, re.I):
        error("doctype", "no <!doctype html> at the start of the HTML")
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        error("parse", "the HTML cannot be parsed")
        return findings
    if not (root.get("lang") or "").strip():
        error("lang", "<html> has no lang attribute")
    for style in root.iter("style"):
        length = len((style.text or "").encode("utf-8"))
        if length > STYLE_LIMIT:
            error(
                "style-size",
                f"a <style> block is {length / 1024:.0f} KB; Gmail drops those over 16 KB",
            )
        if "@import" in (style.text or ""):
            error("remote-css", "a <style> block @imports a remote stylesheet")
    for link in root.iter("link"):
        if "stylesheet" in (link.get("rel") or "").lower():
            error("remote-css", f"remote stylesheet {link.get('href')}")
    if any(True for _ in root.iter("script")):
        error("script", "the HTML contains a <script>; mail clients block it")
    for image in root.iter("img"):
        src = image.get("src") or ""
        if image.get("alt") is None:
            error("alt", f"image {src or '(no src)'} has no alt text")
        if urlsplit(src).scheme != "https":
            error("link", f"image {src or '(empty)'} is not an https URL")
    html_links: list[str] = []
    for anchor in root.iter("a"):
        if anchor.get("href") is None:
            continue  # an anchor without an address is text, not a link
        href = (anchor.get("href") or "").strip()
        scheme = urlsplit(href).scheme
        if scheme == "mailto":
            continue
        if scheme != "https":
            kind = "relative" if not scheme else f"{scheme}:"
            error("link", f"link {href or '(empty)'} is {kind}, not https")
        html_links.append(href)

    if "unsubscribe_url" not in html_template.names():
        error("unsubscribe", "the HTML part has no unsubscribe link")
    else:
        holders = [a for a in root.iter("a") if "/unsubscribe" in (a.get("href") or "")]
        if not any("".join(str(t) for t in a.itertext()).strip() for a in holders):
            error("unsubscribe", "the unsubscribe link has no visible text")
    if "unsubscribe_url" not in text_template.names():
        error("unsubscribe", "the text part has no unsubscribe link")

    if not text.strip():
        error("text", "the text part is empty")
    else:
        for url in dict.fromkeys(html_links):
            if url not in text:
                error("text-mismatch", f"the text part lacks the link {url}")
        for url in article_urls:
            if url not in text or url not in html_links:
                part = "text" if url not in text else "HTML"
                error("text-mismatch", f"the {part} part lacks the article {url}")

    if not postal_address:
        warning(
            "postal-address", "no postal address in the footer: set [newsletter] postal_address"
        )
    if not intro.strip():
        warning("intro", "the issue has no introduction")
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
    return check_email(
        personalize(rendered.html, recipient, config.name_fallback, "html"),
        personalize(rendered.text, recipient, config.name_fallback, "text"),
        rendered.html,
        rendered.text,
        [article.url for article in rendered.articles],
        postal_address=config.postal_address,
        intro=issue.intro,
    )
