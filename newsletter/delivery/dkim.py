"""DKIM signatures (RFC 6376), relaxed/relaxed, with RSA-SHA256 and optionally a second one
with Ed25519-SHA256 (RFC 8463), signed through OpenSSL (the `cryptography` package).

dkimpy, the reference implementation, signs with pure-Python RSA: about 6.4 ms a message,
which held a signed send to 134 msg/s; OpenSSL signs RSA-2048 in about 0.2 ms here. dkimpy
stays in the tests as the independent verifier of every signature made here.

Per message only the body hash, the per-recipient header lines and the signature are
computed: the canonical form of the shared header lines is made once per issue. Our bodies
are base64 lines and MIME headers without trailing or repeated white space, so their relaxed
canonical form is the body itself; that is checked, and a body that needs the work gets it.

The signature covers From, To, Subject, Date, Message-ID, MIME-Version, Content-Type, List-Id,
both List-Unsubscribe headers, Feedback-ID, Precedence and Auto-Submitted where present, and
oversigns From, Subject, Content-Type, both List-Unsubscribe headers and Feedback-ID: each is
listed once more than it occurs, so a header of that name added on the way (a second
List-Unsubscribe pointing elsewhere, say) breaks the signature.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from newsletter.errors import ConfigError

SIGNED = (
    "from",
    "reply-to",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
    "precedence",
    "auto-submitted",
)
OVERSIGNED = (
    "from",
    "reply-to",
    "subject",
    "content-type",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
)
_WSP = re.compile(rb"[ \t]+")
_TRAILING_WSP = re.compile(rb"[ \t]+\r\n")


def relaxed_header(field: bytes) -> bytes:
    """RFC 6376 3.4.2: the name lowercased, the value unfolded, runs of white space one
    space, none at either end or around the colon."""
    name, _, value = field.partition(b":")
    value = _WSP.sub(b" ", value.replace(b"\r\n", b"")).strip(b" \t")
    return name.strip(b" \t").lower() + b":" + value + b"\r\n"


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4: white space at line ends removed, runs of it one space, empty lines
    at the end removed (an empty body stays empty)."""
    if _needs_work(body):
        body = _TRAILING_WSP.sub(b"\r\n", _WSP.sub(b" ", body))
    body = body.rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def _needs_work(body: bytes) -> bool:
    """Whether the body has a tab, or a space before a line end or another space. Searched
    byte by byte (memchr): `b"  " in body` took 47 µs over a 67 KB body without one, the
    single spaces (a few, in the parts' headers) take a microsecond."""
    if b"\t" in body:
        return True
    at = body.find(b" ")
    while at != -1:
        if body[at + 1 : at + 2] in (b" ", b"\r", b""):
            return True
        at = body.find(b" ", at + 1)
    return False


def header_fields(head: bytes) -> list[bytes]:
    """The header block's fields, each with its folded continuation lines and final CRLF."""
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return [field + b"\r\n" for field in fields]


@dataclass(frozen=True)
class Key:
    """One signing key: its selector, algorithm tag and the key itself."""

    selector: str
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

    @property
    def algorithm(self) -> str:
        return "rsa-sha256" if isinstance(self.private, rsa.RSAPrivateKey) else "ed25519-sha256"

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private, rsa.RSAPrivateKey):
            return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        # RFC 8463: Ed25519 (PureEdDSA) over the SHA-256 hash of the signed data.
        return self.private.sign(hashlib.sha256(data).digest())


def load_key(selector: str, path: Path, *, ed25519_key: bool = False) -> Key:
    """A PEM private key (PKCS#1 or PKCS#8), or for Ed25519 also dkimpy's form, the base64
    of the 32-byte seed."""
    what = "Ed25519 DKIM key" if ed25519_key else "DKIM key"
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the {what} {path}: {error.strerror}") from None
    private: object
    try:
        if ed25519_key and b"-----BEGIN" not in data:
            private = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(data.strip()))
        else:
            private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"the {what} {path} is not an unencrypted PEM private key"
            + (" or the base64 of a 32-byte seed" if ed25519_key else "")
        ) from None
    wanted = ed25519.Ed25519PrivateKey if ed25519_key else rsa.RSAPrivateKey
    if not isinstance(private, wanted):
        raise ConfigError(
            f"the {what} {path} is not an {'Ed25519' if ed25519_key else 'RSA'} private key"
        )
    if isinstance(private, rsa.RSAPrivateKey) and private.key_size < 1024:
        raise ConfigError(f"the DKIM key {path} has {private.key_size} bits: use 2048")
    return Key(selector, private)


class DKIMSigner:
    """Signs the messages of one issue. `prepared(head)` gives the signer for messages that
    all begin with those shared header lines, canonicalised once."""

    def __init__(self, domain: str, keys: Iterable[Key], shared_head: bytes = b"") -> None:
        self.domain = domain
        self.keys = tuple(keys)
        self._shared = shared_head
        self._shared_fields = _named(header_fields(shared_head))

    def prepared(self, shared_head: bytes) -> DKIMSigner:
        return DKIMSigner(self.domain, self.keys, shared_head)

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature line per key in front."""
        head, _, body = message.partition(b"\r\n\r\n")
        body_hash = base64.b64encode(_sha256(relaxed_body(body))).decode()
        if self._shared and head.startswith(self._shared):
            fields = self._shared_fields + _named(header_fields(head[len(self._shared) :]))
        else:
            fields = _named(header_fields(head))
        names = {name for name, _ in fields}
        present = [name for name in SIGNED if name.encode() in names]
        listed = present + [name for name in OVERSIGNED if name in present]
        signed_data = b"".join(_pick(fields, listed))
        now = int(time.time())
        lines = []
        for key in self.keys:
            tags = (
                f"v=1; a={key.algorithm}; c=relaxed/relaxed; d={self.domain};"
                f" s={key.selector}; t={now};\r\n h={':'.join(listed)};\r\n bh={body_hash};"
                "\r\n b="
            )
            unsigned = "DKIM-Signature: " + tags
            data = signed_data + relaxed_header(unsigned.encode())[:-2]
            signature = base64.b64encode(key.sign(data)).decode()
            folded = "\r\n ".join(signature[i : i + 72] for i in range(0, len(signature), 72))
            lines.append(f"{unsigned}{folded}\r\n".encode())
        return b"".join(lines) + message


def _sha256(data: bytes) -> bytes:
    """SHA-256 without letting go of the GIL. hashlib releases it for inputs of 2 KB and
    more, and a thread that lets go waits to get it back behind every busy thread (up to
    the 5 ms switch interval): over a 67 KB body that wait, not the 30 µs of hashing, was
    the cost. Fed in pieces under that size, it keeps the GIL."""
    digest = hashlib.sha256()
    view = memoryview(data)
    for start in range(0, len(data), _PIECE):
        digest.update(view[start : start + _PIECE])
    return digest.digest()


_PIECE = 2047


def _named(fields: list[bytes]) -> list[tuple[bytes, bytes]]:
    """(lowercased name, relaxed canonical field) for each field."""
    out = []
    for field in fields:
        canonical = relaxed_header(field)
        out.append((canonical.split(b":", 1)[0], canonical))
    return out


def _pick(fields: list[tuple[bytes, bytes]], listed: list[str]) -> list[bytes]:
    """RFC 6376 5.4.2: for each name in h=, the last instance not yet used, from the bottom;
    a name listed more often than it occurs adds nothing (the oversigning)."""
    used: set[int] = set()
    picked = []
    for name in listed:
        wanted = name.encode()
        for index in range(len(fields) - 1, -1, -1):
            if index not in used and fields[index][0] == wanted:
                used.add(index)
                picked.append(fields[index][1])
                break
    return picked
