"""STARTTLS with a throw-away certificate, AUTH, and DKIM, against real servers."""

import json
import smtplib
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from newsletter.delivery import transport as transport_module
from newsletter.delivery.transport import open_transport
from newsletter.errors import ConfigError
from tests.conftest import Project
from tests.smtpserver import Handler, free_port


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return make_certificate(tmp_path)


def make_certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for localhost and 127.0.0.1: (key, cert)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


class Recording(Handler):
    def __init__(self) -> None:
        super().__init__()
        self.tls: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.tls.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) in (
        (b"news", b"s3cret!"),
        (b"news", "пароль-Größe".encode()),
    )
    # handled=False: aiosmtpd then answers 535 itself (with its default, it answers nothing).
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[tuple[Recording, int]]:
    key, cert = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = Recording()
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), tls_context=context,
        require_starttls=True, authenticator=authenticate, auth_require_tls=True,
    )  # fmt: skip
    controller.start()
    yield handler, controller.port
    controller.stop()


def test_starttls_and_auth(
    tls_server: tuple[Recording, int], certificate: tuple[Path, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    handler, port = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[1]))
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "s3cret!")
    outbound = open_transport(f"smtp://news@localhost:{port}", tmp_path)
    outbound.send("notes@example.org", "olena@example.org", b"Subject: hi\r\n\r\nhello\r\n")
    outbound.close()
    assert handler.addresses() == ["olena@example.org"] and handler.tls == [True]


def test_wrong_password_is_a_configuration_error_that_hides_it(
    tls_server: tuple[Recording, int], certificate: tuple[Path, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _, port = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[1]))
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "wrong-horse")
    outbound = open_transport(f"smtp://news@localhost:{port}", tmp_path)
    with pytest.raises(ConfigError) as caught:
        outbound.send("notes@example.org", "olena@example.org", b"x\r\n")
    assert "authentication failed for news" in str(caught.value)
    assert "wrong-horse" not in str(caught.value)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_a_non_ascii_password_is_sent_as_utf8_and_never_echoed(
    tls_server: tuple[Recording, int], certificate: tuple[Path, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, mechanism: str,
) -> None:  # fmt: skip
    handler, port = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[1]))
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "пароль-Größe")
    outbound = open_transport(f"smtp://news@localhost:{port}", tmp_path)
    original = smtplib.SMTP.ehlo

    def only(self: smtplib.SMTP, name: str = "") -> tuple[int, bytes]:
        reply = original(self, name)
        if "auth" in self.esmtp_features:
            self.esmtp_features["auth"] = mechanism
        return reply

    monkeypatch.setattr(smtplib.SMTP, "ehlo", only)
    outbound.send("notes@example.org", "olena@example.org", b"Subject: hi\r\n\r\nhello\r\n")
    outbound.close()
    assert handler.addresses() == ["olena@example.org"]
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "ключ-wrong-ß")
    outbound = open_transport(f"smtp://news@localhost:{port}", tmp_path)
    with pytest.raises(ConfigError) as caught:
        outbound.send("notes@example.org", "olena@example.org", b"x\r\n")
    assert "authentication failed for news" in str(caught.value)
    assert not set(str(caught.value)) & set("ключwrongß") - set("authentic failed for news")


def test_an_untrusted_certificate_is_refused(
    tls_server: tuple[Recording, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port = tls_server
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    outbound = open_transport(f"smtp://localhost:{port}", tmp_path)
    with pytest.raises(ConfigError, match="TLS with localhost"):
        outbound.send("notes@example.org", "olena@example.org", b"x\r\n")


def test_no_starttls_outside_loopback_is_refused(
    smtp_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend the plain test server is far away: sending in clear text must be refused.
    monkeypatch.setattr(transport_module, "is_loopback", lambda host: False)
    outbound = open_transport(smtp_server.url, tmp_path)
    with pytest.raises(ConfigError, match="does not offer STARTTLS"):
        outbound.send("notes@example.org", "olena@example.org", b"x\r\n")
    plain = open_transport(smtp_server.url + "?tls=off", tmp_path)
    plain.send("notes@example.org", "olena@example.org", b"Subject: x\r\n\r\nx\r\n")
    assert smtp_server.handler.addresses() == ["olena@example.org"]


def test_bad_credentials_make_send_exit_2_and_leave_rows_queued(
    collected: Project, tls_server: tuple[Recording, int], certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _, port = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[1]))
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "nope")
    assert collected.run("issue", "new", "--week", "2022-W51").exit_code == 0
    path = collected.root / "issues" / "2022-W51.md"
    path.write_text(path.read_text() + "Hello.\n")
    assert collected.run("issue", "approve", "2022-W51").exit_code == 0
    assert collected.run("subscribers", "add", "olena@example.org").exit_code == 0
    result = collected.run("send", "2022-W51", "--transport", f"smtp://news@localhost:{port}")
    assert result.exit_code == 2 and "authentication failed" in result.stderr
    assert "nope" not in result.output
    counts = json.loads(collected.run("deliveries", "show", "2022-W51", "--json").stdout)["counts"]
    assert counts["queued"] == 1 and counts["sending"] == 0


def test_dkim_rsa_and_ed25519_signatures_verify_with_dkimpy_and_resist_added_headers(
    collected: Project, tmp_path: Path
) -> None:
    """Every message of a send carries an RSA and an Ed25519 signature that dkimpy, the
    reference implementation, verifies; a List-Unsubscribe or From added on the way (the
    oversigned headers) breaks them, as does a changed body."""
    import base64

    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    edwards = ed25519.Ed25519PrivateKey.generate()
    ed_key = tmp_path / "dkim-ed25519.pem"
    ed_key.write_bytes(
        edwards.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ed_public = edwards.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    records = {
        b"news2022._domainkey.example.org.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(public),
        b"news2022e._domainkey.example.org.": b"v=DKIM1; k=ed25519; p="
        + base64.b64encode(ed_public),
    }
    text = (
        collected.config_file.read_text()
        .replace('# dkim_selector = "news2022"', 'dkim_selector = "news2022"')
        .replace('# dkim_key_file = "/etc/newsletter/dkim.pem"', f'dkim_key_file = "{key}"')
        .replace('# dkim_ed25519_selector = "news2022e"', 'dkim_ed25519_selector = "news2022e"')
        .replace(
            '# dkim_ed25519_key_file = "/etc/newsletter/dkim-ed25519.pem"',
            f'dkim_ed25519_key_file = "{ed_key}"',
        )
    )
    collected.config_file.write_text(text)
    assert collected.run("issue", "new", "--week", "2022-W51").exit_code == 0
    path = collected.root / "issues" / "2022-W51.md"
    path.write_text(path.read_text() + "Hello.\n")
    assert collected.run("issue", "approve", "2022-W51").exit_code == 0
    people = [("olena@example.org", "Olena"), ("maksym@example.org", "Максим Ковальчук")]
    people += [("a.b@example.org", "")]
    for email, name in people:
        extra = ("--name", name) if name else ()
        assert collected.run("subscribers", "add", email, *extra).exit_code == 0
    assert collected.run("send", "2022-W51").exit_code == 0

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return records[name]

    def verifies(data: bytes, index: int) -> bool:
        try:
            return bool(dkim.DKIM(data).verify(idx=index, dnsfunc=dns))
        except dkim.ValidationError:  # a body hash mismatch is raised, not returned
            return False

    messages = sorted((collected.root / "outbox").glob("*.eml"))
    assert len(messages) == len(people)
    for message in messages:
        data = message.read_bytes()
        head = data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ")
        signatures = [line for line in head.split(b"\r\n") if line.startswith(b"DKIM-Signature")]
        assert [b"a=rsa-sha256" in signatures[0], b"a=ed25519-sha256" in signatures[1]] == [
            True,
            True,
        ]
        signed = signatures[0].split(b" h=", 1)[1].split(b";", 1)[0].lower().split(b":")
        for name in (b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post"):
            assert signed.count(name) == 2, (name, signed)  # oversigned
        for name in (b"content-type", b"to", b"message-id", b"precedence", b"auto-submitted"):
            assert name in signed, (name, signed)
        assert verifies(data, 0) and verifies(data, 1)
        for added in (
            b"List-Unsubscribe: <https://evil.example/u>\r\n",
            b"From: someone@evil.example\r\n",
        ):
            tampered = data.replace(b"\r\n\r\n", b"\r\n" + added.rstrip(b"\r\n") + b"\r\n\r\n", 1)
            assert not verifies(tampered, 0) and not verifies(tampered, 1)
        before, boundary = data.rsplit(b"\r\n--", 1)
        assert not verifies(before + b"\r\nAdded.\r\n--" + boundary, 0)
