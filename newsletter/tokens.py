"""Signed confirm and unsubscribe links.

A token is `<subscriber id>.<expiry>.<signature>` in URL-safe base64: an HMAC-SHA256 over
the purpose, the newsletter, the subscriber id and the expiry, keyed by the newsletter's
secret. It names a row id, never an address. Confirm links expire (a week by default);
unsubscribe links never do, because they must keep working in last year's issue. Checking
compares in constant time, and every kind of bad token (tampered, truncated, expired, for
another purpose or newsletter) gives the same `None`, so an answer reveals nothing.

The secret comes from NEWSLETTER_SECRET_KEY, or from the key file `newsletter init` creates
(mode 0600, listed in .gitignore).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from newsletter.errors import ConfigError

Purpose = Literal["confirm", "unsubscribe"]
CONFIRM_LIFETIME = timedelta(days=7)
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
    env = os.environ if environ is None else environ
    value = env.get("NEWSLETTER_SECRET_KEY")
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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: Purpose, newsletter: str, subscriber_id: int, expires: int) -> bytes:
    message = f"{purpose}\x00{newsletter}\x00{subscriber_id}\x00{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()


def make_token(
    key: bytes,
    purpose: Purpose,
    newsletter: str,
    subscriber_id: int,
    *,
    now: datetime | None = None,
) -> str:
    expires = 0
    if purpose == "confirm":
        expires = int(((now or datetime.now(UTC)) + CONFIRM_LIFETIME).timestamp())
    mac = _mac(key, purpose, newsletter, subscriber_id, expires)
    return f"{subscriber_id}.{expires}.{_b64(mac)}"


def read_token(
    key: bytes, purpose: Purpose, newsletter: str, token: str, *, now: datetime | None = None
) -> int | None:
    """The subscriber id, or None for any token that is not valid now."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or len(token) > 200:
        return None
    subscriber_id, expires = int(parts[0]), int(parts[1])
    try:
        given = _unb64(parts[2])
    except (binascii.Error, ValueError):
        return None
    expected = _mac(key, purpose, newsletter, subscriber_id, expires)
    if not hmac.compare_digest(given, expected):
        return None
    if expires and (now or datetime.now(UTC)).timestamp() > expires:
        return None
    if purpose == "unsubscribe" and expires:
        return None
    return subscriber_id


def signed_url(
    base_url: str, key: bytes, purpose: Purpose, newsletter: str, subscriber_id: int
) -> str:
    """The public confirm or unsubscribe link for one subscriber."""
    return f"{base_url}/{purpose}/{make_token(key, purpose, newsletter, subscriber_id)}"
