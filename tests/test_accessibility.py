"""Automated accessibility: axe-core (installed by scripts/axe) run in Chromium on the email
a subscriber gets and on the web pages, in light and dark mode. No serious or critical
violation; the moderate ones (an email has no `main` landmark) are allowed."""

from pathlib import Path

import pytest
from playwright.sync_api import Browser
from sqlmodel import Session

from newsletter.audience import subscribers
from newsletter.audience.tokens import load_key, signed_url
from tests.conftest import Project
from tests.liveweb import Live
from tests.smtpserver import SMTPServer

AXE = Path(__file__).resolve().parent.parent / ".cache/axe/node_modules/axe-core/axe.min.js"


def violations(browser: Browser, url: str, scheme: str, width: int = 375) -> list[str]:
    assert AXE.exists(), "axe-core is missing: run scripts/axe (scripts/test does)"
    # The pages' Content-Security-Policy forbids injected scripts, rightly: the test's
    # context sets it aside to run axe.
    context = browser.new_context(
        viewport={"width": width, "height": 800},
        color_scheme=scheme,  # type: ignore[arg-type]
        bypass_csp=True,
    )
    page = context.new_page()
    try:
        page.goto(url)
        page.add_script_tag(path=str(AXE))
        result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    finally:
        context.close()
    return [
        f"{scheme} {width}px {v['impact']} {v['id']}: {v['help']} at {v['nodes'][0]['target']}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_email_has_no_serious_violations_in_light_or_dark_mode(
    collected: Project, browser: Browser
) -> None:
    assert collected.run("issue", "new", "--week", "2022-W51").exit_code == 0
    assert collected.run("issue", "preview", "2022-W51").exit_code == 0
    page = (collected.root / "build" / "2022-W51" / "preview.html").resolve().as_uri()
    found = violations(browser, page, "light") + violations(browser, page, "dark")
    assert found == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_web_pages_have_no_serious_violations_in_light_or_dark_mode(
    live: Live, browser: Browser
) -> None:
    key = load_key(live.project.config.signing_key_file)
    with Session(live.project.engine()) as session:
        subscribers.add(session, "war-notes", "olena@example.org")
        person = subscribers.require(session, "olena@example.org")
        session.commit()
        token_id = person.token_id
    pages = [
        f"{live.base}/subscribe",
        signed_url(live.base, key, "confirm", "war-notes", token_id),
        signed_url(live.base, key, "unsubscribe", "war-notes", token_id),
        signed_url(live.base, key, "unsubscribe", "war-notes", token_id).replace(
            "/unsubscribe/", "/preferences/"
        ),
        f"{live.base}/no-such-page",
    ]
    found = [
        problem
        for url in pages
        for scheme in ("light", "dark")
        for problem in violations(browser, url, scheme)
    ]
    assert found == []


def test_the_check_finds_what_it_looks_for(tmp_path: Path, browser: Browser) -> None:
    """The harness itself: faint text and an image without alt are found."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!doctype html><html lang="en"><head><title>x</title></head><body><main>'
        '<p style="color:#eee;background:#fff">faint</p><img src="x.png"></main></body></html>'
    )
    found = " ".join(violations(browser, page.as_uri(), "light"))
    assert "color-contrast" in found and "image-alt" in found


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_ukrainian_edition_has_no_serious_violations(
    collected: Project, smtp_server: SMTPServer, browser: Browser, tmp_path: Path
) -> None:
    """The email and the subscribe page in Ukrainian, the page offering a second newsletter
    (its boxes in a fieldset with a legend), at phone and desktop widths."""
    from tests.liveweb import start
    from tests.test_preferences import _ukrainian_edition

    text = collected.config_file.read_text().replace('language = "en"', 'language = "uk"')
    collected.config_file.write_text(text)
    assert collected.run("issue", "new", "--week", "2022-W51").exit_code == 0
    assert collected.run("issue", "preview", "2022-W51").exit_code == 0
    email = (collected.root / "build" / "2022-W51" / "preview.html").resolve().as_uri()
    _ukrainian_edition(collected, tmp_path)
    served = start(collected, smtp_server, None)
    live = next(served)
    try:
        found = [
            problem
            for url in (email, f"{live.base}/subscribe")
            for scheme in ("light", "dark")
            for width in (375, 600)
            for problem in violations(browser, url, scheme, width)
        ]
    finally:
        next(served, None)
    assert found == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("language", ["en", "uk"])
def test_the_welcome_mail_has_no_serious_violations_and_fits_a_phone(
    ready: Project, smtp_server: SMTPServer, browser: Browser, tmp_path: Path, language: str
) -> None:
    """The welcome as a reader gets it (the latest issue's headlines, and the whole issue
    under its band), in English and Ukrainian, at phone and desktop widths."""
    from tests.sending import send

    text = ready.config_file.read_text().replace('language = "en"', f'language = "{language}"')
    ready.config_file.write_text(text)
    assert ready.run("issue", "approve", "2022-W51").exit_code == 0
    assert send(ready)[0] == 0
    pages = []
    for include, person in (("headlines", "a@example.org"), ("issue", "b@example.org")):
        current = ready.config_file.read_text()
        ready.config_file.write_text(
            current.replace('include = "headlines"', f'include = "{include}"')
        )
        before = len(smtp_server.received)
        assert ready.run("subscribers", "add", person, "--welcome").exit_code == 0
        (mail,) = smtp_server.received[before:]
        html = mail.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        page = tmp_path / f"welcome-{include}.html"
        page.write_text(html)
        pages.append(page)
    found = [
        problem
        for page in pages
        for scheme in ("light", "dark")
        for width in (375, 600)
        for problem in violations(browser, page.as_uri(), scheme, width)
    ]
    assert found == []
    context = browser.new_context(viewport={"width": 375, "height": 800})
    try:
        tab = context.new_page()
        for page in pages:
            tab.goto(page.as_uri())
            wide = tab.evaluate("document.documentElement.scrollWidth")
            assert wide <= 375, f"{page.name} scrolls sideways on a phone ({wide}px)"
    finally:
        context.close()
