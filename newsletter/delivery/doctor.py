"""`newsletter doctor`: what Gmail, Yahoo and Microsoft require of a bulk sender, checked
before the first send, one finding a rule with the fix.

Since 2024 Gmail and Yahoo, and since May 2025 Outlook.com, refuse bulk mail (5.7.26,
5.7.25, 550 5.7.515) that misses their rules: SPF for the envelope domain, DKIM, a DMARC
record on the From domain that SPF or DKIM aligns with, a PTR record (and a matching HELO)
for the sending IP, TLS, and both List-Unsubscribe forms with a one-click POST. Most of it
is DNS, looked up here through dnspython (a resolver the caller gives, so a test can point
it at a server on 127.0.0.1); what the newsletter does itself (the headers, the one-click
POST, a GET that never acts) is said as built, and what only the relay knows is said so.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import dns.exception
import dns.resolver
import dns.reversename
from cryptography.hazmat.primitives import serialization

from newsletter.config import Config
from newsletter.delivery.dkim import load_key

Verdict = Literal["ok", "fail", "warn"]
PROVIDERS = ("ses", "postmark", "mailgun")


@dataclass(frozen=True)
class Finding:
    check: str
    verdict: Verdict
    text: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "verdict": self.verdict, "text": self.text, "fix": self.fix}


def resolver(nameserver: str | None = None, timeout: float = 5.0) -> dns.resolver.Resolver:
    """The system's resolver, or one asking `HOST[:PORT]` alone."""
    if nameserver is None:
        found = dns.resolver.Resolver()
    else:
        found = dns.resolver.Resolver(configure=False)
        host, _, port = nameserver.partition(":")
        found.nameservers = [host]
        if port:
            found.port = int(port)
    found.lifetime = found.timeout = timeout
    return found


def _texts(dns_resolver: dns.resolver.Resolver, name: str) -> list[str] | None:
    """The TXT strings at a name ([] for none), or None when DNS did not answer."""
    try:
        answer = dns_resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException:
        return None
    return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]


def _organisation(domain: str) -> str:
    """The registered domain, roughly: the last two labels (three under a two-letter
    second level such as co.uk). Relaxed alignment compares these."""
    labels = domain.lower().rstrip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def diagnose(
    config: Config,
    dns_resolver: dns.resolver.Resolver,
    *,
    relay_probe: Callable[[list[str]], list[Finding]] | None = None,
    site_probe: Callable[[], list[Finding]] | None = None,
) -> list[Finding]:
    """Every rule's finding. Without probes, what only the network shows (the relay's TLS and
    HELO, the site's one-click POST) is said as configured or built; a probe (delivery/
    probe.py) replaces those findings with what it saw: `relay_probe` gets the PTR names of
    the relay's address."""
    from_domain = config.from_address.domain.lower()
    envelope = (config.bounce_address or config.from_address.addr_spec).rpartition("@")[2].lower()
    scheme = urlsplit(config.transport).scheme
    provider = scheme in PROVIDERS
    found: list[Finding] = []
    unreachable = Finding(
        "dns", "fail", "DNS did not answer", "check the network or pass --dns HOST[:PORT]"
    )

    # SPF for the envelope (Return-Path) domain.
    spf = _texts(dns_resolver, envelope)
    if spf is None:
        found.append(unreachable)
        return found
    records = [text for text in spf if text.lower().startswith("v=spf1")]
    if len(records) == 1:
        found.append(Finding("spf", "ok", f"SPF for {envelope}: {records[0]}"))
    elif provider and not config.bounce_address:
        found.append(
            Finding(
                "spf",
                "warn",
                f"no SPF record for {envelope}; {scheme} sends "
                "with its own envelope sender, which it covers",
                "add the provider's custom MAIL FROM domain for alignment",
            )
        )
    elif not records:
        found.append(
            Finding(
                "spf",
                "fail",
                f"no SPF record for the envelope domain {envelope}",
                f'publish TXT "v=spf1 include:<your relay> -all" at {envelope}',
            )
        )
    else:
        found.append(
            Finding(
                "spf",
                "fail",
                f"{len(records)} SPF records for {envelope} (receivers treat that as none)",
                "merge them into one",
            )
        )

    # DKIM: the configured key's public half published at its selector.
    dkim_ok = False
    if config.dkim_selector and config.dkim_key_file:
        name = f"{config.dkim_selector}._domainkey.{from_domain}"
        key = load_key(config.dkim_selector, config.dkim_key_file)
        public = base64.b64encode(
            key.private.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).decode()
        published = [
            text for text in (_texts(dns_resolver, name) or []) if "p=" in text.replace(" ", "")
        ]
        tags = [dict(_tag(part) for part in text.split(";") if "=" in part) for text in published]
        if not published:
            found.append(
                Finding(
                    "dkim",
                    "fail",
                    f"no DKIM record at {name}",
                    f'publish TXT "v=DKIM1; k=rsa; p={public}" at {name}',
                )
            )
        elif any(tag.get("p", "").replace(" ", "") == public for tag in tags):
            dkim_ok = True
            found.append(Finding("dkim", "ok", f"DKIM record at {name} matches the key"))
        else:
            found.append(
                Finding(
                    "dkim",
                    "fail",
                    f"the DKIM record at {name} is not the "
                    f"configured key's ({config.dkim_key_file})",
                    f'publish TXT "v=DKIM1; k=rsa; p={public}" at {name}',
                )
            )
    elif provider:
        found.append(
            Finding(
                "dkim",
                "warn",
                f"{scheme} signs with its own DKIM key",
                f"verify {from_domain} with {scheme} (its DNS records) so that "
                "its signature aligns with your From domain",
            )
        )
    else:
        found.append(
            Finding(
                "dkim",
                "fail",
                "messages are not DKIM-signed (Gmail and Yahoo require it of bulk senders)",
                "set [delivery] dkim_selector and dkim_key_file",
            )
        )

    # DMARC on the From domain (or its organisational domain), and alignment.
    organisation = _organisation(from_domain)
    dmarc_name = f"_dmarc.{from_domain}"
    dmarc = [t for t in (_texts(dns_resolver, dmarc_name) or []) if t.startswith("v=DMARC1")]
    if not dmarc and organisation != from_domain:
        dmarc_name = f"_dmarc.{organisation}"
        dmarc = [t for t in (_texts(dns_resolver, dmarc_name) or []) if t.startswith("v=DMARC1")]
    if dmarc:
        found.append(Finding("dmarc", "ok", f"DMARC at {dmarc_name}: {dmarc[0]}"))
    else:
        found.append(
            Finding(
                "dmarc",
                "fail",
                f"no DMARC record for {from_domain}",
                f'publish TXT "v=DMARC1; p=none; rua=mailto:dmarc@{organisation}"'
                f" at _dmarc.{from_domain}",
            )
        )
    spf_aligned = _organisation(envelope) == organisation and len(records) == 1
    if spf_aligned or dkim_ok:
        why = " and ".join(n for n, ok in (("SPF", spf_aligned), ("DKIM", dkim_ok)) if ok)
        found.append(
            Finding("alignment", "ok", f"{why} aligned with the From domain {from_domain}")
        )
    else:
        found.append(
            Finding(
                "alignment",
                "warn" if provider else "fail",
                f"neither SPF ({envelope}) nor DKIM aligns with the From domain "
                f"{from_domain}: DMARC fails",
                "sign with a key published under the From domain, or send with an "
                "envelope sender under it ([bounces] address)",
            )
        )

    # The relay: PTR and HELO, TLS.
    if scheme in ("smtp", "smtps"):
        relay, names = _relay(config, dns_resolver, scheme)
        found.extend(_replaced(relay, relay_probe(names)) if relay_probe else relay)

    # What the newsletter does itself.
    https = config.base_url.startswith("https://")
    if https and config.bounce_address:
        found.append(
            Finding(
                "list-unsubscribe",
                "ok",
                "List-Unsubscribe carries an https "
                "link and a mailto: address, with List-Unsubscribe-Post",
            )
        )
    elif https:
        found.append(
            Finding(
                "list-unsubscribe",
                "warn",
                "List-Unsubscribe carries the https link only",
                "set [bounces] address for the mailto: form too",
            )
        )
    else:
        found.append(
            Finding(
                "list-unsubscribe",
                "fail",
                f"base_url {config.base_url} is not "
                "https: Gmail and Yahoo require an https one-click link",
                "serve the pages over https and set [newsletter] base_url",
            )
        )
    if site_probe is not None:
        found.extend(site_probe())
    else:
        found.append(
            Finding(
                "one-click",
                "ok",
                "POST /unsubscribe/<token> unsubscribes with a 200 and no page to visit "
                "(RFC 8058); a GET only shows a button (as built: --probe tries the site)",
            )
        )
    if config.feedback_id:
        found.append(Finding("feedback-id", "ok", f"Feedback-ID: {config.feedback_id}"))
    else:
        found.append(
            Finding(
                "feedback-id",
                "warn",
                "no Feedback-ID header (Gmail's feedback "
                "loop reports complaints per campaign by it)",
                'set [delivery] feedback_id = "<issue>:<newsletter>:<you>"',
            )
        )
    return found


def tls_off_finding(host: str) -> Finding:
    return Finding(
        "tls",
        "fail",
        f"TLS to the relay {host} is off (?tls=off)",
        "remove ?tls=off unless the relay is on a trusted network",
    )


def _replaced(said: list[Finding], seen: list[Finding]) -> list[Finding]:
    checks = {finding.check for finding in seen}
    return [finding for finding in said if finding.check not in checks] + seen


def _tag(part: str) -> tuple[str, str]:
    name, _, value = part.partition("=")
    return name.strip(), value.strip()


def _relay(
    config: Config, dns_resolver: dns.resolver.Resolver, scheme: str
) -> tuple[list[Finding], list[str]]:
    """The relay's TLS as configured and its PTR; and the PTR names, for a HELO probe."""
    parts = urlsplit(config.transport)
    host = parts.hostname or ""
    found: list[Finding] = []
    tls_off = "tls=off" in parts.query
    if scheme == "smtps" or not tls_off:
        found.append(
            Finding(
                "tls",
                "ok",
                f"TLS to the relay {host} ("
                f"{'implicit' if scheme == 'smtps' else 'STARTTLS, required'})",
            )
        )
    else:
        found.append(tls_off_finding(host))
    try:
        address = ipaddress.ip_address(host)
        addresses = [str(address)]
    except ValueError:
        try:
            addresses = [r.to_text() for r in dns_resolver.resolve(host, "A")]
        except dns.exception.DNSException:
            addresses = []
    if not addresses:
        found.append(Finding("ptr", "warn", f"the relay {host} has no address in DNS"))
        return found, []
    ip = ipaddress.ip_address(addresses[0])
    if ip.is_loopback or ip.is_private:
        found.append(
            Finding(
                "ptr",
                "warn",
                f"the relay {host} is local ({ip}): its own "
                "outbound IP needs a PTR record matching its HELO name",
                "ask whoever runs the relay",
            )
        )
        return found, []
    try:
        names = [
            r.to_text().rstrip(".")
            for r in dns_resolver.resolve(dns.reversename.from_address(str(ip)), "PTR")
        ]
    except dns.exception.DNSException:
        names = []
    if not names:
        found.append(
            Finding(
                "ptr",
                "fail",
                f"no PTR record for the relay's address {ip}",
                "ask the relay's host for reverse DNS (Gmail's 5.7.25)",
            )
        )
        return found, []
    try:
        back = {r.to_text() for r in dns_resolver.resolve(names[0], "A")}
    except dns.exception.DNSException:
        back = set()
    if str(ip) in back:
        found.append(
            Finding(
                "ptr",
                "ok",
                f"{ip} has PTR {names[0]}, which resolves back; the relay should say it in HELO",
            )
        )
    else:
        found.append(
            Finding(
                "ptr",
                "fail",
                f"{ip} has PTR {names[0]}, which does not resolve back to it",
                f"add an A record {names[0]} -> {ip}",
            )
        )
    return found, names
