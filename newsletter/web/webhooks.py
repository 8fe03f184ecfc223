"""POST /webhooks/{provider}: bounce and complaint events from sending providers
(feedback/webhook_events/). The body is capped while streaming; a call whose signature does not
verify, or that is stale or replayed, changes nothing and gets 403 (400 for a malformed
one, 404 for a provider that is not configured)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from newsletter import site_urls
from newsletter.db import session_scope
from newsletter.feedback.webhooks import MAX_BODY, Refused, receive
from newsletter.web.site import CurrentSite, Site

router = APIRouter()
log = logging.getLogger("newsletter.web.webhooks")


@router.post(site_urls.WEBHOOKS)
async def webhook(provider: str, request: Request, site: CurrentSite) -> JSONResponse:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "too large"}, status_code=413)
    try:
        count = await run_in_threadpool(_receive, site, provider[:20], bytes(body))
    except Refused as refusal:
        log.warning("webhook %s refused: %s", provider[:20], refusal)
        return JSONResponse({"error": "refused"}, status_code=refusal.status)
    return JSONResponse({"accepted": count})


def _receive(site: Site, provider: str, body: bytes) -> int:
    try:
        with session_scope(site.engine) as session:
            return len(receive(session, site.config, site.key, provider, body))
    except IntegrityError:  # the same event, twice at once: the other call recorded it
        return 0
