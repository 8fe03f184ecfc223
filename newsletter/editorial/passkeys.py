"""Approvers' passkeys (WebAuthn): proof of *which* person approved, not only that their
mailbox was read (docs/approval.md, "What each level proves").

An operator runs `approvers passkey ADDRESS`: a pending row and a one-time link, mailed to
the approver, valid for a day. Opening it shows one button; the browser makes a passkey on
the approver's phone or computer (user verification required: a fingerprint, a face, a PIN)
and the page posts it; py_webauthn checks it against this site (the base URL's host is the
relying party, its origin the only one accepted) and the row keeps the credential. From then
on that approver's approval links ask for the passkey, and an approval without it is refused.
With `[newsletter] approval_proof = "passkey"`, only such approvals count toward
`require_approval`.

Challenges are not stored: each is a MAC over the link's token and the page's stamp
(web/human.py), so a page's challenge is that page's alone, and a signature made for one link
or one page never passes for another. The link itself is used once (an approval decided, an
enrolment registered), which makes a replayed answer worthless; sign counters that go
backwards are refused too (a cloned authenticator).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import webauthn
from sqlmodel import Session, col, select
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from newsletter import signing, site_urls
from newsletter.config import Config
from newsletter.dates import utc_now
from newsletter.editorial.signoff import address_of
from newsletter.errors import UsageError
from newsletter.models import Passkey

log = logging.getLogger("newsletter.passkeys")

ENROL = signing.Kind("passkey", "full")
CHALLENGE = signing.Kind("passkey-challenge", "full")
ENROL_HOURS = 24
# What a browser posts back is a few hundred bytes; anything much larger is not one.
MAX_CREDENTIAL_JSON = 16_384
TIMEOUT_MS = 120_000


@dataclass(frozen=True)
class Party:
    """The relying party: the base URL's host, and the one origin a browser may sign for."""

    rp_id: str
    origin: str


def party(config: Config) -> Party:
    parts = urlsplit(config.base_url)
    return Party(parts.hostname or "", f"{parts.scheme}://{parts.netloc}")


def enrol(config: Config, session: Session, approver: str, requested_by: str) -> Passkey:
    """A pending enrolment for one of `[newsletter] approvers`. Does not commit."""
    address = address_of(approver)
    known = {address_of(a) for a in config.approvers}
    if address not in known:
        raise UsageError(f"{approver!r} is not one of [newsletter] approvers; add them there first")
    found = party(config)
    if urlsplit(config.base_url).scheme != "https" and found.rp_id != "localhost":
        raise UsageError(
            f"[newsletter] base_url {config.base_url!r}: browsers make passkeys only for "
            "https sites (or http://localhost): set an https base_url"
        )
    now = utc_now()
    row = Passkey(
        rp_id=found.rp_id,
        approver=address,
        requested_by=requested_by,
        requested_at=now,
        expires_at=now + timedelta(hours=ENROL_HOURS),
    )
    session.add(row)
    session.flush()
    return row


def enrol_token(key: bytes, row: Passkey) -> str:
    """`<row id>.<expiry ms>.<MAC over the row, its approver, site and expiry>`."""
    assert row.id is not None
    return signing.row_token(
        row.id, row.expires_at, lambda ms: signing.sign(key, ENROL, *_signed(row, ms))
    )


def _signed(row: Passkey, expiry: int) -> tuple[object, ...]:
    return (row.id, row.approver, row.rp_id, expiry)


def enrol_url(config: Config, key: bytes, row: Passkey) -> str:
    return site_urls.passkey(config.base_url, enrol_token(key, row))


def pending_enrolment(key: bytes, session: Session, config: Config, token: str) -> Passkey | None:
    """The pending row a token names, if unaltered, unexpired, unused and for this site;
    else None (the one 404)."""
    found = signing.read_row_token(token)
    if found is None:
        return None
    row = session.get(Passkey, found.row_id)
    if row is None or row.credential_id is not None or row.rp_id != party(config).rp_id:
        return None
    if not signing.verify(key, ENROL, found.mac, *_signed(row, found.expiry)):
        return None
    return None if signing.expired(row.expires_at, found.expiry) else row


def challenge(key: bytes, purpose: str, token: str, served: str) -> bytes:
    """The challenge of one page: a link's token and the stamp it was served with."""
    return signing.sign(key, CHALLENGE, purpose, token, served).encode("ascii")


def registered(session: Session, config: Config, approver: str) -> list[Passkey]:
    """An approver's passkeys for this site."""
    return list(
        session.exec(
            select(Passkey)
            .where(
                Passkey.rp_id == party(config).rp_id,
                Passkey.approver == address_of(approver),
                col(Passkey.credential_id).is_not(None),
            )
            .order_by(col(Passkey.id))
        ).all()
    )


def registration_options(config: Config, session: Session, row: Passkey, chal: bytes) -> str:
    """What the enrolment page's script hands to navigator.credentials.create(), as JSON."""
    found = party(config)
    options = webauthn.generate_registration_options(
        rp_id=found.rp_id,
        rp_name=config.name,
        user_name=row.approver,
        # Stable per person and site, and not the address itself.
        user_id=hashlib.sha256(f"{found.rp_id}\0{row.approver}".encode()).digest()[:32],
        user_display_name=row.approver,
        challenge=chal,
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[_descriptor(k) for k in registered(session, config, row.approver)],
    )
    return webauthn.options_to_json(options)


def register(config: Config, row: Passkey, chal: bytes, credential: str) -> bool:
    """Check the browser's new credential and keep it on the row. Does not commit."""
    found = party(config)
    if not credential or len(credential) > MAX_CREDENTIAL_JSON:
        return False
    try:
        verified = webauthn.verify_registration_response(
            credential=credential,
            expected_challenge=chal,
            expected_rp_id=found.rp_id,
            expected_origin=found.origin,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as error:
        log.warning("passkey not registered: %s", type(error).__name__)
        return False
    row.credential_id = bytes_to_base64url(verified.credential_id)
    row.public_key = bytes_to_base64url(verified.credential_public_key)
    row.sign_count = verified.sign_count
    row.registered_at = utc_now()
    return True


def authentication_options(config: Config, keys: list[Passkey], chal: bytes) -> str:
    """What the approval page's script hands to navigator.credentials.get(), as JSON."""
    options = webauthn.generate_authentication_options(
        rp_id=party(config).rp_id,
        challenge=chal,
        timeout=TIMEOUT_MS,
        allow_credentials=[_descriptor(k) for k in keys],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return webauthn.options_to_json(options)


def authenticate(
    config: Config, session: Session, keys: list[Passkey], chal: bytes, credential: str
) -> bool:
    """Whether `credential` is a fresh signature of this page's challenge by one of `keys`,
    the approver's own passkeys (user verified). Updates its counter; does not commit."""
    if not credential or len(credential) > MAX_CREDENTIAL_JSON:
        return False
    try:
        given = json.loads(credential)
        credential_id = given["id"] if isinstance(given, dict) else None
    except ValueError:
        return False
    by_id = {k.credential_id: k for k in keys}
    key = by_id.get(credential_id) if isinstance(credential_id, str) else None
    if key is None or key.public_key is None:
        return False
    found = party(config)
    try:
        verified = webauthn.verify_authentication_response(
            credential=given,
            expected_challenge=chal,
            expected_rp_id=found.rp_id,
            expected_origin=found.origin,
            credential_public_key=webauthn.base64url_to_bytes(key.public_key),
            credential_current_sign_count=key.sign_count,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as error:
        log.warning("passkey refused for an approval: %s", type(error).__name__)
        return False
    key.sign_count = verified.new_sign_count
    key.last_used_at = utc_now()
    session.add(key)
    return True


def remove(session: Session, config: Config, approver: str) -> int:
    """Forget an approver's passkeys and pending links (a lost phone). Does not commit."""
    rows = session.exec(
        select(Passkey).where(
            Passkey.rp_id == party(config).rp_id, Passkey.approver == address_of(approver)
        )
    ).all()
    for row in rows:
        session.delete(row)
    return sum(1 for row in rows if row.credential_id is not None)


def listing(session: Session, config: Config) -> list[dict[str, Any]]:
    """`approvers list`: each approver and their passkeys (when made, last used)."""
    people = []
    for approver in config.approvers:
        keys = registered(session, config, approver)
        people.append(
            {
                "approver": approver,
                "passkeys": [
                    {
                        "registered_at": k.registered_at.isoformat() if k.registered_at else None,
                        "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
                    }
                    for k in keys
                ],
            }
        )
    return people


def _descriptor(row: Passkey) -> PublicKeyCredentialDescriptor:
    assert row.credential_id is not None
    return PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(row.credential_id))
