"""`newsletter doctor` against a DNS server on 127.0.0.1: each of the bulk-sender rules
(SPF, DKIM, DMARC and alignment, PTR, TLS, List-Unsubscribe, Feedback-ID) found kept or
missed, with the fix."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from newsletter.audience.tokens import load_key
from newsletter.db import open_database
from newsletter.delivery.doctor import Finding
from newsletter.delivery.probe import probe_relay, probe_site
from newsletter.models import Subscriber, Subscription
from newsletter.web.app import create_app
from tests.conftest import Project
from tests.dnsserver import DNSServer
from tests.liveweb import start
from tests.smtpserver import Handler, SMTPServer, free_port
from tests.test_dkim import rsa_key
from tests.test_tls import make_certificate

RELAY_IP = "81.2.69.142"


def _configure(project: Project, tmp_path: Path, *, tls: bool = True) -> bytes:
    key, record = rsa_key(tmp_path)
    text = project.config_file.read_text()
    text = text.replace('# dkim_selector = "news2022"', 'dkim_selector = "news2022"')
    text = text.replace('# dkim_key_file = "/etc/newsletter/dkim.pem"', f'dkim_key_file = "{key}"')
    text = text.replace('# feedback_id = "war-notes:newsletter:example"',
                        'feedback_id = "war-notes:newsletter:example"')  # fmt: skip
    text = text.replace('# bounce_address = "bounces@news.example.org"',
                        'bounce_address = "bounces@news.example.org"')  # fmt: skip
    relay = "smtp://relay.example.org:25" + ("" if tls else "?tls=off")
    text = text.replace('transport = "file://outbox"', f'transport = "{relay}"')
    project.config_file.write_text(text)
    return record


def _doctor(project: Project, server: DNSServer) -> tuple[int, dict[str, dict[str, str]]]:
    result = project.run("doctor", "--dns", server.address, "--json")
    assert result.exit_code in (0, 1), result.output
    found = json.loads(result.stdout)["findings"]
    return result.exit_code, {f["check"]: f for f in found}


def test_a_sender_that_keeps_every_rule(
    project: Project,
    dns_server: DNSServer,
    tmp_path: Path,
) -> None:
    record = _configure(project, tmp_path)
    dns_server.add("news.example.org", "TXT", '"v=spf1 ip4:81.2.69.142 -all"')
    # A long DKIM record comes as several strings of at most 255 characters.
    text = record.decode()
    chunks = " ".join(f'"{text[i : i + 200]}"' for i in range(0, len(text), 200))
    dns_server.add("news2022._domainkey.example.org", "TXT", chunks)
    dns_server.add("_dmarc.example.org", "TXT", '"v=DMARC1; p=quarantine"')
    dns_server.add("relay.example.org", "A", RELAY_IP)
    dns_server.add("142.69.2.81.in-addr.arpa", "PTR", "relay.example.org.")
    code, found = _doctor(project, dns_server)
    assert code == 0, found
    assert {check: f["verdict"] for check, f in found.items()} == {
        "spf": "ok", "dkim": "ok", "dmarc": "ok", "alignment": "ok", "tls": "ok",
        "ptr": "ok", "list-unsubscribe": "ok", "one-click": "ok", "feedback-id": "ok",
    }  # fmt: skip
    assert ("_dmarc.example.org.", "TXT") in dns_server.asked


def test_each_missing_rule_is_named_with_its_fix(
    project: Project,
    dns_server: DNSServer,
    tmp_path: Path,
) -> None:
    record = _configure(project, tmp_path, tls=False)
    dns_server.add("news.example.org", "TXT", '"v=spf1 a -all"', '"v=spf1 mx -all"')
    dns_server.add("news2022._domainkey.example.org", "TXT", '"v=DKIM1; k=rsa; p=AAAAwrong"')
    dns_server.add("relay.example.org", "A", RELAY_IP)
    code, found = _doctor(project, dns_server)
    assert code == 1
    assert found["spf"]["verdict"] == "fail" and "merge" in found["spf"]["fix"]
    assert found["dkim"]["verdict"] == "fail"
    assert record.decode().split("p=")[1] in found["dkim"]["fix"]  # the record to publish
    assert found["dmarc"]["verdict"] == "fail" and "_dmarc.example.org" in found["dmarc"]["fix"]
    assert found["alignment"]["verdict"] == "fail"
    assert found["ptr"]["verdict"] == "fail" and "5.7.25" in found["ptr"]["fix"]
    assert found["tls"]["verdict"] == "fail"
    plain = project.run("doctor", "--dns", dns_server.address)
    assert plain.exit_code == 1 and "FAIL dmarc:" in plain.stdout


def test_doctor_without_dns_says_so(project: Project) -> None:
    result = project.run("doctor", "--dns", "127.0.0.1:1", "--json")
    assert result.exit_code == 1
    (finding,) = json.loads(result.stdout)["findings"]
    assert finding["check"] == "dns" and "--dns" in finding["fix"]
    refused = project.run("doctor", "--dns", "127.0.0.1:x")
    assert refused.exit_code == 2 and "HOST:PORT" in refused.stderr


# --probe: the relay and the site, over the network.


def _relay_at(project: Project, url: str) -> None:
    text = project.config_file.read_text()
    project.config_file.write_text(
        text.replace('transport = "file://outbox"', f'transport = "{url}"')
    )


def _by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {finding.check: finding for finding in findings}


def test_the_relay_probe_sees_tls_and_the_name_it_greets_with(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, cert = make_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(
        Handler(), hostname="127.0.0.1", port=free_port(), tls_context=context,
        server_hostname="relay.example.org",
    )  # fmt: skip
    controller.start()
    try:
        _relay_at(project, f"smtp://localhost:{controller.port}")
        config = project.config
        # The certificate is a private one: refused until the operator names its CA.
        refused = _by_check(probe_relay(config, ["relay.example.org"]))
        assert (
            refused["tls"].verdict == "fail" and "CERTIFICATE_VERIFY_FAILED" in refused["tls"].text
        )
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        seen = _by_check(probe_relay(config, ["relay.example.org"]))
        assert seen["tls"].verdict == "ok" and "STARTTLS, TLSv1" in seen["tls"].text, seen
        assert seen["helo"].verdict == "ok"
        other = _by_check(probe_relay(config, ["mail.example.org"]))
        assert other["helo"].verdict == "fail"
        assert "relay.example.org" in other["helo"].text and "smtp_helo_name" in other["helo"].fix
        unknown = _by_check(probe_relay(config, []))
        assert unknown["helo"].verdict == "warn"
    finally:
        controller.stop()


def test_the_relay_probe_says_a_relay_without_starttls_or_answer(project: Project) -> None:
    plain = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    plain.start()
    try:
        _relay_at(project, f"smtp://127.0.0.1:{plain.port}")
        seen = _by_check(probe_relay(project.config, []))
        assert seen["tls"].verdict == "warn" and "no STARTTLS" in seen["tls"].text  # loopback
    finally:
        plain.stop()
    _relay_at(project, f"smtp://127.0.0.1:{free_port()}")  # nothing listens there now
    (closed,) = probe_relay(project.config, [], timeout=2)
    assert closed.check == "relay" and closed.verdict == "fail"


def test_the_site_probe_tries_get_and_one_click_and_leaves_no_one_behind(
    project: Project, smtp_server: SMTPServer, dns_server: DNSServer
) -> None:
    served = start(project, smtp_server, None)
    next(served)
    try:
        config = project.config
        key = load_key(config.signing_key_file)
        seen = _by_check(probe_site(config, project.engine(), key))
        assert seen["get-never-acts"].verdict == "ok", seen
        assert seen["one-click"].verdict == "ok", seen
        assert "[token]" in seen["one-click"].text  # no token printed
        # The CLI puts them in place of the findings said as built.
        result = project.run("doctor", "--dns", dns_server.address, "--probe", "--json")
        found = [f for f in json.loads(result.stdout)["findings"] if f["check"] == "one-click"]
        assert [f["verdict"] for f in found] == ["ok"] and "as built" not in found[0]["text"]
        said = project.run("doctor", "--dns", dns_server.address, "--json").stdout
        assert "as built" in said
    finally:
        next(served, None)
    with Session(project.engine()) as session:
        assert session.exec(select(Subscriber)).all() == []
        assert session.exec(select(Subscription)).all() == []


def test_the_site_probe_names_a_redirect_and_a_server_on_another_database(
    project: Project,
) -> None:
    class Redirecting(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(302)
            self.send_header("Location", "/login")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        text = project.config_file.read_text()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        project.config_file.write_text(text.replace("https://news.example.org", base))
        config = project.config
        seen = _by_check(probe_site(config, project.engine(), load_key(config.signing_key_file)))
        assert seen["one-click"].verdict == "fail" and "redirect" in seen["one-click"].text
    finally:
        server.shutdown()
    other_db = project.root / "other.db"
    elsewhere = create_app(config, open_database(f"sqlite:///{other_db}"), b"k" * 32)
    found = _by_check(
        probe_site(
            config, project.engine(), load_key(config.signing_key_file),
            lambda: TestClient(elsewhere),
        )
    )  # fmt: skip
    assert found["get-never-acts"].verdict == "fail" and "404" in found["get-never-acts"].text
