"""A DNS server on 127.0.0.1 (UDP) that answers from a zone the test writes, built on
dnspython's own message code: what `newsletter doctor` asks is answered here, never by the
network."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.message
import dns.rcode
import dns.rrset
import pytest


@dataclass
class DNSServer:
    # (name, type) -> record texts, e.g. ("example.org.", "TXT") -> ['"v=spf1 -all"']
    zone: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    port: int = 0
    asked: list[tuple[str, str]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, name: str, kind: str, *records: str) -> None:
        self.zone.setdefault((name.rstrip(".").lower() + ".", kind), []).extend(records)


def _serve(server: DNSServer, sock: socket.socket, stop: threading.Event) -> None:
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            data, client = sock.recvfrom(4096)
        except TimeoutError:
            continue
        except OSError:
            return
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name, kind = question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype)
        server.asked.append((name, kind))
        records = server.zone.get((name, kind))
        if records:
            response.answer.append(dns.rrset.from_text_list(name, 60, "IN", kind, records))
        elif not any(known == name for known, _ in server.zone):
            response.set_rcode(dns.rcode.NXDOMAIN)
        sock.sendto(response.to_wire(), client)


@pytest.fixture
def dns_server() -> Iterator[DNSServer]:
    server = DNSServer()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    server.port = sock.getsockname()[1]
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(server, sock, stop), daemon=True)
    thread.start()
    yield server
    stop.set()
    thread.join(timeout=5)
    sock.close()
