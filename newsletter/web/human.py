"""Proof that a person, not a scanner or a bot, pressed a page's button.

Mail security gateways GET every link in every message, and some fetch the page's form and
post it too; bots post the subscribe form by the thousand. A form that acts therefore
carries a stamp the page made when it was served, `<served ms>.<MAC over the purpose, what
the form is about and that time>`, and its POST is refused unless the stamp is this
server's, for this form, and between `min_seconds` (a person reads the page before
pressing: a bot posts at once) and a day old. One canonical spelling: the time in plain
ASCII digits without a sign or a leading zero, the MAC in its one base64 form.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from fastapi import Request

from newsletter import signing

STAMP = signing.Kind("form", "full")
MAX_AGE_SECONDS = 24 * 3600


def stamp(key: bytes, purpose: str, subject: str, now: float | None = None) -> str:
    served = int((time.time() if now is None else now) * 1000)
    return f"{served}.{signing.sign(key, STAMP, purpose, subject, served)}"


def stamped_in_time(
    key: bytes,
    purpose: str,
    subject: str,
    given: str,
    min_seconds: float,
    now: float | None = None,
) -> bool:
    """Whether `given` is a stamp this server made for this form, `min_seconds` to a day
    ago."""
    served_text, _, mac = given.partition(".")
    served = signing.canonical_int(served_text)
    if served is None or not signing.verify(key, STAMP, mac, purpose, subject, served):
        return False
    age = (time.time() if now is None else now) - served / 1000
    return min_seconds <= age <= MAX_AGE_SECONDS


def same_origin(request: Request, base_url: str) -> bool:
    """A browser's POST names its page's origin: it must be this site (as configured or as
    reached). No Origin at all (old browsers) leaves the other checks to decide."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = {_origin(base_url), _origin(str(request.base_url))}
    return origin.rstrip("/") in own


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
