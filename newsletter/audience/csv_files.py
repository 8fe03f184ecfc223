"""Subscriber CSV files: import (validated, merged, in one transaction) and export (safe to
open in a spreadsheet).

Import takes a header row with an `email` column (any case), an optional `name`, and keeps
every other column as an attribute; UTF-8 with or without a BOM; the delimiter is sniffed
(comma, semicolon, tab, pipe). Every rejected row is reported with its line number, value and
reason; the valid rows are imported together or not at all (`--dry-run` rolls back). An
address twice in the file, or already subscribed, is merged, not doubled. A suppressed
address, or a subscription its owner closed, is skipped: an old list must never resubscribe
someone who left.

Export neutralises cells that a spreadsheet would run as a formula (leading `=`, `+`, `-`,
`@`, tab or CR) by prefixing an apostrophe, as OWASP recommends for CSV injection.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from sqlmodel import Session

from newsletter.audience import subscribers
from newsletter.audience.subscribers import Status, clean_name, parse_address
from newsletter.errors import InvalidAddress, UnreadableFile

MAX_BYTES = 200 * 1024 * 1024
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
EXPORT_COLUMNS = (
    "email",
    "name",
    "status",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "source",
)


@dataclass(frozen=True)
class Rejected:
    row: int
    value: str
    reason: str


@dataclass
class ImportReport:
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    suppressed: int = 0
    # Of the suppressed, people who left (unsubscribed, bounced, complained): only they can
    # come back, or the operator with --reopen.
    closed: int = 0
    reopened: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    dry_run: bool = False
    # Welcome mails queued for the new subscriptions (`import --welcome`).
    welcomed: int = 0
    # The address keys whose subscription this import began (added or reopened).
    joined: list[str] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("joined")
        data["rejected_count"] = len(self.rejected)
        return data


def read_csv(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """(header, rows with their line numbers); refuses what is not a UTF-8 CSV file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UnreadableFile(f"{path}: no such file") from None
    if size > MAX_BYTES:
        raise UnreadableFile(f"{path}: {size} bytes is over the {MAX_BYTES}-byte limit; split it")
    data = path.read_bytes()
    if b"\x00" in data[:65536]:
        raise UnreadableFile(f"{path}: binary data, not a CSV text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnreadableFile(
            f"{path}: not UTF-8 (byte {error.start}); save it as 'CSV UTF-8' and import again"
        ) from None
    if not text.strip():
        raise UnreadableFile(f"{path}: empty file")
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
            text[:65536], delimiters=",;\t|"
        )
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = [column.strip().lower() for column in next(reader)]
    except (StopIteration, csv.Error):
        raise UnreadableFile(f"{path}: no header row") from None
    if "email" not in header:
        raise UnreadableFile(
            f"{path}: the header has no 'email' column (found: {', '.join(header) or 'nothing'})"
        )
    repeated = sorted({column for column in header if header.count(column) > 1 and column})
    if repeated:
        raise UnreadableFile(
            f"{path}: the header names {', '.join(repeated)} more than once (letter case "
            "aside); rename or remove the extra columns"
        )

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            for row in reader:
                if any(cell.strip() for cell in row):
                    yield reader.line_num, row
        except csv.Error as error:
            raise UnreadableFile(f"{path}: line {reader.line_num}: {error}") from None

    return header, rows()


@dataclass
class _Row(subscribers.Entry):
    # A repeat of a row already written in an earlier chunk: merged, counted only as a
    # duplicate.
    duplicate: bool = False


def import_csv(
    session: Session,
    newsletter: str,
    path: Path,
    *,
    dry_run: bool = False,
    status: Status = "active",
    reopen: bool = False,
) -> ImportReport:
    """Validate row by row, then write a chunk of rows with a few set-based statements
    (the rules are those of subscribers.add); the whole file is one transaction, the
    caller's, which it does not commit (a dry run rolls its writes back)."""
    header, rows = read_csv(path)
    report = ImportReport(dry_run=dry_run)
    if session.get_bind().dialect.name == "postgresql":
        # The import is one transaction, so the planner never learns how many rows it has
        # added: it keeps scanning the whole subscribers table for each chunk's addresses
        # (quadratic over a large file). The lookups are by unique key: use the indexes.
        session.execute(sa.text("SET LOCAL enable_seqscan = off"))
    email_at = header.index("email")
    name_at = header.index("name") if "name" in header else None
    # The export's own columns (an export imported again) are facts of this database, not
    # attributes: a status or a date is never taken from a file.
    extra = [
        (i, column)
        for i, column in enumerate(header)
        if i not in (email_at, name_at) and column and column not in EXPORT_COLUMNS
    ]
    seen: set[str] = set()
    chunk: dict[str, _Row] = {}
    for line, row in rows:
        raw = row[email_at].strip() if email_at < len(row) else ""
        if len(row) > len(header):
            report.rejected.append(
                Rejected(line, raw, f"{len(row)} cells for {len(header)} columns")
            )
            continue
        if not raw:
            report.rejected.append(Rejected(line, raw, "no email address"))
            continue
        try:
            address = parse_address(raw)
        except InvalidAddress as error:
            report.rejected.append(Rejected(line, raw, str(error)))
            continue
        name = clean_name(row[name_at]) if name_at is not None and name_at < len(row) else None
        attributes = {
            column: " ".join(row[i].split())
            for i, column in extra
            if i < len(row) and row[i].strip()
        }
        if address.key in seen:
            # A repeated row is merged into the first (its name and attributes fill in)
            # and counted once, as a duplicate.
            report.duplicates += 1
            earlier = chunk.get(address.key)
            if earlier is not None:
                earlier.name = name or earlier.name
                earlier.attributes |= attributes
                continue
        duplicate = address.key in seen
        seen.add(address.key)
        chunk[address.key] = _Row(address.email, address.key, name, attributes, duplicate)
        if len(chunk) >= 1000:
            _write(session, newsletter, status, list(chunk.values()), report, reopen)
            chunk = {}
    _write(session, newsletter, status, list(chunk.values()), report, reopen)
    if dry_run:
        session.rollback()  # the report is what would happen; nothing stays
    return report


def _write(
    session: Session,
    newsletter: str,
    status: Status,
    rows: list[_Row],
    report: ImportReport,
    reopen: bool,
) -> None:
    outcomes = subscribers.upsert(
        session, newsletter, list(rows), source="import", status=status, reopen=reopen
    )
    for row, outcome in zip(rows, outcomes, strict=True):
        if row.duplicate:
            continue
        if outcome == "closed":
            report.closed += 1
        if outcome in ("added", "reopened"):
            report.joined.append(row.key)
        field_name = {"added": "imported", "closed": "suppressed"}.get(outcome, outcome)
        setattr(report, field_name, getattr(report, field_name) + 1)


def neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_START) else cell


def export_csv(session: Session, newsletter: str, out: TextIO, status: Status | None = None) -> int:
    """Write the subscribers as CSV; attribute columns are those of the first 10,000 rows
    (a fixed header lets the rows stream)."""
    rows = subscribers.listing(session, newsletter, status)
    head: list[tuple[Any, Any]] = []
    for pair in rows:
        head.append(pair)
        if len(head) >= 10_000:
            break
    extra = sorted({key for person, _ in head for key in person.attributes})
    # An attribute stored under a fixed column's name (imports before the header check)
    # gets a prefix rather than a second column of that name.
    titles = [f"attribute {key}" if key.lower() in EXPORT_COLUMNS else key for key in extra]
    writer = csv.writer(out, lineterminator="\r\n")
    # Attribute names came from someone's file: neutralised like the cells.
    writer.writerow([neutralise(cell) for cell in (*EXPORT_COLUMNS, *titles)])
    count = 0
    for person, subscription in _chain(head, rows):
        cells = [
            person.email,
            person.name or "",
            subscription.status,
            subscription.created_at.isoformat(),
            subscription.confirmed_at.isoformat() if subscription.confirmed_at else "",
            subscription.unsubscribed_at.isoformat() if subscription.unsubscribed_at else "",
            person.source,
            *(str(person.attributes.get(key, "")) for key in extra),
        ]
        writer.writerow([neutralise(cell) for cell in cells])
        count += 1
    return count


def _chain(first: Iterable[Any], rest: Iterator[Any]) -> Iterator[Any]:
    yield from first
    yield from rest
