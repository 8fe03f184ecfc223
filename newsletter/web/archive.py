"""The public archive: the index, one page per approved issue, and the RSS feed."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import Session
from starlette.exceptions import HTTPException

from newsletter import site_urls
from newsletter.editorial.approval import approved, issue_row
from newsletter.editorial.archive import feed_xml, index_html
from newsletter.web.site import CurrentSite

router = APIRouter()


@router.get(site_urls.ARCHIVE, response_class=HTMLResponse)
def archive_index(site: CurrentSite) -> HTMLResponse:
    with Session(site.engine) as session:
        return HTMLResponse(index_html(site.config, approved(session, site.config.newsletter_id)))


@router.get(site_urls.ARCHIVE_FEED)
def archive_feed(site: CurrentSite) -> Response:
    with Session(site.engine) as session:
        body = feed_xml(site.config, approved(session, site.config.newsletter_id))
    return Response(body, media_type="application/rss+xml")


@router.get(site_urls.ARCHIVE_ISSUE, response_class=HTMLResponse)
def archive_issue(slug: str, site: CurrentSite) -> HTMLResponse:
    with Session(site.engine) as session:
        row = issue_row(session, site.config.newsletter_id, slug)
        if row is None:
            raise HTTPException(404)
        return HTMLResponse(row.web_html)


@router.get(site_urls.ARCHIVE_ISSUE_BARE, include_in_schema=False)
def archive_slash(slug: str) -> RedirectResponse:
    return RedirectResponse(site_urls.ARCHIVE_ISSUE.format(slug=slug), status_code=308)
