"""`newsletter doctor [--dns HOST[:PORT]] [--probe] [--json]`: parse, call delivery/doctor.py
(and delivery/probe.py), print."""

from __future__ import annotations

from typing import Annotated

import typer

from newsletter.cli.output import out, print_json, styled
from newsletter.cli.state import state
from newsletter.delivery.doctor import diagnose, resolver
from newsletter.delivery.probe import probe_relay, probe_site
from newsletter.errors import FAILED, UsageError


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(
    ctx: typer.Context,
    *,
    nameserver: Annotated[
        str | None,
        typer.Option(
            "--dns", metavar="HOST[:PORT]", help="Ask this DNS server (default: the system's)."
        ),
    ] = None,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe",
            help="Also try the relay (greeting, TLS, HELO name) and the site's unsubscribe "
            "GET and one-click POST over the network.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check what Gmail, Yahoo and Microsoft require of a bulk sender before the first send:
    SPF, DKIM, DMARC and alignment, the relay's PTR and TLS, List-Unsubscribe, Feedback-ID.
    One line each, with the fix; exit 1 when any fails.

    Example: newsletter doctor
    """
    st = state(ctx)
    config = st.config()
    if nameserver is not None:
        host, _, port = nameserver.partition(":")
        if not host or (port and not port.isdigit()):
            raise UsageError(f"--dns {nameserver!r}: give HOST or HOST:PORT, e.g. 127.0.0.1:53")
    if probe:
        engine, key = st.engine(), st.key()
        findings = diagnose(
            config,
            resolver(nameserver),
            relay_probe=lambda names: probe_relay(config, names),
            site_probe=lambda: probe_site(config, engine, key),
        )
    else:
        findings = diagnose(config, resolver(nameserver))
    if as_json:
        print_json({"findings": [finding.as_dict() for finding in findings]})
    else:
        marks = {"ok": ("ok  ", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "red")}
        for finding in findings:
            mark, colour = marks[finding.verdict]
            line = f"{finding.check}: {finding.text}" + (f" — {finding.fix}" if finding.fix else "")
            out.print(styled(mark, colour), line)
    if any(finding.verdict == "fail" for finding in findings):
        raise typer.Exit(FAILED)
