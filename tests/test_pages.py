import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from newsletter.collect.fetch import Document
from newsletter.collect.pages import parse_page
from newsletter.errors import SourceError

KYIV = ZoneInfo("Europe/Kyiv")
BODY = "".join(
    f"<p>Paragraph {i} of the article with enough words to count as text.</p>" for i in range(6)
)


def page(
    head: str, body: str = BODY, location: str = "https://example.org/x?utm_source=t"
) -> Document:
    html = (
        f"<!doctype html><html><head>{head}</head><body>"
        "<nav><p>Menu menu menu menu menu menu</p></nav>"
        f"<article><h1>Visible headline</h1><div class='content'>{body}</div></article>"
        "<footer><p>Footer text that is long enough to be counted</p></footer></body></html>"
    )
    return Document(location=location, content=html.encode(), base_url=location.split("?")[0])


def ld(value: object) -> str:
    return f'<script type="application/ld+json">{json.dumps(value)}</script>'


def test_json_ld_graph_article_with_coauthors_and_canonical() -> None:
    graph = {
        "@context": "https://schema.org",
        "@graph": [
            {"@type": "WebSite", "name": "Site"},
            {
                "@type": ["NewsArticle"],
                "headline": "JSON-LD headline",
                "datePublished": "2022-12-20T17:45:00+02:00",
                "author": [
                    {"@type": "Person", "name": "Asami Terajima"},
                    {"@type": "Person", "name": "Martin Fornusek"},
                ],
                "image": [{"@type": "ImageObject", "url": "https://cdn.example.org/a.jpg"}],
                "keywords": "War, Bakhmut",
                "description": "The summary.",
            },
        ],
    }
    head = (
        '<link rel="canonical" href="https://Example.org/story/?utm_campaign=x">'
        '<meta property="og:url" content="https://example.org/other/">'
        '<meta property="og:title" content="OG title">' + ld(graph)
    )
    article = parse_page(page(head), KYIV)
    assert article.url == "https://example.org/story/"  # canonical beats og:url
    assert article.title == "JSON-LD headline"
    assert article.authors == ["Asami Terajima", "Martin Fornusek"]
    assert article.published == datetime(2022, 12, 20, 15, 45, tzinfo=UTC)
    assert article.image == "https://cdn.example.org/a.jpg"
    assert article.tags == ["War", "Bakhmut"]
    assert article.summary_html == "<p>The summary.</p>"
    assert "Paragraph 5" in article.body_html
    assert "Menu" not in article.body_html and "Footer" not in article.body_html
    assert article.kind == "page"


def test_open_graph_only_page_with_meta_author_and_time_element() -> None:
    head = (
        '<meta property="og:title" content="OG headline">'
        '<meta property="og:url" content="https://example.org/og/?fbclid=1">'
        '<meta property="og:image" content="/img/og.jpg">'
        '<meta name="author" content="Asami Terajima">'
        '<meta property="article:tag" content="Energy">'
    )
    body = BODY + '<time datetime="2022-12-21T08:00:00Z">Dec 21</time>'
    article = parse_page(page(head, body), KYIV)
    assert (article.url, article.title) == ("https://example.org/og/", "OG headline")
    assert article.authors == ["Asami Terajima"]
    assert article.published == datetime(2022, 12, 21, 8, tzinfo=UTC)
    assert article.image == "https://example.org/img/og.jpg"
    assert article.tags == ["Energy"]
    assert article.summary_html.startswith("<p>Paragraph 0")


def test_ghost_written_by_label_adds_coauthors_missing_from_json_ld() -> None:
    head = (
        ld(
            {
                "@type": "Article",
                "headline": "H",
                "datePublished": "2022-12-20T10:00:00Z",
                "author": {"@type": "Person", "name": "Asami Terajima"},
            }
        )
        + '<meta name="twitter:label1" content="Written by">'
        + '<meta name="twitter:data1" content="Asami Terajima, Illia Ponomarenko">'
    )
    assert parse_page(page(head), KYIV).authors == ["Asami Terajima", "Illia Ponomarenko"]


def test_broken_json_ld_is_ignored_and_metadata_still_found() -> None:
    head = (
        '<script type="application/ld+json">{"@type": "NewsArticle", broken</script>'
        '<meta property="og:title" content="Still here">'
        '<meta property="article:published_time" content="2022-12-20T10:00:00Z">'
    )
    assert parse_page(page(head), KYIV).title == "Still here"


def test_declared_charset_is_honoured() -> None:
    html = (
        '<html><head><meta charset="windows-1251"><meta property="og:title" content="\xcf\xf0\xe8">'
        '<meta property="article:published_time" content="2022-12-20T10:00:00Z"></head>'
        "<body><p>x</p></body></html>"
    ).encode("latin-1")
    document = Document(location="https://e.org/p", content=html, base_url="https://e.org/p")
    assert parse_page(document, KYIV).title == "При"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty document"),
        (b"<html><body><p>no title, no date</p></body></html>", "no article headline"),
        (b"<html><head><title>T</title></head><body><p>x</p></body></html>", "no publication date"),
        (b"<html><head><title>Caf\xe9</title></head></html>", "not valid utf-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary data"),
    ],
)
def test_bad_pages_are_one_line_errors(content: bytes, message: str) -> None:
    document = Document(location="https://e.org/bad", content=content, base_url="https://e.org/bad")
    with pytest.raises(SourceError) as caught:
        parse_page(document, KYIV)
    assert str(caught.value).startswith("https://e.org/bad: ")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_local_page_without_any_url_asks_for_the_web_address() -> None:
    head = (
        '<meta property="og:title" content="T">'
        '<meta property="article:published_time" content="2022-12-20T10:00:00Z">'
    )
    document = Document(
        location="saved.html", content=page(head).content, base_url="file:///saved.html"
    )
    with pytest.raises(SourceError, match="no canonical URL"):
        parse_page(document, KYIV)


def test_json_ld_author_given_by_reference_is_resolved() -> None:
    graph = {
        "@context": "https://schema.org",
        "@graph": [
            {
                "@type": "NewsArticle",
                "headline": "Referenced",
                "datePublished": "2022-12-20",
                "author": [
                    {"@id": "https://e.org/#/person/1"},
                    {"@id": "https://e.org/#/person/2"},
                ],
            },
            {"@type": "Person", "@id": "https://e.org/#/person/1", "name": "Asami Terajima"},
            {"@type": "Person", "@id": "https://e.org/#/person/2", "name": "Illia Ponomarenko"},
        ],
    }
    article = parse_page(page(ld(graph)), KYIV)
    assert article.authors == ["Asami Terajima", "Illia Ponomarenko"]
    assert article.published == datetime(2022, 12, 20, tzinfo=KYIV)
