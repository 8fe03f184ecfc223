"""`newsletter issue preview`: the sample subscriber's page and a Chromium screenshot."""

from pathlib import Path

from tests.browser import png_size
from tests.conftest import Project


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
