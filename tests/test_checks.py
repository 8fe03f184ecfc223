"""Each email check, on crafted parts; and `issue check` / `issue render` on a real issue."""

import json
from pathlib import Path

import pytest

from newsletter.editorial.checks import check_email, check_rendered, has_errors
from newsletter.editorial.render import Template, render_issue
from tests.conftest import Project
from tests.issues import make_config, sample_issue

GOOD = (
    '<!doctype html><html lang="en"><head><style>p{}</style></head><body>'
    '<img src="https://e.org/a.jpg" alt="A"><a href="https://e.org/story">Story</a>'
    '<a href="https://n.org/unsubscribe/x">Unsubscribe</a></body></html>'
)
GOOD_TEXT = "Story https://e.org/story\nUnsubscribe: https://n.org/unsubscribe/x\n"
HTML_T = Template.parse('<a href="%%unsubscribe_url%%">Unsubscribe</a>')
TEXT_T = Template.parse("Unsubscribe: %%unsubscribe_url%%")


def codes(html: str = GOOD, text: str = GOOD_TEXT, **kwargs: object) -> dict[str, str]:
    found = check_email(
        html, text, kwargs.pop("html_t", HTML_T), kwargs.pop("text_t", TEXT_T),  # type: ignore[arg-type]
        ["https://e.org/story"], postal_address="Street", intro="Hi",
    )  # fmt: skip
    return {f.code: f.level for f in found}


def test_a_good_email_passes() -> None:
    assert codes() == {}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda h: h.replace("<!doctype html>", ""), "doctype"),
        (lambda h: h.replace(' lang="en"', ""), "lang"),
        (lambda h: h.replace(' alt="A"', ""), "alt"),
        (lambda h: h.replace("https://e.org/a.jpg", "http://e.org/a.jpg"), "link"),
        (lambda h: h.replace("https://e.org/story", "/story"), "link"),
        (
            lambda h: h.replace(
                "<style>p{}</style>", '<link rel="stylesheet" href="https://x/c.css">'
            ),
            "remote-css",
        ),
        (lambda h: h.replace("p{}", "@import url(https://x/c.css);"), "remote-css"),
        (lambda h: h.replace("</body>", "<script>x()</script></body>"), "script"),
        (lambda h: h.replace("p{}", "p{color:red}" * 2000), "style-size"),
        (lambda h: h.replace("</body>", "<p>" + "x" * 110_000 + "</p></body>"), "size"),
        (lambda h: h.replace(">Unsubscribe<", "><"), "unsubscribe"),
    ],
)
def test_each_problem_is_an_error(change, code: str) -> None:  # type: ignore[no-untyped-def]
    assert codes(change(GOOD)).get(code) == "error"


def test_text_part_problems() -> None:
    assert codes(text="").get("text") == "error"
    assert codes(text="Unsubscribe: https://n.org/unsubscribe/x").get("text-mismatch") == "error"
    assert codes(text_t=Template.parse("no link")).get("unsubscribe") == "error"
    assert codes(html_t=Template.parse("<p>none</p>")).get("unsubscribe") == "error"


def test_warnings_do_not_fail(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    issue, articles = sample_issue(tmp_path)
    issue.intro = ""
    rendered = render_issue(config, issue, articles)
    findings = check_rendered(config, issue, rendered)
    assert [(f.level, f.code) for f in findings] == [("warning", "intro")]
    assert not has_errors(findings)


def test_the_sample_issue_passes_and_a_bad_note_fails(collected: Project) -> None:
    made = collected.run(
        "issue", "new", "--week", "2022-W51", "--author", "Asami Terajima", "--json"
    )
    path = Path(json.loads(made.stdout)["path"])
    path.write_text(path.read_text() + "Dear readers, a week in Bakhmut.\n")
    checked = collected.run("issue", "check", "2022-W51", "--json")
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    assert report["ok"] is True
    assert [f["code"] for f in report["findings"]] == ["postal-address"]

    rendered = collected.run("issue", "render", "2022-W51", "--out", "out", "--json")
    assert rendered.exit_code == 0, rendered.output
    files = json.loads(rendered.stdout)["files"]
    assert set(files) == {"email.html", "email.txt", "web.html"}
    assert files["email.html"] < 100 * 1024
    assert "%%unsubscribe_url%%" in (collected.root / "out" / "email.html").read_text()

    path.write_text(path.read_text().replace(
        "articles:", "articles:\n  - url: https://kyivindependent.com/rail-winter/\n"
        "    note: 'See [this](http://insecure.example/)'", 1))  # fmt: skip
    failed = collected.run("issue", "check", "2022-W51")
    assert failed.exit_code == 1
    assert "error: link http://insecure.example/ is http:, not https" in failed.stderr
    assert (collected.run("issue", "render", "2022-W51")).exit_code == 1
    assert (collected.root / "build" / "2022-W51" / "email.html").is_file()


def test_summaries_and_images_from_elsewhere_cannot_fail_the_checks(tmp_path: Path) -> None:
    """Feeds put images without alt, plain-http links and layout tables in their
    descriptions; cards keep the words and drop what an email cannot carry."""
    config = make_config(tmp_path)
    issue, articles = sample_issue(tmp_path)
    articles[0].summary_html = (
        '<p>Read <a href="http://plain.example/story">the story</a>.</p>'
        '<img src="http://cdn.example/a.jpg"><table><tr><td>layout</td></tr></table>'
        '<h2>Big heading</h2><iframe src="https://video.example/"></iframe>'
    )
    articles[1].image = "http://cdn.example/b.jpg"
    rendered = render_issue(config, issue, articles)
    findings = check_rendered(config, issue, rendered)
    assert not has_errors(findings), findings
    html = rendered.html.source
    assert (
        "cdn.example" not in html
        and "plain.example" not in html
        and "<table><tr><td>layout" not in html
    )
    assert "Read the story." in rendered.text.source.replace("\n", " ")
