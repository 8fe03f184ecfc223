"""Hostile input against the real server, tokens, files and sources: one test per finding of
the audit (issue 11), each failing on the code before the fix."""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import os
import select
import selectors
import socket
import stat
import statistics
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default
from email.utils import getaddresses
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session

from newsletter.audience import subscribers
from newsletter.audience.tokens import _b64, load_key, make_token, signed_url
from newsletter.collect.fetch import fetch_url, make_client
from newsletter.config import CollectSettings
from newsletter.errors import SourceError
from newsletter.web.server import RedactTokens
from tests.conftest import Project
from tests.forms import confirm_form, press_confirm, served
from tests.liveweb import Live
from tests.smtpserver import SMTPServer

SECURITY_HEADERS = ("x-content-type-options", "content-security-policy", "x-frame-options")


def wait_for_mail(smtp_server: SMTPServer, count: int = 1) -> None:
    deadline = time.monotonic() + 10
    while len(smtp_server.received) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(smtp_server.received) >= count


def status_of(project: Project, email: str) -> str | None:
    with Session(project.engine()) as session:
        person = subscribers.find(session, email)
        subscription = subscribers.subscription_of(session, person, "war-notes") if person else None
        return subscription.status if subscription else None


def token_id_of(project: Project, email: str) -> str:
    with Session(project.engine()) as session:
        return subscribers.require(session, email).token_id


def subscribe(live: Live, email: str, name: str = "") -> httpx.Response:
    return httpx.post(
        f"{live.base}/subscribe",
        data={"served": served(live.project), "email": email, "name": name},
        timeout=10,
    )


# High 1: header and body injection through an RFC 2047 encoded name.
def test_an_encoded_word_name_adds_no_header_and_no_body(
    live: Live, smtp_server: SMTPServer
) -> None:
    payload = (
        "Bob\r\nReply-To: attacker@evil.example\r\nX-Injected: yes\r\n\r\n"
        "Your account is locked: http://phish.example/\r\n"
    )
    name = "=?utf-8?b?" + base64.b64encode(payload.encode()).decode() + "?="
    assert subscribe(live, "bob@example.org", name).status_code == 200
    wait_for_mail(smtp_server)
    raw = smtp_server.received[0].data
    message = message_from_bytes(raw, policy=default)
    names = {key.lower() for key in message.keys()}
    assert names == {
        "from", "to", "subject", "date", "message-id", "auto-submitted", "mime-version",
        "content-type",
    }  # fmt: skip
    assert getaddresses([str(message["To"])]) == [("", "bob@example.org")]
    assert b"phish.example" not in raw and b"attacker@" not in raw
    for kind in ("plain", "html"):
        part = message.get_body((kind,)).get_content()  # type: ignore[union-attr]
        assert "phish.example" not in part and "evil.example" not in part


# High 2: people who left are not brought back by a stranger's form plus an old list.
def test_a_form_post_and_an_old_csv_do_not_bring_back_someone_who_left(
    live: Live, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    project = live.project
    assert project.run("subscribers", "add", "x@example.org").exit_code == 0
    assert project.run("subscribers", "unsubscribe", "x@example.org").exit_code == 0
    assert subscribe(live, "x@example.org").status_code == 200
    wait_for_mail(smtp_server)
    assert status_of(project, "x@example.org") == "unsubscribed"
    old_list = tmp_path / "old.csv"
    old_list.write_text("email\nx@example.org\n")
    imported = project.run("subscribers", "import", str(old_list), "--json")
    assert json.loads(imported.stdout)["closed"] == 1
    assert project.run("subscribers", "add", "x@example.org").exit_code == 1
    assert status_of(project, "x@example.org") == "unsubscribed"
    # Their own click on the link they asked for is what brings them back.
    text = smtp_server.received[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = next(word for word in text.split() if "/confirm/" in word)
    assert press_confirm(httpx, live.project, link).status_code == 200
    assert status_of(project, "x@example.org") == "active"


def test_a_confirm_link_made_before_an_unsubscribe_cannot_undo_it(
    live: Live, smtp_server: SMTPServer
) -> None:
    project = live.project
    subscribe(live, "y@example.org")
    wait_for_mail(smtp_server)
    text = smtp_server.received[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = next(word for word in text.split() if "/confirm/" in word)
    assert press_confirm(httpx, live.project, link).status_code == 200
    time.sleep(0.01)
    assert project.run("subscribers", "unsubscribe", "y@example.org").exit_code == 0
    assert press_confirm(httpx, live.project, link).status_code == 404
    assert status_of(project, "y@example.org") == "unsubscribed"


def test_reopen_is_explicit_and_logged(project: Project, caplog: pytest.LogCaptureFixture) -> None:
    project.run("subscribers", "add", "z@example.org")
    project.run("subscribers", "unsubscribe", "z@example.org")
    with caplog.at_level(logging.WARNING, logger="newsletter.audience.subscribers"):
        result = project.run("subscribers", "add", "z@example.org", "--reopen")
    assert result.exit_code == 0 and "Reopened" in result.stdout
    assert status_of(project, "z@example.org") == "active"
    assert any("reopened z@example.org" in record.getMessage() for record in caplog.records)


# Medium 3: links bound to a row id acted on whoever got the id next.
def test_a_removed_persons_links_do_not_act_on_the_next_person(live: Live) -> None:
    project = live.project
    key = load_key(project.config.signing_key_file)
    project.run("subscribers", "add", "first@example.org")
    with Session(project.engine()) as session:
        first = subscribers.require(session, "first@example.org")
        first_id, first_token = first.id, first.token_id
    old = signed_url(live.base, key, "unsubscribe", "war-notes", first_token)
    legacy_mac = _b64(
        __import__("hmac")
        .new(key, f"unsubscribe\x00war-notes\x00{first_id}\x000".encode(), "sha256")
        .digest()
    )
    legacy = f"{live.base}/unsubscribe/{first_id}.0.{legacy_mac}"
    assert project.run("subscribers", "remove", "first@example.org").exit_code == 0
    project.run("subscribers", "add", "second@example.org")
    with Session(project.engine()) as session:
        second = subscribers.require(session, "second@example.org")
    if project.database_url.startswith("sqlite"):
        assert second.id == first_id  # SQLite reused the row id: the case that mattered
    body = {"List-Unsubscribe": "One-Click"}
    for link in (old, legacy):
        assert httpx.post(link, data=body, timeout=10).status_code == 404
    assert status_of(project, "second@example.org") == "active"


# Medium 4 and 5, Low (long names, folding): the confirmation's To is one address.
@pytest.mark.parametrize(
    ("email", "name", "wire"),
    [
        ("bob@example.org", "Bob, attacker@evil.example, " + "x" * 300, "bob@example.org"),
        ("bob2@example.org", 'Bob" <attacker@evil.example>, "', "bob2@example.org"),
        ("user@bücher.de", "Jürgen Müller-Lüdenscheidt " * 8, "user@xn--bcher-kva.de"),
    ],
)
def test_the_confirmation_goes_to_exactly_one_well_formed_address(
    live: Live, smtp_server: SMTPServer, email: str, name: str, wire: str
) -> None:
    assert subscribe(live, email, name).status_code == 200
    wait_for_mail(smtp_server)
    raw = smtp_server.received[0].data
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n") if not line.startswith(b" <"))
    assert b"=?utf-8?q?b" not in head.lower()  # no encoded word inside an address
    to = message_from_bytes(raw, policy=default)["To"]
    assert [address for _, address in getaddresses([str(to)])] == [wire]
    text = smtp_server.received[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    greeting = text.splitlines()[0]
    assert len(greeting) <= len("Hello ,") + 64 and "evil.example" not in greeting


# Medium 6: the answer's timing does not tell a new address from a subscribed one.
def test_subscribe_answers_new_and_known_addresses_in_the_same_time(
    live_unlimited: Live, smtp_server: SMTPServer
) -> None:
    """Medians of 20 interleaved requests each, within 3 ms (or half the faster). A leak
    (the work done before answering) is there every time; a busy machine's scheduling
    sometimes is not, so one of up to three rounds must agree (one round in about six
    failed on a loaded 2-core machine, before and after the sending core changed)."""
    live = live_unlimited
    for n in range(20):
        live.project.run("subscribers", "add", f"known{n}@example.org")
    rounds = []
    with httpx.Client(timeout=10) as client:
        client.get(f"{live.base}/subscribe")
        stamp = served(live.project)
        for attempt in range(3):
            timings: dict[str, list[float]] = {"new": [], "known": []}
            for n in range(20):
                for kind in ("new", "known"):
                    email = (
                        f"{kind}{n}@example.org"
                        if kind == "known"
                        else f"new{attempt}-{n}@example.org"
                    )
                    start = time.perf_counter()
                    answer = client.post(
                        f"{live.base}/subscribe", data={"served": stamp, "email": email}
                    )
                    timings[kind].append(time.perf_counter() - start)
                    assert answer.status_code == 200
                    time.sleep(0.03)  # let the background work finish between requests
            new, known = statistics.median(timings["new"]), statistics.median(timings["known"])
            rounds.append((new, known))
            if abs(new - known) < max(0.003, 0.5 * min(new, known)):
                return
    raise AssertionError(f"medians (new, known) in seconds, each round: {rounds}")


# Medium 7: a chunked body is cut off at the cap, not read whole.
def test_a_huge_chunked_body_is_refused_while_it_streams(live: Live) -> None:
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(
            b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        )
        chunk = b"a" * 65536
        framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        while sent < 64 * 1024 * 1024:
            try:
                sock.sendall(framed)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            if select.select([sock], [], [], 0)[0]:
                break
        sock.settimeout(5)
        try:
            answer = sock.recv(200)
        except (ConnectionResetError, TimeoutError):
            pass
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert sent < 8 * 1024 * 1024


# Medium 8: a server that drips a byte at a time cannot hold a fetch past its deadline.
@pytest.fixture
def dripping() -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n\r\n")
                for _ in range(100):  # at most 40 s, then it gives up by itself
                    if stop.is_set():
                        break
                    try:
                        conn.sendall(b"<")
                    except OSError:
                        break
                    time.sleep(0.4)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/feed.xml"
    stop.set()
    thread.join(timeout=5)
    listener.close()


def test_a_dripping_server_cannot_hold_a_fetch_past_its_timeout(dripping: str) -> None:
    settings = CollectSettings(timeout=2)
    start = time.monotonic()
    with make_client(settings) as client, pytest.raises(SourceError, match="within 2 s"):
        fetch_url(client, dripping, settings, None)
    assert time.monotonic() - start < 4


# Medium 9: files holding addresses are private whatever the umask.
def test_database_outbox_and_exports_are_private(collected: Project, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        project = collected
        (tmp_path / "list.csv").write_text("email\nolena@example.org\n")
        assert project.run("subscribers", "import", str(tmp_path / "list.csv")).exit_code == 0
        assert project.run("issue", "new", "--week", "2022-W51", "--author", "Asami Terajima")
        assert project.run("issue", "approve", "2022-W51").exit_code == 0
        sent = project.run("send", "2022-W51")
        assert sent.exit_code == 0, sent.output
        export = tmp_path / "export.csv"
        assert project.run("subscribers", "export", "--out", str(export)).exit_code == 0
        files = [export, *(project.root / "outbox").glob("*.eml")]
        assert len(files) == 2
        if project.database_url.startswith("sqlite"):
            database = Path(project.database_url.removeprefix("sqlite:///"))
            engine = project.engine()  # open: its -wal and -shm files exist meanwhile
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT count(*) FROM subscribers"))
                files += [database, *database.parent.glob(database.name + "-*")]
                assert len(files) >= 4
                for path in files:
                    assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        os.umask(old)


# Medium 10: formulas in column names, duplicate column names.
def test_formula_column_names_are_neutralised_and_duplicates_refused(
    project: Project, tmp_path: Path
) -> None:
    evil = tmp_path / "evil.csv"
    evil.write_text('email,"=HYPERLINK(""http://evil.example/x"",""click"")"\na@example.org,1\n')
    assert project.run("subscribers", "import", str(evil)).exit_code == 0
    out = project.run("subscribers", "export").stdout
    header = next(csv.reader(io.StringIO(out)))
    assert all(not cell.startswith(("=", "+", "-", "@")) for cell in header), header
    twice = tmp_path / "twice.csv"
    twice.write_text("email,name,Email,NAME\nb@example.org,B,c@example.org,C\n")
    result = project.run("subscribers", "import", str(twice))
    assert result.exit_code == 2 and "more than once" in result.stderr
    assert status_of(project, "b@example.org") is None


# Low: Unicode digits in a token; every error page carries the security headers.
def test_unicode_digits_in_a_token_get_a_404_with_the_headers(live: Live) -> None:
    for path in ("/confirm/%C2%B2.0.abc", "/unsubscribe/%C2%B2.0.abc", "/confirm/1.%C2%B2.x"):
        if path.startswith("/confirm/"):  # its GET is one button for every token
            form = confirm_form(live.project, path)
            answer = httpx.post(live.base + path, data=form, timeout=10)
        else:
            answer = httpx.get(live.base + path, timeout=10)
        assert answer.status_code == 404
        assert all(name in answer.headers for name in SECURITY_HEADERS)


def test_a_server_error_page_carries_the_headers_and_no_traceback(live: Live) -> None:
    project = live.project
    project.run("subscribers", "add", "e@example.org")
    key = load_key(project.config.signing_key_file)
    token = make_token(key, "confirm", "war-notes", token_id_of(project, "e@example.org"))
    engine = project.engine()
    with engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE subscriptions RENAME TO gone"))
    try:
        url = f"{live.base}/confirm/{token}"
        answer = httpx.post(url, data=confirm_form(project, url), timeout=10)
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE gone RENAME TO subscriptions"))
    assert answer.status_code == 500
    assert all(name in answer.headers for name in SECURITY_HEADERS)
    assert "Traceback" not in answer.text and "subscriptions" not in answer.text


# Low: invalid UTF-8 is refused, not stored lossily.
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"email=%FF%FEA%40example.org"),
        ("application/x-www-form-urlencoded", b"email=\xff\xfeA%40example.org"),
        (
            "multipart/form-data; boundary=XX",
            b'--XX\r\nContent-Disposition: form-data; name="email"\r\n\r\n'
            b"\xff\xfeA@example.org\r\n--XX--\r\n",
        ),
    ],
)
def test_invalid_utf8_in_a_form_is_refused(
    live: Live, smtp_server: SMTPServer, content_type: str, body: bytes
) -> None:
    answer = httpx.post(
        f"{live.base}/subscribe", content=body, headers={"Content-Type": content_type}, timeout=10
    )
    assert answer.status_code == 400
    time.sleep(0.2)
    assert smtp_server.received == []
    with Session(live.project.engine()) as session:
        assert subscribers.counts(session, "war-notes")["pending"] == 0


def test_multipart_utf8_fields_still_work(live: Live, smtp_server: SMTPServer) -> None:
    answer = httpx.post(
        f"{live.base}/subscribe",
        files={
            "served": (None, served(live.project)),
            "email": (None, "olena@example.org"),
            "name": (None, "Олена"),
        },
        timeout=10,
    )
    assert answer.status_code == 200
    wait_for_mail(smtp_server)
    assert status_of(live.project, "olena@example.org") == "pending"


# Low: a cp1251 feed labelled ISO-8859-1 is read as what it is.
def test_a_mislabelled_cp1251_feed_is_not_stored_as_mojibake(
    project: Project, tmp_path: Path
) -> None:
    title = "Зеленський: енергосистема України витримала ще одну ніч атак"
    feed = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<rss version="2.0"><channel>'
        "<title>Новини</title><link>https://example.org/</link><description>Стрічка</description>"
        f"<item><title>{title}</title><link>https://example.org/a</link>"
        "<description>Російські війська вночі атакували енергетичну інфраструктуру.</description>"
        "<author>news@example.org (Олена Коваль)</author>"
        "<pubDate>Tue, 20 Dec 2022 10:00:00 +0200</pubDate></item></channel></rss>"
    )
    path = tmp_path / "feed.rss"
    path.write_bytes(feed.encode("cp1251"))
    assert project.run("collect", "--feed", str(path)).exit_code == 0
    shown = project.run("articles", "show", "https://example.org/a", "--json")
    assert json.loads(shown.stdout)["title"] == title


# Low: a non-ASCII SMTP password is used (UTF-8), and never echoed: see test_tls.py.


# Low: uvicorn's access log carries no tokens.
def test_tokens_are_redacted_from_access_log_lines() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/unsubscribe/tAbC.0.SeCrEt?x=1", "1.1", 200), None,
    )  # fmt: skip
    RedactTokens().filter(record)
    line = record.getMessage()
    assert "SeCrEt" not in line and "tAbC" not in line and "/unsubscribe/[token]" in line


def test_slow_headers_are_cut_off_and_the_subscribe_page_keeps_answering(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client holding hundreds of connections with unfinished headers (slowloris): the
    page answers others meanwhile, its connections past its share are closed at once, and
    the rest when the header deadline passes (uvicorn alone kept them forever)."""
    from newsletter.web import server

    monkeypatch.setattr(server, "HEADER_SECONDS", 1.5)
    held = []
    for _ in range(300):
        connection = socket.create_connection(
            ("127.0.0.1", live.port), timeout=5, source_address=("127.0.0.2", 0)
        )
        connection.sendall(b"GET /subscribe HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        held.append(connection)
    try:
        started = time.monotonic()
        answer = httpx.get(f"{live.base}/subscribe", timeout=5)
        assert answer.status_code == 200 and time.monotonic() - started < 2
        # Every held connection is closed by the server (an empty read or a reset).
        deadline = time.monotonic() + server.HEADER_SECONDS + 3
        pending = set(held)
        with selectors.DefaultSelector() as selector:
            for connection in held:
                selector.register(connection, selectors.EVENT_READ)
            while pending and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=0.2):
                    connection = key.fileobj  # type: ignore[assignment]
                    try:
                        data = connection.recv(1024)
                    except ConnectionResetError:
                        data = b""
                    if data == b"" and connection in pending:
                        pending.discard(connection)
                        selector.unregister(connection)
        assert not pending, f"{len(pending)} of {len(held)} connections still open"
        assert httpx.get(f"{live.base}/subscribe", timeout=5).status_code == 200
    finally:
        for connection in held:
            connection.close()
