"""Unsubscribe: a page with a button, and the RFC 8058 one-click POST.

`GET` only shows a button: mail scanners open every link in a message, and a GET that
unsubscribed would unsubscribe people who never clicked. `POST` unsubscribes at once,
idempotently, with a 200 and no redirect or cookie, as RFC 8058 requires (Gmail and Yahoo
post `List-Unsubscribe=One-Click`); the page's button posts the same body.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from newsletter import site_urls
from newsletter.audience import lifecycle, subscribers
from newsletter.audience.tokens import Token
from newsletter.db import session_scope
from newsletter.delivery import row_tokens
from newsletter.delivery.row_tokens import RowToken
from newsletter.feedback.policy import record_unsubscribe
from newsletter.web.forms import read_form
from newsletter.web.site import CurrentSite, Site

ONE_CLICK = "One-Click"
router = APIRouter()


@router.get(site_urls.UNSUBSCRIBE, response_class=HTMLResponse)
def unsubscribe_page(token: str, request: Request, site: CurrentSite) -> HTMLResponse:
    if site.unsubscribe_proof(token) is None:
        return site.invalid_link()
    mark = request.query_params.get("m", "")
    return site.page("unsubscribe", token=token, mark=mark if _message(site, mark) else "")


@router.post(site_urls.UNSUBSCRIBE, response_class=HTMLResponse)
async def unsubscribe(token: str, request: Request, site: CurrentSite) -> HTMLResponse:
    proof = site.unsubscribe_proof(token)
    if proof is None:
        return site.invalid_link()
    data = await read_form(request)
    if data is None or data.get("List-Unsubscribe") != ONE_CLICK:
        return site.message(
            site._("Request refused"),
            site._("An unsubscribe request carries List-Unsubscribe=One-Click."),
            400,
        )
    message = _message(site, request.query_params.get("m", ""))
    if not await run_in_threadpool(_unsubscribe, site, proof, message):
        return site.invalid_link()
    return site.message(
        site._("You are unsubscribed"),
        site._("You will get no more emails from %(name)s.", name=site.config.name),
    )


def _message(site: Site, mark: str) -> RowToken | None:
    """The message the link came in (`?m=`, a signed token the send adds), so the report
    can say which issue a reader left after; a missing or bad one only loses that."""
    token = row_tokens.read(site.key, site.config.newsletter_id, mark[:60]) if mark else None
    return token if token is not None and token.kind == "u" else None


def _unsubscribe(site: Site, proof: Token, message: RowToken | None) -> bool:
    with session_scope(site.engine) as session:
        person = subscribers.by_token(session, proof)
        if person is None or person.id is None:
            return False
        if lifecycle.unsubscribe(session, person.id, site.config.newsletter_id) and message:
            record_unsubscribe(session, message.delivery_id, person.id)
        return True
