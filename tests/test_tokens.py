"""Signed links: valid ones round-trip; every kind of bad one reads as None."""

import hashlib
import hmac
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.audience.tokens import (
    Token,
    _b64,
    create_key_file,
    load_key,
    make_token,
    read_token,
)
from newsletter.errors import ConfigError
from newsletter.models import new_token_id

KEY = b"k" * 40
NOW = datetime(2022, 12, 26, 8, 0, tzinfo=UTC)


def test_round_trip_and_binding() -> None:
    token = make_token(KEY, "unsubscribe", "war-notes", "tA1b2C3")
    assert read_token(KEY, "unsubscribe", "war-notes", token) == Token("tA1b2C3")
    assert read_token(KEY, "confirm", "War Notes", token) is None  # another purpose
    assert read_token(KEY, "unsubscribe", "Other", token) is None  # another newsletter
    assert read_token(b"x" * 40, "unsubscribe", "war-notes", token) is None  # another key
    assert "@" not in token and token.startswith("tA1b2C3.0.")


def test_token_ids_are_random_and_never_read_as_row_ids() -> None:
    ids = {new_token_id() for _ in range(1000)}
    assert len(ids) == 1000 and not any(i.isdigit() for i in ids)
    with pytest.raises(ValueError):
        make_token(KEY, "unsubscribe", "N", "42")  # a row id: never made any more


def test_old_unsubscribe_links_naming_a_row_id_still_read_as_legacy() -> None:
    old = "42.0." + _b64(hmac.new(KEY, b"unsubscribe\x00N\x0042\x000", hashlib.sha256).digest())
    found = read_token(KEY, "unsubscribe", "N", old)
    assert found == Token("42") and found.legacy


def test_confirm_links_expire_after_a_week_and_unsubscribe_links_never() -> None:
    token = make_token(KEY, "confirm", "N", "t7", now=NOW)
    found = read_token(KEY, "confirm", "N", token, now=NOW + timedelta(days=6))
    assert found == Token("t7", NOW)  # when the link was made, to the millisecond
    assert read_token(KEY, "confirm", "N", token, now=NOW + timedelta(days=8)) is None
    forever = make_token(KEY, "unsubscribe", "N", "t7", now=NOW)
    assert read_token(KEY, "unsubscribe", "N", forever, now=NOW + timedelta(days=3650)) == Token(
        "t7"
    )


@pytest.mark.parametrize("digits", ["\u00b2", "\u0661", "\uff11", "１"])
def test_unicode_digits_are_not_digits(digits: str) -> None:
    assert read_token(KEY, "confirm", "N", f"{digits}.0.abc") is None
    assert read_token(KEY, "unsubscribe", "N", f"t1.{digits}.abc") is None


@given(st.integers(min_value=0), st.characters(codec="ascii"))
def test_any_change_to_a_token_invalidates_it(position: int, replacement: str) -> None:
    token = make_token(KEY, "unsubscribe", "N", "tXyZ12345")
    index = position % len(token)
    tampered = token[:index] + replacement + token[index + 1 :]
    if tampered != token:
        assert read_token(KEY, "unsubscribe", "N", tampered) is None


@pytest.mark.parametrize("junk", ["", ".", "..", "1.0.", "a.b.c", "1.0.!!!", "1" * 500, "1.0.=="])
def test_junk_reads_as_none(junk: str) -> None:
    assert read_token(KEY, "unsubscribe", "N", junk) is None


def test_key_file_is_private_ignored_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.key"
    assert create_key_file(path) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (tmp_path / ".gitignore").read_text() == "newsletter.key\n"
    first = path.read_text()
    assert create_key_file(path) is False and path.read_text() == first
    assert load_key(path, {}) == first.strip().encode()
    assert load_key(path, {"NEWSLETTER_SECRET_KEY": "e" * 40}) == b"e" * 40
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_key(path, {})
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY"):
        load_key(tmp_path / "missing.key", {})
    with pytest.raises(ConfigError, match="shorter than 32"):
        load_key(path, {"NEWSLETTER_SECRET_KEY": "short"})
