"""What every route needs, set once on `app.state.site` by create_app and handed to routes
as a dependency: the config, the database, the signing key, a way to open the transport,
the form's limits, and the page templates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import jinja2
from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session

from newsletter import languages, registry
from newsletter.audience.tokens import Token, read_token
from newsletter.config import Config
from newsletter.delivery.transport import Transport
from newsletter.editorial.render import render_template
from newsletter.web.counting import CountWriter, Repeats
from newsletter.web.limits import Limits


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

    def page(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        site = {
            "key": self.config.key,
            "name": self.config.name,
            "language": self.config.language,
            "direction": languages.direction(self.config.language),
            "base_url": self.config.base_url,
        }
        html = render_template(
            self.pages, f"web/{template}.html.j2", {"newsletter": site} | context
        )
        return HTMLResponse(html, status_code=status)

    def _(self, message: str, **values: str) -> str:
        """One of the pages' own messages in the newsletter's language."""
        text = languages.translations(self.config.language).gettext(message)
        return text % values if values else text

    def message(self, title: str, text: str, status: int = 200) -> HTMLResponse:
        return self.page("message", status, title=title, text=text)

    def mail(self, to: str, message: bytes) -> None:
        """Send one message the web pages owe someone (a confirmation, a manage link)
        through the newsletter's transport, from its address."""
        outbound = self.make_transport()
        try:
            outbound.send(self.config.from_address.addr_spec, to, message)
        finally:
            outbound.close()

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
        return read_token(self.key, "unsubscribe", self.config.key, token)

    def invalid_link(self) -> HTMLResponse:
        """The one answer to every bad token, whatever is wrong with it."""
        return self.message(
            self._("This link is not valid"),
            self._("It may be mistyped, or it has expired. Nothing was changed."),
            404,
        )


def current_site(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


CurrentSite = Annotated[Site, Depends(current_site)]


def secured(response: Response, path: str) -> Response:
    """Every answer, error pages included: no framing, sniffing, Referer (links carry
    tokens) or caching of personal pages."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    if not path.startswith("/archive"):
        response.headers["Cache-Control"] = "no-store"
    return response
