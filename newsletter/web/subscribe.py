"""Subscribe (double opt-in) and confirm.

`POST /subscribe` answers the same, in the same time, whether the address is new, pending,
active, unsubscribed or suppressed, so the form cannot be used to learn who subscribes: the
answer goes first and the work (database, confirmation email) runs after it. A hidden
honeypot field and per-IP and per-address limits stop bots and list bombing.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from newsletter.audience import lifecycle, subscribers
from newsletter.audience.tokens import read_token, signed_url
from newsletter.db import session_scope
from newsletter.delivery.message import confirmation_message
from newsletter.errors import InvalidAddress, NewsletterError
from newsletter.web.forms import read_form
from newsletter.web.site import CurrentSite, Site

log = logging.getLogger("newsletter.web")
router = APIRouter()


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/subscribe", status_code=303)


@router.get("/subscribe", response_class=HTMLResponse)
def subscribe_form(site: CurrentSite) -> HTMLResponse:
    return site.page("subscribe", email="", name="", error=None)


@router.post("/subscribe", response_class=HTMLResponse)
async def subscribe(
    request: Request, background: BackgroundTasks, site: CurrentSite
) -> HTMLResponse:
    data = await read_form(request)
    if data is None or "email" not in data:
        return site.page(
            "subscribe",
            400,
            email="",
            name="",
            error=site._("Send the form with an email address."),
        )
    email, name = data.get("email", "").strip(), data.get("name", "")
    sent = site.message(
        site._("Check your inbox"),
        site._(
            "If %(email)s can be subscribed to %(name)s, a confirmation email is on its way. "
            "Click its link to start receiving the newsletter.",
            email=email,
            name=site.config.name,
        ),
    )
    if data.get("website"):  # the honeypot: people never see it, bots fill it in
        return sent
    ip = request.client.host if request.client else "unknown"
    if not site.limits.per_ip.allow(ip):
        return site.too_many()
    try:
        address = subscribers.parse_address(email)
    except InvalidAddress:
        return site.page(
            "subscribe", 400, email=email, name=name,
            error=site._("That does not look like an email address."),
        )  # fmt: skip
    if not site.limits.per_address.allow(address.key):
        return sent
    # A sync background task runs in the thread pool, off the event loop.
    background.add_task(send_confirmation, site, address.email, name)
    return sent


def send_confirmation(site: Site, email: str, name: str) -> None:
    """The form's work, after its answer: a pending subscription and the confirmation
    email, or nothing (suppressed, bounced, already active). Errors go to the log: a
    background task has no one else to tell."""
    config = site.config
    try:
        with session_scope(site.engine) as session:
            person = subscribers.request_subscription(session, config.key, email, name)
            if person is None:
                return
            url = signed_url(config.base_url, site.key, "confirm", config.key, person.token_id)
            message = confirmation_message(config, person, url)
            to = person.email
        site.mail(to, message)
    except NewsletterError as error:
        log.error("confirmation email not sent: %s", error)
    except Exception as error:
        log.error("confirmation email not sent: %s: %s", type(error).__name__, error)


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm(token: str, site: CurrentSite) -> HTMLResponse:
    config = site.config
    proof = read_token(site.key, "confirm", config.key, token)
    if proof is None or proof.issued_at is None:
        return site.invalid_link()
    with session_scope(site.engine) as session:
        person = subscribers.by_token(session, proof)
        if person is None or not lifecycle.confirm(session, person, config.key, proof.issued_at):
            return site.invalid_link()
    return site.message(
        site._("You are subscribed"),
        site._("Thank you. %(name)s will arrive in your inbox.", name=config.name),
    )
