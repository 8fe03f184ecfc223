"""`newsletter serve`."""

from __future__ import annotations

from typing import Annotated

import typer

from newsletter.cli.state import state


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    ctx: typer.Context,
    *,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    proxy_headers: Annotated[
        bool, typer.Option(help="Trust X-Forwarded-For from a reverse proxy on this host.")
    ] = False,
) -> None:
    """Serve subscribe, confirm, unsubscribe (RFC 8058 one-click), preferences, the archive,
    the counted links and providers' bounce webhooks.

    Example: newsletter serve --host 127.0.0.1 --port 8000
    """
    from newsletter.web.app import create_app  # FastAPI takes 0.2 s to import: only here
    from newsletter.web.server import run

    st = state(ctx)
    web = create_app(st.config(), st.engine(), st.key())
    run(web, host=host, port=port, proxy_headers=proxy_headers)
