"""Text that came from outside (a web form, a CSV file, a feed) on its way to a header, a
greeting or a line of the text part: the one definition of a control character, and names
decoded before they are cleaned.

Why decode first: a name such as `=?utf-8?b?Qm9iDQpCY2M6IC4uLg==?=` contains no line break
until something decodes it, and mail clients and Python's own parser do decode RFC 2047
encoded words in display names. Cleaning the raw text would let the break through; so a
name is decoded (repeatedly, for nested encodings), then cleaned, and a name that still looks
like an encoded word is written out so no decoder will take it for one.
"""

from __future__ import annotations

import re
from email.errors import HeaderParseError
from email.header import decode_header, make_header

# C0 controls, DEL, C1 controls (NEL, U+0085, is a line break to some parsers), the Unicode
# line and paragraph separators, and the bidirectional overrides and isolates that make a
# name display as something else (the "Trojan Source" characters), plus the BOM.
CONTROL = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
# Line breaks that arrive encoded: percent-encoded, backslash-escaped, quoted-printable.
ENCODED_BREAK = re.compile(r"%0[ad]|\\[rn]|=0[ad]", re.IGNORECASE)
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
MAX_NAME = 100
# What a greeting or a display name shows of a name at most.
MAX_SHOWN = 64


def has_control(text: str) -> bool:
    return CONTROL.search(text) is not None


def strip_controls(text: str, replacement: str = " ") -> str:
    return CONTROL.sub(replacement, text)


def decode_words(text: str) -> str:
    """RFC 2047 encoded words decoded, as a mail client would, up to three levels deep."""
    for _ in range(3):
        if not _ENCODED_WORD.search(text):
            return text
        try:
            decoded = str(make_header(decode_header(text)))
        except (HeaderParseError, LookupError, UnicodeError, ValueError):
            return _ENCODED_WORD.sub(" ", text)
        if decoded == text:
            return text
        text = decoded
    # Still encoded after three rounds: nobody's real name; drop the words.
    return _ENCODED_WORD.sub(" ", text)


def clean_name(raw: str | None, limit: int = MAX_NAME) -> str | None:
    """A person's name as data: encoded words decoded, control characters and line breaks
    (raw, percent-encoded or escaped) turned into spaces, runs of spaces collapsed, and cut
    to `limit` characters. None when nothing is left."""
    if raw is None:
        return None
    text = ENCODED_BREAK.sub(" ", decode_words(raw))
    text = " ".join(strip_controls(text).split())[:limit].rstrip()
    return text or None


# A link, an address or a domain a stranger could type as a "name" to have our mail carry
# it: a scheme, www., @, a slash, or a dotted word ending in a lower-case top-level domain
# (`bit.ly`, `evil.example`), which "J. R. Smith" and "St.Claire" are not.
_DOTTED = re.compile(r"\w\.[a-z]{2,24}(?:\b|$)")


def looks_like_link(text: str) -> bool:
    return bool(re.search(r"://|www\.|@|[/\\]", text, re.IGNORECASE) or _DOTTED.search(text))


def form_name(raw: str | None) -> str | None:
    """A name typed into a public form, which anyone may have typed for anyone: cleaned,
    and dropped when it carries a link, an address or a domain, so our mail never carries
    a stranger's advertisement in a greeting or a To line."""
    name = clean_name(raw)
    return None if name is None or looks_like_link(name) else name


def shown_name(raw: str | None, limit: int = MAX_SHOWN) -> str | None:
    """A name as a greeting or a display name shows it: cleaned, and a long one cut at a
    word with an ellipsis, so a 300-character "name" cannot fill the top of an email."""
    text = clean_name(raw, limit=10 * limit)
    if text is None or len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-") + "…"


def stored(text: str | None, limit: int) -> str | None:
    """Outside text as both databases take it: PostgreSQL refuses NUL in text and both
    refuse what is not UTF-8 (a lone surrogate, from bytes decoded with surrogateescape);
    cut to the column's size, which PostgreSQL enforces and SQLite does not."""
    if text is None:
        return None
    clean = text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    return clean[:limit]


_SHOWN_CONTROL = re.compile(CONTROL.pattern.replace(r"\x00-\x1f", r"\x00-\x08\x0b-\x1f"))


def visible(text: str) -> str:
    """Outside text for a terminal: every control character (escape sequences that clear
    the screen or set the title, bidirectional overrides, lone carriage returns) written
    out as `\\x1b` or `\\u202e`, as JSON would; line breaks and tabs kept."""
    text = text.replace("\r\n", "\n")
    return _SHOWN_CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
