"""`newsletter issue preview`: the sample subscriber's page and a Chromium screenshot."""

from pathlib import Path

from playwright.sync_api import sync_playwright

from newsletter.editorial.preview import CHROMIUM_ARGS, chromium_path
from tests.browser import png, png_size
from tests.conftest import Project
from tests.smtpserver import free_port
from tests.webserver import Route, Server


def test_preview_and_screenshots_at_phone_and_desktop_width(collected: Project) -> None:
    assert collected.run("issue", "new", "--week", "2022-W51").exit_code == 0
    for width in (375, 600):
        shot = collected.root / f"shot-{width}.png"
        result = collected.run(
            "issue", "preview", "2022-W51", "--screenshot", str(shot), "--width", str(width)
        )
        assert result.exit_code == 0, result.output
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG")
        image_width, image_height = png_size(data)
        assert image_width == width and image_height > 1500  # the full page, not one screen
    page = collected.root / "build" / "2022-W51" / "preview.html"
    html = page.read_text()
    assert "%%" not in html and "Hello, reader," in html
    assert 'href="https://news.example.org/unsubscribe/preview"' in html


def test_bad_width_is_a_clear_error(collected: Project) -> None:
    assert collected.run("issue", "new", "--week", "2022-W51").exit_code == 0
    result = collected.run("issue", "preview", "2022-W51", "--screenshot", "x.png", "--width", "5")
    assert result.exit_code == 2 and "--width 5 is out of range" in result.stderr
    assert not Path("x.png").exists()


def test_images_that_cannot_be_fetched_are_drawn_as_placeholders_of_their_size(
    tmp_path: Path, web: Server
) -> None:
    """Offline or before the images are published, a screenshot shows the layout: a grey box
    where each missing image goes, sized by its width (and height, or 3:2), and says so."""
    from newsletter.editorial.preview import screenshot

    web.routes["/ok.png"] = Route(png(120, 80), content_type="image/png")
    dead = f"http://127.0.0.1:{free_port()}"
    page = tmp_path / "page.html"
    page.write_text(
        "<!doctype html><html><body style='margin:0'>"
        f"<img id='ok' src='{web.url('/ok.png')}' width='120' alt='fine'>"
        f"<img id='card' src='{dead}/card.jpg' width='180' alt='A card image'>"
        f"<img id='wide' src='{dead}/wide.jpg' width='300' height='50' alt='Wide'>"
        "</body></html>"
    )
    shot = screenshot(page, tmp_path / "shot.png", 600)
    assert shot.placeholders == 2
    assert png_size(shot.path.read_bytes())[0] == 600
    # The same replacement, looked at in the page: each box has its image's size.
    from newsletter.editorial.preview import _PLACEHOLDERS

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        tab = chromium.new_page(viewport={"width": 600, "height": 400})
        tab.goto(page.resolve().as_uri())
        assert tab.evaluate(_PLACEHOLDERS) == 2
        sizes = tab.evaluate(
            "() => Array.from(document.images).map(i => [i.id, i.naturalWidth, i.naturalHeight])"
        )
        chromium.close()
    assert sizes == [["ok", 120, 80], ["card", 180, 120], ["wide", 300, 50]]


def test_the_preview_command_says_how_many_images_are_placeholders(collected: Project) -> None:
    """The sample's card images live on the web, which tests cannot reach."""
    assert collected.run("issue", "new", "--week", "2022-W51").exit_code == 0
    result = collected.run("issue", "preview", "2022-W51", "--screenshot", "s.png")
    assert result.exit_code == 0, result.output
    assert "could not be fetched" in result.stderr and "grey placeholders" in result.stderr
