"""The DKIM signer on its own: keys, and messages whose white space needs canonicalising,
checked by dkimpy (the reference implementation)."""

import base64
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from newsletter.delivery.dkim import DKIMSigner, load_key
from newsletter.errors import ConfigError


def rsa_key(tmp_path: Path) -> tuple[Path, bytes]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa.pem"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, as openssl genrsa makes
            serialization.NoEncryption(),
        )
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def test_odd_white_space_is_canonicalised_as_the_verifier_does(tmp_path: Path) -> None:
    path, record = rsa_key(tmp_path)
    seed = ed25519.Ed25519PrivateKey.generate()
    raw = seed.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    ed_path = tmp_path / "ed.key"
    ed_path.write_bytes(base64.b64encode(raw))  # dkimpy's own key format
    ed_public = seed.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    records = {
        b"s1._domainkey.example.org.": record,
        b"s2._domainkey.example.org.": b"v=DKIM1; k=ed25519; p=" + base64.b64encode(ed_public),
    }
    signer = DKIMSigner(
        "example.org", [load_key("s1", path), load_key("s2", ed_path, ed25519_key=True)]
    )
    message = (
        b"From:  Editor \t <ed@example.org>\r\n"
        b"To: reader@example.org\r\n"
        b"Subject: folded\r\n  over\t two lines  \r\n"
        b"Content-Type: text/plain\r\n"
        b"\r\n"
        b"Trailing space here   \r\n"
        b"Tabs\tand  double  spaces\r\n"
        b"\r\n\r\n"
    )
    signed = signer.sign(message)
    for index in (0, 1):
        assert dkim.DKIM(signed).verify(idx=index, dnsfunc=lambda name, timeout=5: records[name])


@pytest.mark.parametrize(
    ("content", "ed", "text"),
    [
        (None, False, "cannot read the DKIM key"),
        (b"not a key", False, "is not an unencrypted PEM private key"),
        (b"not a key", True, "or the base64 of a 32-byte seed"),
        ("ed25519", False, "is not an RSA private key"),
    ],
)
def test_bad_keys_are_one_line_errors(
    tmp_path: Path, content: bytes | str | None, ed: bool, text: str
) -> None:
    path = tmp_path / "key.pem"
    if content == "ed25519":
        path.write_bytes(
            ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_key("s", path, ed25519_key=ed)
    assert text in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_confirmation_email_is_signed_too(tmp_path: Path) -> None:
    from newsletter.delivery.message import confirmation_message
    from newsletter.models import Subscriber
    from tests.issues import make_config

    path, record = rsa_key(tmp_path)
    config = make_config(tmp_path, f'[delivery]\ndkim_selector = "s1"\ndkim_key_file = "{path}"\n')
    person = Subscriber(email="olena@example.org", email_key="olena@example.org", name="Olena")
    person.token_id = "t0123456789abcdef"
    data = confirmation_message(config, person, "https://news.example.org/confirm/x")
    assert data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    assert dkim.DKIM(data).verify(dnsfunc=lambda name, timeout=5: record)
