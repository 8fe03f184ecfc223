"""How well returned mail is read, on the labelled corpus (tests/bounces/): the figures in
bench/RESULTS.md must not regress, and no message, however broken, stops the reading."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.feedback.parse import KINDS, parse
from tests.bounces.corpus import evaluate

# bench/RESULTS.md, 2026-11-26: 170 messages, hard precision 1.000 and recall 0.972,
# complaints 1.000 / 1.000, 168 called as labelled.
FLOORS = {"hard": (1.0, 0.95), "complaint": (1.0, 1.0)}


def test_the_corpus_figures_do_not_regress() -> None:
    figures = evaluate()
    assert figures.files >= 160
    for kind, (precision, recall) in FLOORS.items():
        assert figures.precision(kind) >= precision, (kind, figures.wrong)
        assert figures.recall(kind) >= recall, (kind, figures.wrong)
    assert figures.agree / figures.files >= 0.97, figures.wrong


MULTIPART = (
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n"
    b"Subject: Undelivered Mail\r\nFrom: MAILER-DAEMON@x\r\n\r\n--b\r\n"
)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.sampled_from([b"", MULTIPART]))
def test_any_bytes_give_reports_and_never_an_exception(data: bytes, prefix: bytes) -> None:
    parsed = parse(prefix + data, b"k" * 32, "war-notes")
    assert parsed.reports and all(report.kind in KINDS for report in parsed.reports)
