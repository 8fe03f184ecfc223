from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from newsletter.collect.fetch import Document, read_file
from newsletter.collect.texts import parse_text
from newsletter.errors import SourceError

KYIV = ZoneInfo("Europe/Kyiv")
SEED = Path(__file__).parent.parent / "samples" / "texts" / "putin-negotiations.txt"
WHEN = datetime(2022, 12, 25, 18, 52, tzinfo=KYIV)
URL = "https://kyivindependent.com/putin-claims/?utm_source=share"


def test_seed_article_headline_reading_time_body_and_author() -> None:
    article = parse_text(read_file(str(SEED), 10**6), URL, WHEN, KYIV)
    assert (
        article.title == "Putin claims readiness for negotiations, blames West for refusing to talk"
    )
    assert article.reading_minutes == 1
    assert article.authors == ["Asami Terajima"]
    assert article.url == "https://kyivindependent.com/putin-claims/"
    assert article.published == WHEN
    assert article.body_html.startswith("<p>Russian President Vladimir Putin claimed on Dec. 25")
    assert article.body_html.endswith("were broken by Russian troops.</p>")
    for chrome in (
        "News Feed",
        "Show More",
        "SPUTNIKAFP",
        "Avatar",
        "Reporter",
        "Read more",
        "Kurt Schork",
        "min read",
    ):
        assert chrome not in article.body_html, chrome
    assert article.body_html.count("<p>") == 10


def test_text_without_min_read_or_avatar_and_with_a_date_line() -> None:
    text = (
        "Menu\n\nA headline without chrome\n\nBy Asami Terajima and Martin Fornusek\n"
        "December 20, 2022 10:15 AM\n\nFirst paragraph of the body.\n\nSecond paragraph.\n\n"
        "Martin Fornusek\n\nMartin Fornusek is a reporter.\n"
    )
    document = Document(location="t.txt", content=text.encode())
    article = parse_text(document, "https://e.org/a", None, KYIV)
    assert article.title == "A headline without chrome"
    assert article.authors == ["Asami Terajima", "Martin Fornusek"]
    assert article.published == datetime(2022, 12, 20, 8, 15, tzinfo=UTC)
    assert "First paragraph" in article.body_html and "Second paragraph" in article.body_html
    assert "is a reporter" not in article.body_html and "By Asami" not in article.body_html


@pytest.mark.parametrize(
    ("content", "url", "when", "message"),
    [
        ("Headline\n\nBody.", None, WHEN, "pass --url"),
        ("Headline\n\nBody.", "ftp://e.org/x", WHEN, r"not an http\(s\) URL"),
        ("Headline\n\nBody.", URL, None, "pass --published"),
        ("News Feed\n\n", URL, WHEN, "empty text"),
        ("Headline only", URL, WHEN, "no article body"),
    ],
)
def test_bad_texts(content: str, url: str | None, when: datetime | None, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        parse_text(Document(location="t.txt", content=content.encode()), url, when, KYIV)


def test_non_utf8_text_names_the_file_and_the_fix() -> None:
    document = Document(location="cp1251.txt", content="Заголовок".encode("cp1251"))
    with pytest.raises(SourceError, match=r"^cp1251.txt: not UTF-8 text .*iconv"):
        parse_text(document, URL, WHEN, KYIV)
