"""Deliverability: a sent issue as SpamAssassin's local rules score it (`spamassassin -L -t`,
installed by scripts/spamassassin). Measured before the hand-written preheader: 0.7, from
HTML_FONT_LOW_CONTRAST (white preheader text on a light page)."""

import re
import shutil
import subprocess
from email.utils import formatdate

import pytest

from tests.conftest import Project

# Rules that would mean the theme or the headers went wrong, whatever the total. (The image
# ratio rules, worth a thousandth of a point, follow how much the editor wrote.)
UNWANTED = {
    "HTML_FONT_LOW_CONTRAST",
    "HTML_IMAGE_ONLY_04", "HTML_IMAGE_ONLY_08", "HTML_IMAGE_ONLY_12", "HTML_IMAGE_ONLY_16",
    "HTML_IMAGE_ONLY_20", "HTML_IMAGE_ONLY_24", "HTML_IMAGE_ONLY_28", "HTML_IMAGE_ONLY_32",
    "MIME_HTML_ONLY", "MPART_ALT_DIFF", "MISSING_DATE", "MISSING_MID", "MISSING_FROM",
    "MISSING_SUBJECT", "INVALID_DATE", "HTML_MIME_NO_HTML_TAG", "TVD_SPACE_RATIO",
    "HTML_SHORT_LINK_IMG_1", "EMPTY_MESSAGE", "MIME_BASE64_TEXT",
}  # fmt: skip


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_sent_issue_scores_at_most_a_third_of_a_point(collected: Project) -> None:
    spamassassin = shutil.which("spamassassin")
    assert spamassassin, "SpamAssassin is missing: run scripts/spamassassin (scripts/test does)"
    assert collected.run("issue", "new", "--week", "2022-W51").exit_code == 0
    path = collected.root / "issues" / "2022-W51.md"
    path.write_text(path.read_text() + "Dear readers, this week's notes from the front.\n")
    assert collected.run("issue", "approve", "2022-W51").exit_code == 0
    assert (
        collected.run("subscribers", "add", "olena@example.org", "--name", "Olena").exit_code == 0
    )
    assert collected.run("send", "2022-W51").exit_code == 0
    (message,) = (collected.root / "outbox").glob("*.eml")
    # As it arrives: the receiving relay's trace line on top (a message without one scores
    # differently from anything a filter really sees).
    # (A public address and the time now: documentation addresses and an old date are
    # rules of their own.)
    received = (
        "Received: from news.example.org (news.example.org [185.199.108.153])\r\n"
        f"\tby mx.example.net (Postfix) with ESMTPS id 4NhXk21Qz; {formatdate(localtime=True)}\r\n"
    ).encode()
    report = subprocess.run(
        [spamassassin, "-L", "-t"], input=received + message.read_bytes(), capture_output=True,
        timeout=120,
    ).stdout.decode("utf-8", "replace")  # fmt: skip
    score = float(re.search(r"Content analysis details:\s+\((-?[\d.]+) points", report)[1])  # type: ignore[index]
    rules = set(re.findall(r"^\s*-?[\d.]+ ([A-Z0-9_]+)\s", report, re.M))
    assert score <= 0.3, report
    assert not rules & UNWANTED, rules
