"""Replies reach the reporter: `[newsletter] reply_to`, and `reply_to:` in an issue file for
one issue, validated like `from`, frozen with the approval, one Reply-To header."""

from __future__ import annotations

import re
from email.utils import getaddresses

from tests.conftest import Project
from tests.sending import send
from tests.smtpserver import SMTPServer


def _issue_with(project: Project, reply_to: str | None) -> None:
    path = project.root / "issues" / "2022-W51.md"
    text = path.read_text()
    if reply_to is not None:
        text = re.sub(r"^(slug: .*)$", rf"\1\nreply_to: {reply_to}", text, count=1, flags=re.M)
    path.write_text(text)


def test_the_config_s_reply_to_and_an_issue_s_own(ready: Project, smtp_server: SMTPServer) -> None:
    text = ready.config_file.read_text().replace(
        '# reply_to = "Asami Terajima <asami@example.org>"', 'reply_to = "Desk <desk@example.org>"'
    )
    ready.config_file.write_text(text)
    assert ready.run("issue", "approve", "2022-W51").exit_code == 0
    assert send(ready)[0] == 0
    first = smtp_server.received[0].message
    assert first.get_all("Reply-To") == ["Desk <desk@example.org>"]

    # One issue's own: the column's author.
    smtp_server.received.clear()
    assert ready.run("send", "2022-W51", "--test-to", "editor@example.org").exit_code == 0
    _issue_with(ready, '"Asami Terajima <asami@example.org>"')
    assert ready.run("send", "2022-W51", "--test-to", "editor@example.org").exit_code == 0
    replies = [getaddresses(m.message.get_all("Reply-To") or []) for m in smtp_server.received]
    assert replies == [[("Desk", "desk@example.org")], [("Asami Terajima", "asami@example.org")]]


def test_a_bad_reply_to_is_one_line_naming_the_file_line_and_fix(ready: Project) -> None:
    _issue_with(ready, '"Asami <not an address>"')
    result = ready.run("issue", "render", "2022-W51")
    assert result.exit_code == 2
    assert "2022-W51.md:" in result.output and "bad Reply-To address" in result.output
    text = ready.config_file.read_text().replace(
        '# reply_to = "Asami Terajima <asami@example.org>"', 'reply_to = "a@b@c"'
    )
    ready.config_file.write_text(text)
    bad = ready.run("issue", "render", "2022-W51")
    assert bad.exit_code == 2 and "[newsletter] reply_to: bad Reply-To address" in bad.output
