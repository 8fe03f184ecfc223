"""Subscribe (double opt-in) and confirm.

`POST /subscribe` answers the same, in the same time, whether the address is new, pending,
active, unsubscribed or suppressed, so the form cannot be used to learn who subscribes: the
answer goes first and the work (database, confirmation email) runs after it. Against bots
and list bombing (signing strangers up by the thousand): a hidden honeypot field; the
page's stamp (web/human.py), without which, or posted within two seconds of the page being
served, a form does nothing; at most one confirmation email per address a day however many
forms name it, and limits per client and per recipient domain. Nothing a stranger typed
reaches the confirmation email, and a name that carries a link is not kept.

The confirmation link's GET shows one button and changes nothing (mail scanners open every
link in a message), the same page for every token, valid or not; only the POST from that
page, with its stamp and at least two seconds after it, confirms. A complaint is never
undone here: the form mails nobody who complained (lifecycle.py).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from newsletter import registry, site_urls
from newsletter.audience import lifecycle, subscribers
from newsletter.audience.tokens import make_token, read_token, signed_url
from newsletter.db import session_scope
from newsletter.delivery import welcome
from newsletter.delivery.message import confirmation_message
from newsletter.errors import InvalidAddress, NewsletterError
from newsletter.web import human
from newsletter.web.forms import read_form
from newsletter.web.site import CurrentSite, Site

log = logging.getLogger("newsletter.web")
router = APIRouter()


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse(site_urls.SUBSCRIBE, status_code=303)


SUBSCRIBE_FORM = "subscribe"
CONFIRM_FORM = "confirm"


@router.get(site_urls.SUBSCRIBE, response_class=HTMLResponse)
def subscribe_form(site: CurrentSite) -> HTMLResponse:
    return site.page("subscribe", email="", name="", error=None, others=_others(site),
                     served=human.stamp(site.key, SUBSCRIBE_FORM, ""))  # fmt: skip


def _others(site: Site) -> list[dict[str, str]]:
    """The database's other newsletters, offered beside this one."""
    return site.newsletters({site.config.newsletter_id})[:MAX_LISTS]


MAX_LISTS = 15  # besides this one: a multipart form holds 20 fields (web/forms.py)
_LIST_FIELD = "list-"


def chosen_lists(data: dict[str, str], own: str) -> list[str]:
    """The newsletters a form asks for (`list-<key>` boxes), this one when it names none:
    a POST of email and name (with the page's stamp) subscribes to this server's own."""
    keys = {k.removeprefix(_LIST_FIELD) for k, v in data.items() if k.startswith(_LIST_FIELD) and v}
    return sorted(keys)[: MAX_LISTS + 1] or [own]


@router.post(site_urls.SUBSCRIBE, response_class=HTMLResponse)
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
            others=[],
            served=human.stamp(site.key, SUBSCRIBE_FORM, ""),
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
            "subscribe", 400, email=email, name=name, others=[],
            error=site._("That does not look like an email address."),
            served=human.stamp(site.key, SUBSCRIBE_FORM, ""),
        )  # fmt: skip
    if not human.stamped_in_time(
        site.key, SUBSCRIBE_FORM, "", data.get("served", ""), site.limits.human_seconds
    ):
        return sent  # posted without the page, or faster than a person: a bot
    domain = address.key.rpartition("@")[2]
    # The address first: its repeats do not use up its domain's allowance.
    if not site.limits.per_address.allow(address.key) or not site.limits.per_domain.allow(domain):
        return sent
    # A sync background task runs in the thread pool, off the event loop.
    lists = chosen_lists(data, site.config.newsletter_id)
    background.add_task(send_confirmation, site, address.email, name, lists)
    return sent


def send_confirmation(site: Site, email: str, name: str, lists: list[str] | None = None) -> None:
    """The form's work, after its answer: a pending subscription to each newsletter asked
    for (this one, and others the database serves) and one confirmation email, in this
    page's language, naming them; or nothing (suppressed, bounced, already active). A list
    the database does not know is ignored. Errors go to the log: a background task has no
    one else to tell."""
    config = site.config
    try:
        with session_scope(site.engine) as session:
            known = registry.known(session)
            wanted = [
                k
                for k in lists or [config.newsletter_id]
                if k == config.newsletter_id or k in known
            ]
            person, asked = None, []
            for newsletter in wanted:
                found = subscribers.request_subscription(session, newsletter, email, name)
                if found is not None:
                    person = found
                    asked.append(newsletter)
            if person is None:
                return
            url = confirm_url(site, person.token_id, asked)
            names = [known[k].name if k in known else config.name for k in asked]
            message = confirmation_message(config, person, url, names)
            to = person.email
        site.mail(to, message)
    except NewsletterError as error:
        log.error("confirmation email not sent: %s", error)
    except Exception as error:
        log.error("confirmation email not sent: %s: %s", type(error).__name__, error)


def confirm_url(site: Site, token_id: str, lists: list[str]) -> str:
    """One link for every list asked for: the token signs their keys, so a link cannot be
    stretched to another list (a link for this newsletter alone is as it always was)."""
    config = site.config
    if lists == [config.newsletter_id]:
        return signed_url(config.base_url, site.key, "confirm", config.newsletter_id, token_id)
    token = make_token(site.key, "confirm", ",".join(lists), token_id)
    return site_urls.confirm(config.base_url, token, lists)


@router.get(site_urls.CONFIRM, response_class=HTMLResponse)
def confirm_page(token: str, site: CurrentSite) -> HTMLResponse:
    """One button, the same page for every token (nothing is looked up: a scanner learns
    nothing and changes nothing); the form posts back to this URL."""
    return site.page("confirm", served=human.stamp(site.key, CONFIRM_FORM, token[:200]))


@router.post(site_urls.CONFIRM, response_class=HTMLResponse)
async def confirm(
    token: str, request: Request, site: CurrentSite, background: BackgroundTasks, lists: str = ""
) -> HTMLResponse:
    ip = request.client.host if request.client else "unknown"
    if not site.limits.per_ip.allow(ip):
        return site.too_many()
    data = await read_form(request)
    if (
        data is None
        or not human.stamped_in_time(
            site.key, CONFIRM_FORM, token[:200], data.get("served", ""), site.limits.human_seconds
        )
        or not human.same_origin(request, site.config.base_url)
    ):
        # The page again, its button with a fresh stamp: a person who pressed at once
        # presses again; a scanner that posts what it fetched gets no further.
        return site.page("confirm", 403, served=human.stamp(site.key, CONFIRM_FORM, token[:200]))
    return await run_in_threadpool(_confirm, site, token, lists, background)


def _confirm(site: Site, token: str, lists: str, background: BackgroundTasks) -> HTMLResponse:
    config = site.config
    keys = lists.split(",")[: MAX_LISTS + 1] if lists else [config.newsletter_id]
    proof = read_token(site.key, "confirm", ",".join(keys), token)
    if proof is None or proof.issued_at is None:
        return site.invalid_link()
    with session_scope(site.engine) as session:
        person = subscribers.by_token(session, proof)
        if person is None:
            return site.invalid_link()
        confirmed = [k for k in keys if lifecycle.confirm(session, person, k, proof.issued_at)]
        known = registry.known(session)
        # In the confirmation's transaction: a crash keeps both or neither (welcome.py).
        welcomed = [
            k
            for k in confirmed
            if welcome.greets(session, config, k) and welcome.queue(session, k, [person])
        ]
    if config.newsletter_id in welcomed:
        background.add_task(site.send_welcomes)
    if not confirmed:
        return site.invalid_link()
    names = ", ".join(known[k].name if k in known else config.name for k in confirmed)
    return site.message(
        site._("You are subscribed"),
        site._("Thank you. %(name)s will arrive in your inbox.", name=names),
    )
