"""Issue files: create, list, show, edit (keeping hand-written parts), malformed files."""

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from newsletter.editorial.issue_file import parse_issue
from newsletter.errors import IssueFileError
from tests.conftest import Project
from tests.smtpserver import SMTPServer

BAKHMUT = "https://kyivindependent.com/front-line-diary-bakhmut/"
PATRIOT = "https://kyivindependent.com/patriot-what-it-changes/"
OTHER_AUTHOR = "https://kyivindependent.com/kreminna-forest-fighting/"


def new_issue(project: Project) -> Path:
    result = project.run(
        "issue", "new", "--week", "2022-W51", "--author", "Asami Terajima", "--json"
    )
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made["slug"] == "2022-W51" and len(made["articles"]) == 7
    return Path(made["path"])


def test_new_writes_the_week_in_order_and_refuses_to_overwrite(collected: Project) -> None:
    path = new_issue(collected)
    assert path == collected.root / "issues" / "2022-W51.md"
    text = path.read_text()
    assert 'subject: "War Notes: 19–25 December 2022"' in text
    assert "# Front-line diary: three days in Bakhmut" in text  # titles as comments
    again = collected.run("issue", "new", "--week", "2022-W51", "--author", "Asami Terajima")
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert path.read_text() == text
    forced = collected.run("issue", "new", "--week", "2022-W51", "--force", "--slug", "all-w51")
    assert forced.exit_code == 0 and (collected.root / "issues" / "all-w51.md").is_file()


def test_new_without_articles_and_bad_week_change_nothing(collected: Project) -> None:
    none = collected.run("issue", "new", "--week", "2021-W10")
    assert none.exit_code == 2 and "no articles in 2021-W10" in none.stderr
    bad = collected.run("issue", "new", "--week", "2022-W77")
    assert bad.exit_code == 2 and "has no week 77" in bad.stderr
    assert not (collected.root / "issues").exists()


def test_editing_helpers_keep_comments_intro_and_notes(collected: Project) -> None:
    path = new_issue(collected)
    text = (
        path.read_text().replace("articles:", "# my own comment, keep me\narticles:")
        + "Dear readers,\n\nThis week **mattered**.\n"
    )
    text = text.replace(f'  - url: "{PATRIOT}"', f'  - url: "{PATRIOT}"\n    note: "Read it."')
    path.write_text(text)

    assert collected.run("issue", "move", "2022-W51", PATRIOT, "--to", "1").exit_code == 0
    added = collected.run(
        "issue",
        "add",
        str(path),
        OTHER_AUTHOR + "?utm_source=x",
        "--section",
        "Elsewhere",
        "--note",
        "Not ours, but read it.",
    )
    assert added.exit_code == 0, added.output
    assert collected.run("issue", "remove", "2022-W51", BAKHMUT).exit_code == 0

    edited = path.read_text()
    assert "# my own comment, keep me" in edited
    assert edited.endswith("Dear readers,\n\nThis week **mattered**.\n")
    issue = parse_issue(edited, path)
    assert issue.articles[0].url == PATRIOT and issue.articles[0].note == "Read it."
    assert issue.articles[-1].url == OTHER_AUTHOR and issue.articles[-1].section == "Elsewhere"
    assert BAKHMUT not in [a.url for a in issue.articles]

    shown = json.loads(collected.run("issue", "show", "2022-W51", "--json").stdout)
    assert shown["items"][0]["title"].startswith("What a Patriot battery")
    assert shown["intro"].startswith("Dear readers")


def test_helper_errors(collected: Project) -> None:
    new_issue(collected)
    cases = [
        (["issue", "add", "2022-W51", PATRIOT], 2, "already in issue"),
        (["issue", "add", "2022-W51", "https://nowhere.example/x"], 2, "collect it first"),
        (["issue", "remove", "2022-W51", OTHER_AUTHOR], 2, "is not in issue 2022-W51"),
        (["issue", "move", "2022-W51", PATRIOT, "--to", "9"], 2, "use 1 to 7"),
        (["issue", "show", "2099-W01"], 2, "no issue file"),
    ]
    for args, code, message in cases:
        result = collected.run(*args)
        assert result.exit_code == code, (args, result.output)
        assert message in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no front matter", ":1: an issue file starts with a '---' line"),
        ("---\nslug: x\nsubject: s\n", "has no closing '---' line"),
        ("---\nslug: x\nsubject: [unclosed\n---\n", ":3: expected"),
        ("---\nslug: x\n---\n", ":2: 'subject' is missing"),
        ("---\nslug: 'bad slug!'\nsubject: s\n---\n", ":2: slug 'bad slug!'"),
        (
            "---\nslug: x\nsubject: s\narticles:\n"
            "  - url: https://e.org/a\n  - note: no url\n---\n",
            ":6: article 2 needs 'url",
        ),
        ("---\nslug: x\nsubject: s\narticles: 3\n---\n", ":4: 'articles' must be a list"),
    ],
)
def test_malformed_files_name_the_line(text: str, message: str) -> None:
    with pytest.raises(IssueFileError) as caught:
        parse_issue(text, Path("issues/x.md"))
    assert str(caught.value).startswith("issues/x.md") and message in str(caught.value)


def test_a_broken_file_is_listed_as_its_error(collected: Project) -> None:
    new_issue(collected)
    (collected.root / "issues" / "broken.md").write_text("---\nslug: [\n---\n")
    listed = json.loads(collected.run("issue", "list", "--json").stdout)
    assert {"error"} == set(listed[0]) and "broken.md:" in listed[0]["error"]
    assert listed[1]["slug"] == "2022-W51" and listed[1]["articles"] == 7
    shown = collected.run("issue", "show", "broken")
    assert shown.exit_code == 2 and "broken.md:3: expected the node content" in shown.stderr


def weeks_back_to(week: str) -> str:
    """`-N` naming `week` today (the samples are from 2022)."""
    monday = date.fromisocalendar(int(week[:4]), int(week[6:]), 1)
    today = datetime.now(ZoneInfo("Europe/Kyiv")).date()
    this_monday = today - timedelta(days=today.weekday())
    return f"-{(this_monday - monday).days // 7}"


def test_several_authors_and_relative_weeks(collected: Project) -> None:
    def urls(*args: str) -> list[str]:
        result = collected.run("issue", "new", "--json", "--force", *args)
        assert result.exit_code == 0, result.output
        return list(json.loads(result.stdout)["articles"])

    asami = urls("--week", "2022-W51", "--author", "Asami Terajima")
    illia = urls("--week", "2022-W51", "--author", "illia  ponomarenko")
    both = urls("--week", "2022-W51", "--author", "Asami Terajima", "--author", "Illia Ponomarenko")
    shared = set(asami) & set(illia)
    assert shared, "the sample has an article by both"
    assert len(both) == len(set(both)) == len(set(asami) | set(illia))
    assert urls("--week", weeks_back_to("2022-W51"), "--author", "Asami Terajima") == asami


def test_issue_new_defaults_to_last_week_and_the_configs_authors(collected: Project) -> None:
    text = collected.config_file.read_text()
    collected.config_file.write_text(
        text.replace(
            'name_fallback = "reader"', 'name_fallback = "reader"\nauthors = ["Illia Ponomarenko"]'
        )
    )
    # The samples are from 2022: last week has none of them, and the error says whose.
    none = collected.run("issue", "new")
    assert none.exit_code == 2 and "by Illia Ponomarenko in" in none.stderr
    made = collected.run("issue", "new", "--week", "2022-W51", "--json")
    assert made.exit_code == 0, made.output
    listed = json.loads(collected.run("articles", "list", "--week", "2022-W51", "--author",
                                      "Illia Ponomarenko", "--json").stdout)  # fmt: skip
    assert json.loads(made.stdout)["articles"] == [article["url"] for article in listed]


def test_the_weekly_cron_line_needs_no_flags(collected: Project, smtp_server: SMTPServer) -> None:
    """`collect && issue new && send --test-to ADDRESS` with the config's authors: here the
    week is given as -N because the samples are from 2022."""
    text = collected.config_file.read_text()
    text = text.replace('name_fallback = "reader"', 'authors = ["Asami Terajima"]')
    text = text.replace('transport = "file://outbox"', f'transport = "{smtp_server.url}"')
    collected.config_file.write_text(text)
    made = collected.run("issue", "new", "--week", weeks_back_to("2022-W51"))
    assert made.exit_code == 0, made.output
    assert made.stdout.strip().endswith("issues/2022-W51.md")
    # The same file, named by `last` when run in the week after it: send --test-to finds
    # last week's issue on its own (here, no such file: a clear usage error).
    missing = collected.run("send", "--test-to", "editor@example.org")
    assert missing.exit_code == 2 and "-W" in missing.stderr
    sent = collected.run("send", "2022-W51", "--test-to", "editor@example.org")
    assert sent.exit_code == 0, sent.output
    assert smtp_server.handler.addresses() == ["editor@example.org"]


def test_the_preheader_follows_the_lead_unless_the_editor_wrote_one(collected: Project) -> None:
    from newsletter.editorial.issue_file import effective_preheader

    path = new_issue(collected)
    last = json.loads(collected.run("issue", "show", "2022-W51", "--json").stdout)["items"][-1]
    moved = collected.run("issue", "move", "2022-W51", last["url"], "--to", "1")
    assert moved.exit_code == 0, moved.output
    rendered = json.loads(collected.run("issue", "render", "2022-W51", "--json").stdout)
    html = (Path(rendered["folder"]) / "email.html").read_text()
    assert f"This week: {last['title']} and 6 more" in html
    path.write_text(path.read_text().replace("preheader: ", 'preheader: "Our pick" #', 1))
    collected.run("issue", "render", "2022-W51")
    assert "Our pick" in (Path(rendered["folder"]) / "email.html").read_text()
    titles = ["Lead story", "Second"]
    assert effective_preheader("", titles) == "This week: Lead story and 1 more"
    assert effective_preheader("This week: Second and 1 more", titles).startswith(
        "This week: Lead story"
    )
    assert effective_preheader("This week: a scoop", titles) == "This week: a scoop"


def test_an_issue_sets_its_greeting_or_turns_it_off(collected: Project) -> None:
    """The sample greeted twice: the theme's "Hello, reader," above an intro that opened
    "Dear readers,"."""
    assert collected.run("issue", "new", "--week", "2022-W51").exit_code == 0
    path = collected.root / "issues" / "2022-W51.md"
    original = path.read_text()

    def rendered(front: str) -> str:
        path.write_text(original.replace('week: "2022-W51"', f'week: "2022-W51"\n{front}', 1))
        result = collected.run("issue", "render", "2022-W51")
        assert result.exit_code in (0, 1), result.output
        return (collected.root / "build" / "2022-W51" / "email.txt").read_text()

    assert "Hello, %%first_name%%," in rendered("")
    mine = rendered('greeting: "Dear {name},"')
    assert "Dear %%first_name%%," in mine and "Hello," not in mine
    html = (collected.root / "build" / "2022-W51" / "email.html").read_text()
    assert "Dear %%first_name%%," in html
    none = rendered("greeting: false")
    assert "%%first_name%%" not in none and "Hello," not in none
    for bad in ("greeting: 3", 'greeting: "Dear {reader},"', 'greeting: ""'):
        path.write_text(original.replace('week: "2022-W51"', f'week: "2022-W51"\n{bad}', 1))
        refused = collected.run("issue", "render", "2022-W51")
        assert refused.exit_code == 2 and "greeting" in refused.stderr, refused.output


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ('---\nslug: w\nsubject: S\npreheadr: "Two lines"\n---\n', 4, "did you mean 'preheader'?"),
        ("---\nslug: w\nsubject: S\nSubject: T\n---\n", 4, "did you mean 'subject'?"),
        ("---\nslug: w\nsubject: S\narticles:\n  - url: https://e.org/a/\n    nots: Hi\n---\n",
         6, "did you mean 'note'?"),
        ("---\nslug: w\nsubject: S\narticles:\n  - url: https://e.org/a/\n    secton: War\n---\n",
         6, "did you mean 'section'?"),
        ("---\nslug: w\nsubject: S\nsend_when: Monday\n---\n", 4, "the front matter knows"),
    ],
)  # fmt: skip
def test_an_unknown_key_is_refused_with_its_line_and_the_nearest(
    text: str, where: int, message: str
) -> None:
    with pytest.raises(IssueFileError) as raised:
        parse_issue(text, Path("issues/w.md"))
    assert str(raised.value).startswith(f"issues/w.md:{where}: unknown key")
    assert message in str(raised.value)


def test_every_command_refuses_a_file_with_a_misspelt_key(collected: Project) -> None:
    path = new_issue(collected)
    path.write_text(path.read_text().replace("preheader:", "preheadr:", 1))
    config = collected.config_file.read_text()
    collected.config_file.write_text(
        config.replace(
            "approval_hours = 72\n", 'approval_hours = 72\napprovers = ["O <o@e.org>"]\n'
        )
    )
    for command in ("render", "check", "approve", "request-approval"):
        result = collected.run("issue", command, "2022-W51")
        assert result.exit_code == 2, (command, result.output)
        assert "unknown key 'preheadr'" in result.stderr and "'preheader'" in result.stderr


def test_issue_new_writes_the_greeting_the_theme_will_send(collected: Project) -> None:
    """Commented, in the newsletter's language, so the editor sees it before a double
    salutation goes out."""
    path = new_issue(collected)
    text = path.read_text()
    assert '# greeting: "Hello, {name},"' in text
    assert parse_issue(text, path).greeting is None  # a comment: the theme's, as before
    path.write_text(text.replace('# greeting: "Hello, {name},"', "greeting: false"))
    assert parse_issue(path.read_text(), path).greeting is False
