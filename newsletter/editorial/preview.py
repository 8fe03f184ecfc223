"""Previews: the email as a sample subscriber sees it, and screenshots in headless Chromium.

Screenshots use Debian's Chromium through Playwright (full-page captures need the DevTools
protocol; Chromium's own --screenshot only captures the window). Playwright never downloads
a browser here: it is pointed at the system's executable.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from newsletter.atomic_files import atomic_write
from newsletter.config import Config, environment_value
from newsletter.editorial.render import RenderedIssue, personalize, reader_name, sample_recipient
from newsletter.errors import NewsletterError, UsageError

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def write_preview(config: Config, rendered: RenderedIssue, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "preview.html"
    recipient = sample_recipient(config, rendered.slug)
    atomic_write(path, personalize(rendered.html, recipient, reader_name(config), "html"))
    return path


def chromium_path() -> str:
    configured = environment_value("NEWSLETTER_CHROMIUM")
    found = configured or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not Path(found).exists():
        raise UsageError(
            "Chromium not found: install Debian's 'chromium' package or set NEWSLETTER_CHROMIUM"
        )
    return found


# Images that did not load (offline, or not published yet) become a neutral box of the size
# the layout gives them (the width attribute, 3:2 when no height is set), so a preview shows
# the layout rather than broken-image icons and alt text.
_PLACEHOLDERS = """() => {
  let replaced = 0;
  for (const img of Array.from(document.images)) {
    if (img.complete && img.naturalWidth > 0) continue;
    const w = parseInt(img.getAttribute("width")) || img.clientWidth || 600;
    const h = parseInt(img.getAttribute("height")) || Math.round(w * 2 / 3);
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" ` +
      `viewBox="0 0 ${w} ${h}"><rect width="100%" height="100%" fill="#d9dde3"/>` +
      `<path d="M${w * 0.35} ${h * 0.68}l${w * 0.1} -${h * 0.2}l${w * 0.08} ${h * 0.12}` +
      `l${w * 0.06} -${h * 0.08}l${w * 0.06} ${h * 0.16}z" fill="#aab1bb"/></svg>`;
    img.removeAttribute("srcset");
    img.src = "data:image/svg+xml," + encodeURIComponent(svg);
    replaced += 1;
  }
  return Promise.all(Array.from(document.images).map((img) => img.decode().catch(() => null)))
    .then(() => replaced);
}"""


@dataclass(frozen=True)
class Screenshot:
    path: Path
    placeholders: int  # images that could not be fetched, drawn as neutral boxes


def screenshot(page: Path, png: Path, width: int) -> Screenshot:
    if not 200 <= width <= 3000:
        raise UsageError(f"--width {width} is out of range: use 200 to 3000 pixels")
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    png.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium_path(), args=CHROMIUM_ARGS
            )
            try:
                tab = browser.new_page(viewport={"width": width, "height": 800})
                tab.goto(page.resolve().as_uri(), wait_until="load", timeout=60_000)
                placeholders = int(tab.evaluate(_PLACEHOLDERS))
                tab.screenshot(path=str(png), full_page=True)
            finally:
                browser.close()
    except PlaywrightError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "failed"
        raise NewsletterError(f"Chromium could not take the screenshot: {first}") from None
    return Screenshot(png, placeholders)
