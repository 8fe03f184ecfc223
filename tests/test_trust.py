"""A "no" stays a no (issue 34): an erasure, a complaint and an unsubscribe are undone by
nobody but the person (the unsubscribe) or the operator (a complaint), never by a stranger's
form post and a mail scanner's GET; a lift restores exactly what its own suppression closed.
On both databases, over a real SMTP socket."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from newsletter.audience import lifecycle, subscribers
from newsletter.audience.tokens import load_key, make_token
from newsletter.dates import utc_now
from newsletter.db import Cursor
from newsletter.errors import UsageError
from newsletter.models import Subscription, Suppression
from newsletter.web import human
from newsletter.web.limits import Limits, RequestLimiter
from tests.conftest import Project
from tests.forms import confirm_form, press_confirm, served
from tests.sending import site_client
from tests.smtpserver import SMTPServer

ADDRESS = "maria@example.org"


@pytest.fixture
def client(project: Project, smtp_server: SMTPServer) -> Iterator[TestClient]:
    with site_client(
        project, smtp_server, Limits(RequestLimiter(100, 600), RequestLimiter(100, 3600))
    ) as test_client:
        yield test_client


def status(project: Project, email: str = ADDRESS, newsletter: str = "war-notes") -> str | None:
    with Session(project.engine()) as session:
        person = subscribers.find(session, email)
        found = person and subscribers.subscription_of(session, person, newsletter)
        return found.status if found else None


def reason(project: Project, email: str = ADDRESS) -> str | None:
    with Session(project.engine()) as session:
        found = session.get(Suppression, lifecycle.key_hash(email))
        return found.reason if found else None


def bounce(project: Project, email: str = ADDRESS) -> None:
    with Session(project.engine()) as session:
        person = subscribers.require(session, email)
        cursor = Cursor.of(session)
        lifecycle.bounce(cursor, person.email_key, person.id, cursor.stamp(utc_now()))
        session.commit()


def complain(project: Project, newsletter: str, email: str = ADDRESS) -> None:
    with Session(project.engine()) as session:
        person = subscribers.require(session, email)
        cursor = Cursor.of(session)
        now = cursor.stamp(utc_now())
        lifecycle.complain(cursor, person.email_key, person.id, newsletter, now)
        session.commit()


def add_pending(project: Project, email: str = ADDRESS) -> None:
    with Session(project.engine()) as session:
        subscribers.add(session, "war-notes", email, source="web", status="pending")
        session.commit()


def confirm_url(project: Project, email: str = ADDRESS) -> str:
    """A fresh confirmation link, as the form would mail one."""
    with Session(project.engine()) as session:
        token_id = subscribers.require(session, email).token_id
    key = load_key(project.config.signing_key_file)
    return f"/confirm/{make_token(key, 'confirm', 'war-notes', token_id)}"


def every_text(project: Project) -> str:
    """Every text value in every table: where an address could stay in clear."""
    engine = project.engine()
    found: list[str] = []
    with engine.connect() as connection:
        metadata = sa.MetaData()
        metadata.reflect(connection)
        for table in metadata.tables.values():
            for row in connection.execute(sa.select(table)).all():
                found.extend(str(value) for value in row if value is not None)
    return "\n".join(found)


def test_an_erasure_is_for_good_whatever_came_before(
    client: TestClient, project: Project, smtp_server: SMTPServer, tmp_path: object
) -> None:
    assert project.run("subscribers", "add", ADDRESS, "--name", "Maria").exit_code == 0
    bounce(project)
    lifted = project.run("subscribers", "unsuppress", ADDRESS, "--reason", "mailbox works")
    assert lifted.exit_code == 0, lifted.output
    bounce(project)  # bounced again, then erased
    assert project.run("subscribers", "remove", ADDRESS).exit_code == 0
    assert reason(project) == "erased"
    # No address in clear anywhere: not the suppression, not the lifts, not the ledger.
    assert ADDRESS not in every_text(project).lower()
    # Nothing lifts it: the operator's unsuppress, the form, an old list.
    refused = project.run("subscribers", "unsuppress", ADDRESS, "--reason", "they asked")
    assert refused.exit_code == 2 and "erasure" in refused.stderr
    answer = client.post("/subscribe", data={"served": served(client), "email": ADDRESS})
    assert answer.status_code == 200
    time.sleep(0.2)
    assert smtp_server.received == []  # no confirmation to an erased address
    old = tmp_path / "old.csv"  # type: ignore[operator]
    old.write_text(f"email\n{ADDRESS}\n")
    assert project.run("subscribers", "import", str(old)).exit_code in (0, 1)
    assert status(project) is None and reason(project) == "erased"


def test_the_form_never_mails_a_complainer_and_no_click_lifts_a_complaint(
    client: TestClient, project: Project, smtp_server: SMTPServer
) -> None:
    assert project.run("subscribers", "add", ADDRESS).exit_code == 0
    with Session(project.engine()) as session:
        subscribers.suppress(session, "other@example.org", "complained")  # by the operator
        session.commit()
    link = confirm_url(project)  # a link they still hold
    complain(project, "war-notes")
    for email in (ADDRESS, "other@example.org"):
        sent = client.post("/subscribe", data={"served": served(client), "email": email})
        assert sent.status_code == 200 and "Check your inbox" in sent.text
    time.sleep(0.2)
    assert smtp_server.received == []
    time.sleep(0.01)
    assert press_confirm(client, client, confirm_url(project)).status_code == 404
    assert press_confirm(client, client, link).status_code == 404
    assert status(project) == "complained" and reason(project) == "complained"
    assert smtp_server.received == []  # and no welcome


def test_a_strangers_form_and_a_scanners_get_bring_no_leaver_back(
    client: TestClient, project: Project, smtp_server: SMTPServer
) -> None:
    assert project.run("subscribers", "add", ADDRESS).exit_code == 0
    assert project.run("subscribers", "unsubscribe", ADDRESS).exit_code == 0
    time.sleep(0.01)
    assert (
        client.post("/subscribe", data={"served": served(client), "email": ADDRESS}).status_code
        == 200
    )
    (mail,) = smtp_server.received
    body = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = next(word for word in body.split() if "/confirm/" in word)
    link = link.removeprefix("https://news.example.org")
    for method in ("GET", "HEAD"):
        client.request(method, link, headers={"User-Agent": "Mimecast URL protect"})
    assert status(project) == "unsubscribed"
    # A bot posting the page's button without the page's stamp, or at once, does nothing.
    page = client.get(link)
    fresh = page.text.split('name="served" value="', 1)[1].split('"', 1)[0]
    assert client.post(link, data={}).status_code == 403
    assert client.post(link, data={"served": fresh}).status_code == 403
    assert client.post(link, data={"served": "0" + fresh}).status_code == 403
    elsewhere = {"Origin": "https://evil.example"}
    assert client.post(link, data=confirm_form(client, link), headers=elsewhere).status_code == 403
    assert status(project) == "unsubscribed" and len(smtp_server.received) == 1
    # The person's own press of the button, a moment after the page came, does.
    done = press_confirm(client, client, link)
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert status(project) == "active"


def test_the_confirmation_page_is_the_same_for_every_token(
    client: TestClient, project: Project
) -> None:
    add_pending(project)
    key = load_key(project.config.signing_key_file)
    with Session(project.engine()) as session:
        token_id = subscribers.require(session, ADDRESS).token_id
    valid = make_token(key, "confirm", "war-notes", token_id)
    expired = make_token(
        key, "confirm", "war-notes", token_id, now=datetime(2020, 1, 1, tzinfo=UTC)
    )
    tampered = valid[:-2] + ("AA" if not valid.endswith("AA") else "BB")
    pages = []
    for token in (valid, expired, tampered, "nonsense"):
        page = client.get(f"/confirm/{token}")
        assert page.status_code == 200
        stamp = page.text.split('name="served" value="', 1)[1].split('"', 1)[0]
        pages.append(page.text.replace(stamp, "STAMP"))
        assert client.head(f"/confirm/{token}").status_code in (200, 405)
    assert len(set(pages)) == 1
    assert status(project) == "pending"
    # The stamp is the page's own: one made for another token confirms nothing.
    other = confirm_form(client, f"/confirm/{expired}")
    assert client.post(f"/confirm/{valid}", data=other).status_code == 403
    assert status(project) == "pending"


def test_a_stamp_has_one_spelling_and_a_lifetime() -> None:
    key = b"k" * 32
    now = time.time()
    good = human.stamp(key, "confirm", "t", now=now - 5)
    assert human.stamped_in_time(key, "confirm", "t", good, 2, now=now)
    served_ms, mac = good.split(".")
    for bad in (f"+{served_ms}.{mac}", f"0{served_ms}.{mac}", f"{served_ms} .{mac}"):
        assert not human.stamped_in_time(key, "confirm", "t", bad, 2, now=now)
    assert not human.stamped_in_time(key, "confirm", "u", good, 2, now=now)
    assert not human.stamped_in_time(key, "confirm", "t", good, 10, now=now)  # too fast
    assert not human.stamped_in_time(key, "confirm", "t", good, 2, now=now + 2 * 86400)


def test_a_lift_restores_exactly_what_its_own_suppression_closed(project: Project) -> None:
    add_pending(project)
    bounce(project)
    assert status(project) == "bounced"
    assert project.run("subscribers", "unsuppress", ADDRESS, "--reason", "works").exit_code == 0
    # Never confirmed: it comes back pending, with no confirmation time made up.
    assert status(project) == "pending"
    with Session(project.engine()) as session:
        person = subscribers.require(session, ADDRESS)
        found = subscribers.subscription_of(session, person, "war-notes")
        assert found is not None and found.confirmed_at is None

    # A complaint on one list, lifted; a second on another list: lifting the second
    # reopens that list only, never the first's again closed one.
    other = "maria2@example.org"
    assert project.run("subscribers", "add", other).exit_code == 0
    with Session(project.engine()) as session:
        person = subscribers.require(session, other)
        assert person.id is not None
        session.add(Subscription(subscriber_id=person.id, newsletter="war-notes-uk",
                                 status="active", confirmed_at=utc_now()))  # fmt: skip
        session.commit()
    complain(project, "war-notes", other)
    assert project.run("subscribers", "unsuppress", other, "--reason", "misclick").exit_code == 0
    assert status(project, other) == "active"
    assert project.run("subscribers", "unsubscribe", other).exit_code == 0  # leaves war-notes
    time.sleep(0.01)
    complain(project, "war-notes-uk", other)
    assert project.run("subscribers", "unsuppress", other, "--reason", "again").exit_code == 0
    assert status(project, other, "war-notes-uk") == "active"
    assert status(project, other) == "unsubscribed"


def test_a_complaint_outranks_a_bounce_and_the_operator_alone_lifts_it(project: Project) -> None:
    assert project.run("subscribers", "add", ADDRESS).exit_code == 0
    bounce(project)
    complain(project, "war-notes")
    assert reason(project) == "complained"
    with Session(project.engine()) as session:
        person = subscribers.require(session, ADDRESS)
        later = datetime.now(UTC) + timedelta(seconds=5)
        assert not subscribers.confirm(session, person, "war-notes", later)
        with pytest.raises(UsageError):
            lifecycle.unsuppress(session, "nobody@example.org", by="x", why="y")
    assert reason(project) == "complained"
    with Session(project.engine()) as session:
        assert len(session.exec(select(Suppression)).all()) == 1


def test_every_kind_of_token_has_one_spelling() -> None:
    from newsletter.audience.tokens import read_token
    from newsletter.delivery import row_tokens, tracking

    key = b"k" * 32
    confirm = make_token(key, "confirm", "war-notes", "abcDEF123")
    subject, expiry, mac = confirm.split(".")
    arabic = expiry.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert read_token(key, "confirm", "war-notes", confirm) is not None
    for bad in (
        f"{subject}.0{expiry}.{mac}",
        f"{subject}.+{expiry}.{mac}",
        f"{subject}.{arabic}.{mac}",
    ):
        assert read_token(key, "confirm", "war-notes", bad) is None
    unsubscribe = make_token(key, "unsubscribe", "war-notes", "abcDEF123")
    assert read_token(key, "unsubscribe", "war-notes", unsubscribe) is not None
    assert read_token(key, "unsubscribe", "war-notes", unsubscribe.replace(".0.", ".00.")) is None

    token = row_tokens.make(key, "b", "war-notes", 12, 345)
    kind, issue, row, mac = token.split("-")
    assert row_tokens.read(key, "war-notes", token) is not None
    assert row_tokens.read(key, "war-notes", token.upper()) is not None  # MTAs fold case
    assert row_tokens.read(key, "war-notes", f"{kind}-0{issue}-{row}-{mac}") is None
    assert row_tokens.read(key, "war-notes", f"{kind}-{issue}-0{row}-{mac}") is None

    link = tracking.link_token(key, "war-notes", 12, 3)
    issue, index, mac = link.split("-")
    assert tracking.read_link_token(key, "war-notes", link) == (12, 3)
    for bad in (link.upper(), f"0{issue}-{index}-{mac}", f"{issue}-0{index}-{mac}"):
        assert tracking.read_link_token(key, "war-notes", bad) is None
    opened = tracking.open_token(key, "war-notes", 12)
    assert tracking.read_open_token(key, "war-notes", opened) == 12
    assert tracking.read_open_token(key, "war-notes", "0" + opened) is None
    assert tracking.read_open_token(key, "war-notes", opened.upper()) is None


def test_list_bombing_one_confirmation_a_day_and_no_strangers_words(
    project: Project, smtp_server: SMTPServer
) -> None:
    from newsletter.web.limits import default_limits

    limits = default_limits()
    limits.per_domain = RequestLimiter(3, 3600)
    with site_client(project, smtp_server, limits) as bot:
        bot.get("/subscribe")
        fresh = bot.get("/subscribe").text.split('name="served" value="', 1)[1].split('"')[0]
        # Without the page's stamp, or posted as soon as the page came: nothing is sent.
        assert bot.post("/subscribe", data={"email": "a@victim.example"}).status_code == 200
        answer = bot.post("/subscribe", data={"served": fresh, "email": "a@victim.example"})
        assert answer.status_code == 200 and "Check your inbox" in answer.text
        time.sleep(0.3)
        assert smtp_server.received == []
        # Three forms for one address, a name that is a link: one mail, with neither.
        for _ in range(3):
            form = {"served": served(bot), "email": "b@victim.example", "name": "bit.ly/win"}
            assert bot.post("/subscribe", data=form).status_code == 200
        time.sleep(0.3)
        (mail,) = smtp_server.received
        assert mail.message["To"] == "b@victim.example"
        assert "bit.ly" not in mail.data.decode("ascii", "replace")
        with Session(project.engine()) as session:
            assert subscribers.require(session, "b@victim.example").name is None
        # A domain's inboxes: at most the domain's limit, however many addresses.
        for n in range(5):
            bot.post("/subscribe", data={"served": served(bot), "email": f"c{n}@victim.example"})
        time.sleep(0.3)
        assert len(smtp_server.received) == 3  # b, then c0 and c1: the domain's three


def test_each_move_is_one_rule_whichever_path_makes_it(
    project: Project, client: TestClient
) -> None:
    """The operator's suppression and the one-click unsubscribe were written a second time
    for the ORM, with other rules: a complaint typed by the operator did not outrank a
    bounce, and an unsubscribe turned a complained subscription into a plain leaver."""
    with Session(project.engine()) as session:
        subscribers.add(session, "war-notes", ADDRESS)
        person = subscribers.require(session, ADDRESS)
        cursor = Cursor.of(session)
        lifecycle.bounce(cursor, person.email_key, person.id, cursor.stamp(utc_now()))
        session.commit()
        token_id = person.token_id
    assert reason(project) == "bounced"
    suppressed = project.run("subscribers", "suppress", ADDRESS, "--reason", "complained")
    assert suppressed.exit_code == 0, suppressed.output
    assert reason(project) == "complained"

    other = "olena@example.org"
    with Session(project.engine()) as session:
        subscribers.add(session, "war-notes", other)
        person = subscribers.require(session, other)
        cursor = Cursor.of(session)
        lifecycle.complain(
            cursor, person.email_key, person.id, "war-notes", cursor.stamp(utc_now())
        )
        session.commit()
        token_id = person.token_id
    token = make_token(
        load_key(project.config.signing_key_file), "unsubscribe", "war-notes", token_id
    )
    answer = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    assert status(project, other) == "complained"
