"""Every command, through its error paths, exits with the code the table in errors.py gives
(docs/exit-codes.md): 2 for what the user must fix, 1 when part of the work failed, 75 for
"try later". A command added without cases here fails the first test."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import typer.main

from newsletter.cli import app
from newsletter.errors import DONE, EXIT_CODES, FAILED, TEMPFAIL, USAGE
from tests.conftest import Project, runner
from tests.smtpserver import free_port

ROOT = Path(__file__).resolve().parent.parent


def leaf_commands() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(command, click.Group) or hasattr(command, "list_commands"):
            context = click.Context(command)
            for name in command.list_commands(context):  # type: ignore[attr-defined]
                sub = command.get_command(context, name)  # type: ignore[attr-defined]
                assert sub is not None
                walk(sub, (*path, name))
        else:
            found.append(path)

    walk(typer.main.get_command(app), ())
    return found


# Arguments that let each command get past parsing (to reach the config, the database...).
ARGUMENTS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("init",): (),
    ("collect",): (),
    ("serve",): ("--port", "1"),
    ("send",): ("2099-W01",),
    ("deliveries", "show"): ("2099-W01",),
    ("deliveries", "resolve"): ("2099-W01", "--resend"),
    ("deliveries", "resend"): ("2099-W01", "--state", "failed"),
    ("articles", "list"): (),
    ("articles", "show"): ("https://example.org/none/",),
    ("issue", "new"): ("--week", "2022-W51"),
    ("issue", "list"): (),
    ("issue", "show"): ("2099-W01",),
    ("issue", "add"): ("2099-W01", "https://example.org/none/"),
    ("issue", "remove"): ("2099-W01", "https://example.org/none/"),
    ("issue", "move"): ("2099-W01", "https://example.org/none/", "--to", "1"),
    ("issue", "render"): ("2099-W01",),
    ("issue", "check"): ("2099-W01",),
    ("issue", "preview"): ("2099-W01",),
    ("issue", "approve"): ("2099-W01",),
    ("issue", "request-approval"): ("2099-W01",),
    ("issue", "history"): ("2099-W01",),
    ("archive", "build"): (),
    ("subscribers", "add"): ("nobody@example.org",),
    ("subscribers", "import"): ("missing.csv",),
    ("subscribers", "export"): (),
    ("subscribers", "list"): (),
    ("subscribers", "count"): (),
    ("subscribers", "show"): ("nobody@example.org",),
    ("subscribers", "unsubscribe"): ("nobody@example.org",),
    ("subscribers", "remove"): ("nobody@example.org",),
    ("subscribers", "suppress"): ("nobody@example.org",),
    ("subscribers", "unsuppress"): ("nobody@example.org", "--reason", "x"),
    ("db", "upgrade"): (),
    ("bounces", "process"): ("missing-maildir",),
    ("bounces", "list"): (),
    ("bounces", "show"): ("1",),
    ("bounces", "reprocess"): (),
    ("report",): (),
    ("doctor",): (),
    ("approvers", "list"): (),
    ("approvers", "passkey"): ("nobody@example.org",),
    ("approvers", "remove-passkeys"): ("nobody@example.org",),
}


def test_every_command_has_error_cases_here() -> None:
    assert sorted(leaf_commands()) == sorted(ARGUMENTS)


def test_the_docs_table_is_the_code_table() -> None:
    text = (ROOT / "docs" / "exit-codes.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", text, re.M)
    assert [(int(code), meaning) for code, meaning in rows] == list(EXIT_CODES)


@pytest.mark.parametrize("command", sorted(ARGUMENTS), ids=" ".join)
def test_a_bad_flag_is_a_usage_error(command: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*command, *ARGUMENTS[command], "--no-such-flag"])
    assert result.exit_code == USAGE, result.output


@pytest.mark.parametrize("command", sorted(c for c in ARGUMENTS if c != ("init",)), ids=" ".join)
def test_no_configuration_is_a_usage_error_that_names_the_folders(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    result = runner.invoke(app, [*command, *ARGUMENTS[command]])
    assert result.exit_code == USAGE, result.output
    assert f"no newsletter.toml in {tmp_path}" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("command", "code"),
    [
        (("init", "--timezone", "Mars/Olympus"), USAGE),
        (("send", "2099-W01"), USAGE),
        (("send", "2099-W01", "--json"), USAGE),
        (("send", "2022-W51"), USAGE),  # exists as a file, not approved
        (("send", "--due", "--worker"), USAGE),  # workers need PostgreSQL
        (("send", "2022-W51", "--rate", "fast"), USAGE),
        (("send", "2022-W51", "--connections", "0"), USAGE),
        (("deliveries", "show", "2099-W01"), USAGE),
        (("deliveries", "resolve", "2099-W01", "--resend"), USAGE),
        (("deliveries", "resend", "2099-W01", "--state", "failed"), USAGE),
        (("articles", "show", "https://example.org/none/"), USAGE),
        (("articles", "list", "--week", "2022-W99"), USAGE),
        (("issue", "new", "--week", "not-a-week"), USAGE),
        (("issue", "new", "--week", "2022-W51"), USAGE),  # the file exists
        (("issue", "show", "2099-W01"), USAGE),
        (("issue", "add", "2022-W51", "https://example.org/none/"), USAGE),
        (("issue", "remove", "2022-W51", "https://example.org/none/"), USAGE),
        (("issue", "move", "2022-W51", "https://example.org/none/", "--to", "1"), USAGE),
        (("issue", "render", "2099-W01"), USAGE),
        (("issue", "check", "2099-W01"), USAGE),
        (("issue", "preview", "2099-W01"), USAGE),
        (("issue", "approve", "2099-W01"), USAGE),
        (("issue", "approve", "2022-W51", "--send-at", "someday"), USAGE),
        (("issue", "request-approval", "2022-W51"), USAGE),  # no approvers configured
        (("issue", "request-approval", "2099-W01", "--send-at", "someday"), USAGE),
        (("issue", "history", "2099-W01"), USAGE),
        (("subscribers", "add", "not-an-address"), USAGE),
        (("subscribers", "import", "missing.csv"), USAGE),
        (("subscribers", "export", "--status", "gone"), USAGE),
        (("subscribers", "list", "--status", "gone"), USAGE),
        (("subscribers", "count", "--newsletter", "Other"), USAGE),
        (("subscribers", "show", "nobody@example.org"), USAGE),
        (("subscribers", "unsubscribe", "nobody@example.org"), USAGE),
        (("subscribers", "remove", "nobody@example.org"), USAGE),
        (("subscribers", "suppress", "not-an-address"), USAGE),
        (("subscribers", "unsuppress", "nobody@example.org", "--reason", "x"), USAGE),
        (("bounces", "reprocess", "--since", "someday"), USAGE),
        (("collect", "no-such-source"), USAGE),
        (("collect", "--feed", "missing.rss"), FAILED),
        (("serve", "--port", "99999"), USAGE),
        (("serve", "--host", "192.0.2.1"), USAGE),  # not an address of this machine
        (("archive", "build"), DONE),
        (("db", "upgrade"), DONE),
        (("bounces", "process", "missing-maildir"), USAGE),
        (("bounces", "process", "imap://user:pw@127.0.0.1/INBOX"), USAGE),
        (("bounces", "process", "pop3://mail.example.org"), USAGE),
        (("bounces", "list", "--kind", "lost"), USAGE),
        (("bounces", "show", "12345"), USAGE),
        (("bounces", "list"), DONE),
        (("report", "2099-W01"), USAGE),
        (("report", "--last", "0"), USAGE),
        (("report", "--html", "r.html"), USAGE),  # nothing sent yet
        (("report",), DONE),
        (("doctor", "--dns", "127.0.0.1:x"), USAGE),
        (("doctor", "--dns", "127.0.0.1:1"), FAILED),  # no DNS answered: said, exit 1
        (("approvers", "passkey", "nobody@example.org"), USAGE),  # not an approver
        (("approvers", "list"), DONE),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else str(value),
)
def test_error_paths_exit_with_the_tables_code(
    collected: Project, command: tuple[str, ...], code: int
) -> None:
    made = collected.run("issue", "new", "--week", "2022-W51", "--author", "Asami Terajima")
    assert made.exit_code == DONE, made.output
    result = collected.run(*command)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    if code == USAGE:
        assert result.stderr.strip(), "a usage error says what to fix"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_some_work_failed_and_try_later(collected: Project, tmp_path: Path) -> None:
    (tmp_path / "list.csv").write_text("email\nolena@example.org\nnot-an-address\n")
    imported = collected.run("subscribers", "import", str(tmp_path / "list.csv"))
    assert imported.exit_code == FAILED, imported.output
    assert collected.run("subscribers", "add", "gone@example.org").exit_code == DONE
    assert collected.run("subscribers", "suppress", "gone@example.org").exit_code == DONE
    assert collected.run("subscribers", "add", "gone@example.org").exit_code == FAILED
    made = collected.run("issue", "new", "--week", "2022-W51", "--author", "Asami Terajima")
    assert made.exit_code == DONE, made.output
    assert collected.run("issue", "approve", "2022-W51").exit_code == DONE
    nobody = f"smtp://127.0.0.1:{free_port()}"
    sent = collected.run("send", "2022-W51", "--transport", nobody)
    assert sent.exit_code == TEMPFAIL, sent.output
