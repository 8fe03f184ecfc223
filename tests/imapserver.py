"""A real Dovecot IMAP server on 127.0.0.1, started for the test with its own configuration,
state and mail in a temporary folder (Debian's dovecot-imapd; scripts/dovecot installs it).
One user, `bounces`, whose password the test passes through NEWSLETTER_IMAP_PASSWORD; mail
is put in with IMAP APPEND, as an MTA's delivery would leave it."""

from __future__ import annotations

import getpass
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.smtpserver import free_port

USER = "bounces"
PASSWORD = "imap-test-password"


@dataclass
class IMAPServer:
    port: int
    root: Path

    @property
    def url(self) -> str:
        return f"imap://{USER}@127.0.0.1:{self.port}/INBOX"

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


def _config(root: Path, port: int) -> str:
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
ssl = no
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
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


@pytest.fixture
def imap_server() -> Iterator[IMAPServer]:
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not Path(binary).exists():
        pytest.fail("Dovecot is not installed: run scripts/dovecot (scripts/test does)")
    # Not under pytest's tmp_path, whose parents only root may enter: Dovecot's login and
    # mail processes run as other users.
    root = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
    root.chmod(0o755)
    port = free_port()
    conf = root / "dovecot.conf"
    conf.write_text(_config(root, port))
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
        yield IMAPServer(port, root)
    finally:
        subprocess.run([binary, "-c", str(conf), "stop"], check=False, timeout=30)
        shutil.rmtree(root, ignore_errors=True)
