"""Every word a reader sees, in the newsletter's language: the catalogues hold exactly the
messages the theme and the code write (none missing, none stale), and a Ukrainian
newsletter's email, mails and pages carry no English word of the project's own."""

from __future__ import annotations

import functools
import json
import re
import time
from pathlib import Path

import httpx
import lxml.html
import pytest
from babel.messages.catalog import Catalog
from sqlmodel import Session

from newsletter import languages
from newsletter.audience import subscribers
from newsletter.audience.tokens import load_key, make_token
from newsletter.cli import app
from newsletter.config import load_config
from newsletter.errors import ConfigError
from tests.conftest import Project
from tests.forms import press_confirm, served
from tests.liveweb import start
from tests.smtpserver import SMTPServer


def _ids(catalog: Catalog) -> set[str]:
    return {str(m.id if isinstance(m.id, str) else m.id[0]) for m in catalog if m.id}


@pytest.mark.parametrize("language", [lang for lang in languages.available() if lang != "en"])
def test_each_catalogue_holds_exactly_the_messages_the_project_writes(language: str) -> None:
    written = languages.messages()
    catalog = languages.catalog(language)
    assert catalog is not None
    assert written - _ids(catalog) == set(), "missing from the catalogue"
    assert _ids(catalog) - written == set(), "stale in the catalogue"
    assert languages.missing(language, written) == []
    assert all(m.string for m in catalog if m.id), "an empty translation"


def test_dates_plurals_and_direction_come_from_cldr() -> None:
    from datetime import date

    assert languages.week_range(date(2022, 12, 19), date(2022, 12, 25), "uk") == "19–25 грудня 2022"
    assert (
        languages.week_range(date(2022, 12, 19), date(2022, 12, 25), "en") == "19–25 December 2022"
    )
    assert (
        languages.week_range(date(2022, 11, 28), date(2022, 12, 4), "uk")
        == "28 листопада – 4 грудня 2022"
    )
    words = languages.translations("uk")
    shown = [words.ngettext("%(minutes)d min read", "%(minutes)d min read", n) % {"minutes": n}
             for n in (1, 2, 5, 21)]  # fmt: skip
    assert shown == [
        "1 хвилина читання", "2 хвилини читання", "5 хвилин читання", "21 хвилина читання"
    ]  # fmt: skip
    assert languages.direction("uk") == "ltr" and languages.direction("ar") == "rtl"


def test_a_language_without_a_catalogue_names_the_ones_there_are(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.toml"
    path.write_text(
        '[newsletter]\nname = "N"\nfrom = "a@example.org"\nbase_url = "https://e.org"\n'
        'language = "xx-Nope"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "language" in str(caught.value) and "en, uk" in str(caught.value)


@functools.cache
def english() -> list[str]:
    """Our English messages with words of their own, longest first (extracted once)."""
    return sorted(
        (m for m in languages.messages() if len(re.sub(r"%\(\w+\)[sd]", "", m).strip()) > 3),
        key=len,
        reverse=True,
    )


def english_left(text: str) -> list[str]:
    """Our English messages (their words outside the placeholders) still in what a reader
    reads: a page's or an email's text, not its markup (a form field named
    List-Unsubscribe is protocol, not English)."""
    if text.lstrip()[:1] == "<":
        root = lxml.html.document_fromstring(text)
        for hidden in root.xpath("//style | //script"):
            hidden.drop_tree()
        shown = [
            str(a)
            for a in root.xpath("//@alt | //@title | //@aria-label | //@value[../@type='submit']")
        ]
        text = root.text_content() + " " + " ".join(shown)
    left = []
    for message in english():
        pieces = [p.strip() for p in re.split(r"%\(\w+\)[sd]", message) if len(p.strip()) > 3]
        if pieces and all(piece in text for piece in pieces):
            left.append(message)
    return left


def test_a_ukrainian_issue_has_no_english_word_of_ours(collected: Project) -> None:
    text = collected.config_file.read_text().replace('language = "en"', 'language = "uk"')
    collected.config_file.write_text(text)
    made = collected.run("issue", "new", "--week", "2022-W51", "--author", "Asami Terajima")
    assert made.exit_code == 0, made.output
    rendered = collected.run("issue", "render", "2022-W51")
    assert rendered.exit_code in (0, 1), rendered.output
    build = collected.root / "build" / "2022-W51"
    html = (build / "email.html").read_text()
    plain = (build / "email.txt").read_text()
    assert '<html lang="uk" dir="ltr"' in html
    assert "19–25 грудня 2022" in html and "19–25 грудня 2022" in plain
    assert "хвилин" in plain and "Відписатися" in html and "Відписатися" in plain
    assert english_left(html) == [] and english_left(plain) == []
    # The archive: its index, the issue's page and the feed's description.
    assert collected.run("issue", "approve", "2022-W51").exit_code == 0
    assert collected.run("archive", "build").exit_code == 0
    archive = collected.root / "build" / "archive"
    index = (archive / "index.html").read_text()
    assert '<html lang="uk" dir="ltr">' in index and "Попередні випуски" in index
    assert "грудня 2022" in index
    assert english_left(index) == []
    assert english_left((archive / "2022-W51" / "index.html").read_text()) == []
    assert "Попередні випуски War Notes" in (archive / "feed.xml").read_text()


def test_a_ukrainian_newsletters_pages_and_confirmation_mail(
    project: Project, smtp_server: SMTPServer
) -> None:
    text = project.config_file.read_text().replace('language = "en"', 'language = "uk"')
    project.config_file.write_text(text)
    server = start(project, smtp_server, None)
    live = next(server)
    try:
        pages = [
            httpx.get(f"{live.base}/subscribe", timeout=10),
            httpx.post(
                f"{live.base}/subscribe",
                data={"served": served(live.project), "email": "not an address"},
                timeout=10,
            ),
            httpx.get(f"{live.base}/unsubscribe/nope", timeout=10),
            httpx.get(f"{live.base}/nowhere", timeout=10),
        ]
        sent = httpx.post(
            f"{live.base}/subscribe",
            data={"served": served(live.project), "email": "olena@example.org"},
            timeout=10,
        )
        pages.append(sent)
        deadline = time.monotonic() + 10
        while not smtp_server.received and time.monotonic() < deadline:
            time.sleep(0.05)
        body = smtp_server.received[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        link = re.search(r"(http://127\.0\.0\.1:\d+/confirm/\S+)", body)
        assert link is not None
        pages.append(press_confirm(httpx, live.project, link.group(1)))  # the confirmation
        key = load_key(project.config.signing_key_file)
        with Session(project.engine()) as session:
            token_id = subscribers.require(session, "olena@example.org").token_id
        footer = make_token(key, "unsubscribe", "war-notes", token_id)
        pages.append(httpx.get(f"{live.base}/unsubscribe/{footer}", timeout=10))
        pages.append(httpx.get(f"{live.base}/preferences/{footer}", timeout=10))
        manage = make_token(key, "manage", "war-notes", token_id)
        pages.append(httpx.get(f"{live.base}/preferences/{manage}", timeout=10))
        pages.append(
            httpx.post(
                f"{live.base}/unsubscribe/{footer}",
                data={"List-Unsubscribe": "One-Click"},
                timeout=10,
            )
        )
    finally:
        next(server, None)
    assert [p.status_code for p in pages] == [200, 400, 404, 404, 200, 200, 200, 200, 200, 200]
    assert "Підписку оформлено" in pages[5].text and "Ви відписалися" in pages[-1].text
    for page in pages:
        assert '<html lang="uk" dir="ltr">' in page.text
        assert english_left(page.text) == [], page.text
    assert "Підписатися на" in pages[0].text and "Перевірте пошту" in pages[4].text
    mail = smtp_server.received[0].message
    assert str(mail["Subject"]).startswith("Підтвердьте підписку на")
    for part in ("plain", "html"):
        body = mail.get_body((part,)).get_content()  # type: ignore[union-attr]
        assert "Вітаємо!" in body and english_left(body) == []


def test_issue_check_names_a_themes_messages_the_catalogue_lacks(collected: Project) -> None:
    theme = collected.root / "theme"
    theme.mkdir()
    default = (Path(__file__).resolve().parents[1] / "templates" / "email.txt.j2").read_text()
    (theme / "email.txt.j2").write_text(default + '{{ _("Our own brand new words") }}\n')
    text = collected.config_file.read_text().replace('language = "en"', 'language = "uk"')
    text = text.replace('# templates = "theme"', 'templates = "theme"')
    collected.config_file.write_text(text)
    assert collected.run("issue", "new", "--week", "2022-W51").exit_code == 0
    checked = collected.run("issue", "check", "2022-W51", "--json")
    findings = json.loads(checked.stdout)["findings"]
    warned = [f for f in findings if f["code"] == "translation"]
    assert len(warned) == 1 and "Our own brand new words" in warned[0]["message"]
    plain = collected.run("issue", "render", "2022-W51")
    assert plain.exit_code in (0, 1)
    shown = (collected.root / "build" / "2022-W51" / "email.txt").read_text()
    assert "Our own brand new words" in shown and "Відписатися" in shown  # that one, in English


def _po(language: str, entries: dict[str, str]) -> str:
    body = "".join(f'msgid "{source}"\nmsgstr "{target}"\n\n' for source, target in entries.items())
    return (
        f'msgid ""\nmsgstr ""\n"Language: {language}\\n"\n'
        '"Content-Type: text/plain; charset=utf-8\\n"\n\n' + body
    )


def test_a_themes_own_catalogue_adds_words_and_wins_over_the_packages(
    collected: Project,
) -> None:
    theme = collected.root / "theme"
    (theme / "locales").mkdir(parents=True)
    default = (Path(__file__).resolve().parents[1] / "templates" / "email.txt.j2").read_text()
    (theme / "email.txt.j2").write_text(default + '{{ _("Our own brand new words") }}\n')
    (theme / "locales" / "uk.po").write_text(
        _po("uk", {"Our own brand new words": "Наші власні слова", "Unsubscribe": "Скасувати"})
    )
    text = collected.config_file.read_text().replace('language = "en"', 'language = "uk"')
    collected.config_file.write_text(text.replace('# templates = "theme"', 'templates = "theme"'))
    assert collected.run("issue", "new", "--week", "2022-W51").exit_code == 0
    checked = json.loads(collected.run("issue", "check", "2022-W51", "--json").stdout)
    assert [f for f in checked["findings"] if f["code"] == "translation"] == []
    assert collected.run("issue", "render", "2022-W51").exit_code in (0, 1)
    shown = (collected.root / "build" / "2022-W51" / "email.txt").read_text()
    assert "Наші власні слова" in shown and "Скасувати:" in shown  # the theme's own words
    assert "Вам переслали цей лист?" in shown  # the package's, where the theme says nothing


def test_a_theme_may_bring_a_language_the_package_has_no_catalogue_for(
    collected: Project,
) -> None:
    """Polish: no catalogue ships; the theme's makes it a language readers can get, CLDR
    writes its dates, and `issue check` names every message left in English."""
    text = collected.config_file.read_text().replace('language = "en"', 'language = "pl"')
    collected.config_file.write_text(text)
    refused = collected.run("issue", "new", "--week", "2022-W51")
    assert refused.exit_code == 2
    assert "no catalogue for the language 'pl'" in refused.stderr
    assert "THEME/locales/pl.po" in refused.stderr and "en, uk" in refused.stderr
    theme = collected.root / "theme"
    (theme / "locales").mkdir(parents=True)
    (theme / "locales" / "pl.po").write_text(
        _po("pl", {"Unsubscribe": "Wypisz się", "Hello, %(name)s,": "Dzień dobry, %(name)s,"})
    )
    collected.config_file.write_text(text.replace('# templates = "theme"', 'templates = "theme"'))
    assert collected.run("issue", "new", "--week", "2022-W51").exit_code == 0
    checked = json.loads(collected.run("issue", "check", "2022-W51", "--json").stdout)
    (warned,) = [f for f in checked["findings"] if f["code"] == "translation"]
    assert re.match(r"\d\d+ messages are not in the pl catalogue", warned["message"])
    assert collected.run("issue", "render", "2022-W51").exit_code in (0, 1)
    shown = (collected.root / "build" / "2022-W51" / "email.txt").read_text()
    # The theme's Polish words, and the name fallback its catalogue lacks in English.
    assert "Wypisz się:" in shown and "Dzień dobry, %%first_name%%," in shown
    assert "grudnia 2022" in shown  # CLDR's Polish month, with no catalogue of ours
    html = (collected.root / "build" / "2022-W51" / "email.html").read_text()
    assert 'lang="pl"' in html


def test_init_writes_the_language_asked_for_or_names_the_ones_there_are(
    tmp_path: Path,
) -> None:
    from tests.conftest import runner

    made = runner.invoke(app, ["init", str(tmp_path / "uk"), "--language", "uk"])
    assert made.exit_code == 0, made.output
    assert load_config(tmp_path / "uk" / "newsletter.toml").language == "uk"
    refused = runner.invoke(app, ["init", str(tmp_path / "de"), "--language", "de"])
    assert refused.exit_code == 2
    assert "--language" in refused.stderr and "en, uk" in refused.stderr
    assert not (tmp_path / "de" / "newsletter.toml").exists()


@pytest.mark.parametrize(
    "entries,expected",
    [
        ({"Hello, %(name)s,": "Вітаємо, %(imya)s,"}, "placeholder %(imya)s"),
        ({"Hello, %(name)s,": "Вітаємо, %s,"}, "placeholder %s"),
        ({"Unsubscribe": "<script>alert(1)</script>Відписатися"}, "markup"),
    ],
)
def test_a_theme_catalogue_that_would_fail_or_inject_is_refused_with_its_line(
    collected: Project, entries: dict[str, str], expected: str
) -> None:
    theme = collected.root / "theme"
    (theme / "locales").mkdir(parents=True)
    (theme / "locales" / "uk.po").write_text(_po("uk", {"Subscribe": "Підписатися"} | entries))
    text = collected.config_file.read_text().replace('language = "en"', 'language = "uk"')
    collected.config_file.write_text(text.replace('# templates = "theme"', 'templates = "theme"'))
    for command in (("issue", "new", "--week", "2022-W51"), ("subscribers", "count")):
        refused = collected.run(*command)
        assert refused.exit_code == 2, refused.output  # not 70, not a traceback
        assert "uk.po:" in refused.stderr and expected in refused.stderr
        assert "Traceback" not in refused.output


def test_the_shipped_catalogues_pass_the_themes_checks() -> None:
    from newsletter import languages

    for language in languages.available():
        found = languages.catalog(language)
        for message in found or []:
            if message.id and languages._translated(message.string):
                languages._check_message(Path(f"{language}.po"), message)
