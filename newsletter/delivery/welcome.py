"""The welcome mail: a newsletter's greeting to a reader who has just confirmed, sent once per
subscription through the ledger.

Each newsletter has one `issues` row of kind "welcome" (slug `welcome`), made by whoever
first queues a welcome for it, and each welcome is a `deliveries` row under it. So a welcome
has everything an issue's row has: the ledger's unique (issue, address) pair makes it once
per person and newsletter; the send's claim, start and outcome states make it crash-safe (a
row in doubt is `unknown`, named by `deliveries show welcome --state unknown` and settled by
`deliveries resolve welcome`); its VERP, mailto and Message-ID tokens name the row, so
bounces and complaints act as they do on an issue.

Confirming writes the row in the same transaction as the subscription (a crash keeps both or
neither). The web process then sends its own newsletter's waiting welcomes; `send --due`
sends whatever still waits (a transport that was down, another newsletter's readers who
confirmed on this one's page). The row's content is rendered when a send starts, since the
latest issue changes week to week, and written to the row, so what went out is on record
as an issue's is.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from newsletter import registry, site_urls
from newsletter.config import Config
from newsletter.dates import utc_now
from newsletter.db import Cursor
from newsletter.delivery import ledger
from newsletter.delivery.mailing import approved_template
from newsletter.delivery.message import IssueTemplate
from newsletter.editorial.approval import blank_row
from newsletter.editorial.render import (
    after_body,
    compile_mjml,
    environment,
    list_count,
    markdown_html,
    newsletter_context,
    render_template,
    text_with_links,
)
from newsletter.errors import ConfigError
from newsletter.models import ApprovedIssue, Subscriber

SLUG = "welcome"
KIND = "welcome"


def _find(session: Session, newsletter: str) -> ApprovedIssue | None:
    return session.exec(
        select(ApprovedIssue).where(
            ApprovedIssue.newsletter == newsletter, ApprovedIssue.kind == KIND
        )
    ).first()


def welcome_row(session: Session, newsletter: str) -> ApprovedIssue:
    """The newsletter's welcome row, made on first need (two processes making it at once:
    one insert wins, the other reads it back)."""
    row = _find(session, newsletter)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = blank_row(newsletter, SLUG, KIND)
            # Written to the ledger row by row as people confirm, never as an audience.
            row.enqueued_at = utc_now()
            session.add(row)
    except IntegrityError:
        pass
    found = _find(session, newsletter)
    if found is None:  # pragma: no cover - the insert or a peer's made it
        raise RuntimeError(f"no welcome row for {newsletter}")
    return found


def greets(session: Session, config: Config, newsletter: str) -> bool:
    """Whether a newsletter sends welcomes: this one's config says, another's its last
    recorded config (registry.py)."""
    if newsletter == config.newsletter_id:
        return config.welcome.enabled
    entry = registry.known(session).get(newsletter)
    return entry is None or entry.welcome


def queue(session: Session, newsletter: str, people: list[Subscriber] | list[str]) -> int:
    """Queue a welcome for each person (a Subscriber, or an address key) who never had one
    from this newsletter; how many were queued. Does not commit: the caller's transaction
    is the confirmation's (or the import's)."""
    keys = [p if isinstance(p, str) else p.email_key for p in people]
    if not keys:
        return 0
    row = welcome_row(session, newsletter)
    cursor = Cursor.of(session)
    now = cursor.stamp(utc_now())
    queued = 0
    for start in range(0, len(keys), 1000):
        queued += cursor.count(
            "INSERT INTO deliveries (issue_id, subscriber_id, email, email_key, name, state,"
            " attempts, created_at, updated_at) SELECT ?, id, email, email_key, name, 'queued',"
            " 0, ?, ? FROM subscribers WHERE email_key IN ?"
            " ON CONFLICT (issue_id, email_key) DO NOTHING",
            row.id,
            now,
            now,
            keys[start : start + 1000],
        )
    return queued


def waiting(session: Session, newsletter: str, now: datetime | None = None) -> int:
    """Welcomes a send would take now: queued, due for a retry, or left by a stopped run."""
    row = _find(session, newsletter)
    if row is None:
        return 0
    assert row.id is not None
    return ledger.waiting(session, row.id, now or utc_now())


def switched_off(session: Session, newsletter: str) -> int:
    """With `[welcome] enabled = false`, welcomes queued earlier go nowhere: marked
    `skipped` with the reason. Commits; how many."""
    row = _find(session, newsletter)
    if row is None:
        return 0
    assert row.id is not None
    skipped = ledger.skip_waiting(
        session, row.id, "the welcome mail is off ([welcome] enabled = false)"
    )
    session.commit()
    return skipped


@dataclass(frozen=True)
class Welcome:
    subject: str
    preheader: str
    html: str  # with the issue's placeholders (%%first_name%%, %%unsubscribe_url%%, ...)
    text: str
    view_url: str  # the latest issue's page in the archive, else the archive


def latest_issue(session: Session, newsletter: str) -> ApprovedIssue | None:
    """The newsletter's last issue that went out (or is going out)."""
    return session.exec(
        select(ApprovedIssue)
        .where(
            ApprovedIssue.newsletter == newsletter,
            ApprovedIssue.kind == "issue",
            col(ApprovedIssue.enqueued_at).is_not(None),
        )
        .order_by(col(ApprovedIssue.enqueued_at).desc())
    ).first()


def _words(config: Config) -> tuple[Markup, str]:
    """The welcome's own words as HTML and text: the editor's Markdown, else the theme's."""
    settings = config.welcome
    source = settings.text
    if settings.text_file is not None:
        try:
            source = settings.text_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            raise ConfigError(
                f"[welcome] text_file {settings.text_file}: {reason}; fix the file or the key"
            ) from None
    if source is None:
        words = config.words
        source = words.gettext(
            "Thank you for subscribing to %(name)s. The next issue will come to this address."
        ) % {"name": config.name}
    html = markdown_html(source)
    return html, text_with_links(html)


def render_welcome(config: Config, session: Session) -> Welcome:
    """The welcome as it would go now: the newsletter's words and the latest issue's lead
    and headlines (`include = "headlines"`), the whole latest issue below the words
    ("issue"), or the words alone ("none", or before the first issue)."""
    words = config.words
    subject = config.welcome.subject or words.gettext("Welcome to %(name)s") % {"name": config.name}
    welcome_html, welcome_text = _words(config)
    preheader = " ".join(welcome_text.split())[:140]
    include = config.welcome.include
    latest = latest_issue(session, config.newsletter_id) if include != "none" else None
    view_url = config.archive_url(latest.slug if latest else None)
    welcome = {
        "subject": subject,
        "preheader": preheader,
        "html": welcome_html,
        "text": welcome_text,
    }
    if latest is not None and include == "issue":
        html, text = _above_issue(config, latest, welcome)
        return Welcome(subject, preheader, html, text, view_url)
    context = _context(config, session) | {
        "welcome": welcome,
        "latest": _outline(latest, view_url) if latest is not None else None,
    }
    mjml = render_template(environment(config, autoescape=True), "welcome.mjml.j2", context)
    html = compile_mjml(mjml, "welcome.mjml.j2")
    text = render_template(environment(config, autoescape=False), "welcome.txt.j2", context)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    return Welcome(subject, preheader, html, text, view_url)


def _outline(latest: ApprovedIssue, view_url: str) -> dict[str, Any]:
    """What the welcome shows of the latest issue, as approved (an issue approved before
    outlines were kept shows its subject and link)."""
    outline = latest.outline or {}
    subject, dates = outline.get("subject") or latest.subject, outline.get("dates") or ""
    return {
        "subject": subject,
        # "War Notes: 19–25 December 2022" says its dates already.
        "dates": "" if dates in subject else dates,
        "intro_html": Markup(outline.get("intro_html") or ""),
        "intro_text": outline.get("intro_text") or "",
        "headlines": list(outline.get("headlines") or []),
        "url": view_url,
    }


def _context(config: Config, session: Session) -> dict[str, Any]:
    """The variables the footer shares with an issue's (render.render_issue)."""
    return {
        "newsletter": newsletter_context(config),
        "first_name": "%%first_name%%",
        "unsubscribe_url": "%%unsubscribe_url%%",
        "view_url": "%%view_url%%",
        "preferences_url": "%%preferences_url%%",
        "lists": list_count(session),
        "subscribe_url": site_urls.subscribe(config.base_url),
        "web": False,
    }


def _above_issue(config: Config, latest: ApprovedIssue, welcome: dict[str, Any]) -> tuple[str, str]:
    """`include = "issue"`: the latest issue as it was approved, footer and all, with the
    welcome's words in a band above it (and above its own inbox preview)."""
    env = environment(config, autoescape=True)
    band = render_template(env, "welcome_band.html.j2", {"welcome": welcome})
    html = after_body(latest.html, band)
    text = f"{welcome['subject']}\n\n{welcome['text'].strip()}\n\n{'-' * 40}\n\n{latest.text}"
    return html, text


def refresh(config: Config, session: Session, row: ApprovedIssue) -> str:
    """Render the welcome now and write it to its row when it changed (so the ledger's row
    says what went out); the "view in your browser" address. Does not commit."""
    made = render_welcome(config, session)
    parts = [made.subject, made.html, made.text]
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    if row.content_hash != digest:
        row.subject, row.preheader = made.subject, made.preheader
        row.html, row.text = made.html, made.text
        row.web_html = ""
        row.content_hash = digest
        row.approved_at = utc_now()
        session.add(row)
    return made.view_url


class WelcomeMailing:
    """The welcome as a mailing (mailing.py): no gate (each row was queued by a person's own
    confirmation), rendered afresh under the run lock, no counted links (a greeting counts
    nothing), due while rows wait; switched off, its waiting rows are skipped instead."""

    kind = KIND

    def find(self, session: Session, config: Config, slug: str) -> ApprovedIssue | None:
        return welcome_row(session, config.newsletter_id) if slug == SLUG else None

    def gate(self, config: Config, session: Session, row: ApprovedIssue) -> None:
        return None

    def prepare(self, config: Config, session: Session, row: ApprovedIssue) -> str:
        # Rendered now: its latest issue is this week's, not the one of the last run.
        view_url = refresh(config, session, row)
        session.commit()
        return view_url

    def template(
        self, config: Config, engine: Engine, key: bytes, row: ApprovedIssue
    ) -> IssueTemplate:
        return approved_template(config, row)

    def due(self, config: Config, session: Session) -> list[str]:
        if not waiting(session, config.newsletter_id):
            return []
        if config.welcome.enabled:
            return [SLUG]
        switched_off(session, config.newsletter_id)
        return []
