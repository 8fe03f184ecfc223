"""What every route needs, set once on `app.state.site` by create_app and handed to routes
as a dependency: the config, the database, the signing key, a way to open the transport,
the form's limits, and the page templates."""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import jinja2
from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session

from newsletter import languages, registry, site_urls
from newsletter.audience.tokens import Token, read_token
from newsletter.config import Config
from newsletter.delivery.send import send_welcomes
from newsletter.delivery.transport import Transport
from newsletter.editorial.render import render_template
from newsletter.web.counting import CountWriter, Repeats
from newsletter.web.limits import Limits

log = logging.getLogger("newsletter.web")
PATHS = {
    name: getattr(site_urls, name)
    for name in ("UNSUBSCRIBE", "PREFERENCES", "PREFERENCES_JOIN", "PREFERENCES_LINK", "SUBSCRIBE")
}


@dataclass(frozen=True)
class Site:
    config: Config
    engine: Engine
    key: bytes
    make_transport: Callable[[], Transport]
    limits: Limits
    pages: jinja2.Environment
    counter: CountWriter
    repeats: Repeats = field(default_factory=Repeats)
    # Counted links' URLs by (issue, index): they never change once stored.
    link_cache: dict[tuple[int, int], str] = field(default_factory=dict)
    welcome_lock: threading.Lock = field(default_factory=threading.Lock)

    def page(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        site = {
            "key": self.config.newsletter_id,
            "name": self.config.name,
            "language": self.config.language,
            "direction": languages.direction(self.config.language),
            "base_url": self.config.base_url,
        }
        # The forms post to the routes' own paths (site_urls.py).
        html = render_template(
            self.pages,
            f"web/{template}.html.j2",
            {"newsletter": site, "paths": PATHS} | context,
        )
        return HTMLResponse(html, status_code=status)

    def _(self, message: str, **values: str) -> str:
        """One of the pages' own messages in the newsletter's language."""
        text = self.config.words.gettext(message)
        return text % values if values else text

    def message(self, title: str, text: str, status: int = 200) -> HTMLResponse:
        return self.page("message", status, title=title, text=text)

    def mail(self, to: str, message: bytes) -> None:
        """Send one message the web pages owe someone (a confirmation, a manage link)
        through the newsletter's transport, from its address."""
        with self.make_transport() as outbound:
            outbound.send(self.config.from_address.addr_spec, to, message)

    def send_welcomes(self) -> None:
        """This newsletter's waiting welcomes, now (after a confirmation's answer went).
        One at a time in this process, so a welcome queued while another send runs is
        taken by the next; a transport that is down leaves them to `send --due`. Errors go
        to the log: a background task has no one else to tell."""
        with self.welcome_lock:
            try:
                # One try: a transport that is down must not hold a server thread in the
                # send's back-off.
                report = send_welcomes(
                    self.config, self.engine, self.key, self.make_transport, pause_after=1
                )
            except Exception as error:  # noqa: BLE001 - logged, never raised into the server
                log.error("welcome mail not sent: %s: %s", type(error).__name__, error)
                return
        if report.exit_code:
            log.warning("welcome mail: %s", report.as_dict())

    def newsletters(self, leave_out: set[str]) -> list[dict[str, str]]:
        """The database's newsletters but `leave_out` (registry.py), by name, with their
        language when it is not the pages' own: what the subscribe page and the mailed
        preferences page offer to join."""
        with Session(self.engine) as session:
            known = registry.known(session)
        page = self.config.language
        return [
            {
                "key": entry.key,
                "name": entry.name,
                "language": languages.display_name(entry.language, page)
                if entry.language != page
                else "",
                "description": entry.description or "",
            }
            for entry in sorted(known.values(), key=lambda e: e.name.lower())
            if entry.key not in leave_out
        ]

    def too_many(self) -> HTMLResponse:
        return self.message(
            self._("Too many requests"), self._("Please wait a few minutes and try again."), 429
        )

    def unsubscribe_proof(self, token: str) -> Token | None:
        """Whose a personal link is (unsubscribe, preferences), or None for a bad token."""
        return read_token(self.key, "unsubscribe", self.config.newsletter_id, token)

    def invalid_link(self) -> HTMLResponse:
        """The one answer to every bad token, whatever is wrong with it."""
        return self.message(
            self._("This link is not valid"),
            self._("It may be mistyped, or it has expired. Nothing was changed."),
            404,
        )


async def current_site(request: Request) -> Site:
    # async: FastAPI runs a plain def dependency in its thread pool, a hop per request
    # that cost the counted-link redirect more than the rest of its work.
    site: Site = request.app.state.site
    return site


CurrentSite = Annotated[Site, Depends(current_site)]


_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The approval page's one script (web/approve.py): it fills in the form's `human` value a
# moment after the page has loaded, a step a crawler that only fetches and posts forms does
# not take; where the approver has a passkey, Approve first asks the browser for it
# (editorial/passkeys.py) and posts its signature with the button's own value
# (requestSubmit). Allowed by its hash, and no other script.
APPROVE_SCRIPT = (
    "(function(){var h=document.getElementById('approve-human');"
    "function human(){h.value=h.getAttribute('data-value')}setTimeout(human,800);"
    "var o=document.getElementById('passkey-options');if(!o)return;"
    "var f=h.form,s=document.getElementById('passkey-status'),"
    "b=document.getElementById('approve-button');"
    "b.addEventListener('click',function(e){"
    "e.preventDefault();var P=window.PublicKeyCredential;"
    "if(!P||!P.parseRequestOptionsFromJSON){s.textContent='This browser cannot use passkeys:"
    " open the link in a current browser.';return}"
    "navigator.credentials.get({publicKey:P.parseRequestOptionsFromJSON("
    "JSON.parse(o.textContent))}).then(function(c){human();"
    "f.elements.passkey.value=JSON.stringify(c.toJSON());f.requestSubmit(b)},"
    "function(){s.textContent='The passkey was not used, so nothing was approved."
    " Press Approve to try again.'})})})();"
)
# The passkey page's one script (web/passkey.py): the browser makes the passkey and the
# form posts it.
PASSKEY_SCRIPT = (
    "(function(){var o=document.getElementById('passkey-options'),"
    "f=document.getElementById('passkey-form'),s=document.getElementById('passkey-status');"
    "document.getElementById('passkey-button').addEventListener('click',function(e){"
    "e.preventDefault();var P=window.PublicKeyCredential;"
    "if(!P||!P.parseCreationOptionsFromJSON){s.textContent='This browser cannot make passkeys:"
    " open the link in a current browser.';return}"
    "navigator.credentials.create({publicKey:P.parseCreationOptionsFromJSON("
    "JSON.parse(o.textContent))}).then(function(c){"
    "f.elements.credential.value=JSON.stringify(c.toJSON());f.submit()},"
    "function(){s.textContent='No passkey was made. Press the button to try again.'})})})();"
)


def _with_script(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return f"{_CSP}; script-src 'sha256-{digest}'"


# Pages with a script, by path prefix; they check their POST's Origin too.
_SCRIPTED = {
    site_urls.prefix(site_urls.APPROVE): _with_script(APPROVE_SCRIPT),
    site_urls.prefix(site_urls.PASSKEY): _with_script(PASSKEY_SCRIPT),
}


def security_headers(path: str) -> list[tuple[str, str]]:
    """Every answer's, error pages included: no framing, sniffing, Referer (links carry
    tokens) or caching of personal pages."""
    # The approval and confirmation pages check their POST's Origin, which a browser under
    # no-referrer sends as "null": there, the Referer stays on this site (and still leaves
    # it with nothing).
    scripted = next((csp for prefix, csp in _SCRIPTED.items() if path.startswith(prefix)), None)
    same = scripted is not None or path.startswith(site_urls.prefix(site_urls.CONFIRM))
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin" if same else "no-referrer"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", scripted or _CSP),
    ]
    if not path.startswith(site_urls.ARCHIVE.rstrip("/")):
        headers.append(("Cache-Control", "no-store"))
    return headers


def secured(response: Response, path: str) -> Response:
    """A response with the security headers set (security_headers)."""
    for name, value in security_headers(path):
        response.headers[name] = value
    return response


class SecurityHeaders:
    """The security headers on every answer, as plain ASGI: Starlette's
    BaseHTTPMiddleware (`@app.middleware("http")`) runs each request through a task group
    and a streamed body, which cost the counted-link redirect a third of its rate."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in security_headers(scope.get("path", ""))
        ]
        replaced = {name for name, _ in added}

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in replaced]
                message = dict(message, headers=kept + added)
            await send(message)

        await self.app(scope, receive, with_headers)
