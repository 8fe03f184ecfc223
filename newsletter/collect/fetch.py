"""Getting a source's bytes: local paths, globs, file:// URLs and http(s).

HTTP sends our User-Agent, honours a timeout and a size cap, and asks conditionally with the
ETag / Last-Modified of the last successful fetch, so a weekly cron against a feed that has
not changed costs the publisher a 304.
"""

from __future__ import annotations

import codecs
import glob
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from newsletter.config import CollectSettings
from newsletter.errors import SourceError
from newsletter.urls import is_web_url

_GLOB_CHARS = re.compile(r"[*?\[]")
_XML_ENCODING = re.compile(rb"""^<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9._-]+)""", re.IGNORECASE)


@dataclass(frozen=True)
class Validators:
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Document:
    """`location` is what to call it in messages; `base_url` resolves its relative links."""

    location: str
    content: bytes
    base_url: str | None = None
    content_type: str | None = None
    validators: Validators = Validators()
    not_modified: bool = False

    @property
    def is_remote(self) -> bool:
        return is_web_url(self.location)


def expand(location: str, root: Path) -> list[str]:
    """One location into the documents it names: a URL is one, a glob is every match."""
    if is_web_url(location):
        return [location]
    path = _local_path(location, root)
    if _GLOB_CHARS.search(str(path)):
        matches = sorted(glob.glob(str(path), recursive=True))
        files = [match for match in matches if Path(match).is_file()]
        if not files:
            raise SourceError(f"{location}: no files match this pattern")
        return files
    if path.is_dir():
        raise SourceError(f"{location} is a folder: give a file or a glob such as {location}/*.xml")
    return [str(path)]


def _local_path(location: str, root: Path) -> Path:
    if location.startswith("file:"):
        parts = urlsplit(location)
        if parts.netloc not in ("", "localhost"):
            raise SourceError(f"{location}: only file:///absolute/path URLs are supported")
        return Path(os.path.normpath(unquote(parts.path)))
    path = Path(location).expanduser()
    # normpath: messages name /news/samples/feed.rss, not /news/war-notes/../samples/feed.rss
    return Path(os.path.normpath(path if path.is_absolute() else root / path))


def read_file(location: str, max_bytes: int) -> Document:
    path = Path(location)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise SourceError(
                f"{location}: {size} bytes is over the {max_bytes}-byte limit; "
                "raise [collect] max_bytes"
            )
        content = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"{location}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{location} is a folder: give a file or a glob") from None
    except PermissionError:
        raise SourceError(f"{location}: permission denied") from None
    return Document(location=location, content=content, base_url=path.resolve().as_uri())


def make_client(settings: CollectSettings) -> httpx.Client:
    return httpx.Client(
        headers={"User-Agent": settings.user_agent},
        timeout=httpx.Timeout(settings.timeout),
        follow_redirects=True,
        max_redirects=5,
    )


def fetch_url(
    client: httpx.Client, url: str, settings: CollectSettings, previous: Validators | None
) -> Document:
    headers = {}
    if previous and previous.etag:
        headers["If-None-Match"] = previous.etag
    if previous and previous.last_modified:
        headers["If-Modified-Since"] = previous.last_modified
    # `timeout` is the whole fetch's deadline, not each read's: a server that drips a byte
    # a second would otherwise hold a cron collect for hours. httpcore reads the request's
    # timeout dict before every socket read (redirects share it), so shrinking its "read"
    # entry as the deadline nears bounds the fetch to `timeout` plus a little.
    deadline = time.monotonic() + settings.timeout
    limits = httpx.Timeout(settings.timeout).as_dict()
    try:
        request = client.build_request("GET", url, headers=headers)
        request.extensions["timeout"] = limits
        response = client.send(request, stream=True)
        try:
            limits["read"] = max(deadline - time.monotonic(), 0.001)
            if response.status_code == 304:
                return Document(
                    location=url,
                    content=b"",
                    base_url=url,
                    not_modified=True,
                    validators=previous or Validators(),
                )
            if response.status_code >= 400:
                raise SourceError(
                    f"{url}: HTTP {response.status_code} {response.reason_phrase}".rstrip()
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > settings.max_bytes:
                raise SourceError(_too_big(url, settings.max_bytes))
            chunks: list[bytes] = []
            received = 0
            for chunk in response.iter_bytes():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise httpx.ReadTimeout("deadline")
                limits["read"] = remaining
                received += len(chunk)
                if received > settings.max_bytes:
                    raise SourceError(_too_big(url, settings.max_bytes))
                chunks.append(chunk)
            return Document(
                location=url,
                content=b"".join(chunks),
                base_url=str(response.url),
                content_type=response.headers.get("content-type"),
                validators=Validators(
                    response.headers.get("etag"), response.headers.get("last-modified")
                ),
            )
        finally:
            response.close()
    except httpx.TimeoutException:
        raise SourceError(
            f"{url}: not fetched within {settings.timeout:g} s ([collect] timeout)"
        ) from None
    except httpx.TooManyRedirects:
        raise SourceError(f"{url}: too many redirects") from None
    except httpx.ConnectError as error:
        raise SourceError(f"{url}: cannot connect ({error})") from None
    except httpx.HTTPError as error:
        raise SourceError(f"{url}: {type(error).__name__}: {error}") from None


def _too_big(url: str, limit: int) -> str:
    return f"{url}: larger than the {limit}-byte limit; raise [collect] max_bytes"


def declared_charset(document: Document) -> str | None:
    """The encoding the document claims: BOM, then HTTP header, then XML or HTML declaration."""
    head = document.content[:4]
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if document.content_type:
        match = re.search(r"charset=[\"']?([\w.-]+)", document.content_type, re.IGNORECASE)
        if match:
            return match[1]
    prologue = document.content[:2048]
    found = _XML_ENCODING.search(prologue) or _META_CHARSET.search(prologue)
    return found[1].decode("ascii") if found else None


def decode(document: Document) -> str:
    """Text in its declared encoding, UTF-8 when it declares none; a clear error otherwise.

    We refuse rather than guess when the bytes do not decode. But every byte decodes as a
    single-byte Latin encoding, so a Windows-1251 feed labelled ISO-8859-1 "works" and would
    be stored as mojibake and mailed to every subscriber: when the label is such an
    encoding and charset-normalizer finds its text to be noise while another encoding reads
    cleanly, the other one is used.
    """
    charset = declared_charset(document) or "utf-8"
    if b"\x00" in document.content and not charset.lower().startswith("utf-16"):
        raise SourceError(f"{document.location}: binary data, not a text document")
    try:
        text = document.content.decode(charset)
    except LookupError:
        raise SourceError(f"{document.location}: unknown character encoding {charset!r}") from None
    except UnicodeDecodeError as error:
        raise SourceError(
            f"{document.location}: not valid {charset} text (byte {error.start}); "
            "save it as UTF-8 or declare its encoding"
        ) from None
    codec = codecs.lookup(charset).name
    if codec in _SINGLE_BYTE_LATIN and not text.isascii():
        text = _relabelled(document.content, codec) or text
    return text.lstrip("\ufeff")


# Encodings in which any byte sequence decodes, so a wrong label never shows as an error.
_SINGLE_BYTE_LATIN = {"latin-1", "iso8859-1", "cp1252", "iso8859-15", "iso8859-2", "cp1250"}
# charset-normalizer's mess ratios: the declared reading must be at least this noisy, and
# the other one at most this clean, before the label is overruled.
_NOISE = 0.2
_CLEAN = 0.05


def _relabelled(content: bytes, declared_codec: str) -> str | None:
    """The text in the encoding it is really in, when the declared one reads as noise."""
    from charset_normalizer import from_bytes

    sample = content[:262_144]
    best = from_bytes(sample).best()
    if best is None or best.chaos > _CLEAN:
        return None
    isolated = [declared_codec.replace("-", "_")]
    declared = from_bytes(sample, cp_isolation=isolated, threshold=1.0).best()
    if declared is not None and declared.chaos < _NOISE:
        return None
    try:
        return content.decode(best.encoding)
    except (LookupError, UnicodeDecodeError):
        return None


def as_utf8(document: Document, text: str) -> Document:
    """The document re-encoded as UTF-8 and labelled so, for parsers (feedparser) that
    would otherwise decode the bytes again by the label we have just overruled."""
    body = _XML_ENCODING.sub(lambda m: m[0].replace(m[1], b"utf-8"), text.encode("utf-8"), 1)
    kind = (document.content_type or "application/xml").split(";")[0].strip()
    return replace(document, content=body, content_type=f"{kind}; charset=utf-8")
