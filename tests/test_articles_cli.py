"""`newsletter articles list|show`, on both databases."""

import json

from tests.conftest import Project

FEED = """<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel><title>t</title><link>https://e.org/</link>
<item><title>Sunday late UTC</title><link>https://e.org/a</link>
<dc:creator>Asami  Terajima</dc:creator><pubDate>Sun, 25 Dec 2022 23:30:00 GMT</pubDate>
<category>War</category><description>&lt;p&gt;Summary &amp;amp; more&lt;/p&gt;</description></item>
<item><title>Monday in Kyiv</title><link>https://e.org/b</link>
<dc:creator>ASAMI TERAJIMA</dc:creator><dc:creator>Martin Fornusek</dc:creator>
<pubDate>Sun, 18 Dec 2022 22:30:00 GMT</pubDate><description>x</description></item>
<item><title>Someone else</title><link>https://e.org/c</link>
<dc:creator>Illia Ponomarenko</dc:creator><pubDate>Wed, 21 Dec 2022 10:00:00 GMT</pubDate>
<description>y</description></item>
<item><title>Sunday evening</title><link>https://e.org/d</link>
<dc:creator>Asami Terajima</dc:creator><pubDate>Sun, 25 Dec 2022 21:00:00 GMT</pubDate>
<description>z</description></item>
</channel></rss>"""


def collected(project: Project) -> Project:
    (project.root / "feed.xml").write_text(FEED)
    assert project.run("collect", "--feed", "feed.xml").exit_code == 0
    return project


def test_week_and_author_in_the_newsletter_zone(project: Project) -> None:
    collected(project)
    result = project.run(
        "articles", "list", "--author", "asami terajima", "--week", "2022-W51", "--json"
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["url"] for r in rows] == ["https://e.org/b", "https://e.org/d"]
    first = rows[0]
    assert first["published"] == "2022-12-19T00:30:00+02:00"
    assert first["authors"] == ["ASAMI TERAJIMA", "Martin Fornusek"]
    assert set(first) >= {
        "url",
        "title",
        "authors",
        "published",
        "summary",
        "image",
        "reading_minutes",
        "tags",
    }
    next_week = json.loads(project.run("articles", "list", "--week", "2022-W52", "--json").stdout)
    assert [r["url"] for r in next_week] == ["https://e.org/a"]
    assert next_week[0]["summary"] == "Summary & more" and next_week[0]["tags"] == ["War"]


def test_since_until_and_table_output(project: Project) -> None:
    collected(project)
    rows = json.loads(
        project.run(
            "articles", "list", "--since", "2022-12-21", "--until", "2022-12-25", "--json"
        ).stdout
    )
    assert [r["url"] for r in rows] == ["https://e.org/c", "https://e.org/d"]
    table = project.run("articles", "list", "--author", "Martin Fornusek")
    assert table.exit_code == 0 and "Monday in Kyiv" in table.stdout
    assert "Someone else" not in table.stdout
    empty = project.run("articles", "list", "--author", "Nobody", "--week", "2022-W51")
    assert empty.exit_code == 0 and "No articles by Nobody in 2022-W51" in empty.stderr


def test_bad_week_and_conflicting_options_exit_2(project: Project) -> None:
    for args in (
        ["--week", "2022-W99"],
        ["--week", "51"],
        ["--week", "2022-W51", "--since", "2022-12-01"],
    ):
        result = project.run("articles", "list", *args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_show_by_any_form_of_the_url(project: Project) -> None:
    collected(project)
    shown = project.run("articles", "show", "HTTPS://E.ORG/b?utm_source=mail", "--json")
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.stdout)
    assert detail["title"] == "Monday in Kyiv" and detail["source_kind"] == "feed"
    text = project.run("articles", "show", "https://e.org/b")
    assert "Monday in Kyiv" in text.stdout and "ASAMI TERAJIMA, Martin Fornusek" in text.stdout
    missing = project.run("articles", "show", "https://e.org/zzz")
    assert missing.exit_code == 2 and "no stored article at https://e.org/zzz" in missing.stderr
