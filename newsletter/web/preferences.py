"""GET /preferences/{token}: a person's subscriptions, with a button to leave each; POST
leaves the one named.

Two kinds of token open the page. The footer link of every issue carries the person's
unsubscribe token, and readers forward issues: whoever holds it sees and can leave only
that newsletter, as the unsubscribe link lets them, and may ask for a link to the rest,
which goes by mail to the subscriber's own address (POST /preferences/{token}/link). That
mailed `manage` token (24 hours) shows every list of the person in this database and
offers the database's others. A bad or expired token gets the same 404 as every bad link.
Joining a list (or coming back to one) goes through its double opt-in: the page's button
sends the confirmation mail, and nothing changes until its link is clicked."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from newsletter import languages, registry, site_urls
from newsletter.audience import lifecycle, subscribers
from newsletter.audience.tokens import Token, read_token, signed_url
from newsletter.db import session_scope
from newsletter.delivery.message import manage_message
from newsletter.models import Subscription
from newsletter.web.forms import read_form
from newsletter.web.site import CurrentSite, Site
from newsletter.web.subscribe import send_confirmation

router = APIRouter()
log = logging.getLogger("newsletter.web")


@dataclass(frozen=True)
class Proof:
    token: Token
    everything: bool  # a mailed manage link: every list; a footer link: this one only


def _proof(site: Site, token: str) -> Proof | None:
    footer = site.unsubscribe_proof(token)
    if footer is not None:
        return Proof(footer, everything=False)
    mailed = read_token(site.key, "manage", site.config.newsletter_id, token)
    return Proof(mailed, everything=True) if mailed is not None else None


@router.get(site_urls.PREFERENCES, response_class=HTMLResponse)
async def preferences(token: str, site: CurrentSite) -> HTMLResponse:
    proof = _proof(site, token)
    if proof is None:
        return site.invalid_link()
    return await _page(site, token, proof, left=None)


@router.post(site_urls.PREFERENCES, response_class=HTMLResponse)
async def leave(token: str, request: Request, site: CurrentSite) -> HTMLResponse:
    proof = _proof(site, token)
    if proof is None:
        return site.invalid_link()
    data = await read_form(request)
    newsletter = (data or {}).get("newsletter", "")
    if not proof.everything and newsletter != site.config.newsletter_id:
        newsletter = ""  # a footer link leaves its own list, nothing else
    left = await run_in_threadpool(_leave, site, proof.token, newsletter)
    if left is None:
        return site.invalid_link()
    return await _page(site, token, proof, left=left)


async def _page(site: Site, token: str, proof: Proof, *, left: str | None) -> HTMLResponse:
    """The page: the person's lists, what they just left, what they may join."""
    lists = await run_in_threadpool(_lists, site, proof)
    if lists is None:
        return site.invalid_link()
    return site.page(
        "preferences",
        token=token,
        lists=lists,
        left=left,
        everything=proof.everything,
        joinable=await run_in_threadpool(_joinable, site, proof, lists),
    )


@router.post(site_urls.PREFERENCES_JOIN, response_class=HTMLResponse)
async def join(
    token: str, request: Request, background: BackgroundTasks, site: CurrentSite
) -> HTMLResponse:
    """Join another of the database's newsletters from the mailed manage link: through its
    double opt-in, like the form (a confirmation mail, in this page's language), never at
    once."""
    proof = _proof(site, token)
    if proof is None or not proof.everything:
        return site.invalid_link()
    data = await read_form(request)
    newsletter = (data or {}).get("newsletter", "")[:100]
    lists = await run_in_threadpool(_lists, site, proof)
    offered = await run_in_threadpool(_joinable, site, proof, lists or [])
    if lists is None or newsletter not in {item["key"] for item in offered}:
        return site.invalid_link()
    ip = request.client.host if request.client else "unknown"
    if not site.limits.per_ip.allow(ip):
        return site.too_many()
    if site.limits.per_address.allow(f"join:{proof.token.subject}"):
        background.add_task(_join, site, proof.token, newsletter)
    return site.message(
        site._("Check your inbox"),
        site._(
            "We sent a link to confirm your subscription to %(name)s.",
            name=next(item["name"] for item in offered if item["key"] == newsletter),
        ),
    )


def _join(site: Site, proof: Token, newsletter: str) -> None:
    with Session(site.engine) as session:
        person = subscribers.by_token(session, proof)
        email, name = (person.email, person.name or "") if person else ("", "")
    if email:
        send_confirmation(site, email, name, [newsletter])


def _joinable(site: Site, proof: Proof, lists: list[dict[str, str]]) -> list[dict[str, str]]:
    """The database's newsletters this person does not get (or wait for), offered on the
    mailed manage page only: the footer's page shows nothing of the others."""
    if not proof.everything:
        return []
    return site.newsletters(
        {item["key"] for item in lists if item["status"] in ("active", "pending")}
    )


@router.post(site_urls.PREFERENCES_LINK, response_class=HTMLResponse)
async def mail_link(
    token: str, request: Request, background: BackgroundTasks, site: CurrentSite
) -> HTMLResponse:
    """Mail the person a link to all their lists. Answers the same whatever happens, and
    sends at most what the per-address limit allows (one footer link, pressed in a loop,
    must not fill an inbox)."""
    proof = site.unsubscribe_proof(token)
    if proof is None:
        return site.invalid_link()
    ip = request.client.host if request.client else "unknown"
    if not site.limits.per_ip.allow(ip):
        return site.too_many()
    if site.limits.per_address.allow(f"manage:{proof.subject}"):
        background.add_task(send_manage_link, site, proof)
    return site.message(
        site._("Check your inbox"),
        site._(
            "We sent a link to manage all your subscriptions to the address this newsletter "
            "goes to. It works for 24 hours."
        ),
    )


def send_manage_link(site: Site, proof: Token) -> None:
    config = site.config
    try:
        with Session(site.engine) as session:
            person = subscribers.by_token(session, proof)
            if person is None:
                return
            url = signed_url(
                config.base_url, site.key, "manage", config.newsletter_id, person.token_id
            )
            message = manage_message(config, person, url)
            to = person.email
        site.mail(to, message)
    except Exception as error:
        log.error("manage link not sent: %s: %s", type(error).__name__, error)


def _lists(site: Site, proof: Proof) -> list[dict[str, str]] | None:
    with Session(site.engine) as session:
        person = subscribers.by_token(session, proof.token)
        if person is None:
            return None
        query = select(Subscription).where(Subscription.subscriber_id == person.id)
        if not proof.everything:
            query = query.where(Subscription.newsletter == site.config.newsletter_id)
        rows = session.exec(query).all()
        names = registry.known(session)
    page = site.config.language
    found = []
    for row in sorted(rows, key=lambda r: r.newsletter):
        entry = names.get(row.newsletter)
        language = entry.language if entry else page
        found.append(
            {
                "key": row.newsletter,
                # By the name its own config gives it (registry.py); a list no command
                # has run for yet by its key, made readable.
                "name": entry.name if entry else row.newsletter.replace("-", " ").title(),
                "language": languages.display_name(language, page) if language != page else "",
                "status": row.status,
            }
        )
    return found


def _leave(site: Site, proof: Token, newsletter: str) -> str | None:
    """The list left ("" when it was not theirs or already closed); None: no such person."""
    with session_scope(site.engine) as session:
        person = subscribers.by_token(session, proof)
        if person is None or person.id is None:
            return None
        if newsletter and lifecycle.unsubscribe(session, person.id, newsletter[:300]):
            return newsletter
        return ""
