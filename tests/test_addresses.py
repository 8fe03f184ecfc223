"""parse_address's fast path (plain local part, domain checked once) agrees with
email-validator on every address, valid or not."""

from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given
from hypothesis import strategies as st

from newsletter.audience.subscribers import parse_address
from newsletter.errors import InvalidAddress

local_parts = st.one_of(
    st.from_regex(r"[A-Za-z0-9]{1,30}(\.[a-z0-9+_'-]{1,20}){0,2}", fullmatch=True),
    st.text(alphabet=st.sampled_from(list("aZ09.+-_'!#~\"é@ (")), min_size=0, max_size=70),
)
domains = st.one_of(
    st.sampled_from(
        [
            "example.org",
            "Example.ORG",
            "gmail.com",
            "localhost",
            "x.test",
            "-x.org",
            "x-.org",
            "exa_mple.com",
            "x",
            "1.2.3.4",
            "[127.0.0.1]",
            "xn--80ak6aa92e.com",
            "домен.укр",
            "ÉCOLE.fr",
            "a..b.org",
            "",
            "x.123",
            "sub.domain.co.uk",
            "b" * 64 + ".org",
            ("c" * 60 + ".") * 4 + "org",
        ]
    ),  # fmt: skip
    st.text(alphabet=st.sampled_from(list("ab-.1é")), max_size=20),
)


def reference(text: str) -> str | None:
    """The key email-validator alone gives, or None when it refuses."""
    try:
        valid = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return None
    return f"{valid.local_part.lower()}@{(valid.ascii_domain or valid.domain).lower()}"


@given(local=local_parts, domain=domains)
@example(local="a" * 64, domain="b" * 63 + "." + "c" * 63 + "." + "d" * 63 + ".org")
@example(local="Postmaster", domain="Example.ORG")
def test_the_fast_path_agrees_with_email_validator(local: str, domain: str) -> None:
    text = f"{local}@{domain}"
    try:
        key = parse_address(text).key
    except InvalidAddress:
        key = None
    expected = reference(text.strip()) if len(text.strip()) <= 254 else None
    assert key == expected
