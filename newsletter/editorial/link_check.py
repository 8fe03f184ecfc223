"""`issue check --links`: does every link and image of the issue answer, as a reader's click
would find it?

Each http(s) link and image of the message a subscriber gets is fetched, several at a time,
`HEAD` first and `GET` where a server refuses HEAD (many answer 403, 404, 405 or 501 to it),
reading no more of a body than it takes to size an image. A request gets a few tries with a
short back-off on a timeout, a refused connection or a 5xx; the whole check has a deadline.

- broken link or image (4xx, 5xx, no answer from that host while others answered): error;
- a link that redirects to another site (not www. or http -> https on the same one): warning,
  since readers land somewhere the editor did not choose;
- an image that is not an image, or larger than IMAGE_LIMIT: error / warning.

Offline (no host answers at all) the check says it could not check instead of reporting
every link broken. Links to the newsletter's own site (`base_url`: the unsubscribe and
view-in-browser links) are not fetched: they go live with the send.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpx
import lxml.html

from newsletter import __version__
from newsletter.config import Config
from newsletter.editorial.checks import Finding
from newsletter.editorial.render import RenderedIssue, personalize, reader_name, sample_recipient

IMAGE_LIMIT = 1_000_000  # bytes: a card image over this is slow on a phone's connection
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEADLINE = 60.0  # seconds for the whole check
CONCURRENCY = 8
RETRIES = 2
_REFUSES_HEAD = {403, 404, 405, 406, 501}


@dataclass(frozen=True)
class Target:
    url: str
    kind: Literal["link", "image"]


@dataclass(frozen=True)
class Answer:
    """What fetching one target found: a finding or none, and whether its host answered."""

    finding: Finding | None
    answered: bool


def targets(html: str, own_site: str) -> list[Target]:
    """The message's http(s) links and images, each once, in order; none of our own site."""
    document = lxml.html.fromstring(html)
    found: dict[str, Target] = {}
    for element, attribute, kind in (
        *((a, "href", "link") for a in document.iter("a")),
        *((img, "src", "image") for img in document.iter("img")),
    ):
        url = (element.get(attribute) or "").strip()
        if urlsplit(url).scheme not in ("http", "https") or url.startswith(own_site):
            continue
        found.setdefault(url, Target(url, kind))  # type: ignore[arg-type]
    return list(found.values())


def check_rendered_links(config: Config, rendered: RenderedIssue) -> list[Finding]:
    """The links and images of the message a sample subscriber gets."""
    recipient = sample_recipient(config, rendered.slug)
    html = personalize(rendered.html, recipient, reader_name(config), "html")
    return check_links(html, config.base_url)


def check_links(html: str, own_site: str) -> list[Finding]:
    """Findings for the message's links and images (see the module's docstring)."""
    found = targets(html, own_site.rstrip("/") + "/")
    if not found:
        return []
    answers = asyncio.run(_check_all(found))
    if not any(answer.answered for answer in answers):
        return [
            Finding(
                "warning",
                "links-unchecked",
                f"could not check {len(found)} link(s) and image(s): no host answered "
                "(offline?); run 'issue check --links' again when connected",
            )
        ]
    return [answer.finding for answer in answers if answer.finding is not None]


async def _check_all(found: list[Target]) -> list[Answer]:
    limit = asyncio.Semaphore(CONCURRENCY)
    headers = {"User-Agent": f"newsletter/{__version__} (link check)"}
    async with httpx.AsyncClient(
        timeout=TIMEOUT, follow_redirects=True, max_redirects=8, headers=headers
    ) as client:

        async def one(target: Target) -> Answer:
            async with limit:
                return await _check(client, target)

        tasks = [asyncio.ensure_future(one(target)) for target in found]
        done, pending = await asyncio.wait(tasks, timeout=DEADLINE)
        for task in pending:
            task.cancel()
        return [
            task.result()
            if task in done
            else Answer(
                Finding(
                    "warning",
                    "link-slow",
                    f"{target.url}: no answer within the check's {DEADLINE:.0f} s",
                ),
                True,
            )  # fmt: skip
            for task, target in zip(tasks, found, strict=True)
        ]


async def _check(client: httpx.AsyncClient, target: Target) -> Answer:
    what = "image" if target.kind == "image" else "link"
    response: httpx.Response | None = None
    size: int | None = None
    error = ""
    answered = False  # whether the host said anything at all (a redirect loop counts)
    for attempt in range(RETRIES + 1):
        if attempt:
            await asyncio.sleep(0.5 * attempt)
        try:
            response = await client.head(target.url)
            if (
                response.status_code in _REFUSES_HEAD
                or response.status_code >= 500
                or (target.kind == "image" and "content-length" not in response.headers)
            ):
                response, size = await _get(client, target)
            elif "content-length" in response.headers:
                size = _length(response)
        except httpx.TooManyRedirects as failure:
            response, error, answered = None, _reason(failure), True
            break
        except httpx.TransportError as failure:
            response, error = None, _reason(failure)
            continue
        if response.status_code < 500:
            break
    if response is None:
        return Answer(
            Finding("error", f"{what}-unreachable", f"{what} {target.url}: {error}"), answered
        )
    status = response.status_code
    if status >= 400:
        return Answer(
            Finding("error", f"{what}-broken", f"broken {what} {target.url}: {status}"), True
        )
    final = str(response.url)
    if target.kind == "link" and _site(final) != _site(target.url):
        return Answer(
            Finding("warning", "link-redirect", f"{target.url} redirects to another site: {final}"),
            True,
        )
    if target.kind == "image":
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        if not kind.startswith("image/"):
            return Answer(
                Finding("error", "image-type", f"image {target.url} is {kind or 'untyped'}, "
                        "not an image"),
                True,
            )  # fmt: skip
        if size is not None and size > IMAGE_LIMIT:
            return Answer(
                Finding("warning", "image-size", f"image {target.url} is {size / 1e6:.1f} MB: "
                        f"slow on a phone; publish one under {IMAGE_LIMIT / 1e6:.0f} MB"),
                True,
            )  # fmt: skip
    return Answer(None, True)


async def _get(client: httpx.AsyncClient, target: Target) -> tuple[httpx.Response, int | None]:
    """GET, reading only as much as it takes: nothing of a page, an image up to the limit."""
    async with client.stream("GET", target.url) as response:
        if "content-length" in response.headers:
            return response, _length(response)
        if target.kind != "image":
            return response, None
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > IMAGE_LIMIT:
                break
        return response, size


def _length(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _site(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.")


def _reason(failure: Exception) -> str:
    if isinstance(failure, httpx.TooManyRedirects):
        return "too many redirects (a redirect loop?)"
    if isinstance(failure, httpx.TimeoutException):
        return "no answer in time"
    return f"no connection ({type(failure).__name__})"
