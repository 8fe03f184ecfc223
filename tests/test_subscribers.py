"""Subscriber rules: normalisation, statuses, suppression, erasure; on both databases."""

import json
from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from newsletter.audience import lifecycle, subscribers
from newsletter.audience.subscribers import clean_name, parse_address
from newsletter.db import Cursor
from newsletter.errors import InvalidAddress
from newsletter.models import Subscriber, Suppression
from tests.conftest import Project


def test_addresses_are_one_person_whatever_the_case_and_domain_form() -> None:
    assert parse_address(" JOHN@Example.COM ").key == "john@example.com"
    assert parse_address("John@EXAMPLE.com").email == "John@EXAMPLE.com"  # as given
    assert parse_address("anna@Bücher.de").key == "anna@xn--bcher-kva.de"
    assert parse_address("anna@xn--bcher-kva.de").key == parse_address("Anna@bücher.DE").key


@pytest.mark.parametrize(
    "bad",
    ["", "plain", "a@b", "x@@example.org", "a\r\nbcc: x@y.org", "a%0d%0abcc@example.org",
     "a@exam\nple.org", "a" * 250 + "@example.org"],
)  # fmt: skip
def test_invalid_addresses_are_refused(bad: str) -> None:
    with pytest.raises(InvalidAddress):
        parse_address(bad)


def test_names_lose_line_breaks_raw_or_encoded() -> None:
    assert clean_name("Ann\r\nBcc: evil@x.org") == "Ann Bcc: evil@x.org"
    assert clean_name("Ann%0D%0ABcc: evil") == "Ann Bcc: evil"
    assert clean_name("  Olena \u2028 K. ") == "Olena K."
    assert clean_name("\r\n") is None


def test_add_merge_and_closed_subscriptions(project: Project) -> None:
    with Session(project.engine()) as session:
        assert subscribers.add(session, "war-notes", "olena@example.org", name="Olena") == "added"
        assert subscribers.add(session, "war-notes", "OLENA@example.org") == "unchanged"
        assert subscribers.add(session, "war-notes", "olena@example.org", name="O. K.") == "updated"
        assert subscribers.add(session, "Other", "olena@example.org") == "added"  # 2nd newsletter
        person = subscribers.require(session, "olena@EXAMPLE.org")
        assert person.id is not None and person.name == "O. K."
        assert subscribers.unsubscribe(session, person.id, "war-notes") is True
        assert subscribers.unsubscribe(session, person.id, "war-notes") is False  # idempotent
        assert subscribers.add(session, "war-notes", "olena@example.org") == "closed"
        assert subscribers.counts(session, "war-notes")["unsubscribed"] == 1
        assert subscribers.counts(session, "Other")["active"] == 1
        session.commit()


def test_erasure_keeps_only_a_hash_and_blocks_imports(project: Project) -> None:
    assert project.run("subscribers", "add", "olena@example.org", "--name", "Olena").exit_code == 0
    result = project.run("subscribers", "remove", "Olena@Example.org")
    assert result.exit_code == 0, result.output
    with Session(project.engine()) as session:
        assert session.exec(select(Subscriber)).all() == []
        (entry,) = session.exec(select(Suppression)).all()
        assert entry.email is None and entry.reason == "erased"
        assert "olena" not in entry.key_hash
    again = project.run("subscribers", "add", "olena@example.org")
    assert again.exit_code == 1 and "is suppressed" in again.stdout
    (project.root / "list.csv").write_text("email\nOLENA@example.org\n")
    imported = json.loads(project.run("subscribers", "import", "list.csv", "--json").stdout)
    assert imported["suppressed"] == 1 and imported["imported"] == 0


def test_cli_list_count_show_unsubscribe(project: Project) -> None:
    for email in ("a@example.org", "b@example.org"):
        assert project.run("subscribers", "add", email).exit_code == 0
    assert project.run("subscribers", "unsubscribe", "b@example.org").exit_code == 0
    active = json.loads(project.run("subscribers", "list", "--status", "active", "--json").stdout)
    assert [row["email"] for row in active] == ["a@example.org"]
    assert json.loads(project.run("subscribers", "count", "--json").stdout) == {
        "pending": 0, "active": 1, "unsubscribed": 1, "bounced": 0, "complained": 0,
    }  # fmt: skip
    shown = json.loads(project.run("subscribers", "show", "A@example.org", "--json").stdout)
    assert shown["status"] == "active"
    assert shown["unsubscribe_url"].startswith("https://news.example.org/unsubscribe/")
    assert "a@example.org" not in shown["unsubscribe_url"]
    bad = project.run("subscribers", "list", "--status", "gone")
    assert bad.exit_code == 2 and "unknown status 'gone'" in bad.stderr
    missing = project.run("subscribers", "show", "nobody@example.org")
    assert missing.exit_code == 2 and "no subscriber nobody@example.org" in missing.stderr


def test_renaming_the_newsletter_keeps_subscribers_and_sent_links(project: Project) -> None:
    assert 'id = "war-notes"' in project.config_file.read_text()
    assert project.run("subscribers", "add", "olena@example.org").exit_code == 0
    link = json.loads(project.run("subscribers", "show", "olena@example.org", "--json").stdout)[
        "unsubscribe_url"
    ]
    project.config_file.write_text(
        project.config_file.read_text().replace('name = "War Notes"', 'name = "Ukraine Weekly"')
    )
    assert project.config.name == "Ukraine Weekly" and project.config.newsletter_id == "war-notes"
    counts = json.loads(project.run("subscribers", "count", "--json").stdout)
    assert counts["active"] == 1
    again = json.loads(project.run("subscribers", "show", "olena@example.org", "--json").stdout)
    assert again["unsubscribe_url"] == link and again["status"] == "active"


def test_an_operator_lifts_a_wrong_bounce_or_complaint_but_never_an_erasure(
    project: Project,
) -> None:
    with Session(project.engine()) as session:
        subscribers.add(session, "war-notes", "olena@example.org")
        subscribers.add(session, "kyiv-daily", "olena@example.org")
        subscribers.add(session, "war-notes", "taras@example.org")
        session.commit()
        olena = subscribers.require(session, "olena@example.org")
        cursor = Cursor.of(session)
        lifecycle.bounce(cursor, olena.email_key, olena.id, cursor.stamp(datetime.now(UTC)))
        subscribers.suppress(session, "taras@example.org", "manual")
        session.commit()
    assert (
        project.run("subscribers", "unsuppress", "olena@example.org").exit_code == 2
    )  # no --reason
    lifted = project.run(
        "subscribers", "unsuppress", "Olena@Example.org", "--reason", "she wrote: it works",
        "--as", "Olha Koval",
    )  # fmt: skip
    assert lifted.exit_code == 0, lifted.output
    shown = json.loads(project.run("subscribers", "show", "olena@example.org", "--json").stdout)
    assert shown["suppressed"] is None and shown["status"] == "active"
    assert {s["status"] for s in shown["subscriptions"]} == {"active"}  # every list it closed
    (lift,) = shown["suppression_lifts"]
    assert lift["reason"] == "bounced" and lift["by"] == "Olha Koval"
    assert lift["why"] == "she wrote: it works"
    text = project.run("subscribers", "show", "olena@example.org").stdout
    assert "she wrote: it works" in text
    manual = project.run("subscribers", "unsuppress", "taras@example.org", "--reason", "x")
    assert manual.exit_code == 2 and "'manual'" in manual.stderr
    assert project.run("subscribers", "add", "ivan@example.org").exit_code == 0
    assert project.run("subscribers", "remove", "ivan@example.org").exit_code == 0
    erased = project.run("subscribers", "unsuppress", "ivan@example.org", "--reason", "x")
    assert erased.exit_code == 2 and "erasure" in erased.stderr
    again = project.run("subscribers", "unsuppress", "olena@example.org", "--reason", "x")
    assert again.exit_code == 2 and "not suppressed" in again.stderr
