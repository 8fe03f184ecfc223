"""SQLModel tables. The Alembic revisions in `migrations/versions` create exactly these;
`tests/test_db.py` checks that the two agree on SQLite and PostgreSQL."""

import secrets
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, Relationship, SQLModel

from newsletter.dates import utc_now


def new_token_id() -> str:
    """A subscriber's public id, never a row id (SQLite hands a deleted row's id to the next
    insert): `t`, the time in milliseconds (hex), and 72 random bits. Never all digits (those
    are old links' row ids). Time first, so ids made together sort together: a million-row
    import appends to the unique index's right edge instead of writing all over it (fully
    random ids cost the import 40 %). The signature, not the id, is what cannot be forged."""
    return f"t{time.time_ns() // 1_000_000:011x}{secrets.token_urlsafe(9)}"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time zone type and would hand back naive values; storing UTC and re-attaching
    it on read keeps comparisons and week boundaries right on both databases.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Article(SQLModel, table=True):
    __tablename__ = "articles"

    id: int | None = Field(default=None, primary_key=True)
    # `url` is the canonical link as the owning source gives it; `url_key` (urls.url_key) is
    # its identity, so /story and /story/ from two sources are one article.
    url: str = Field(sa_column=sa.Column(sa.String(2048), nullable=False))
    url_key: str = Field(sa_column=sa.Column(sa.String(2048), nullable=False, unique=True))
    guid: str | None = Field(default=None, sa_column=sa.Column(sa.String(2048)))
    title: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    summary_html: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    body_html: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    image: str | None = Field(default=None, sa_column=sa.Column(sa.String(2048)))
    image_caption: str = Field(
        default="", sa_column=sa.Column(sa.Text, nullable=False, server_default="")
    )
    published: datetime = Field(sa_column=sa.Column(UTCDateTime, nullable=False, index=True))
    reading_minutes: int = Field(default=1)
    tags: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    # The source that owns the row and its kind: see the articles module on merging.
    source: str = Field(sa_column=sa.Column(sa.String(2048), nullable=False))
    source_kind: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    content_hash: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    first_seen: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )

    # No `from __future__ import annotations` here: SQLModel reads these annotations at import.
    authors: list["ArticleAuthor"] = Relationship(
        back_populates="article",
        sa_relationship_kwargs={
            "order_by": "ArticleAuthor.position",
            "cascade": "all, delete-orphan",
            "lazy": "selectin",
        },
    )

    @property
    def author_names(self) -> list[str]:
        return [author.name for author in self.authors]


class ArticleAuthor(SQLModel, table=True):
    """One byline name. `key` is the name folded for matching (case, runs of spaces)."""

    __tablename__ = "article_authors"

    article_id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True
        ),
    )
    position: int = Field(sa_column=sa.Column(sa.Integer, primary_key=True))
    name: str = Field(sa_column=sa.Column(sa.String(300), nullable=False))
    key: str = Field(sa_column=sa.Column(sa.String(300), nullable=False, index=True))

    article: Article | None = Relationship(back_populates="authors")


class FetchState(SQLModel, table=True):
    """Validators from the last successful fetch of a URL, for conditional requests."""

    __tablename__ = "fetch_state"

    location: str = Field(sa_column=sa.Column(sa.String(2048), primary_key=True))
    etag: str | None = Field(default=None, sa_column=sa.Column(sa.String(1024)))
    last_modified: str | None = Field(default=None, sa_column=sa.Column(sa.String(128)))
    checked_at: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )


class ApprovedIssue(SQLModel, table=True):
    """An issue frozen for sending: exactly what subscribers will get. `source_hash` is the
    issue file's at approval, so an edit afterwards is noticed and needs a new approval."""

    __tablename__ = "issues"
    # Several newsletters on one database each have their 2022-W51.
    __table_args__ = (sa.UniqueConstraint("newsletter", "slug", name="uq_issues_newsletter_slug"),)

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    newsletter: str = Field(sa_column=sa.Column(sa.String(300), nullable=False))
    # "issue", or "welcome": the one row per newsletter that its welcome mails hang from in
    # the ledger (welcome.py); never archived, reported as an issue or due as one.
    kind: str = Field(
        default="issue",
        sa_column=sa.Column(sa.String(16), nullable=False, server_default="issue"),
    )
    week: str | None = Field(default=None, sa_column=sa.Column(sa.String(16)))
    subject: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    preheader: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    html: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    text: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    web_html: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    content_hash: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    source_hash: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    # The lead and headlines a welcome mail shows of the latest issue (render.issue_outline).
    outline: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON))
    # The issue's own Reply-To (its file's reply_to:); else [newsletter] reply_to applies.
    reply_to: str | None = Field(default=None, sa_column=sa.Column(sa.String(400)))
    approved_at: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    send_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    # Set when the audience was written to the ledger (once: people who subscribe later are
    # not added to a send in progress), and when no row is left to send.
    enqueued_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    finished_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    # Who froze it (an approver by link, or `issue approve --as`), and who ran its send.
    approved_by: str | None = Field(default=None, sa_column=sa.Column(sa.String(400)))
    sent_by: str | None = Field(default=None, sa_column=sa.Column(sa.String(400)))


class Approval(SQLModel, table=True):
    """One approver's sign-off of one candidate (editorial/signoff.py): asked by link
    (`channel` "link": a token names this row, valid until `expires_at`, used once) or given
    from the CLI ("cli"). Bound to the content hash of everything readers will get: a
    decision counts only for that content."""

    __tablename__ = "approvals"
    __table_args__ = (sa.Index("ix_approvals_issue", "newsletter", "slug"),)

    id: int | None = Field(default=None, primary_key=True)
    newsletter: str = Field(sa_column=sa.Column(sa.String(300), nullable=False))
    slug: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    content_hash: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    channel: str = Field(sa_column=sa.Column(sa.String(10), nullable=False))
    requested_by: str = Field(sa_column=sa.Column(sa.String(400), nullable=False))
    requested_at: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    approver: str = Field(sa_column=sa.Column(sa.String(400), nullable=False))
    send_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    expires_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    # The candidate as readers will get it (a sample reader's HTML), shown on the page.
    subject: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    html: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    decision: str | None = Field(default=None, sa_column=sa.Column(sa.String(20)))
    decided_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    comment: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    client_address: str | None = Field(default=None, sa_column=sa.Column(sa.String(100)))
    # How a link decision proved its approver: "link" (their mailbox and a person's click)
    # or "passkey" (also their own authenticator, editorial/passkeys.py).
    proof: str | None = Field(default=None, sa_column=sa.Column(sa.String(10)))


class Passkey(SQLModel, table=True):
    """An approver's passkey (WebAuthn) for this site (`rp_id`, the base URL's host),
    made from a one-time link `approvers passkey` mails them (editorial/passkeys.py): the row
    is made with the link, and the credential is filled in once, by the approver's browser.
    Until then (`credential_id` NULL) it is a pending enrolment, valid until `expires_at`."""

    __tablename__ = "passkeys"
    __table_args__ = (sa.Index("ix_passkeys_approver", "rp_id", "approver"),)

    id: int | None = Field(default=None, primary_key=True)
    rp_id: str = Field(sa_column=sa.Column(sa.String(253), nullable=False))
    # The approver's address (lower case), as `[newsletter] approvers` names them.
    approver: str = Field(sa_column=sa.Column(sa.String(320), nullable=False))
    requested_by: str = Field(sa_column=sa.Column(sa.String(400), nullable=False))
    requested_at: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    expires_at: datetime = Field(sa_column=sa.Column(UTCDateTime, nullable=False))
    # base64url, as WebAuthn's JSON spells them.
    credential_id: str | None = Field(
        default=None, sa_column=sa.Column(sa.String(1400), unique=True)
    )
    public_key: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    sign_count: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    registered_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    last_used_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))


class Subscriber(SQLModel, table=True):
    """A person. `email_key` (subscribers.address_key) makes JOHN@X.COM and john@x.com one."""

    __tablename__ = "subscribers"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=sa.Column(sa.String(320), nullable=False))
    email_key: str = Field(sa_column=sa.Column(sa.String(320), nullable=False, unique=True))
    name: str | None = Field(default=None, sa_column=sa.Column(sa.String(300)))
    source: str = Field(sa_column=sa.Column(sa.String(50), nullable=False))
    attributes: dict[str, str] = Field(
        default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False)
    )
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    # What signed links name (tokens.py): random and never reused, unlike the row id.
    token_id: str = Field(
        default_factory=new_token_id,
        sa_column=sa.Column(sa.String(40), nullable=False, unique=True),
    )
    # True only for people who existed before token ids (migration 0007): links sent to
    # them named their row id and must keep working; a row id reused later is not theirs.
    legacy_tokens: bool = Field(
        default=False,
        sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()),
    )


class Subscription(SQLModel, table=True):
    """A person's membership of one newsletter, with its own status and history."""

    __tablename__ = "subscriptions"
    __table_args__ = (sa.UniqueConstraint("subscriber_id", "newsletter"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False
        )
    )
    newsletter: str = Field(sa_column=sa.Column(sa.String(300), nullable=False))
    status: str = Field(sa_column=sa.Column(sa.String(20), nullable=False, index=True))
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    confirmed_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    unsubscribed_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    # The status a close moved it from (active, pending): what a lift restores.
    closed_from: str | None = Field(default=None, sa_column=sa.Column(sa.String(20)))


class Suppression(SQLModel, table=True):
    """An address never to be mailed or re-added, whatever any list says. Keyed by a hash of
    the normalised address so an erased person's address need not be kept in clear."""

    __tablename__ = "suppressions"

    key_hash: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    # The normalised address, kept for every reason but erasure (whose subscriber is gone):
    # what a send's start checks each row against (ledger.start).
    email: str | None = Field(default=None, sa_column=sa.Column(sa.String(320), index=True))
    reason: str = Field(sa_column=sa.Column(sa.String(50), nullable=False))
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )


class SuppressionLift(SQLModel, table=True):
    """A bounce or complaint suppression lifted, and by whom and why: the operator's
    `subscribers unsuppress`, or `bounces reprocess` finding the report that caused it is no
    hard bounce under today's rules. `subscribers show` lists them."""

    __tablename__ = "suppression_lifts"

    id: int | None = Field(default=None, primary_key=True)
    # The address's hash (lifecycle.key_hash), which an erasure keeps; the address in clear
    # until then.
    key_hash: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, index=True))
    email: str | None = Field(default=None, sa_column=sa.Column(sa.String(320), index=True))
    reason: str = Field(sa_column=sa.Column(sa.String(50), nullable=False))
    suppressed_at: datetime = Field(sa_column=sa.Column(UTCDateTime, nullable=False))
    lifted_at: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    lifted_by: str = Field(sa_column=sa.Column(sa.String(400), nullable=False))
    why: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


class Delivery(SQLModel, table=True):
    """One recipient of one issue: the ledger row. See delivery.py for the states."""

    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("issue_id", "email_key"),
        # The claim walks this in id order (see migration 0006).
        sa.Index("ix_deliveries_claim", "issue_id", "state", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False
        )
    )
    subscriber_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("subscribers.id", ondelete="SET NULL")),
    )
    email: str = Field(sa_column=sa.Column(sa.String(320), nullable=False))
    email_key: str = Field(sa_column=sa.Column(sa.String(320), nullable=False))
    name: str | None = Field(default=None, sa_column=sa.Column(sa.String(300)))
    state: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    attempts: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    next_attempt_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    last_code: int | None = Field(default=None, sa_column=sa.Column(sa.Integer))
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    sent_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime))
    # The sender that claimed the row (`host:pid:random`), so that another sender can tell
    # rows of a live peer from rows a dead one left in `sending`.
    claimed_by: str | None = Field(default=None, sa_column=sa.Column(sa.String(100)))
    # The provider's message id (HTTP APIs: SES, Postmark, Mailgun), which their events name.
    provider_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(200), index=True))


class RunLock(SQLModel, table=True):
    """Who is sending an issue right now, where no advisory locks exist (SQLite)."""

    __tablename__ = "run_locks"

    name: str = Field(sa_column=sa.Column(sa.String(200), primary_key=True))
    host: str = Field(sa_column=sa.Column(sa.String(255), nullable=False))
    pid: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    # When the lock was taken (for operators reading the table; takeover goes by the pid).
    taken_at: datetime = Field(sa_column=sa.Column(UTCDateTime, nullable=False))


class NewsletterRow(SQLModel, table=True):
    """A newsletter this database serves, as its config last said (registry.py): any
    process names a list by its name and language, not its key."""

    __tablename__ = "newsletters"

    key: str = Field(sa_column=sa.Column(sa.String(100), primary_key=True))
    name: str = Field(sa_column=sa.Column(sa.String(300), nullable=False))
    language: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    description: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    base_url: str = Field(sa_column=sa.Column(sa.String(500), nullable=False))
    # Whether a confirmation brings its welcome mail ([welcome] enabled): another
    # newsletter's web pages queue one only then.
    welcome: bool = Field(
        default=True, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.true())
    )
    updated_at: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )


class WebhookCall(SQLModel, table=True):
    """A provider's call, seen: its token (Mailgun) or message id (SNS), hashed. Spent the
    first time it arrives whatever its event, so a captured signature cannot carry another
    event later; rows older than the webhook window are pruned (a call that old is refused
    as stale anyway)."""

    __tablename__ = "webhook_calls"
    __table_args__ = (sa.Index("ix_webhook_calls_seen", "seen_at"),)

    fingerprint: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    seen_at: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )


class FeedbackReport(SQLModel, table=True):
    """One report heard back about one recipient: a bounce, a complaint, a mailto
    unsubscribe, an auto-reply, or mail nobody could read (kept whole for a person). See
    feedback/policy.py for what each changes. Erasing a subscriber erases their reports."""

    __tablename__ = "feedback_reports"
    __table_args__ = (
        sa.Index("ix_feedback_reports_subscriber", "subscriber_id", "kind"),
        sa.Index("ix_feedback_reports_received", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # SHA-256 of the message (or webhook event) and the report's place in it: the same
    # report read twice is recognised and changes nothing the second time.
    fingerprint: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    received_at: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    origin: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    source: str = Field(sa_column=sa.Column(sa.String(500), nullable=False))
    kind: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    status: str | None = Field(default=None, sa_column=sa.Column(sa.String(20)))
    recipient: str | None = Field(default=None, sa_column=sa.Column(sa.String(320)))
    action: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    diagnostic: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    issue_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("issues.id", ondelete="SET NULL")),
    )
    delivery_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("deliveries.id", ondelete="SET NULL")),
    )
    subscriber_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE")),
    )
    # The message itself, only when nobody could read it (capped): for the person who will.
    raw: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary))


class IssueLink(SQLModel, table=True):
    """A counted link of an approved issue: its index in the order it first appears, the
    URL a redirect goes to, and the text that links it (delivery/tracking.py)."""

    __tablename__ = "issue_links"
    __table_args__ = (sa.UniqueConstraint("issue_id", "index"),)

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False
        )
    )
    index: int = Field(sa_column=sa.Column("index", sa.Integer, nullable=False))
    url: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    title: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


class ClickCount(SQLModel, table=True):
    """Clicks on one link of one issue in one hour (UTC), or opens (`index` -1) split into
    machine and other: counts, never people. Survives every erasure."""

    __tablename__ = "click_counts"

    issue_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True
        )
    )
    index: int = Field(sa_column=sa.Column("index", sa.Integer, primary_key=True))
    hour: datetime = Field(sa_column=sa.Column(UTCDateTime, primary_key=True))
    machine: bool = Field(sa_column=sa.Column(sa.Boolean, primary_key=True))
    count: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))


class ReaderClick(SQLModel, table=True):
    """One reader's click (or open, `index` -1), kept only with `[tracking] per_subscriber
    = true`; erasing the reader erases these."""

    __tablename__ = "reader_clicks"
    __table_args__ = (sa.Index("ix_reader_clicks_issue", "issue_id", "index"),)

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False
        )
    )
    index: int = Field(sa_column=sa.Column("index", sa.Integer, nullable=False))
    subscriber_id: int = Field(
        sa_column=sa.Column(
            sa.Integer,
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    clicked_at: datetime = Field(sa_column=sa.Column(UTCDateTime, nullable=False))


class AuthorProfileRow(SQLModel, table=True):
    """A reporter's card as the sources give it (collect/store.py), by the folded name."""

    __tablename__ = "author_profiles"

    key: str = Field(sa_column=sa.Column(sa.String(300), primary_key=True))
    name: str = Field(sa_column=sa.Column(sa.String(300), nullable=False))
    role: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    bio: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    photo: str | None = Field(default=None, sa_column=sa.Column(sa.String(2048)))
    updated_at: datetime = Field(
        default_factory=utc_now, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
