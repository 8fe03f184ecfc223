"""Article web pages: JSON-LD first, then Open Graph and other meta tags, then the page itself.

Publishers describe their articles for search engines (JSON-LD `NewsArticle`) and for social
cards (Open Graph) far more reliably than their HTML layout does, so metadata wins and the
readable-body heuristic only fills in what metadata lacks. `rel=canonical` is the publisher's
own statement of the article's address and beats `og:url`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import urljoin

import lxml.html
from lxml import etree

from newsletter.collect.article import ArticleData, AuthorProfile
from newsletter.collect.authors import author_key, unique_names
from newsletter.collect.fetch import Document, decode
from newsletter.dates import parse_datetime
from newsletter.errors import SourceError
from newsletter.reading import reading_minutes, summarize
from newsletter.sanitize import clean_html, first_image, html_to_text, paragraphs_to_html
from newsletter.urls import canonical_url

ARTICLE_TYPES = {
    "article",
    "newsarticle",
    "reportagenewsarticle",
    "analysisnewsarticle",
    "opinionnewsarticle",
    "backgroundnewsarticle",
    "reviewnewsarticle",
    "blogposting",
    "liveblogposting",
    "report",
    "scholarlyarticle",
    "techarticle",
}
_DROP = (
    "script",
    "style",
    "noscript",
    "nav",
    "aside",
    "form",
    "button",
    "header",
    "footer",
    "iframe",
    "svg",
    "template",
)
_DURATION = re.compile(r"^P(?:T)?(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$", re.IGNORECASE)


def parse_page(document: Document, zone: tzinfo) -> ArticleData:
    text = decode(document)
    if not text.strip():
        raise SourceError(f"{document.location}: empty document")
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)  # lxml refuses str with an XML declaration
    try:
        root = lxml.html.document_fromstring(text)
    except (etree.ParserError, ValueError) as error:
        raise SourceError(f"{document.location}: malformed HTML: {error}") from None
    base = document.base_url or ""
    meta = _meta(root)
    data, ld_nodes = _json_ld(root)

    canonical = _canonical(root)
    url_raw = (
        canonical
        or meta.get("og:url")
        or _ld_url(data)
        or (document.location if document.is_remote else None)
    )
    if not url_raw:
        raise SourceError(
            f"{document.location}: no canonical URL, og:url or JSON-LD url; "
            "collect it from its web address instead"
        )
    url = canonical_url(url_raw, base)

    title = _text(data.get("headline")) or meta.get("og:title") or _title(root)
    if not title:
        raise SourceError(f"{document.location}: no article headline found (not an article page?)")

    published = (
        _date(data.get("datePublished"), zone)
        or _date(
            meta.get("article:published_time") or meta.get("date") or meta.get("dc.date"), zone
        )
        or _time_element(root, zone)
    )
    if published is None:
        raise SourceError(
            f"{document.location}: no publication date (JSON-LD datePublished, "
            "article:published_time or <time datetime>)"
        )

    authors = _authors(data, ld_nodes, meta, root)
    body_html = _body(data, root, url)
    body_text = html_to_text(body_html)
    description = (
        _text(data.get("description")) or meta.get("og:description") or meta.get("description")
    )
    summary_html = (
        paragraphs_to_html(description)
        if description
        else paragraphs_to_html(summarize(body_text))
        if body_text
        else ""
    )
    minutes = _duration_minutes(_text(data.get("timeRequired"))) or reading_minutes(
        body_text or description or ""
    )
    image = _ld_image(data.get("image")) or meta.get("og:image") or meta.get("twitter:image")
    caption = _ld_caption(data.get("image")) or _figcaption(root)
    tags = _tags(data, root)
    return ArticleData(
        url=url,
        title=" ".join(title.split()),
        authors=authors,
        published=published,
        kind="page",
        summary_html=summary_html,
        body_html=body_html,
        image=urljoin(url, image) if image else first_image(body_html, url),
        image_caption=caption,
        profiles=_profiles(data, ld_nodes, url),
        tags=tags,
        reading_minutes=minutes,
        guid=None,
    )


def _meta(root: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for element in root.iter("meta"):
        key = (element.get("property") or element.get("name") or "").strip().lower()
        value = (element.get("content") or "").strip()
        if key and value:
            found.setdefault(key, value)
    return found


def _canonical(root: Any) -> str | None:
    for link in root.iter("link"):
        if "canonical" in (link.get("rel") or "").lower().split() and link.get("href"):
            return str(link.get("href")).strip()
    return None


def _title(root: Any) -> str | None:
    for path in ("//h1", "//title"):
        for element in root.xpath(path):
            text = " ".join(element.text_content().split())
            if text:
                return text
    return None


def _walk_ld(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        for item in value:
            yield from _walk_ld(item)
    elif isinstance(value, dict):
        yield value
        if "@graph" in value:
            yield from _walk_ld(value["@graph"])


def _types(node: dict[str, Any]) -> set[str]:
    kinds = node.get("@type", [])
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return {str(kind).lower() for kind in kinds}


def _json_ld(root: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The first JSON-LD node typed as an article, and every node by its @id (Yoast and
    others name the author by reference). Broken blocks are ignored, as a search engine
    would ignore them."""
    nodes: list[dict[str, Any]] = []
    for script in root.xpath("//script[@type='application/ld+json']"):
        try:
            value = json.loads(script.text_content() or "null", strict=False)
        except json.JSONDecodeError:
            continue
        nodes.extend(_walk_ld(value))
    by_id = {str(node["@id"]): node for node in nodes if node.get("@id")}
    article = next((node for node in nodes if _types(node) & ARTICLE_TYPES), {})
    return article, by_id


def _text(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("@value") or value.get("name")
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _ld_url(data: dict[str, Any]) -> str | None:
    url = _text(data.get("url"))
    if url:
        return url
    page = data.get("mainEntityOfPage")
    if isinstance(page, dict):
        return _text(page.get("@id") or page.get("url"))
    return _text(page)


def _ld_caption(value: Any) -> str:
    """An ImageObject's caption (or description): what the picture shows."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        words = _text(value.get("caption") or value.get("description")) or ""
        return " ".join(words.split())[:300]
    return ""


def _figcaption(root: Any) -> str:
    """The caption of the article's first figure with a picture."""
    for figure in root.xpath("//article//figure[.//img] | //figure[.//img]")[:1]:
        for caption in figure.xpath(".//figcaption"):
            return " ".join(caption.text_content().split())[:300]
    return ""


def _ld_image(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("url") or value.get("contentUrl") or value.get("@id")
    return str(value).strip() if value else None


def _date(value: Any, zone: tzinfo) -> datetime | None:
    text = _text(value)
    return parse_datetime(text, zone) if text else None


def _time_element(root: Any, zone: tzinfo) -> datetime | None:
    for element in root.xpath("//article//time[@datetime] | //time[@datetime]"):
        moment = parse_datetime(element.get("datetime", ""), zone)
        if moment:
            return moment
    return None


def _profiles(
    data: dict[str, Any], ld_nodes: dict[str, dict[str, Any]], base: str
) -> tuple[AuthorProfile, ...]:
    """JSON-LD Person authors with more than a name: jobTitle, description, image."""
    found = []
    value = data.get("author") or data.get("creator")
    for item in value if isinstance(value, list) else [value] if value else []:
        if isinstance(item, dict) and "name" not in item and str(item.get("@id")) in ld_nodes:
            item = ld_nodes[str(item["@id"])]
        if not isinstance(item, dict):
            continue
        name = " ".join((_text(item.get("name")) or "").split())
        role = " ".join((_text(item.get("jobTitle")) or "").split())[:120]
        bio = " ".join((_text(item.get("description")) or "").split())[:1200]
        photo = _ld_image(item.get("image"))
        photo = urljoin(base, photo) if photo else None
        if name and (role or bio or photo):
            found.append(AuthorProfile(name, role, bio, photo))
    return tuple(found)


def _authors(
    data: dict[str, Any], ld_nodes: dict[str, dict[str, Any]], meta: dict[str, str], root: Any
) -> list[str]:
    bylines: list[str] = []
    value = data.get("author") or data.get("creator")
    for item in value if isinstance(value, list) else [value] if value else []:
        if isinstance(item, dict) and "name" not in item and str(item.get("@id")) in ld_nodes:
            item = ld_nodes[str(item["@id"])]
        name = _text(item)
        if name:
            bylines.append(name)
    # Ghost (and others) list every co-author in a Twitter card label; JSON-LD often only
    # names the first author.
    for number in ("1", "2"):
        if meta.get(f"twitter:label{number}", "").lower() == "written by":
            bylines.append(meta.get(f"twitter:data{number}", ""))
    if not bylines:
        for key in ("author", "article:author", "dc.creator", "parsely-author"):
            if meta.get(key):
                bylines.append(meta[key])
    if not bylines:
        for element in root.xpath(
            "//*[@rel='author'] | //*[@itemprop='author'] | //*[contains(@class, 'byline')]"
        ):
            text = " ".join(element.text_content().split())
            if text and len(text) < 200:
                bylines.append(text)
                break
    names = unique_names(bylines)
    return [n for n in names if author_key(n) not in ("", "admin")] or []


def _tags(data: dict[str, Any], root: Any) -> list[str]:
    tags: list[str] = []
    keywords = data.get("keywords")
    if isinstance(keywords, str):
        tags += [k.strip() for k in keywords.split(",")]
    elif isinstance(keywords, list):
        tags += [str(k).strip() for k in keywords]
    section = data.get("articleSection")
    if isinstance(section, str):
        tags.append(section.strip())
    for element in root.xpath("//meta[@property='article:tag']"):
        tags.append((element.get("content") or "").strip())
    return list(dict.fromkeys(tag for tag in tags if tag))


def _duration_minutes(value: str | None) -> int | None:
    match = _DURATION.match(value or "")
    if not match or not any(match.groups()):
        return None
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return max(1, hours * 60 + minutes + (1 if seconds >= 30 else 0))


def _body(data: dict[str, Any], root: Any, base: str) -> str:
    container = _readable_container(root)
    if container is not None:
        for element in container.xpath(" | ".join(f".//{tag}" for tag in _DROP)):
            if element.getparent() is not None:
                element.drop_tree()
        fragment = etree.tostring(container, encoding="unicode", method="html")
        cleaned = clean_html(fragment, base)
        if html_to_text(cleaned).strip():
            return cleaned
    article_body = _text(data.get("articleBody"))
    if article_body:
        return paragraphs_to_html(str(data.get("articleBody")))
    return ""


def _readable_container(root: Any) -> Any | None:
    """The element whose own paragraphs hold the most text: the article body on nearly
    every news site, without a site-specific selector."""
    marked = root.xpath("//*[@itemprop='articleBody']")
    if marked:
        return marked[0]
    scores: dict[Any, int] = {}
    for paragraph in root.iter("p"):
        parent = paragraph.getparent()
        if parent is None or any(a.tag in _DROP for a in paragraph.iterancestors()):
            continue
        length = len(" ".join(paragraph.text_content().split()))
        if length >= 25:
            scores[parent] = scores.get(parent, 0) + length
    if not scores:
        return None
    return max(scores, key=lambda element: scores[element])
