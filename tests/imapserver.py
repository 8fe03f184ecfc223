"""A real Dovecot IMAP server on 127.0.0.1, started for the test with its own configuration,
state and mail in a temporary folder (Debian's dovecot-imapd; scripts/dovecot installs it).
One user, `bounces`, whose password the test passes through NEWSLETTER_IMAP_PASSWORD; mail
is put in with IMAP APPEND, as an MTA's delivery would leave it."""

from __future__ import annotations

import getpass
import imaplib
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.smtpserver import free_port

USER = "bounces"
PASSWORD = "imap-test-password"


@dataclass
class IMAPServer:
    port: int
    tls_port: int
    root: Path

    @property
    def url(self) -> str:
        """IMAP with STARTTLS (the server offers it; the client requires it)."""
        return f"imap://{USER}@127.0.0.1:{self.port}/INBOX"

    @property
    def tls_url(self) -> str:
        return f"imaps://{USER}@localhost:{self.tls_port}/INBOX"

    def connect(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def append(self, messages: list[bytes], folder: str = "INBOX") -> None:
        client = self.connect()
        try:
            for data in messages:
                status, _ = client.append(folder, None, None, data)
                assert status == "OK"
        finally:
            client.logout()

    def count(self, folder: str) -> int:
        client = self.connect()
        try:
            status, data = client.select(f'"{folder}"', readonly=True)
            return int(data[0]) if status == "OK" and data[0] else 0
        finally:
            client.logout()


def _certificates(root: Path) -> Path:
    """A test CA and a certificate for localhost and 127.0.0.1 signed by it; returns the
    CA's file, which the test's client trusts through SSL_CERT_FILE."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("newsletter test CA"))
        .issuer_name(name("newsletter test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (root / "ca.pem").write_bytes(ca.public_bytes(pem))
    (root / "cert.pem").write_bytes(certificate.public_bytes(pem))
    (root / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (root / "key.pem").chmod(0o600)
    return root / "ca.pem"


def _config(root: Path, port: int, tls_port: int) -> str:
    if os.geteuid() == 0:  # Dovecot refuses root as a mail user: the package's users
        login, internal = "dovenull", "dovecot"
        owner = pwd.getpwnam("dovecot")
    else:  # an ordinary user runs every process as themselves
        login = internal = getpass.getuser()
        owner = pwd.getpwuid(os.getuid())
    mail = root / "mail"
    mail.mkdir()
    os.chown(mail, owner.pw_uid, owner.pw_gid)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    (root / "passwd").chmod(0o644)
    return f"""
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
mail_location = maildir:{mail}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={owner.pw_uid} gid={owner.pw_gid} home={mail}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""


@pytest.fixture
def imap_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[IMAPServer]:
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not Path(binary).exists():
        pytest.fail("Dovecot is not installed: run scripts/dovecot (scripts/test does)")
    # Not under pytest's tmp_path, whose parents only root may enter: Dovecot's login and
    # mail processes run as other users.
    root = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
    root.chmod(0o755)
    port, tls_port = free_port(), free_port()
    monkeypatch.setenv("SSL_CERT_FILE", str(_certificates(root)))
    conf = root / "dovecot.conf"
    conf.write_text(_config(root, port, tls_port))
    subprocess.run([binary, "-c", str(conf)], check=True, timeout=30)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                pytest.fail(f"Dovecot did not start: {log[-2000:]}")
            time.sleep(0.05)
    try:
        yield IMAPServer(port, tls_port, root)
    finally:
        subprocess.run([binary, "-c", str(conf), "stop"], check=False, timeout=30)
        shutil.rmtree(root, ignore_errors=True)
