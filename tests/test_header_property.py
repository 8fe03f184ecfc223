"""Whatever text reaches a header (a subscriber's name, the subject, the newsletter's name,
the sender's display name), the message parses back with exactly the intended headers and
exactly one recipient: arbitrary Unicode, control characters, line breaks and RFC 2047
encoded words (which a client decodes) included."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from email.utils import formataddr, getaddresses
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.config import check_sender
from newsletter.delivery.message import build_message, issue_template
from newsletter.errors import ConfigError
from newsletter.untrusted import strip_controls
from tests.issues import make_config

# Characters that have broken mail before: CR, LF, NEL, the Unicode separators, quotes,
# angle brackets, commas, at signs, backslashes, and encoded-word delimiters.
_NASTY = "\r\n\x85\u2028\u2029\x00\x1b\t\"'<>,;:@\\=?()[] "


def _encoded_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8", "surrogatepass")).decode() + "?="


plain = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(_NASTY), max_size=120)
injection = st.sampled_from(
    ["\r\nBcc: evil@example.net", "\nX-Injected: yes", "\r\n\r\nbody", ", evil@example.net"]
)
hostile = st.one_of(
    plain,
    st.builds(lambda a, b: a + b, plain, injection),
    st.builds(lambda a, b: _encoded_word(a + b), plain, injection),
    st.builds(lambda a: _encoded_word(_encoded_word(a)), plain),
)

ISSUE_HEADERS = [
    "from", "subject", "date", "mime-version", "list-id", "list-unsubscribe-post",
    "auto-submitted", "precedence", "to", "message-id", "list-unsubscribe", "content-type",
]  # fmt: skip
CONFIRM_HEADERS = [
    "from", "to", "subject", "date", "message-id", "auto-submitted", "mime-version",
    "content-type",
]  # fmt: skip


def _check(raw: bytes, expected: list[str], to: str) -> None:
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in head.replace(b"\r\n", b"")
    message = message_from_bytes(raw, policy=default)
    assert sorted(key.lower() for key in message.keys()) == sorted(expected)
    assert not message.defects
    recipients = getaddresses([str(value) for value in message.get_all("To", [])])
    assert [address for _, address in recipients] == [to]
    for key in message.keys():
        value = str(message[key])
        assert "\r" not in value and "\n" not in value, (key, value)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=hostile, subject=hostile, newsletter=hostile, display=hostile)
def test_every_header_field_survives_hostile_text(
    tmp_path: Path, name: str, subject: str, newsletter: str, display: str
) -> None:
    sender = formataddr((strip_controls(display), "notes@example.org"))
    try:
        check_sender(sender)  # what loading newsletter.toml requires of it
    except ConfigError:
        sender = "War Notes <notes@example.org>"
    config = dataclasses.replace(
        make_config(tmp_path), name=newsletter.strip() or "N", sender=sender
    )
    template = issue_template(
        config,
        slug="2022-W51",
        subject=subject,
        html="<p>Hello %%first_name%%</p><a href='%%unsubscribe_url%%'>u</a>",
        text="Hello %%first_name%%\n%%unsubscribe_url%%\n",
        date=datetime(2022, 12, 26, tzinfo=UTC),
    )
    raw = template.render(
        email="olena@example.org",
        email_key="olena@example.org",
        name=name,
        unsubscribe_url="https://news.example.org/unsubscribe/t1.0.x",
        view_url="https://news.example.org/archive/2022-W51/",
    )
    _check(raw, ISSUE_HEADERS, "olena@example.org")
    confirmation = build_message(
        config,
        to="olena@bücher.de",
        to_name=name,
        subject=subject,
        text="t",
        html="<p>h</p>",
        message_id_parts=("c", "1"),
        headers={"Auto-Submitted": "auto-generated"},
    )
    _check(confirmation, CONFIRM_HEADERS, "olena@xn--bcher-kva.de")
