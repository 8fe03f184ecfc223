"""`newsletter doctor` against a DNS server on 127.0.0.1: each of the bulk-sender rules
(SPF, DKIM, DMARC and alignment, PTR, TLS, List-Unsubscribe, Feedback-ID) found kept or
missed, with the fix."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Project
from tests.dnsserver import DNSServer
from tests.test_dkim import rsa_key

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
