"""`/passkey/<token>`: an approver makes their passkey from the one-time link
`approvers passkey` mailed them (editorial/passkeys.py).

The GET shows one button and changes nothing (mail gateways open every link); the page's
script has the browser make the passkey, and only the page's POST (its stamp, this site's
Origin, a credential made for this page's challenge on this site's origin) keeps it. The
approver is then mailed a notice, so a passkey made by someone else who held the link does
not go unseen. Every bad link is the one 404.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, Response

from newsletter import site_urls
from newsletter.db import session_scope
from newsletter.delivery.signoff_mail import passkey_notice
from newsletter.editorial import passkeys
from newsletter.web import human
from newsletter.web.forms import read_form
from newsletter.web.site import PASSKEY_SCRIPT, CurrentSite, Site

log = logging.getLogger("newsletter.web")
router = APIRouter()
FORM = "passkey"


@router.get(site_urls.PASSKEY, response_class=HTMLResponse)
def passkey_page(token: str, site: CurrentSite) -> Response:
    with session_scope(site.engine) as session:
        row = passkeys.pending_enrolment(site.key, session, site.config, token)
        if row is None:
            return site.invalid_link()
        served = human.stamp(site.key, FORM, token)
        chal = passkeys.challenge(site.key, "register", token, served)
        options = passkeys.registration_options(site.config, session, row, chal)
        expires = row.expires_at.astimezone(site.config.timezone)
        return site.page(
            "passkey",
            approver=row.approver,
            expires=f"{expires:%a} {expires.day} {expires:%b}, {expires:%H:%M}",
            served=served,
            options=script_json(options),
            script=PASSKEY_SCRIPT,
        )


@router.post(site_urls.PASSKEY, response_class=HTMLResponse)
async def passkey_made(
    token: str, request: Request, site: CurrentSite, background: BackgroundTasks
) -> Response:
    ip = request.client.host if request.client else "unknown"
    if not site.limits.per_ip.allow(ip):
        return site.too_many()
    data = await read_form(request)
    served = (data or {}).get("served", "")
    if (
        data is None
        or not human.stamped_in_time(site.key, FORM, token, served, site.limits.human_seconds)
        or not human.same_origin(request, site.config.base_url)
    ):
        return _refused(site)
    with session_scope(site.engine) as session:
        row = passkeys.pending_enrolment(site.key, session, site.config, token)
        if row is None:
            return site.invalid_link()
        chal = passkeys.challenge(site.key, "register", token, served)
        if not passkeys.register(site.config, row, chal, data.get("credential", "")):
            return _refused(site)
        session.add(row)
        approver = row.approver
    background.add_task(_notify, site, approver, ip)
    return site.message(
        "Your passkey is ready",
        "Approval links from now on ask for it when you press Approve. You can close this page.",
    )


def script_json(text: str) -> str:
    """JSON to sit inside a <script> element: no `</script>` or comment opener can close it."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _refused(site: Site) -> HTMLResponse:
    return site.message(
        "No passkey was kept",
        "Open the passkey link from your email, wait for the page to load and use its button.",
        403,
    )


def _notify(site: Site, approver: str, ip: str) -> None:
    try:
        site.mail(approver, passkey_notice(site.config, approver, ip))
    except Exception as error:  # noqa: BLE001 - a background task has no one else to tell
        log.error("passkey notice not mailed: %s: %s", type(error).__name__, error)
