"""The public archive: a static site of the approved issues, for any web server or bucket.

`index.html` lists the issues newest first, each issue's page is its web version, and
`feed.xml` is an RSS 2.0 feed of issues. The site is built in a sibling folder and swapped
in, so a failed build never leaves half a site where the old one was.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path

from sqlmodel import Session

from newsletter import languages, site_urls
from newsletter.config import Config
from newsletter.editorial.approval import approved
from newsletter.editorial.render import environment, render_template
from newsletter.models import ApprovedIssue


@dataclass(frozen=True)
class BuiltArchive:
    folder: Path
    slugs: list[str]


def build_archive(config: Config, session: Session, folder: Path) -> BuiltArchive:
    rows = approved(session, config.newsletter_id)
    staging = folder.with_name(folder.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for row in rows:
        (staging / row.slug).mkdir()
        (staging / row.slug / "index.html").write_text(row.web_html, encoding="utf-8")
    index = index_html(config, rows)
    (staging / "index.html").write_text(index, encoding="utf-8")
    (staging / "feed.xml").write_bytes(feed_xml(config, rows))
    if folder.exists():
        shutil.rmtree(folder)
    staging.replace(folder)
    return BuiltArchive(folder, [r.slug for r in rows])


def index_html(config: Config, rows: list[ApprovedIssue]) -> str:
    """The archive's index page; links are relative, so it works at any path."""
    return render_template(
        environment(config, autoescape=True),
        "archive.html.j2",
        {
            "newsletter": {
                "name": config.name,
                "language": config.language,
                "direction": languages.direction(config.language),
                "base_url": config.base_url,
            },
            "issues": [
                {
                    "slug": r.slug,
                    "subject": r.subject,
                    "preheader": r.preheader,
                    "date": languages.long_date(_when(r, config).date(), config.language),
                }
                for r in rows
            ],
            "subscribe_url": site_urls.subscribe(config.base_url),
        },
    )


def _when(row: ApprovedIssue, config: Config) -> datetime:
    return (row.send_at or row.approved_at).astimezone(config.timezone)


def feed_xml(config: Config, rows: list[ApprovedIssue]) -> bytes:
    rss = ET.Element("rss", version="2.0")
    channel = ET.SubElement(rss, "channel")
    ET.SubElement(channel, "title").text = config.name
    ET.SubElement(channel, "link").text = config.archive_url()
    words = config.words
    ET.SubElement(channel, "description").text = words.gettext("Past issues of %(name)s") % {
        "name": config.name
    }
    ET.SubElement(channel, "language").text = config.language
    for row in rows:
        item = ET.SubElement(channel, "item")
        ET.SubElement(item, "title").text = row.subject
        ET.SubElement(item, "link").text = config.archive_url(row.slug)
        ET.SubElement(item, "guid", isPermaLink="true").text = config.archive_url(row.slug)
        ET.SubElement(item, "pubDate").text = format_datetime(row.send_at or row.approved_at)
        ET.SubElement(item, "description").text = row.preheader
    ET.indent(rss)
    data: bytes = ET.tostring(rss, encoding="utf-8", xml_declaration=True)
    return data + b"\n"
