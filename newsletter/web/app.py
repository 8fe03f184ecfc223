"""The web app: the routers (subscribe and confirm, unsubscribe, archive) on one FastAPI app,
the objects they share on `app.state.site`, security headers on every answer and one page
for every error. Providers' bounce webhooks (webhooks.py) and the counted links and opens
(clicks.py) have routers of their own.

A bad token of any kind gets the same 404 page. Responses forbid framing and sniffing, send
no Referer (links carry tokens) and personal pages are not cached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request, Response
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException

from newsletter import registry
from newsletter.config import Config
from newsletter.delivery.transport import Transport, open_transport
from newsletter.editorial.render import environment
from newsletter.web import (
    approve,
    archive,
    clicks,
    passkey,
    preferences,
    subscribe,
    unsubscribe,
    webhooks,
)
from newsletter.web.counting import CountWriter
from newsletter.web.limits import Limits, default_limits
from newsletter.web.server import redact
from newsletter.web.site import SecurityHeaders, Site, secured

log = logging.getLogger("newsletter.web")


def create_app(
    config: Config,
    engine: Engine,
    key: bytes,
    *,
    transport: Callable[[], Transport] | None = None,
    limits: Limits | None = None,
) -> FastAPI:
    app = FastAPI(title=config.name, docs_url=None, redoc_url=None, openapi_url=None)
    registry.record(engine, config)
    site = Site(
        config=config,
        engine=engine,
        key=key,
        make_transport=transport or (lambda: open_transport(config.transport, config.root)),
        limits=limits or default_limits(),
        pages=environment(config, autoescape=True),
        counter=CountWriter(engine),
    )
    app.state.site = site
    # The counted links first: the busiest routes, matched before the others are tried.
    app.router.routes.extend(clicks.routes)
    for module in (subscribe, unsubscribe, preferences, archive, webhooks, approve, passkey):
        app.include_router(module.router)
    app.router.add_event_handler("shutdown", site.counter.close)

    app.add_middleware(SecurityHeaders)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> Response:
        # Starlette answers an unhandled error outside every middleware: the page and its
        # headers are set here. The traceback goes to the log with the token redacted.
        log.error(
            "error answering %s %s: %s",
            request.method,
            redact(request.url.path),
            type(error).__name__,
            exc_info=(type(error), error, error.__traceback__),
        )
        response = site.message(
            site._("Something went wrong"), site._("Nothing was changed. Try later."), 500
        )
        return secured(response, request.url.path)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        titles = {404: site._("Not found"), 405: site._("Method not allowed")}
        response = site.message(
            titles.get(error.status_code, site._("Request refused")),
            str(error.detail) if error.status_code not in titles else "",
            error.status_code,
        )
        if error.headers:
            response.headers.update(error.headers)
        return response

    return app
