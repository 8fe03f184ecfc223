"""Which of our messages a report is about, and the proof of it.

Anyone can send mail to the bounce address, and a forged "user unknown" naming a reader
would otherwise unsubscribe them. So a report acts only on a ledger row named by a valid
signed token (row_tokens.py) found where only our mail puts it, and only the kinds of
token that prove that kind of report:

- a bounce or a complaint: the VERP address it came back to (`b-`), or our Message-ID
  (`m-`) or envelope sender (`b-`) in the returned copy's headers or the report's fields;
  and only for mail sent within `[bounces] proof_days` (a bounce for an issue of last year
  proves little: its token has had a year to leak);
- a mailto: unsubscribe: the `u-` address it was sent to. The same `u-` mark rides in the
  footer's https link, which readers forward: holding it lets one leave that list, which
  the link itself does, and nothing more.

Tokens in a body (a counted link's `r-`, the footer link) and a reply's In-Reply-To prove
nothing (parse.Traces does not even collect them). The address a report names is not
proof (it is what a forger would write), only the way to choose among several proven rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from newsletter.db import Cursor, read_time
from newsletter.feedback.parse import Report, Traces


@dataclass(frozen=True)
class Row:
    """What the policy needs of a ledger row, and the kinds of token that named it: what
    a verified report acts on (its person is None once erased)."""

    id: int
    issue_id: int
    subscriber_id: int | None
    email_key: str
    sent_at: datetime | None
    made_at: datetime | None = None  # the row's creation: its age when it was never sent
    kinds: frozenset[str] = frozenset()


def proven_rows(session: Session, traces: Traces) -> list[Row]:
    """The ledger rows our valid tokens name (a token for a row that no longer exists, or
    whose issue differs, proves nothing)."""
    named: dict[tuple[int, int], set[str]] = {}
    for token in traces.tokens + traces.addressed:
        named.setdefault((token.issue_id, token.delivery_id), set()).add(token.kind)
    if not named:
        return []
    cursor = Cursor.of(session)
    found = cursor.rows(
        "SELECT id, issue_id, subscriber_id, email_key, sent_at, created_at"
        " FROM deliveries WHERE id IN ?",
        sorted({delivery for _, delivery in named}),
    )
    return [
        Row(i, issue, person, key, read_time(sent), read_time(made), frozenset(named[(issue, i)]))
        for i, issue, person, key, sent, made in found
        if (issue, i) in named
    ]


def target(
    report: Report, traces: Traces, rows: list[Row], proof_days: float, now: datetime
) -> Row | None:
    """The proven row this report is about, or None: unverified."""
    wanted = {"u"} if report.kind == "unsubscribe" else {"b", "m"}
    usable = [row for row in rows if row.kinds & wanted]
    if report.kind != "unsubscribe":  # leaving is honoured from any issue, however old
        oldest = now - timedelta(days=proof_days)
        usable = [row for row in usable if (row.sent_at or row.made_at or now) >= oldest]
    addressed = {t.delivery_id for t in traces.addressed if t.kind in wanted}
    candidates = [row for row in usable if row.id in addressed] or usable
    if len(candidates) > 1 and report.recipient:
        matching = [row for row in candidates if row.email_key == report.recipient]
        candidates = matching or candidates
    return (
        candidates[0] if len(candidates) == 1 else None
    )  # none, or several of our messages and no way to tell which: touch none
