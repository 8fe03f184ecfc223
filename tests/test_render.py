"""The render pipeline and personalize(), without a database."""

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.editorial.issue_file import IssueArticle, IssueFile
from newsletter.editorial.render import (
    Recipient,
    RenderError,
    Template,
    personalize,
    render_issue,
    sample_recipient,
)
from tests.issues import assert_snapshot, make_article, make_config, sample_issue


@pytest.fixture
def rendered(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = make_config(tmp_path)
    issue, articles = sample_issue(tmp_path)
    return config, render_issue(config, issue, articles)


def test_premailer_keeps_doctype_media_queries_and_inlines_only_inline_rules(rendered) -> None:  # type: ignore[no-untyped-def]
    _, result = rendered
    html = result.html.source
    assert html.startswith("<!doctype html>")
    assert re.search(r'<html[^>]* lang="en"', html)
    assert "@media only screen and (min-width:480px)" in html
    assert "width:38% !important" in html  # the responsive columns kept their !important
    assert "prefers-color-scheme: dark" in html and "#121212 !important" in html
    assert 'name="color-scheme" content="light dark"' in html
    assert "data-premailer" not in html
    title_link = re.search(r'<a href="https://kyivindependent.com/bakhmut/"[^>]*>Front-line', html)
    assert title_link and "text-decoration:none" in title_link[0]  # the mj-style inline rule
    assert "text-decoration: none; }" not in html  # inline rules are applied, not shipped
    assert "fonts.googleapis" not in html and "@import" not in html and "<link" not in html
    assert all(' alt="' in tag for tag in re.findall(r"<img\b[^>]*>", html))


def test_parts_carry_the_same_articles_and_links(rendered) -> None:  # type: ignore[no-untyped-def]
    _, result = rendered
    text = result.text.source
    for article in result.articles:
        assert article.title in text and article.url in text
        assert f'href="{article.url}"' in result.html.source
    assert "the front (https://kyivindependent.com/front/)" in text
    assert "a link (https://e.org/ref)" in text
    # A real heading, upper-cased by CSS (screen readers read the words, not the capitals).
    assert "== NOTEBOOK ==" in text and re.search(r"<h2\b[^>]*>Notebook</h2>", result.html.source)
    assert "Editor’s note: Read this first." in text
    assert "<em>first</em>" in result.html.source
    assert (
        result.html.names() == result.text.names() == {"first_name", "unsubscribe_url", "view_url"}
    )


def test_web_version_has_no_personal_links(rendered) -> None:  # type: ignore[no-untyped-def]
    _, result = rendered
    assert "%%" not in result.web_html
    assert "https://news.example.org/subscribe" in result.web_html
    assert "Unsubscribe" not in result.web_html


def test_theme_snapshots(rendered) -> None:  # type: ignore[no-untyped-def]
    """Golden files guard the theme: a change to them must be a deliberate one
    (UPDATE_SNAPSHOTS=1 rewrites them; review the diff)."""
    _, result = rendered
    assert_snapshot("2022-W51.txt", result.text.source)
    assert_snapshot("2022-W51.html", result.html.source)


def test_template_errors_name_the_file_and_line(tmp_path: Path) -> None:
    theme = tmp_path / "theme"
    theme.mkdir()
    config = make_config(tmp_path, '[render]\ntemplates = "theme"\n')
    issue, articles = sample_issue(tmp_path)
    (theme / "email.txt.j2").write_text("Hello\n{{ issue.subjekt }}\n")
    with pytest.raises(RenderError, match=r"theme/email.txt.j2:2: .*subjekt"):
        render_issue(config, issue, articles)
    (theme / "email.txt.j2").write_text("Hello\n\n{% for x in %}\n")
    with pytest.raises(RenderError, match=r"theme/email.txt.j2:3: "):
        render_issue(config, issue, articles)
    (theme / "email.txt.j2").unlink()
    (theme / "email.mjml.j2").write_text("<mjml><mj-body><mj-section><mj-text>x</mj-section>")
    with pytest.raises(RenderError, match="email.mjml.j2: the MJML it produced is invalid"):
        render_issue(config, issue, articles)


def test_a_theme_overrides_only_the_files_it_has(tmp_path: Path) -> None:
    theme = tmp_path / "theme"
    theme.mkdir()
    (theme / "email.txt.j2").write_text("{{ newsletter.name }} text {{ unsubscribe_url }}\n")
    config = make_config(tmp_path, '[render]\ntemplates = "theme"\n')
    result = render_issue(config, *sample_issue(tmp_path))
    assert result.text.source == "War Notes text %%unsubscribe_url%%\n"
    assert "Front-line diary" in result.html.source  # default MJML theme still used


def test_personalize_fills_every_placeholder(rendered) -> None:  # type: ignore[no-untyped-def]
    config, result = rendered
    html = personalize(
        result.html,
        Recipient("Olena", "https://n.org/u/TOKEN", "https://n.org/v"),
        "reader",
        "html",
    )
    assert "%%" not in html and "Hello, Olena," in html
    assert 'href="https://n.org/u/TOKEN"' in html and 'href="https://n.org/v"' in html
    text = personalize(result.text, sample_recipient(config, "2022-W51"), "reader", "text")
    assert (
        "Hello, reader," in text
        and "Unsubscribe: https://news.example.org/unsubscribe/preview" in text
    )


hostile = st.text(alphabet=st.sampled_from(list("<>&\"'\r\n\t\x00\u2028 aZé日🙂=;/")), max_size=40)


@given(name=hostile, url_tail=hostile)
def test_hostile_values_cannot_escape_their_context(name: str, url_tail: str) -> None:
    template = Template.parse(
        '<p title="%%first_name%%">Hi %%first_name%%</p><a href="%%unsubscribe_url%%">u</a>\n'
    )
    text_template = Template.parse("Hello, %%first_name%%,\nUnsubscribe: %%unsubscribe_url%%\n")
    recipient = Recipient(name, "https://n.org/u/" + url_tail, "https://n.org/v")
    html = personalize(template, recipient, "reader", "html")
    assert html.count("<") == 4 and html.count('"') == 4 and html.count("\n") == 1
    assert "\r" not in html and "\x00" not in html
    text = personalize(text_template, recipient, "reader", "text")
    assert text.count("\n") == 2 and "\r" not in text and "\u2028" not in text
    assert text.startswith("Hello, ") and "\nUnsubscribe: https://n.org/u/" in text
    if not name.strip(" \r\n\t\x00\u2028"):
        assert "Hello, reader," in text


def test_parts_are_split_once_at_their_placeholders(rendered) -> None:  # type: ignore[no-untyped-def]
    """Filling joins parts split once, never re-renders (bench/ measures the cost)."""
    config, result = rendered
    recipient = sample_recipient(config, "x")
    assert len(result.html.parts) == 2 * 4 + 1  # four placeholders, split once
    assert personalize(result.html, recipient, "r", "html").startswith("<!doctype html>")


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_preheader_is_hidden_without_colour_and_dark_links_are_readable(rendered) -> None:  # type: ignore[no-untyped-def]
    _, result = rendered
    html = result.html.source
    hidden = re.search(r'<div class="preheader" style="([^"]*)">([^<]*)</div>', html)
    assert hidden and "color" not in hidden[1] and "mso-hide:all" in hidden[1]
    assert hidden[2].startswith("This week:") and hidden[2].count("\u200c\xa0") >= 50
    assert html.index('class="preheader"') < html.index("View in your browser")
    dark = html[html.index("prefers-color-scheme: dark") :]
    link = re.search(r"\.intro a, \.card-note a, \.card-summary a \{ color: (#[0-9a-f]{6})", dark)
    assert link and contrast(link[1], "#1e1e1e") >= 4.5  # WCAG AA on the dark card
    assert "[data-ogsc] .intro a" in html  # Outlook.com's dark mode
    assert contrast("#0b57d0", "#ffffff") >= 4.5  # the light links


def test_image_width_attributes_fit_their_column(rendered) -> None:  # type: ignore[no-untyped-def]
    """Outlook honours the width attribute: a card image's must be its column's content
    width (38% of 600 px less 2 x 24 px padding = 180), not the column's (228); the lead
    story's picture spans the whole card (600 less 2 x 24 = 552)."""
    _, result = rendered
    widths = [int(w) for w in re.findall(r'<img\b[^>]*\bwidth="(\d+)"', result.html.source)]
    lead, *cards = widths
    assert lead <= 552 and cards and all(width <= 180 for width in cards), widths


def test_twelve_articles_with_sections_and_the_reporter_stay_under_gmails_clip(
    tmp_path: Path,
) -> None:
    """Gmail cuts a message's HTML at 102 KB ("[Message clipped]"), hiding the footer and
    its unsubscribe link: a full issue must stay under it with room for the per-recipient
    values and counted links."""
    from newsletter.editorial.render import Reporter

    config = make_config(
        tmp_path, extra='[render]\nsupport_url = "https://example.org/support"\n',
        newsletter_extra='logo = "https://example.org/logo.png"\n',
    )  # fmt: skip
    long = "<p>" + "A two-sentence summary of the story, as the feed gives it. " * 4 + "</p>"
    title = "Headline number {} about the week at the front"
    articles = [
        make_article(f"story-{n}", title.format(n), ["Asami Terajima"], 19 + n % 6,
                     image=n % 3 != 2, summary=long)
        for n in range(12)
    ]  # fmt: skip
    note = "An editor's *note* with [a link](https://e.org/x)."
    heads = ("Front line", "Home front", "Notebook")
    issue = IssueFile.build(
        tmp_path / "issues" / "2022-W51.md",
        [
            IssueArticle(a.url, note=note if n % 2 else None,
                         section=heads[n // 4] if n % 4 == 0 else None)
            for n, a in enumerate(articles)
        ],
        newsletter="War Notes", slug="2022-W51", subject="War Notes", preheader="",
        author="Asami Terajima", week="2022-W51", intro="Dear readers,\n\n" + "An intro. " * 60,
    )  # fmt: skip
    reporter = Reporter("Asami Terajima", "Reporter", "A bio. " * 80, "https://e.org/a.jpg")
    rendered = render_issue(config, issue, articles, [reporter])
    size = len(rendered.html.source.encode())
    assert size < 90_000, size  # 102 KB less room for names, links and tokens
