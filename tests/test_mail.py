"""The per-recipient message bytes: pre-encoded base64 parts and the MIME they sit in."""

import base64
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from newsletter.delivery.message import EncodedPart, issue_template
from newsletter.editorial.render import PLACEHOLDERS, Template
from tests.issues import make_config

literal = st.text(alphabet=st.sampled_from(list("ab\n<é日🙂 %")), max_size=12)
names = st.sampled_from(list(PLACEHOLDERS))
value = st.text(alphabet=st.sampled_from(list("xé日🙂")), max_size=7)


@given(
    pieces=st.lists(st.tuples(literal, names), max_size=6),
    last=literal,
    values=st.fixed_dictionaries(dict.fromkeys(PLACEHOLDERS, value)),
)
def test_filling_the_encoded_parts_decodes_to_the_filled_text(
    pieces: list[tuple[str, str]], last: str, values: dict[str, str]
) -> None:
    """Whatever the literal lengths and the values' byte counts (1 to 4 bytes a character,
    so every alignment occurs), the result is one valid base64 body of the filled text."""
    source = "".join(f"{text}%%{name}%%" for text, name in pieces) + last
    template = Template.parse(source)
    encoded = EncodedPart.build(template).encode(values)
    lines = encoded.split(b"\r\n")
    assert lines[-1] == b"" and all(0 < len(line) <= 76 for line in lines[:-1])
    assert b"=" not in b"".join(lines[:-2])  # padding only at the very end
    expected = "".join(
        part if index % 2 == 0 else values[part] for index, part in enumerate(template.parts)
    )
    decoded = base64.b64decode(b"".join(lines), validate=True)
    assert decoded == expected.replace("\n", "\r\n").encode()


def test_a_filled_message_parses_with_the_email_package(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    html = "<p>" + "Слава Україні! " * 400 + "%%first_name%%</p><a href='%%unsubscribe_url%%'>u</a>"
    template = issue_template(
        config,
        slug="s",
        subject="Тема",
        html=html,
        text="Hello, %%first_name%%,\n" + "word " * 300 + "\nUnsubscribe: %%unsubscribe_url%%\n",
        date=datetime(2022, 12, 23, tzinfo=UTC),
    )
    data = template.render(
        email="olena@example.org",
        email_key="olena@example.org",
        name="Олена",
        unsubscribe_url="https://news.example.org/unsubscribe/t0k",
        view_url="https://news.example.org/archive/s/",
    )
    message = message_from_bytes(data, policy=policy.default)
    assert str(message["Subject"]) == "Тема" and str(message["To"]).startswith("Олена")
    # Base64 carries the canonical CRLF line ends (RFC 2045), which get_content keeps.
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    html_part = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert text.startswith("Hello, Олена,\n") and text.endswith("t0k\n")
    assert html_part.endswith("Олена</p><a href='https://news.example.org/unsubscribe/t0k'>u</a>")
    assert all(len(line) <= 78 for line in data.split(b"\r\n"))
