"""`/approve/<token>`: an approver signs an issue off from a phone (editorial/signoff.py).

The GET shows the candidate exactly as readers will get it (a sample reader's copy, the
email's own responsive layout), with who asked, when it will go and the two actions above
it; it changes nothing, because mail security gateways open every link in a message. Only
the POST decides, and only from that page: it must carry the page's form value (a MAC of
the token under the key), which must equal the SameSite=Strict cookie the page set, and an
Origin (when the browser sends one) of this site; so a scanner's GET, a preview bot, a
cross-site form or a forwarded link opened by someone without the page approves nothing.
A tampered, expired or used token gets the same 404 as every bad link; a token for content
that changed since says so and offers nothing.
"""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from newsletter import signing, site_urls
from newsletter.db import session_scope
from newsletter.delivery.signoff_mail import changes_message, requester_address, when_words
from newsletter.editorial import passkeys, signoff
from newsletter.editorial.render import after_body, render_template
from newsletter.errors import CheckFailed
from newsletter.models import Approval, Passkey
from newsletter.web import human
from newsletter.web.forms import read_form
from newsletter.web.passkey import script_json
from newsletter.web.site import APPROVE_SCRIPT, CurrentSite, Site

log = logging.getLogger("newsletter.web")
router = APIRouter()
COOKIE = "approve_form"
FORM = "approve"


@router.get(site_urls.APPROVE, response_class=HTMLResponse)
def approval_page(token: str, site: CurrentSite, request: Request) -> Response:
    with Session(site.engine) as session:
        row = signoff.pending(site.key, session, site.config, token)
        if row is None:
            return site.invalid_link()
        if not signoff.still_current(site.config, session, row):
            return _changed(site)
        keys = passkeys.registered(session, site.config, row.approver)
    # The same for every opening of this link (two tabs both work), made only with the key;
    # the cookie is the link's own (its path), so another approval open in a second tab
    # does not replace it.
    form_value = signing.sign(site.key, signing.APPROVE, "form", token)
    response = HTMLResponse(_page(site, row, form_value, token, keys))
    response.set_cookie(
        COOKIE,
        form_value,
        max_age=3600,
        path=site_urls.APPROVE.format(token=token),
        # A form nonce, not a credential: Secure where the request came over https.
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post(site_urls.APPROVE, response_class=HTMLResponse)
async def approval_decision(
    token: str, request: Request, site: CurrentSite, background: BackgroundTasks
) -> Response:
    ip = request.client.host if request.client else "unknown"
    if not site.limits.per_ip.allow(ip):
        return site.too_many()
    data = await read_form(request)
    cookie = request.cookies.get(COOKIE, "")
    given = (data or {}).get("form", "")
    action = (data or {}).get("action", "")
    if (
        data is None
        or action not in ("approve", "changes")
        or not cookie
        or not hmac.compare_digest(cookie.encode(), given.encode("utf-8", "replace"))
        or not signing.same(_human_value(site, token), data.get("human", ""))
        or not human.stamped_in_time(
            site.key, FORM, token, data.get("served", ""), site.limits.human_seconds
        )
        or not human.same_origin(request, site.config.base_url)
    ):
        return site.message(
            "Request refused",
            "Open the approval link from your email, wait for the page to load and use its "
            "buttons.",
            403,
        )
    decision: signoff.Decision = "approved" if action == "approve" else "changes"
    try:
        return _decide(site, background, token, data, decision, ip)
    except CheckFailed:
        # Out of the transaction: nothing of the decision is kept.
        return site.message(
            "Not approved",
            "The issue fails a check now (the editor sees it with 'newsletter issue check'), "
            "so nothing was approved. The editor can fix it and ask again.",
            409,
        )


def _decide(
    site: Site,
    background: BackgroundTasks,
    token: str,
    data: dict[str, str],
    decision: signoff.Decision,
    ip: str,
) -> Response:
    with session_scope(site.engine) as session:
        row = signoff.pending(site.key, session, site.config, token)
        if row is None:
            return site.invalid_link()
        proof = _proof(site, session, row, token, data) if decision == "approved" else "link"
        if proof is None:
            return site.message(
                "Not approved",
                "Approving needs your own passkey: open the approval link from your email "
                "on the phone or computer that has it, and press Approve.",
                403,
            )
        outcome = signoff.decide(
            site.config,
            session,
            row,
            decision,
            comment=data.get("comment", ""),
            client_address=ip,
            proof=proof,
        )
        if outcome.result == "changes":
            to, message = changes_message(site.config, row)
            background.add_task(_mail, site, to, message)
        when = when_words(site.config, row.send_at)
        asker = requester_address(site.config, row)
    if outcome.result == "changed":
        return _changed(site)
    pages = {
        "approved": ("Approved", f"Thank you. It will be sent {when}."),
        "waiting": ("Approval recorded", "Thank you. One more approver is needed to send it."),
        "changes": ("Changes requested", f"Thank you. Your comment was sent to {asker}."),
    }
    title, text = pages[outcome.result]
    return site.message(title, text)


def _mail(site: Site, to: str, message: bytes) -> None:
    try:
        site.mail(to, message)
    except Exception as error:  # noqa: BLE001 - a background task has no one else to tell
        log.error("request for changes not mailed: %s: %s", type(error).__name__, error)


def _proof(
    site: Site, session: Session, row: Approval, token: str, data: dict[str, str]
) -> signoff.Proof | None:
    """How an approval proves its approver: "passkey", a good signature of this page's
    challenge; "link", when no passkey is asked of them; None, when one is asked (they have
    one, or `approval_proof = "passkey"`) and the signature is missing or bad."""
    keys = passkeys.registered(session, site.config, row.approver)
    if not keys and site.config.approval_proof != "passkey":
        return "link"
    chal = passkeys.challenge(site.key, FORM, token, data.get("served", ""))
    ok = passkeys.authenticate(site.config, session, keys, chal, data.get("passkey", ""))
    return "passkey" if ok else None


def _human_value(site: Site, token: str) -> str:
    """What the page's script writes into the form: a crawler that posts the form as
    fetched sends it empty."""
    return signing.sign(site.key, signing.APPROVE, "human", token)


def _changed(site: Site) -> HTMLResponse:
    return site.message(
        "This issue changed",
        "It was edited, moved or rendered differently since approval was asked, so this link "
        "approves nothing. The editor can ask again.",
    )


def _page(site: Site, row: Approval, form_value: str, token: str, keys: list[Passkey]) -> str:
    """The candidate as readers will get it, with the decision panel on top."""
    config = site.config
    served = human.stamp(site.key, FORM, token)
    options = (
        script_json(
            passkeys.authentication_options(
                config, keys, passkeys.challenge(site.key, FORM, token, served)
            )
        )
        if keys
        else ""
    )
    expires = row.expires_at.astimezone(config.timezone) if row.expires_at else None
    panel = render_template(
        site.pages,
        "web/approve_panel.html.j2",
        {
            "name": config.name,
            "subject": row.subject,
            "requested_by": row.requested_by,
            "approver": row.approver,
            "when": when_words(config, row.send_at),
            "expires": f"{expires:%a} {expires.day} {expires:%b}, {expires:%H:%M}"
            if expires
            else "",
            "form_value": form_value,
            "served": served,
            "human_value": _human_value(site, token),
            "script": APPROVE_SCRIPT,
            "passkey_options": options,
            "passkey_needed": config.approval_proof == "passkey",
        },
    )
    return after_body(row.html, panel)
