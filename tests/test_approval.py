"""`issue approve` freezes an issue; `archive build` publishes the approved ones."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from playwright.sync_api import Browser
from sqlmodel import Session, select

from newsletter.models import ApprovedIssue
from tests.conftest import Project


def issue_file(project: Project) -> Path:
    made = project.run("issue", "new", "--week", "2022-W51", "--author", "Asami Terajima", "--json")
    path = Path(json.loads(made.stdout)["path"])
    path.write_text(path.read_text() + "Dear readers.\n")
    return path


def rows(project: Project) -> list[ApprovedIssue]:
    with Session(project.engine()) as session:
        return list(session.exec(select(ApprovedIssue)).all())


def test_approve_freezes_the_rendered_issue_and_notices_later_edits(collected: Project) -> None:
    path = issue_file(collected)
    result = collected.run(
        "issue", "approve", "2022-W51", "--send-at", "2022-12-26T08:00", "--json"
    )
    assert result.exit_code == 0, result.output
    approved = json.loads(result.stdout)
    assert approved["send_at"] == "2022-12-26T06:00:00+00:00"  # 08:00 in Kyiv
    assert approved["replaced"] is False
    (row,) = rows(collected)
    assert row.subject == "War Notes: 19–25 December 2022"
    assert "%%unsubscribe_url%%" in row.html and "%%unsubscribe_url%%" in row.text
    assert row.content_hash == approved["content_hash"]

    listed = json.loads(collected.run("issue", "list", "--json").stdout)
    assert listed[0]["status"] == "approved"
    path.write_text(path.read_text().replace("Dear readers.", "Dear readers!"))
    listed = json.loads(collected.run("issue", "list", "--json").stdout)
    assert listed[0]["status"] == "edited since approval"

    again = collected.run("issue", "approve", "2022-W51", "--json")
    assert json.loads(again.stdout)["replaced"] is True
    assert json.loads(collected.run("issue", "list", "--json").stdout)[0]["status"] == "approved"
    assert len(rows(collected)) == 1 and rows(collected)[0].send_at is None


def test_an_issue_failing_its_checks_is_not_approved(collected: Project) -> None:
    path = issue_file(collected)
    path.write_text(path.read_text().replace("Dear readers.", "See [this](http://plain.example/)."))
    result = collected.run("issue", "approve", "2022-W51")
    assert result.exit_code == 1
    assert "check error(s), e.g. link http://plain.example/ is http:" in result.stderr
    assert rows(collected) == []
    bad = collected.run("issue", "approve", "2022-W51", "--send-at", "monday")
    assert bad.exit_code == 2 and "bad --send-at" in bad.stderr


def test_archive_site_pages_and_feed(collected: Project, browser: Browser) -> None:
    empty = collected.run("archive", "build", "--out", "site", "--json")
    assert json.loads(empty.stdout)["issues"] == []
    assert "No issues yet." in (collected.root / "site" / "index.html").read_text()

    issue_file(collected)
    assert (
        collected.run("issue", "approve", "2022-W51", "--send-at", "2022-12-26T08:00").exit_code
        == 0
    )
    built = json.loads(collected.run("archive", "build", "--out", "site", "--json").stdout)
    assert built["issues"] == ["2022-W51"]
    site = collected.root / "site"
    index = (site / "index.html").read_text()
    assert 'href="2022-W51/"' in index and "War Notes: 19–25 December 2022" in index
    assert "26 December 2022" in index
    page = (site / "2022-W51" / "index.html").read_text()
    assert "%%" not in page and "Front-line diary: three days in Bakhmut" in page
    feed = ET.fromstring((site / "feed.xml").read_bytes())
    (item,) = feed.findall("./channel/item")
    assert item.findtext("link") == "https://news.example.org/archive/2022-W51/"
    assert item.findtext("pubDate") == "Mon, 26 Dec 2022 06:00:00 +0000"
    assert not (collected.root / "site.building").exists()

    for path in (site / "index.html", site / "2022-W51" / "index.html"):
        tab = browser.new_page(viewport={"width": 375, "height": 800})
        tab.goto(path.as_uri())
        assert tab.evaluate("document.documentElement.lang") == "en"
        assert tab.evaluate("document.documentElement.scrollWidth") <= 375
        tab.screenshot(path=str(collected.root / f"{path.parent.name}-375.png"), full_page=True)
        tab.close()
