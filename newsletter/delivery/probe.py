"""`newsletter doctor --probe`: what the doctor otherwise says as configured, tried over the
network: the relay's greeting, STARTTLS and certificate, and the name it greets with against
its PTR; and the site at `base_url`, whose unsubscribe GET must change nothing and whose
RFC 8058 one-click POST must unsubscribe with a 200 and no page to visit.

The site is tried with a probe person of its own: a pending subscription (pending readers get
no mail, so a send running meanwhile mails nobody) at the From domain, deleted again whatever
happens. Its link is a real signed unsubscribe link, so the probe proves also that the server
behind `base_url` reads this database with this key (a server on another database answers
the link with a 404, which is said).
"""

from __future__ import annotations

import contextlib
import secrets
import smtplib
import socket
import ssl
from collections.abc import Callable

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from newsletter import site_urls
from newsletter.audience import subscribers
from newsletter.audience.tokens import signed_url
from newsletter.config import Config
from newsletter.db import session_scope
from newsletter.delivery.doctor import Finding, tls_off_finding
from newsletter.delivery.transport import SMTPTransport, is_loopback, open_transport, tls_context
from newsletter.models import Subscriber, Subscription

TIMEOUT = 10.0


def probe_relay(config: Config, ptr_names: list[str], timeout: float = TIMEOUT) -> list[Finding]:
    """Connect to the SMTP relay: its greeting, STARTTLS with the certificate checked, and
    the name it greets with (a relay's HELO is its host name, which receivers match to PTR)."""
    # The relay as the send reads its URL (host, port, TLS), never parsed a second way.
    relay = open_transport(config.transport, config.root)
    if not isinstance(relay, SMTPTransport):
        return []
    host, port, implicit, tls_off = relay.host, relay.port, relay.implicit_tls, not relay.tls
    found: list[Finding] = []
    try:
        if implicit:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port, timeout=timeout, context=tls_context()
            )
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
    except ssl.SSLError as error:
        return [_tls_failed(host, error)]
    except (OSError, smtplib.SMTPException) as error:
        return [
            Finding(
                "relay",
                "fail",
                f"the relay {host}:{port} did not answer ({type(error).__name__})",
                "check [delivery] transport and that the relay runs",
            )
        ]
    with contextlib.closing(smtp):
        name = ""
        try:
            smtp.ehlo(socket.getfqdn())
            # The EHLO answer's first line names the relay as it names itself (Postfix's
            # myhostname, its HELO to receivers too).
            words = (smtp.ehlo_resp or b"").decode("utf-8", "replace").split()
            name = words[0].rstrip(".").lower() if words else ""
            if implicit:
                found.append(_tls_ok(host, smtp, "implicit"))
            elif smtp.has_extn("starttls") and not tls_off:
                smtp.starttls(context=tls_context())
                found.append(_tls_ok(host, smtp, "STARTTLS"))
            elif tls_off:
                found.append(tls_off_finding(host))
            elif is_loopback(host):
                found.append(
                    Finding(
                        "tls",
                        "warn",
                        f"the relay {host} offers no STARTTLS (loopback: sent in clear)",
                    )
                )
            else:
                found.append(
                    Finding(
                        "tls",
                        "fail",
                        f"the relay {host} offers no STARTTLS: the send refuses it",
                        "enable TLS on the relay",
                    )
                )
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
        except ssl.SSLError as error:
            found.append(_tls_failed(host, error))
        except (OSError, smtplib.SMTPException) as error:
            found.append(
                Finding("relay", "fail", f"the relay {host} dropped the probe: {error}", "")
            )
        found.append(_helo(host, name, ptr_names))
    return found


def _tls_ok(host: str, smtp: smtplib.SMTP, how: str) -> Finding:
    sock = smtp.sock
    version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
    return Finding("tls", "ok", f"TLS to the relay {host} ({how}, {version}, certificate valid)")


def _tls_failed(host: str, error: ssl.SSLError) -> Finding:
    return Finding(
        "tls",
        "fail",
        f"TLS to the relay {host} failed: {error.reason or error}",
        "give the relay a certificate for its name (or SSL_CERT_FILE for a private CA)",
    )


def _helo(host: str, name: str, ptr_names: list[str]) -> Finding:
    if not name:
        return Finding("helo", "warn", f"the relay {host} greets without a name")
    if not ptr_names:
        return Finding(
            "helo",
            "warn",
            f"the relay {host} greets as {name}; its outbound address's PTR is not known here",
            "make its HELO name the PTR name of the address it sends from",
        )
    if name in ptr_names:
        return Finding("helo", "ok", f"the relay greets as {name}, its PTR name")
    return Finding(
        "helo",
        "fail",
        f"the relay greets as {name}, but its address's PTR is {ptr_names[0]}",
        f"set its HELO name to {ptr_names[0]} (Postfix: smtp_helo_name)",
    )


def probe_site(
    config: Config,
    engine: Engine,
    key: bytes,
    client: Callable[[], httpx.Client] | None = None,
) -> list[Finding]:
    """The unsubscribe link of a probe person at `base_url`: GET, then the one-click POST."""
    address = f"doctor-probe-{secrets.token_hex(6)}@{config.from_address.domain}"
    with session_scope(engine) as session:
        subscribers.add(session, config.newsletter_id, address, source="doctor", status="pending")
        person = subscribers.require(session, address)
        person_id, token_id = person.id, person.token_id
    url = signed_url(config.base_url, key, "unsubscribe", config.newsletter_id, token_id)
    shown = site_urls.unsubscribe(config.base_url, "[token]")
    try:
        with (client or _client)() as http:
            page = http.get(url)
            after_get = _status(engine, person_id, config.newsletter_id)
            answer = http.post(url, data={"List-Unsubscribe": "One-Click"})
            after_post = _status(engine, person_id, config.newsletter_id)
    except httpx.HTTPError as error:
        return [
            Finding(
                "one-click",
                "fail",
                f"{shown} did not answer ({type(error).__name__})",
                "run 'newsletter serve' behind [newsletter] base_url",
            )
        ]
    finally:
        _forget(engine, person_id)
    found = []
    if page.status_code == 404:
        found.append(
            Finding(
                "get-never-acts",
                "fail",
                f"GET {shown} answered 404: the server there does not know this database's readers",
                "point the server at the same database and key as this config",
            )
        )
    elif page.status_code != 200 or after_get != "pending":
        found.append(
            Finding(
                "get-never-acts",
                "fail",
                f"GET {shown} answered {page.status_code} and left the reader {after_get}",
                "serve the unsubscribe page from 'newsletter serve' unchanged",
            )
        )
    else:
        found.append(Finding("get-never-acts", "ok", f"GET {shown} shows a page, changes nothing"))
    one_click = answer.status_code == 200 and "location" not in answer.headers
    if one_click and after_post == "unsubscribed":
        found.append(
            Finding("one-click", "ok", f"POST {shown} (One-Click) unsubscribed with a 200")
        )
    elif answer.is_redirect:
        found.append(
            Finding(
                "one-click",
                "fail",
                f"POST {shown} answered {answer.status_code} (a redirect): RFC 8058 needs a 200",
                "let POST requests through the proxy to 'newsletter serve' unchanged",
            )
        )
    else:
        found.append(
            Finding(
                "one-click",
                "fail",
                f"POST {shown} answered {answer.status_code} and left the reader {after_post}",
                "let POST requests through the proxy to 'newsletter serve' unchanged",
            )
        )
    return found


def _client() -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT, follow_redirects=False)


def _status(engine: Engine, person_id: int | None, newsletter: str) -> str | None:
    with Session(engine) as session:
        return session.exec(
            select(Subscription.status).where(
                Subscription.subscriber_id == person_id, Subscription.newsletter == newsletter
            )
        ).first()


def _forget(engine: Engine, person_id: int | None) -> None:
    with session_scope(engine) as session:
        session.execute(sa.delete(Subscription).where(col(Subscription.subscriber_id) == person_id))
        session.execute(sa.delete(Subscriber).where(col(Subscriber.id) == person_id))
