"""`newsletter collect` end to end, on SQLite and PostgreSQL, against files and a local
HTTP server."""

import json
from pathlib import Path

import pytest
from sqlmodel import Session, select

from newsletter.models import Article, FetchState
from tests.conftest import Project
from tests.webserver import Route, Server

FEED = """<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel><title>t</title><link>https://kyivindependent.com/</link>
<item><title>Shared story</title><link>https://kyivindependent.com/shared/?utm_source=rss</link>
<dc:creator>Asami Terajima</dc:creator><pubDate>Tue, 20 Dec 2022 10:00:00 GMT</pubDate>
<description>From the feed.</description></item>
<item><title>Feed only</title><link>https://kyivindependent.com/feed-only/</link>
<dc:creator>Illia Ponomarenko</dc:creator><pubDate>Wed, 21 Dec 2022 10:00:00 GMT</pubDate>
<description>Only here.</description></item>
</channel></rss>"""

PAGE = """<!doctype html><html><head>
<link rel="canonical" href="https://kyivindependent.com/shared/">
<meta property="og:url" content="https://kyivindependent.com/shared/?ref=og">
<script type="application/ld+json">{"@type": "NewsArticle", "headline": "Shared story",
 "datePublished": "2022-12-20T12:00:00+02:00",
 "author": {"@type": "Person", "name": "Asami Terajima"}}
</script></head><body><article>
<p>The full body of the shared story, long enough to be the readable part.</p>
<p>A second paragraph of the body that the feed did not carry at all.</p>
</article></body></html>"""


def write(project: Project, name: str, text: str | bytes) -> Path:
    path = project.root / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def stored(project: Project) -> list[Article]:
    with Session(project.engine()) as session:
        return list(session.exec(select(Article).order_by(Article.url)).all())


def reports(result_output: str) -> dict[str, dict[str, object]]:
    return {r["name"]: r for r in json.loads(result_output)["sources"]}


def test_same_article_in_feed_and_page_is_stored_once_and_the_page_body_kept(
    project: Project,
) -> None:
    write(project, "feed.xml", FEED)
    write(project, "shared.html", PAGE)
    project.add_sources(
        '[[sources]]\nname = "feed"\nkind = "feed"\nlocation = "feed.xml"\n'
        '[[sources]]\nname = "pages"\nkind = "page"\nlocation = "*.html"\n'
    )
    result = project.run("collect", "--json")
    assert result.exit_code == 0, result.output
    counts = reports(result.stdout)
    assert (counts["feed"]["new"], counts["pages"]["new"], counts["pages"]["updated"]) == (2, 0, 1)
    articles = stored(project)
    assert [a.url for a in articles] == [
        "https://kyivindependent.com/feed-only/",
        "https://kyivindependent.com/shared/",
    ]
    shared = articles[1]
    assert "second paragraph" in shared.body_html and shared.source_kind == "page"

    again = project.run("collect", "--json")
    counts = reports(again.stdout)
    assert counts["feed"]["unchanged"] == 2 and counts["pages"]["unchanged"] == 1
    assert counts["feed"]["updated"] == 0 and counts["pages"]["updated"] == 0
    assert len(stored(project)) == 2
    assert "second paragraph" in stored(project)[1].body_html


def test_a_broken_source_does_not_stop_the_others_and_exits_1(project: Project) -> None:
    write(project, "good.xml", FEED)
    write(project, "broken.xml", "<rss version='2.0'><channel><item><title>x</oops>")
    result = project.run(
        "collect", "--feed", "broken.xml", "--feed", "missing.xml", "--feed", "good.xml", "--json"
    )
    assert result.exit_code == 1
    by_name = {Path(str(name)).name: r for name, r in reports(result.stdout).items()}
    assert "malformed XML" in by_name["broken.xml"]["errors"][0]  # type: ignore[index]
    assert "no such file" in by_name["missing.xml"]["errors"][0]  # type: ignore[index]
    assert by_name["good.xml"]["new"] == 2
    assert len(stored(project)) == 2


def test_refetching_a_now_broken_feed_loses_nothing(project: Project) -> None:
    feed = write(project, "feed.xml", FEED)
    assert project.run("collect", "--feed", "feed.xml").exit_code == 0
    before = [(a.url, a.title, a.summary_html) for a in stored(project)]
    feed.write_text(FEED[: len(FEED) // 2])  # a truncated download
    result = project.run("collect", "--feed", "feed.xml")
    assert result.exit_code == 1
    assert "error:" in result.stderr and "feed.xml" in result.stderr
    assert "Traceback" not in result.output
    assert [(a.url, a.title, a.summary_html) for a in stored(project)] == before


def test_human_summary_and_text_source_from_flags(project: Project) -> None:
    seed = Path(__file__).parent.parent / "samples" / "texts" / "putin-negotiations.txt"
    result = project.run(
        "collect",
        "--text",
        str(seed),
        "--url",
        "https://kyivindependent.com/putin/",
        "--published",
        "2022-12-25T18:52:00+02:00",
    )
    assert result.exit_code == 0, result.output
    assert "putin-negotiations.txt" in result.stdout and "new" in result.stdout
    (article,) = stored(project)
    assert article.author_names == ["Asami Terajima"] and article.source_kind == "text"


def test_usage_errors_exit_2(project: Project) -> None:
    seed = "samples/texts/putin-negotiations.txt"
    cases = [
        (["collect", "--text", seed], "--url"),
        (
            ["collect", "--text", seed, "--url", "https://e.org/a", "--published", "soon"],
            "bad --published",
        ),
        (["collect", "nope"], "unknown source 'nope'"),
        (["collect"], "no sources"),
    ]
    for args, message in cases:
        result = project.run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and "Traceback" not in result.output


def test_conditional_get_uses_etag_and_last_modified(project: Project, web: Server) -> None:
    web.routes["/rss"] = Route(
        FEED.encode(),
        content_type="application/rss+xml",
        etag='"v1"',
        last_modified="Tue, 20 Dec 2022 10:00:00 GMT",
    )
    url = web.url("/rss")
    first = project.run("collect", "--feed", url, "--json")
    assert first.exit_code == 0, first.output
    assert reports(first.stdout)[url]["new"] == 2
    assert "newsletter/" in web.hits("/rss")[0]["user-agent"]

    second = project.run("collect", "--feed", url, "--json")
    assert reports(second.stdout)[url]["not_modified"] == 1
    headers = web.hits("/rss")[1]
    assert headers["if-none-match"] == '"v1"'
    assert headers["if-modified-since"] == "Tue, 20 Dec 2022 10:00:00 GMT"

    web.routes["/rss"] = Route(FEED.replace("From the feed.", "Edited.").encode(), etag='"v2"')
    third = project.run("collect", "--feed", url, "--json")
    assert reports(third.stdout)[url]["updated"] == 1
    with Session(project.engine()) as session:
        state = session.get(FetchState, url)
        assert state is not None and state.etag == '"v2"'


def test_http_errors_timeouts_and_size_cap_are_reported_per_source(
    project: Project, web: Server
) -> None:
    project.config_file.write_text(
        project.config_file.read_text()
        .replace("timeout = 20", "timeout = 0.5")
        .replace("max_bytes = 10000000", "max_bytes = 5000")
    )
    web.routes["/gone"] = Route(status=404)
    web.routes["/fail"] = Route(b"oops", status=503)
    web.routes["/slow"] = Route(FEED.encode(), delay=2)
    web.routes["/huge"] = Route(b"<rss>" + b" " * 10_000)
    web.routes["/page"] = Route(PAGE.encode())
    urls = [web.url(p) for p in ("/gone", "/fail", "/slow", "/huge")]
    args = ["collect", "--json", "--page", web.url("/page")]
    for url in urls:
        args += ["--feed", url]
    result = project.run(*args)
    assert result.exit_code == 1
    by_url = reports(result.stdout)
    assert "HTTP 404" in by_url[urls[0]]["errors"][0]  # type: ignore[index]
    assert "HTTP 503" in by_url[urls[1]]["errors"][0]  # type: ignore[index]
    assert "timeout" in by_url[urls[2]]["errors"][0]  # type: ignore[index]
    assert "5000-byte limit" in by_url[urls[3]]["errors"][0]  # type: ignore[index]
    assert by_url[web.url("/page")]["new"] == 1


def test_unreachable_server_is_a_clear_error(project: Project) -> None:
    result = project.run("collect", "--feed", "http://127.0.0.1:9/rss", "--json")
    assert result.exit_code == 1
    (report,) = json.loads(result.stdout)["sources"]
    assert "cannot connect" in report["errors"][0]


def test_trailing_slash_and_scheme_variants_across_sources_are_one_article(
    project: Project,
) -> None:
    write(
        project,
        "feed.xml",
        FEED.replace(
            "https://kyivindependent.com/shared/?utm_source=rss",
            "http://www.kyivindependent.com/shared",
        ),
    )
    write(project, "shared.html", PAGE)
    assert project.run("collect", "--feed", "feed.xml", "--page", "shared.html").exit_code == 0
    urls = [a.url for a in stored(project)]
    assert urls == ["https://kyivindependent.com/feed-only/", "https://kyivindependent.com/shared/"]
    shown = project.run("articles", "show", "http://kyivindependent.com/shared", "--json")
    assert json.loads(shown.stdout)["url"] == "https://kyivindependent.com/shared/"


def test_a_concurrent_insert_of_the_same_article_is_retried_as_an_update(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two collects storing the same new article at once: the loser of the unique key
    retries the document and finds the row (simulated: the first write collides once)."""
    from sqlalchemy.exc import IntegrityError

    from newsletter.collect import store

    write(project, "feed.xml", FEED)
    real_store = store.store
    collided: list[bool] = []

    def store_once_colliding(session, data, source):  # type: ignore[no-untyped-def]
        if not collided:
            collided.append(True)
            raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
        return real_store(session, data, source)

    monkeypatch.setattr(store, "store", store_once_colliding)
    result = project.run("collect", "--feed", "feed.xml", "--json")
    assert result.exit_code == 0, result.output
    assert reports(result.stdout)[str(project.root / "feed.xml")]["new"] == 2
    assert len(stored(project)) == 2
