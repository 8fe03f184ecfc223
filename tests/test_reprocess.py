"""`bounces reprocess`: stored reports judged again by today's rules correct past calls,
within the policy: a person wrongly bounced comes back, a missed bounce acts now, someone
who came back is never suppressed again; a dry run first, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from newsletter.audience import lifecycle, subscribers
from newsletter.db import Cursor
from newsletter.models import Delivery, FeedbackReport
from tests.conftest import Project
from tests.sending import AUDIENCE
from tests.smtpserver import Received


def _stored(project: Project, email: str, kind: str, action: str, words: str, n: int) -> None:
    """A report as an older classifier stored it (and, for a hard call, what it did)."""
    with Session(project.engine()) as session:
        person = subscribers.require(session, email)
        row = session.exec(select(Delivery).where(Delivery.subscriber_id == person.id)).one()
        session.add(
            FeedbackReport(
                fingerprint=f"{n:064d}",
                received_at=datetime.now(UTC),  # after the send it is about
                origin="mailbox",
                source=f"old/{n}",
                kind=kind,
                status=None,
                recipient=email,
                action=action,
                diagnostic=words,
                issue_id=row.issue_id,
                delivery_id=row.id,
                subscriber_id=person.id,
            )
        )
        if action == "bounced":
            cursor = Cursor.of(session)
            lifecycle.bounce(cursor, person.email_key, person.id, cursor.stamp(datetime.now(UTC)))
        session.commit()


def _status(project: Project, email: str) -> tuple[str | None, str | None]:
    shown = json.loads(project.run("subscribers", "show", email, "--json").stdout)
    return shown["status"], shown["suppressed"]


def test_reprocess_corrects_past_calls_within_the_policy(
    sent: dict[str, Received], ready: Project
) -> None:
    wrongly, missed, back = AUDIENCE[0], AUDIENCE[1], AUDIENCE[2]
    _stored(ready, wrongly, "hard", "bounced", "550 5.7.1 Message rejected as spam", 1)
    _stored(ready, missed, "soft", "counted", "550 5.1.1 <x>: Recipient address rejected", 2)
    _stored(ready, back, "soft", "counted", "550 #5.1.0 Address rejected.", 3)
    with Session(ready.engine()) as session:  # the third was delivered to since: back
        person = subscribers.require(session, back)
        row = session.exec(select(Delivery).where(Delivery.subscriber_id == person.id)).one()
        row.sent_at = datetime.now(UTC) + timedelta(hours=1)
        session.add(row)
        session.commit()
    status, suppressed = _status(ready, wrongly)
    assert status == "bounced" and suppressed is not None and suppressed.startswith("bounced")

    dry = ready.run("bounces", "reprocess", "--json")
    assert dry.exit_code == 0, dry.output
    planned = {c["recipient"]: c["change"] for c in map(json.loads, dry.stdout.splitlines())}
    assert planned == {wrongly: "lift", missed: "bounce", back: "kept"}
    assert "run again with --apply" in dry.stderr
    assert _status(ready, wrongly)[0] == "bounced" and _status(ready, missed)[0] == "active"

    done = ready.run("bounces", "reprocess", "--apply")
    assert done.exit_code == 0, done.output
    assert _status(ready, wrongly) == ("active", None)
    assert _status(ready, missed)[0] == "bounced" and _status(ready, missed)[1]
    assert _status(ready, back) == ("active", None)
    shown = json.loads(ready.run("subscribers", "show", wrongly, "--json").stdout)
    (lift,) = shown["suppression_lifts"]
    assert lift["by"] == "bounces reprocess" and "soft bounce" in lift["why"]
    # Judged again: nothing left to change.
    again = ready.run("bounces", "reprocess", "--json")
    assert again.stdout.strip() == ""
    # --since leaves older reports alone.
    later = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert ready.run("bounces", "reprocess", "--since", later).exit_code == 0
    bad = ready.run("bounces", "reprocess", "--since", "someday")
    assert bad.exit_code == 2 and "--since" in bad.stderr
