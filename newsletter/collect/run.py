"""Collect sources into the article store, one document at a time.

A document's articles are stored in one transaction after the whole document has parsed, so
a broken document changes nothing, and one broken source never stops the others: its error
goes into its report and the run goes on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from newsletter.collect import store
from newsletter.collect.article import ArticleData
from newsletter.collect.feeds import parse_feed
from newsletter.collect.fetch import Document, Validators, expand, fetch_url, make_client, read_file
from newsletter.collect.pages import parse_page
from newsletter.collect.texts import parse_text
from newsletter.config import Config, Source, SourceKind
from newsletter.dates import parse_datetime
from newsletter.db import session_scope
from newsletter.errors import SourceError, UsageError
from newsletter.models import FetchState
from newsletter.urls import is_web_url


@dataclass
class SourceReport:
    name: str
    kind: str
    location: str
    documents: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    not_modified: int = 0
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "location": self.location,
            "ok": self.ok,
            "documents": self.documents,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "not_modified": self.not_modified,
            "warnings": self.warnings,
            "errors": self.errors,
        }


def adhoc_source(
    kind: SourceKind, location: str, *, url: str | None = None, published: datetime | None = None
) -> Source:
    """A source given on the command line: relative paths are relative to where the user is."""
    if not is_web_url(location) and not location.startswith("file:"):
        location = os.path.normpath(Path.cwd() / Path(location).expanduser())
    return Source(name=location, kind=kind, location=location, url=url, published=published)


def collect(
    config: Config,
    engine: Engine,
    sources: Iterable[Source],
    *,
    on_start: Callable[[Source], None] | None = None,
    on_done: Callable[[SourceReport], None] | None = None,
    client: httpx.Client | None = None,
) -> list[SourceReport]:
    reports: list[SourceReport] = []
    own_client = client is None
    http = client or make_client(config.collect)
    try:
        for source in sources:
            if on_start:
                on_start(source)
            report = SourceReport(source.name, source.kind, source.location)
            try:
                _collect_source(config, engine, http, source, report)
            except SourceError as error:
                report.errors.append(str(error))
            reports.append(report)
            if on_done:
                on_done(report)
    finally:
        if own_client:
            http.close()
    return reports


def _collect_source(
    config: Config, engine: Engine, http: httpx.Client, source: Source, report: SourceReport
) -> None:
    targets = expand(source.location, config.root)
    if source.kind == "text" and len(targets) > 1:
        raise SourceError(
            f"{source.location}: matches {len(targets)} files, but a saved text source names one "
            "file (its URL and date are per article)"
        )
    for target in targets:
        report.documents += 1
        try:
            _collect_document(config, engine, http, source, target, report)
        except SourceError as error:
            report.errors.append(str(error))
        except Exception as error:  # a parser bug must not stop the other sources
            first = (str(error).splitlines() or [""])[0][:300]  # not a database's SQL dump
            report.errors.append(f"{target}: unexpected {type(error).__name__}: {first}")


def _collect_document(
    config: Config,
    engine: Engine,
    http: httpx.Client,
    source: Source,
    target: str,
    report: SourceReport,
) -> None:
    remote = is_web_url(target)
    if remote:
        with Session(engine) as session:
            state = session.get(FetchState, target)
            previous = Validators(state.etag, state.last_modified) if state else None
        document = fetch_url(http, target, config.collect, previous)
    else:
        document = read_file(target, config.collect.max_bytes)
    if document.not_modified:
        report.not_modified += 1
        return
    found, warnings = _parse(config, source, document)
    report.warnings += warnings
    for attempt in (1, 2):
        counts = {"new": 0, "updated": 0, "unchanged": 0}
        try:
            with session_scope(engine) as session:
                for article in found:
                    counts[store.store(session, article, source.name)] += 1
                if remote:
                    _remember(session, target, document.validators)
        except IntegrityError:
            # Another collect stored one of these articles between our read and our write:
            # the second attempt finds it and updates instead.
            if attempt == 2:
                raise
            continue
        break
    for outcome, number in counts.items():
        setattr(report, outcome, getattr(report, outcome) + number)


def _parse(
    config: Config, source: Source, document: Document
) -> tuple[list[ArticleData], list[str]]:
    """The document's articles, and warnings about entries it had to skip."""
    zone = config.timezone
    if source.kind == "feed":
        return parse_feed(document)
    if source.kind == "page":
        return [parse_page(document, zone)], []
    return [parse_text(document, source.url, source.published, zone)], []


def _remember(session: Session, location: str, validators: Validators) -> None:
    state = session.get(FetchState, location) or FetchState(location=location)
    state.etag = validators.etag
    state.last_modified = validators.last_modified
    state.checked_at = datetime.now(UTC)
    session.add(state)


def choose_sources(
    config: Config,
    names: list[str],
    feeds: list[str],
    pages: list[str],
    texts: list[str],
    urls: list[str],
    published: list[str],
) -> list[Source]:
    """Named sources, then the ones given as options; all configured ones when none is."""
    if len(urls) != len(texts):
        raise UsageError(
            f"{len(texts)} --text but {len(urls)} --url: give each --text its --url, in order"
        )
    if published and len(published) != len(texts):
        raise UsageError(
            f"{len(texts)} --text but {len(published)} --published: give each --text its time"
        )
    chosen = [config.source(name) for name in names]
    chosen += [adhoc_source("feed", location) for location in feeds]
    chosen += [adhoc_source("page", location) for location in pages]
    for index, (location, address) in enumerate(zip(texts, urls, strict=True)):
        moment = None
        if published:
            moment = parse_datetime(published[index], config.timezone)
            if moment is None:
                raise UsageError(
                    f"bad --published {published[index]!r}: use ISO 8601, "
                    "e.g. 2022-12-25T18:00:00+02:00"
                )
        chosen.append(adhoc_source("text", location, url=address, published=moment))
    if not chosen:
        if not config.sources:
            raise UsageError(
                f"no sources: add [[sources]] to {config.path} or pass --feed, --page or --text"
            )
        chosen = list(config.sources)
    return chosen
