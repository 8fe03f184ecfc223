"""GET /preferences/{token}: a person's lists in this database and their status, with a
button to leave each; POST leaves the one named. The token is the person's unsubscribe
token (the link in every issue's footer when there is more than one list); a bad one gets
the same 404 as every bad link. Joining a list again goes through that list's own
double opt-in, never through this page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from newsletter.audience import subscribers
from newsletter.audience.tokens import Token
from newsletter.db import session_scope
from newsletter.models import Subscription
from newsletter.web.forms import read_form
from newsletter.web.site import CurrentSite, Site

router = APIRouter()


@router.get("/preferences/{token}", response_class=HTMLResponse)
async def preferences(token: str, site: CurrentSite) -> HTMLResponse:
    proof = site.unsubscribe_proof(token)
    lists = await run_in_threadpool(_lists, site, proof) if proof else None
    if lists is None:
        return site.invalid_link()
    return site.page("preferences", token=token, lists=lists, left=None)


@router.post("/preferences/{token}", response_class=HTMLResponse)
async def leave(token: str, request: Request, site: CurrentSite) -> HTMLResponse:
    proof = site.unsubscribe_proof(token)
    if proof is None:
        return site.invalid_link()
    data = await read_form(request)
    newsletter = (data or {}).get("newsletter", "")
    left = await run_in_threadpool(_leave, site, proof, newsletter)
    lists = await run_in_threadpool(_lists, site, proof)
    if lists is None or left is None:
        return site.invalid_link()
    return site.page("preferences", token=token, lists=lists, left=left)


def _lists(site: Site, proof: Token) -> list[dict[str, str]] | None:
    with Session(site.engine) as session:
        person = subscribers.by_token(session, proof)
        if person is None:
            return None
        rows = session.exec(
            select(Subscription).where(Subscription.subscriber_id == person.id)
        ).all()
        return [
            {
                "key": row.newsletter,
                "name": site.config.name
                if row.newsletter == site.config.key
                else row.newsletter.replace("-", " ").title(),
                "status": row.status,
            }
            for row in sorted(rows, key=lambda r: r.newsletter)
        ]


def _leave(site: Site, proof: Token, newsletter: str) -> str | None:
    """The list left ("" when it was not theirs or already closed); None: no such person."""
    with session_scope(site.engine) as session:
        person = subscribers.by_token(session, proof)
        if person is None or person.id is None:
            return None
        if newsletter and subscribers.unsubscribe(session, person.id, newsletter[:300]):
            return newsletter
        return ""
