"""Counted links and the report, on a real server: a sent issue's links redirect through
signed links and are counted exactly; HEADs, prefetches and scanners are not; tampering
gets 404; the report shows delivery, what came back and clicks per article, in the
terminal, as JSON and as a page checked in Chromium."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser
from sqlmodel import Session, select

from newsletter.models import ClickCount, IssueLink, ReaderClick
from tests.conftest import Project
from tests.liveweb import Live, start
from tests.sending import AUDIENCE, send
from tests.smtpserver import Received, SMTPServer

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari"}


def reader(n: int) -> dict[str, str]:
    """Another reader's browser: a click counts once per (link, client) within a window."""
    return {"User-Agent": f"{BROWSER['User-Agent']} reader/{n}"}


def configure(project: Project, **tracking: bool) -> None:
    text = project.config_file.read_text()
    for key, value in tracking.items():
        text = re.sub(rf"^{key} = (true|false)$", f"{key} = {str(value).lower()}", text,
                      flags=re.M)  # fmt: skip
    project.config_file.write_text(text)


def counted(item: Received) -> tuple[list[str], str, str]:
    """The redirect links of a received message, and its two parts."""
    html = item.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = item.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    links = list(dict.fromkeys(re.findall(r'href="(https://news\.example\.org/c/[^"]+)"', html)))
    return links, html, text


@pytest.fixture
def served(ready: Project, smtp_server: SMTPServer) -> Iterator[Live]:
    code, report = send(ready)
    assert code == 0 and report["sent"] == len(AUDIENCE)
    yield from start(ready, smtp_server, None)


def local(live: Live, link: str) -> str:
    return link.replace("https://news.example.org", live.base).replace("&amp;", "&")


def stored_links(project: Project) -> list[IssueLink]:
    with Session(project.engine()) as session:
        return list(session.exec(select(IssueLink).order_by(IssueLink.index)).all())


def test_links_go_through_signed_redirects_and_each_click_counts_once(
    served: Live, smtp_server: SMTPServer
) -> None:
    project = served.project
    links, html, text = counted(smtp_server.received[0])
    stored = stored_links(project)
    assert len(links) == len(stored) >= 5
    for link in stored:  # no article link goes out directly, in either part
        assert f'href="{link.url}"' not in html and link.url not in text
    assert all(link.startswith("https://news.example.org/c/") for link in links)
    assert "https://news.example.org/c/" in text
    # The same links in everyone's message (counts per issue and link, not per person).
    assert counted(smtp_server.received[5])[0] == links

    first = local(served, links[0])
    answer = httpx.get(first, headers=BROWSER, timeout=10)
    assert answer.status_code == 302 and answer.headers["location"] == stored[0].url
    for n in range(4):
        httpx.get(local(served, links[1]), headers=reader(n), timeout=10)
    # The same client again, however often: counted once.
    for _ in range(5):
        assert httpx.get(local(served, links[1]), headers=reader(0), timeout=10).status_code == 302
    # Not counted, but still redirected: HEAD, prefetch, scanners.
    assert httpx.head(first, headers=BROWSER, timeout=10).status_code == 302
    for name, value in (("Sec-Purpose", "prefetch"), ("Purpose", "prefetch"),
                        ("X-Purpose", "preview"), ("X-Moz", "prefetch")):  # fmt: skip
        prefetch = BROWSER | {name: value}
        assert httpx.get(first, headers=prefetch, timeout=10).status_code == 302
    for agent in ("Mozilla/5.0 (compatible; Barracuda Sentinel)", "Proofpoint URL Defense",
                  "Mimecast Link Scanner/2.0", "Slackbot-LinkExpanding 1.0",
                  "Mozilla/5.0 (compatible; bingbot/2.0)"):  # fmt: skip
        assert httpx.get(first, headers={"User-Agent": agent}, timeout=10).status_code == 302
    # Tampered or invented: 404, never a redirect anywhere.
    token = first.rsplit("/", 1)[1]
    tampered = first[:-1] + ("a" if token[-1] != "a" else "b")
    assert httpx.get(tampered, headers=BROWSER, timeout=10).status_code == 404
    issue, _, mac = token.split("-")
    invented = f"{served.base}/c/{issue}-zz-{mac}"
    assert httpx.get(invented, headers=BROWSER, timeout=10).status_code == 404

    result = project.run("report", "2022-W51", "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert [a["clicks"] for a in figures["articles"][:2]] == [1, 4]
    assert figures["clicks"] == 5 and figures["sent"] == len(AUDIENCE)
    # A click from a plain HTTP client (no User-Agent, curl) is somebody's click.
    httpx.get(local(served, links[2]), headers={"User-Agent": ""}, timeout=10)
    httpx.get(local(served, links[2]), headers={"User-Agent": "curl/8.5.0"}, timeout=10)
    again = json.loads(project.run("report", "2022-W51", "--json").stdout)
    assert again["articles"][2]["clicks"] == 2 and again["clicks"] == 7
    assert [a["url"] for a in figures["articles"]] == [link.url for link in stored]
    assert {"sent", "bounced", "complained", "unsubscribed", "articles"} <= set(figures)
    assert figures["articles"][1]["share"] == 0.8
    shown = project.run("report", "2022-W51")
    assert shown.exit_code == 0 and stored[1].title[:20] in shown.stdout


def test_counts_are_exact_under_concurrent_load(served: Live, smtp_server: SMTPServer) -> None:
    import concurrent.futures

    links = [local(served, link) for link in counted(smtp_server.received[0])[0][:3]]
    with httpx.Client(timeout=20) as client:

        def hit(n: int) -> int:
            return client.get(links[n % 3], headers=reader(n)).status_code

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(hit, range(300)))
    assert codes.count(302) == 300
    with Session(served.project.engine()) as session:
        total = sum(row.count for row in session.exec(select(ClickCount)).all())
    assert total == 300


def test_per_subscriber_clicks_are_opt_in_shown_and_erased(
    ready: Project, smtp_server: SMTPServer
) -> None:
    configure(ready, per_subscriber=True, opens=True)
    code, _ = send(ready)
    assert code == 0
    live_iter = start(ready, smtp_server, None)
    live = next(live_iter)
    try:
        item = next(i for i in smtp_server.received if i.recipients[0] == AUDIENCE[3])
        links, html, _ = counted(item)
        assert all("?r=r-" in link for link in links)
        assert httpx.get(local(live, links[0]), headers=BROWSER, timeout=10).status_code == 302
        # A tampered reader token drops only the per-person record, not the click.
        bad = local(live, links[1]).split("?r=")[0] + "?r=r-1-1-aaaaaaaaaaaaaaaa"
        assert httpx.get(bad, headers=BROWSER, timeout=10).status_code == 302
        pixel = re.search(r'<img src="(https://news\.example\.org/o/[^"]+)"', html)
        assert pixel is not None
        assert (
            httpx.get(local(live, pixel.group(1)), headers=BROWSER, timeout=10).content[:3]
            == b"GIF"
        )
        apple = {"User-Agent": "Mozilla/5.0"}
        assert httpx.get(local(live, pixel.group(1)), headers=apple, timeout=10).status_code == 200
    finally:
        next(live_iter, None)
    shown = json.loads(ready.run("subscribers", "show", AUDIENCE[3], "--json").stdout)
    assert [c["url"] for c in shown["clicks"]][:1] == [stored_links(ready)[0].url]
    figures = json.loads(ready.run("report", "2022-W51", "--json").stdout)
    assert figures["articles"][0]["readers"] == 1 and figures["clicks"] == 2
    assert figures["opens"]["machine"] == 1 and figures["opens"]["other"] == 1
    assert ready.run("subscribers", "remove", AUDIENCE[3]).exit_code == 0
    with Session(ready.engine()) as session:
        assert session.exec(select(ReaderClick)).all() == []
    after = json.loads(ready.run("report", "2022-W51", "--json").stdout)
    assert after["clicks"] == 2  # the aggregates survive the erasure


def test_with_clicks_off_links_go_straight_to_the_articles(
    ready: Project, smtp_server: SMTPServer
) -> None:
    configure(ready, clicks=False)
    assert send(ready)[0] == 0
    links, html, _ = counted(smtp_server.received[0])
    assert links == [] and "/c/" not in html and 'href="https://kyivindependent.com/' in html


def test_the_preview_and_archive_keep_direct_links(served: Live) -> None:
    project = served.project
    # (The server's base_url is http://127.0.0.1 here, which the checks flag: exit 1.)
    assert project.run("issue", "render", "2022-W51").exit_code in (0, 1)
    assert project.run("archive", "build").exit_code == 0
    pages = list((project.root / "build").rglob("*.html"))
    assert len(pages) >= 3 and any("kyivindependent.com" in p.read_text() for p in pages)
    assert all("/c/" not in page.read_text() for page in pages)


def test_the_html_report_is_one_self_contained_page_for_a_phone(
    served: Live, smtp_server: SMTPServer, browser: Browser, tmp_path: Path
) -> None:
    links = counted(smtp_server.received[0])[0]
    for n, link in enumerate(links[:4]):
        for m in range(n + 1):
            httpx.get(local(served, link), headers=reader(m), timeout=10)
    page_file = tmp_path / "report.html"
    result = served.project.run("report", "2022-W51", "--html", str(page_file))
    assert result.exit_code == 0, result.output
    text = page_file.read_text()
    assert "<script" not in text and "@import" not in text and "<svg" in text
    requests: list[str] = []
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.on("request", lambda request: requests.append(request.url))
    page.goto(page_file.as_uri())
    assert requests == [page_file.as_uri()]  # nothing fetched from anywhere
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.locator("svg").count() >= 2
    assert page.locator("table tbody tr").count() == len(stored_links(served.project))
    page.close()


def test_a_client_repeating_a_link_and_others_replaying_a_readers_token_count_once(
    ready: Project, smtp_server: SMTPServer
) -> None:
    configure(ready, per_subscriber=True)
    assert send(ready)[0] == 0
    live_iter = start(ready, smtp_server, None)
    live = next(live_iter)
    try:
        item = next(i for i in smtp_server.received if i.recipients[0] == AUDIENCE[2])
        link = local(live, counted(item)[0][0])
        for _ in range(300):  # one client, one link
            httpx.get(link, headers=BROWSER, timeout=10)
        for n in range(50):  # the reader's link forwarded to 50 other browsers
            httpx.get(link, headers=reader(n), timeout=10)
    finally:
        next(live_iter, None)
    with Session(ready.engine()) as session:
        total = sum(row.count for row in session.exec(select(ClickCount)).all())
        records = session.exec(select(ReaderClick)).all()
    assert total == 51  # BROWSER once, and each of the 50 others once
    assert len(records) == 1  # but the reader's own record once


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_with_no_clicks_the_chart_counts_from_zero_in_whole_numbers(
    ready: Project, tmp_path: Path
) -> None:
    """It drew an axis from -0.045 to 0.045."""
    assert send(ready)[0] == 0
    page_file = tmp_path / "report.html"
    result = ready.run("report", "2022-W51", "--html", str(page_file))
    assert result.exit_code == 0, result.output
    # matplotlib writes each tick label's text as a comment beside its glyphs.
    ticks = re.findall(r"<!-- ([^<>]{1,12}) -->", page_file.read_text())
    numbers = [t for t in ticks if re.fullmatch(r"[\u2212-]?[\d.]+", t)]
    assert numbers and all(re.fullmatch(r"\d+", t) for t in numbers), numbers
