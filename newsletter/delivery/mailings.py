"""Every kind of mail the send engine sends (mailing.py): a new kind is its module and one
line here."""

from __future__ import annotations

from sqlmodel import Session

from newsletter.config import Config
from newsletter.delivery.issue_mailing import IssueMailing
from newsletter.delivery.mailing import Mailing
from newsletter.delivery.welcome import WelcomeMailing
from newsletter.models import ApprovedIssue

KINDS: dict[str, Mailing] = {m.kind: m for m in (IssueMailing(), WelcomeMailing())}


def mailing_for(row: ApprovedIssue) -> Mailing:
    return KINDS[row.kind]


def find(session: Session, config: Config, slug: str) -> ApprovedIssue | None:
    """The frozen row a slug names, whichever kind's it is."""
    for mailing in KINDS.values():
        row = mailing.find(session, config, slug)
        if row is not None:
            return row
    return None


def due(config: Config, session: Session) -> list[str]:
    """What `send --due` runs now, every kind's, issues first."""
    return [slug for mailing in KINDS.values() for slug in mailing.due(config, session)]
