"""Addresses that bring mail back to us, and the signed tokens in them.

With `[delivery] bounce_address = "bounces@news.example.org"`, each message's envelope
sender is `bounces+b-<issue>-<row>-<mac>@news.example.org` (VERP): a bounce comes back to
an address that names the ledger row it is about, even when the reporting server names a
forwarded or rewritten recipient, or none. `List-Unsubscribe` gains
`<mailto:bounces+u-<issue>-<row>-<mac>@...>` beside the https link, and every issue's
Message-ID is `<m-<issue>-<row>-<mac>@domain>`, which complaints keep when they redact
the recipient. The MAC (newsletter/signing.py, kind `return`) is an HMAC-SHA256 with the
newsletter's key over the kind, the newsletter, the issue and the row, cut to 80 bits in
lowercase base32: short
(an address stays far under the 64-character limit on local parts that some MTAs
enforce), case-insensitive (some MTAs fold local parts to lower case) and, for anyone
without the key, unforgeable. A token names a row and proves nothing else: what it may
do depends on where it was found (feedback/identify.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from newsletter import signing

RowTokenKind = Literal["b", "u", "m", "r"]
# r: the reader of a counted link or open (tracking.py), with per-subscriber tracking only.
KINDS: dict[RowTokenKind, str] = {"b": "bounce", "u": "unsubscribe", "m": "message", "r": "reader"}
# kind - issue - row - mac; bounded lengths so a hostile text costs nothing to scan.
TOKEN = re.compile(
    rb"(?<![0-9a-z])([bumr])-([0-9a-z]{1,12})-([0-9a-z]{1,12})-([a-z2-7]{16})(?![0-9a-z])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RowToken:
    """A valid token: which message (issue and ledger row), made for what."""

    kind: RowTokenKind
    issue_id: int
    delivery_id: int


def _mac(key: bytes, kind: RowTokenKind, newsletter: str, issue_id: int, delivery_id: int) -> str:
    return signing.sign(key, signing.RETURN, kind, newsletter, issue_id, delivery_id)


def make(key: bytes, kind: RowTokenKind, newsletter: str, issue_id: int, delivery_id: int) -> str:
    """`<kind>-<issue>-<row>-<mac>`: at most 43 characters, 20 for small ids."""
    mac = _mac(key, kind, newsletter, issue_id, delivery_id)
    return f"{kind}-{signing.base36(issue_id)}-{signing.base36(delivery_id)}-{mac}"


def read(key: bytes, newsletter: str, token: str | bytes) -> RowToken | None:
    """The row a token names, or None when it is not one of ours: malformed, tampered,
    or made with another key or for another newsletter."""
    raw = token.encode("ascii", "replace") if isinstance(token, str) else token
    match = TOKEN.fullmatch(raw)
    return _checked(key, newsletter, match) if match else None


def find(key: bytes, newsletter: str, text: bytes) -> list[RowToken]:
    """Every valid token in a text, in order, each once; invalid ones are ignored."""
    found: list[RowToken] = []
    for match in TOKEN.finditer(text):
        token = _checked(key, newsletter, match)
        if token is not None and token not in found:
            found.append(token)
    return found


def _checked(key: bytes, newsletter: str, match: re.Match[bytes]) -> RowToken | None:
    kind, issue, row, given = (part.decode("ascii").lower() for part in match.groups())
    # Case is folded (MTAs fold local parts), but a leading zero is a second spelling.
    issue_id, delivery_id = signing.canonical_int(issue, 36), signing.canonical_int(row, 36)
    if issue_id is None or delivery_id is None:
        return None
    if not signing.verify(key, signing.RETURN, given, kind, newsletter, issue_id, delivery_id):
        return None
    return RowToken(kind, issue_id, delivery_id)  # type: ignore[arg-type]


def address(bounce_address: str, token: str) -> str:
    """`bounces@d` and a token: `bounces+<token>@d` (the MTA delivers `bounces+*` to the
    `bounces` mailbox: Postfix's recipient_delimiter = +, Exim's local_part_suffix)."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{token}@{domain}"


@dataclass(frozen=True)
class ReturnAddresses:
    """One issue's per-recipient return addresses: what `build` puts in each message."""

    key: bytes
    newsletter: str
    issue_id: int
    domain: str  # the sender's, for Message-IDs
    default_sender: str  # the envelope sender without a bounce address
    bounce_address: str | None = None

    def envelope_from(self, delivery_id: int) -> str:
        if self.bounce_address is None:
            return self.default_sender
        return address(self.bounce_address, self._token("b", delivery_id))

    def unsubscribe_mark(self, delivery_id: int) -> str:
        """The row's `u-` token: added to the https unsubscribe link (which message it came
        in), and the local part of the mailto: address (`mailto`)."""
        return self._token("u", delivery_id)

    def mailto(self, mark: str) -> str | None:
        """The List-Unsubscribe mailto: address for a row's `unsubscribe_mark` (made once
        per recipient, for both links), with a subject for clients that need one."""
        if self.bounce_address is None:
            return None
        return f"mailto:{address(self.bounce_address, mark)}?subject=unsubscribe"

    def message_id(self, delivery_id: int) -> str:
        return f"<{self._token('m', delivery_id)}@{self.domain}>"

    def reader(self, delivery_id: int) -> str:
        return self._token("r", delivery_id)

    def _token(self, kind: RowTokenKind, delivery_id: int) -> str:
        return make(self.key, kind, self.newsletter, self.issue_id, delivery_id)
