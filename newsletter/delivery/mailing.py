"""What the send engine (send.py) needs of a kind of mail, and the message all kinds share.

The engine knows no kind of mail: it takes a *mailing* for the frozen row it sends (an
`issues` row: an approved issue, a newsletter's welcome) and asks it four things: whether
the row may go now (`gate`: an issue's approval and sign-off), what to settle under the run
lock before sending (`prepare`: the welcome renders itself; the "view in your browser"
address), the message every reader's bytes are filled from (`template`: an issue's counted
links and pixel), and which of its rows `send --due` should run now (`due`). The kinds are
listed in mailings.py; each lives in its own module (issue_mailing.py, welcome.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session

from newsletter import site_urls
from newsletter.config import Config
from newsletter.delivery.message import IssueTemplate, dkim_signer, issue_template
from newsletter.delivery.tracking import Link, link_token, open_token, rewrite, with_pixel
from newsletter.models import ApprovedIssue


class Mailing(Protocol):
    kind: str

    def find(self, session: Session, config: Config, slug: str) -> ApprovedIssue | None:
        """The frozen row `slug` names for this kind, or None if the slug is not one."""
        ...

    def gate(self, config: Config, session: Session, row: ApprovedIssue) -> None:
        """Refuse (UsageError, naming the fix) a row that may not go now."""
        ...

    def prepare(self, config: Config, session: Session, row: ApprovedIssue) -> str:
        """Under the run lock, before the first message: settle the row (may commit); the
        "view in your browser" address."""
        ...

    def template(
        self, config: Config, engine: Engine, key: bytes, row: ApprovedIssue
    ) -> IssueTemplate: ...

    def due(self, config: Config, session: Session) -> list[str]:
        """The slugs of this kind's rows that `send --due` should run now."""
        ...


def approved_template(
    config: Config,
    issue: ApprovedIssue,
    key: bytes | None = None,
    counted: list[Link] | None = None,
) -> IssueTemplate:
    """The message every recipient's bytes are filled from: the frozen copy, dated now, its
    `counted` links going through the redirect and, with `[tracking] opens`, a pixel
    (tracking.py; both need the key)."""
    html, text = issue.html, issue.text
    tracking = config.tracking
    if key is not None and issue.id is not None:
        reader = tracking.per_subscriber
        if tracking.clicks and counted:
            target = {
                link.url: site_urls.click(
                    config.base_url, link_token(key, issue.newsletter, issue.id, link.index)
                )
                for link in counted
            }
            html, text = rewrite(html, text, target, reader)
        if tracking.opens:
            token = open_token(key, issue.newsletter, issue.id)
            html = with_pixel(html, site_urls.open_pixel(config.base_url, token), reader)
    return issue_template(
        config,
        slug=issue.slug,
        subject=issue.subject,
        html=html,
        text=text,
        date=datetime.now(UTC),
        dkim=dkim_signer(config),
        feedback_id=config.feedback_id,
        reply_to=issue.reply_to or config.reply_to,
    )
