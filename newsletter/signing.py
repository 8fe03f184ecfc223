"""Every signed token's signature, made and checked here once; each kind of token is data.

A signature is an HMAC-SHA256 under the newsletter's key over the token's parts joined by
NUL, the kind's name first: one key, and every kind signs in its own domain (a MAC made for
a counted link can never pass for a return address or an unsubscribe link, whatever the
rest of the parts). Two encodings, the kind's choice:

- `full`: the whole MAC in URL-safe base64 without padding (43 characters), for the links a
  person clicks (confirm, unsubscribe, manage); only its one canonical spelling verifies
  (base64's last character carries spare bits that decoding would ignore);
- `short`: 80 bits in lower-case base32 (16 characters), for the tokens that travel in
  addresses and in every counted link (VERP return paths, mailto: and Message-IDs; link and
  open tokens): short, and safe from MTAs that fold a local part to lower case.

A kind with a lifetime signs an expiry (milliseconds since the epoch) among its parts, so
the time a link was made is known from it. Comparisons are in constant time.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from newsletter.dates import utc_now

Encoding = Literal["full", "short"]
_SHORT_BYTES = 10
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Kind:
    """A kind of token: the domain its MACs are made in, how they are written, and how long
    a token lives (None: for ever, as an unsubscribe link in last year's issue must)."""

    name: str
    encoding: Encoding
    lifetime: timedelta | None = None

    def expiry(self, now: datetime | None = None) -> int:
        """The expiry a token made now carries: milliseconds since the epoch, 0 for never."""
        if self.lifetime is None:
            return 0
        return int(((now or datetime.now(UTC)) + self.lifetime).timestamp() * 1000)

    def issued(self, expiry: int) -> datetime | None:
        """When a token with this expiry was made."""
        if self.lifetime is None or not expiry:
            return None
        return datetime.fromtimestamp(expiry / 1000, UTC) - self.lifetime


# The links a person clicks (audience/tokens.py).
CONFIRM = Kind("confirm", "full", timedelta(days=7))
UNSUBSCRIBE = Kind("unsubscribe", "full")
# Every list of a person, mailed on request: short-lived, it shows more than a footer link.
MANAGE = Kind("manage", "full", timedelta(hours=24))
# Tokens in addresses and counted links (delivery/row_tokens.py, delivery/tracking.py).
RETURN = Kind("return", "short")
LINK = Kind("link", "short")
OPEN = Kind("open", "short")
# An approver's link to sign an issue off (editorial/signoff.py): its expiry is the request's
# (`[newsletter] approval_hours`), signed among its parts.
APPROVE = Kind("approve", "full")
KINDS = {kind.name: kind for kind in (CONFIRM, UNSUBSCRIBE, MANAGE, RETURN, LINK, OPEN, APPROVE)}


def sign(key: bytes, kind: Kind, *parts: object) -> str:
    """The token's signature, written in the kind's encoding."""
    message = kind.name + "\x00" + "\x00".join(map(str, parts))
    digest = hmac.digest(key, message.encode(), "sha256")  # one C call; hmac.new is several
    if kind.encoding == "short":
        return base64.b32encode(digest[:_SHORT_BYTES]).decode("ascii").lower()
    return b64(digest)


def verify(key: bytes, kind: Kind, given: str, *parts: object) -> bool:
    """Whether `given` is the signature of these parts, in its one canonical spelling."""
    return hmac.compare_digest(given.encode("ascii", "replace"), sign(key, kind, *parts).encode())


def same(made: str, given: str) -> bool:
    """A token remade from its parts against the one given, in constant time."""
    return hmac.compare_digest(made.encode(), given.encode("utf-8", "replace"))


def canonical_int(text: str, base: int = 10, limit: int = 2**53) -> int | None:
    """A number written the one way this code writes it (ASCII digits of `base`, lower
    case, no sign, space, underscore or leading zero, at most `limit`), or None: `int()`
    alone also reads `+12`, `012`, `1_2` and Arabic-Indic digits, each of which would be a
    second spelling of one signed token."""
    if not text or len(text) > 20 or not text.isascii():
        return None
    digits = _DIGITS[:base]
    if any(character not in digits for character in text):
        return None
    if len(text) > 1 and text[0] == "0":
        return None
    number = int(text, base)
    return number if number <= limit else None


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class RowToken:
    """A token naming one database row: `<row id base 36>.<expiry ms>.<MAC>`."""

    row_id: int
    expiry: int
    mac: str


def row_token(row_id: int, expiry: datetime, mac_of: Callable[[int], str]) -> str:
    """The token for a row that expires at `expiry`; `mac_of` signs the expiry (ms)."""
    ms = int(expiry.timestamp() * 1000)
    return f"{base36(row_id)}.{ms}.{mac_of(ms)}"


def read_row_token(token: str) -> RowToken | None:
    """A row token in its one spelling (`+12`, `012` or Arabic-Indic digits name no row),
    else None; its MAC and expiry are for the caller to check against the row."""
    parts = token.split(".")
    if len(token) > 200 or len(parts) != 3:
        return None
    row_id, expiry = canonical_int(parts[0], 36, 2**31 - 1), canonical_int(parts[1])
    if row_id is None or expiry is None:
        return None
    return RowToken(row_id, expiry, parts[2])


def expired(expires_at: datetime | None, expiry: int) -> bool:
    """Whether a row token's signed expiry is not the row's own, or has passed."""
    if expires_at is None or int(expires_at.timestamp() * 1000) != expiry:
        return True
    return utc_now().timestamp() * 1000 >= expiry


def base36(number: int) -> str:
    """Ids in tokens: short, and unchanged by an MTA that folds case."""
    if number < 0:
        raise ValueError("ids are not negative")
    digits = ""
    while True:
        number, rest = divmod(number, 36)
        digits = _DIGITS[rest] + digits
        if not number:
            return digits
