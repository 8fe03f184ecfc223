"""The rendered email in real Chromium: the lead story's picture spans the card above its
headline; the other cards are two columns on desktop and stack on phones; judged from
element boxes, not pixels."""

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Route

from newsletter.editorial.render import personalize, render_issue, sample_recipient
from tests.browser import png
from tests.issues import make_config, sample_issue

IMAGE = png(800, 500)


@pytest.fixture
def email_file(tmp_path: Path) -> Path:
    config = make_config(tmp_path)
    rendered = render_issue(config, *sample_issue(tmp_path))
    path = tmp_path / "email.html"
    recipient = sample_recipient(config, rendered.slug)
    path.write_text(personalize(rendered.html, recipient, "reader", "html"))
    return path


def boxes(browser: Browser, page_file: Path, width: int) -> list[dict[str, Any]]:
    page = browser.new_page(viewport={"width": width, "height": 900})

    def serve(route: Route) -> None:
        route.fulfill(body=IMAGE, content_type="image/png")

    page.route("https://kyivindependent.com/images/**", serve)
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")
    found = []
    for card in page.locator(".card").all():
        if card.locator("img").count() == 0:
            continue
        image = card.locator("img").bounding_box()
        title = card.locator("h2, h3").first.bounding_box()
        assert image and title
        lead = "lead" in (card.get_attribute("class") or "")
        found.append({"image": dict(image), "title": dict(title), "lead": lead})
    page.close()
    return found


def test_desktop_image_beside_headline(browser: Browser, email_file: Path) -> None:
    cards = boxes(browser, email_file, 600)
    assert len(cards) == 2 and cards[0]["lead"] and not cards[1]["lead"]
    lead = cards[0]
    assert lead["image"]["y"] + lead["image"]["height"] <= lead["title"]["y"]
    assert lead["image"]["width"] >= 600 - 2 * 24 - 2  # the whole card's width
    for card in cards[1:]:
        image, title = card["image"], card["title"]
        assert image["x"] + image["width"] <= title["x"]  # left of the headline
        assert (
            image["y"] < title["y"] + title["height"] and title["y"] < image["y"] + image["height"]
        )
        assert image["height"] > 50  # the served image really loaded


def test_phone_image_above_headline_full_width(browser: Browser, email_file: Path) -> None:
    cards = boxes(browser, email_file, 375)
    assert len(cards) == 2
    for card in cards:
        image, title = card["image"], card["title"]
        assert image["y"] + image["height"] <= title["y"]  # above the headline
        assert image["width"] >= 375 - 2 * 24 - 2  # fluid on mobile, inside the side padding


def test_no_horizontal_scroll_on_a_phone(browser: Browser, email_file: Path) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 900})
    page.goto(email_file.as_uri())
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.close()
