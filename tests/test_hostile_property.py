"""Generated and mutated returned mail through the whole reading path (parse, identify, the
policy, the database, filing) on SQLite and PostgreSQL: real bounces (the tests' corpus and
../shared/bounce-corpus) cut, spliced, sprinkled with NUL bytes, invalid UTF-8, control
characters and huge lines, and our own tokens quoted where a reader could have copied them.
A run never raises, never acts (nothing here carries proof), and never needs its fallback
for text the database would refuse."""

from __future__ import annotations

import logging
import mailbox
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from newsletter.audience.tokens import load_key
from newsletter.config import Config
from newsletter.delivery import row_tokens
from newsletter.feedback.process import process
from newsletter.models import Delivery, FeedbackReport, Subscription, Suppression
from tests.conftest import Project
from tests.smtpserver import Received

HERE = Path(__file__).resolve().parent / "bounces"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "bounce-corpus" / "messages"


def _corpus() -> list[bytes]:
    files = sorted((HERE / "own").glob("*")) + sorted((HERE / "flufl").glob("*"))
    if SHARED.is_dir():
        files += sorted(SHARED.glob("*"))[:120]
    return [path.read_bytes() for path in files if path.is_file() and path.suffix != ".txt"]


CORPUS = _corpus()
NASTY = [
    b"\x00", b"\xff\xfe", b"\xed\xa0\x80", b"\x1b]0;x\x07", b"\r", b"\n\n", b"=?utf-8?b?AA==?=",
    b"[link=https://e.example/]", b"\t" * 50, b"A" * 20_000, b"{" * 500, b"\xc0\x80",
]  # fmt: skip


@st.composite
def hostile_mail(draw: st.DrawFn) -> bytes:
    base = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(0, 6))):
        where = draw(st.integers(0, max(len(base) - 1, 0)))
        action = draw(st.sampled_from(["insert", "cut", "splice", "flip"]))
        if action == "insert":
            base[where:where] = draw(st.sampled_from(NASTY))
        elif action == "cut":
            del base[where : where + draw(st.integers(1, 400))]
        elif action == "splice":
            other = draw(st.sampled_from(CORPUS))
            start = draw(st.integers(0, max(len(other) - 1, 0)))
            base[where:where] = other[start : start + draw(st.integers(1, 2000))]
        else:
            base[where : where + 1] = bytes([draw(st.integers(0, 255))])
    return bytes(base)


@pytest.fixture
def quoted_tokens(sent: dict[str, Received], ready: Project) -> list[bytes]:
    """Our tokens as a reader could quote them from a body: a counted link's reader token
    and the footer's unsubscribe mark, for real ledger rows of the sent issue."""
    project = ready
    key = load_key(project.config.signing_key_file)
    return [
        b"https://news.example.org/c/1-0-aaaaaaaaaaaaaaaa?r="
        + row_tokens.make(key, "r", "war-notes", 1, 1).encode(),
        b"https://news.example.org/unsubscribe/x.0.y?m="
        + row_tokens.make(key, "u", "war-notes", 1, 2).encode(),
    ]


@pytest.fixture
def reading(ready: Project) -> Iterator[tuple[Config, Engine, bytes]]:
    config = ready.config
    engine = ready.engine()
    yield config, engine, load_key(config.signing_key_file)
    engine.dispose()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(messages=st.lists(hostile_mail(), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_hostile_mail_never_stops_a_run_acts_or_stores_what_a_database_refuses(
    reading: tuple[Config, Engine, bytes],
    quoted_tokens: list[bytes],
    tmp_path_factory: pytest.TempPathFactory,
    caplog: pytest.LogCaptureFixture,
    messages: list[bytes],
    seed: int,
) -> None:
    rng = random.Random(seed)
    if rng.random() < 0.5:  # a reader's tokens quoted in a body prove nothing
        messages = [m + b"\r\n" + rng.choice(quoted_tokens) + b"\r\n" for m in messages]
    folder = tmp_path_factory.mktemp("box") / "Maildir"
    box = mailbox.Maildir(folder, create=True)
    for data in messages:
        box.add(data)
    config, engine, key = reading
    before = _state(engine)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="newsletter.feedback.process"):
        report = process(config, engine, key, [str(folder)])
    assert report.messages == len(messages)
    assert set(report.actions) <= {"none", "unverified"}, report.actions
    assert not [r for r in caplog.records if "set aside" in r.getMessage()]
    assert list((folder / "new").iterdir()) == []  # every message filed
    assert _state(engine) == before
    with Session(engine) as session:
        for stored in session.exec(select(FeedbackReport)).all():
            for text in (stored.diagnostic, stored.recipient, stored.source, stored.status):
                assert text is None or (
                    "\x00" not in text and not re.search(r"[\ud800-\udfff]", text)
                )


def _state(engine: Engine) -> tuple[set[str], list[tuple[int, str]], list[tuple[int, str]]]:
    """What acting would change: suppressions, subscriptions, ledger rows."""
    with Session(engine) as session:
        return (
            {s.key_hash for s in session.exec(select(Suppression)).all()},
            sorted((s.subscriber_id, s.status) for s in session.exec(select(Subscription)).all()),
            sorted((d.id or 0, d.state) for d in session.exec(select(Delivery)).all()),
        )
