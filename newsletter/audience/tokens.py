"""Signed confirm, unsubscribe and manage links.

A token is `<token id>.<expiry>.<signature>`, the signature (newsletter/signing.py) an
HMAC-SHA256 in URL-safe base64 over the purpose, the newsletter, the subscriber's token id
and the expiry, keyed by the newsletter's secret. The token id is random and never reused
(a row id is: SQLite gives a deleted row's id to the next person), so an old link can only
ever act on the person it was made for, and it names no address. Unsubscribe links made
before token ids existed named the row id; they still work for the people who existed then
(`legacy_tokens`), and for nobody created since. Confirm links expire (a week), manage
links (every list of a person, mailed on request) in a day; unsubscribe links never do,
because they must keep working in last year's issue. Checking compares in constant time,
and every kind of bad token (tampered, truncated, expired, for another purpose or
newsletter) gives the same `None`, so an answer reveals nothing.

The secret comes from NEWSLETTER_SECRET_KEY, or from the key file `newsletter init` creates
(mode 0600, listed in .gitignore).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from newsletter import signing, site_urls
from newsletter.config import environment_value
from newsletter.errors import ConfigError

Purpose = Literal["confirm", "unsubscribe", "manage"]  # each a kind of newsletter.signing
MIN_KEY_BYTES = 32


def create_key_file(path: Path) -> bool:
    """Write a fresh random key with mode 0600; False when one exists (never overwritten:
    that would break every link already sent)."""
    if path.exists():
        return False
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    ignore = path.parent / ".gitignore"
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    if path.name not in lines:
        with ignore.open("a") as handle:
            handle.write(f"{path.name}\n")
    return True


def load_key(key_file: Path, environ: dict[str, str] | None = None) -> bytes:
    value = environment_value("NEWSLETTER_SECRET_KEY", environ)
    if value is None:
        try:
            mode = key_file.stat().st_mode
            value = key_file.read_text().strip()
        except FileNotFoundError:
            raise ConfigError(
                f"no signing key: set NEWSLETTER_SECRET_KEY or create {key_file} "
                "(newsletter init does)"
            ) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{key_file} is readable by others: chmod 600 {key_file}")
    key = value.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"the signing key is shorter than {MIN_KEY_BYTES} characters")
    return key


@dataclass(frozen=True)
class Token:
    """What a valid token proves: who (`subject`, a subscriber's token id, or for links
    made before migration 0007 their row id as digits) and, for a confirm link, when it
    was made."""

    subject: str
    issued_at: datetime | None = None

    @property
    def legacy(self) -> bool:
        return _ASCII_DIGITS.match(self.subject) is not None


_ASCII_DIGITS = re.compile(r"[0-9]{1,18}\Z")
_SUBJECT = re.compile(r"[A-Za-z0-9_-]{1,40}\Z")


_b64 = signing.b64


def make_token(
    key: bytes,
    purpose: Purpose,
    newsletter: str,
    token_id: str,
    *,
    now: datetime | None = None,
) -> str:
    """`<token id>.<expiry>.<signature>`. A confirm link's expiry is in milliseconds, so the
    moment it was made is known to the millisecond (a link made before the person last
    unsubscribed must not bring them back); an unsubscribe link's is 0, never."""
    if not _SUBJECT.match(token_id) or _ASCII_DIGITS.match(token_id):
        raise ValueError("a token names a subscriber's token id")
    kind = signing.KINDS[purpose]
    expires = kind.expiry(now)
    return f"{token_id}.{expires}.{signing.sign(key, kind, newsletter, token_id, expires)}"


def read_token(
    key: bytes, purpose: Purpose, newsletter: str, token: str, *, now: datetime | None = None
) -> Token | None:
    """What the token proves, or None for any token that is not valid now: tampered,
    truncated, expired, for another purpose or newsletter, or not even well-formed (only
    ASCII digits and URL-safe base64 are read, so `%C2%B2` is refused, not a crash)."""
    parts = token.split(".")
    if len(token) > 200 or len(parts) != 3:
        return None
    subject, expiry, signature = parts
    expires = signing.canonical_int(expiry)
    if not _SUBJECT.match(subject) or expires is None:
        return None
    if _ASCII_DIGITS.match(subject) and signing.canonical_int(subject) is None:
        return None  # a legacy row id, one spelling too
    kind = signing.KINDS[purpose]
    if not signing.verify(key, kind, signature, newsletter, subject, expires):
        return None
    if kind.lifetime is None:
        return None if expires else Token(subject)
    if _ASCII_DIGITS.match(subject):
        return None  # confirm links of the old format were short-lived; they are over
    moment = (now or datetime.now(UTC)).timestamp()
    if not expires or moment * 1000 > expires:
        return None
    return Token(subject, kind.issued(expires))


def signed_url(base_url: str, key: bytes, purpose: Purpose, newsletter: str, token_id: str) -> str:
    """The public confirm, unsubscribe or manage link for one subscriber (a manage token
    opens the preferences page, which then shows every list of theirs)."""
    token = make_token(key, purpose, newsletter, token_id)
    if purpose == "confirm":
        return site_urls.confirm(base_url, token)
    if purpose == "unsubscribe":
        return site_urls.unsubscribe(base_url, token)
    return site_urls.preferences(base_url, token)
