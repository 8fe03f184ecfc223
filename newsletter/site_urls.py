"""Every public URL of the site, made here and nowhere else.

The mails, the pages and the archive link to these paths, and the web routes are declared
from the same constants, so a link that goes out and the route that answers it cannot drift
apart; the access log's redaction reads its token paths from here too. A new public URL is
one constant and one maker below, and its route.
"""

from __future__ import annotations

UNSUBSCRIBE = "/unsubscribe/{token}"
PREFERENCES = "/preferences/{token}"
PREFERENCES_JOIN = "/preferences/{token}/join"
PREFERENCES_LINK = "/preferences/{token}/link"
SUBSCRIBE = "/subscribe"
CONFIRM = "/confirm/{token}"
CLICK = "/c/{token}"
OPEN = "/o/{token}.gif"
APPROVE = "/approve/{token}"
PASSKEY = "/passkey/{token}"
ARCHIVE = "/archive/"
ARCHIVE_FEED = "/archive/feed.xml"
ARCHIVE_ISSUE = "/archive/{slug}/"
ARCHIVE_ISSUE_BARE = "/archive/{slug}"
WEBHOOKS = "/webhooks/{provider}"

# The paths whose segment after the first is a secret (a person's or an approver's token):
# never written to a log.
SECRET_PATHS = (UNSUBSCRIBE, PREFERENCES, CONFIRM, APPROVE, PASSKEY)


def first_segment(route: str) -> str:
    """`unsubscribe` of `/unsubscribe/{token}`."""
    return route.strip("/").split("/", 1)[0]


def prefix(route: str) -> str:
    """`/unsubscribe/` of `/unsubscribe/{token}`: what every path of the route starts with."""
    return f"/{first_segment(route)}/"


def unsubscribe(base_url: str, token: str, mark: str | None = None) -> str:
    """A reader's unsubscribe link; `mark` is the message's `u-` token (the report's "left
    after which issue")."""
    return base_url + UNSUBSCRIBE.format(token=token) + (f"?m={mark}" if mark else "")


def preferences(base_url: str, token: str) -> str:
    return base_url + PREFERENCES.format(token=token)


def subscribe(base_url: str) -> str:
    return base_url + SUBSCRIBE


def confirm(base_url: str, token: str, lists: list[str] | None = None) -> str:
    """A confirmation link; `lists` the newsletters chosen on the form, when more than one."""
    query = f"?lists={','.join(lists)}" if lists else ""
    return base_url + CONFIRM.format(token=token) + query


def click(base_url: str, token: str) -> str:
    return base_url + CLICK.format(token=token)


def open_pixel(base_url: str, token: str) -> str:
    return base_url + OPEN.format(token=token)


def approve(base_url: str, token: str) -> str:
    return base_url + APPROVE.format(token=token)


def passkey(base_url: str, token: str) -> str:
    return base_url + PASSKEY.format(token=token)


def archive(base_url: str, slug: str | None = None) -> str:
    """The archive's index, or one issue's page."""
    return base_url + (ARCHIVE_ISSUE.format(slug=slug) if slug else ARCHIVE)
