"""GET /c/{token}: a counted link's redirect; GET /o/{token}.gif: the open pixel.

A link token names an issue and a link index, signed (delivery/tracking.py): a tampered or
invented one is a 404, and the redirect goes only to the URL stored for that index, so
the route cannot be used to send anyone anywhere else. The reader token (`?r=`, with
per-subscriber tracking only) is checked the same way; a bad one drops the per-person
record, never the redirect. Which requests count: web/counting.py.
"""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from sqlmodel import Session, select
from starlette.routing import Route

from newsletter import site_urls
from newsletter.delivery import row_tokens
from newsletter.delivery.tracking import read_link_token, read_open_token
from newsletter.models import IssueLink
from newsletter.web.counting import Hit, client_key, counts, machine_open
from newsletter.web.site import Site

# A transparent 1x1 GIF.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
_CACHE_LIMIT = 10_000


async def click(request: Request) -> Response:
    site: Site = request.app.state.site
    named = read_link_token(site.key, site.config.newsletter_id, request.path_params["token"])
    url = await _url(site, *named) if named else None
    if named is None or url is None:
        return site.invalid_link()
    if counts(request.method, request.headers):
        issue_id, index = named
        await _count(site, request, issue_id, index)
    response = RedirectResponse(url, status_code=302)
    response.headers["Cache-Control"] = "no-store"
    return response


async def opened(request: Request) -> Response:
    site: Site = request.app.state.site
    issue_id = read_open_token(site.key, site.config.newsletter_id, request.path_params["token"])
    if issue_id is None:
        return site.invalid_link()
    machine = machine_open(request.headers, request.client.host if request.client else None)
    # An image proxy's fetch is counted (as a machine's) even where a click would not be.
    if counts(request.method, request.headers) or (machine and request.method == "GET"):
        await _count(site, request, issue_id, -1, machine)
    return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})


async def _count(
    site: Site, request: Request, issue_id: int, index: int, machine: bool = False
) -> None:
    """A hit, unless this client or this reader was counted for it within the window."""
    client = client_key(request.client.host if request.client else None, request.headers)
    counted = site.repeats.first((issue_id, index, "client", *client))
    reader = _reader(site, issue_id, request.query_params.get("r"))
    if reader is not None and not site.repeats.first((issue_id, index, "reader", reader)):
        reader = None
    if counted or reader is not None:
        await site.counter.count(Hit(issue_id, index, machine, reader, counted))


def _reader(site: Site, issue_id: int, value: str | None) -> int | None:
    if not value or not site.config.tracking.per_subscriber:
        return None
    token = row_tokens.read(site.key, site.config.newsletter_id, value[:60])
    if token is None or token.kind != "r" or token.issue_id != issue_id:
        return None
    return token.delivery_id


async def _url(site: Site, issue_id: int, index: int) -> str | None:
    cache = site.link_cache
    found = cache.get((issue_id, index))
    if found is None:
        found = await run_in_threadpool(_stored_url, site, issue_id, index)
        if found is not None:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[(issue_id, index)] = found
    return found


def _stored_url(site: Site, issue_id: int, index: int) -> str | None:
    with Session(site.engine) as session:
        row = session.exec(
            select(IssueLink.url).where(IssueLink.issue_id == issue_id, IssueLink.index == index)
        ).first()
        return str(row) if row is not None else None


# Plain Starlette routes, not FastAPI's: the busiest answer of the server needs neither
# parameter validation nor dependency solving, which cost it half its rate.
routes = [
    Route(site_urls.CLICK, click, methods=["GET", "HEAD"]),
    Route(site_urls.OPEN, opened, methods=["GET", "HEAD"]),
]
