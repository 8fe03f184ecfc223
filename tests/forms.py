"""The web forms as a person's browser posts them: with the page's stamp (web/human.py),
made as if the page had been served a few seconds ago, so a test need not sleep."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from newsletter.audience.tokens import load_key
from newsletter.web import human
from tests.conftest import Project


def served(project: Project | Any, purpose: str = "subscribe", subject: str = "") -> str:
    """A stamp for the project's server, or a TestClient's app's."""
    if hasattr(project, "app"):
        key = project.app.state.site.key
    else:
        key = load_key(project.config.signing_key_file)
    return human.stamp(key, purpose, subject, now=time.time() - 5)


def subscribe_form(project: Project, **fields: str) -> dict[str, str]:
    """The subscribe form's fields, stamped."""
    return {"served": served(project)} | fields


def confirm_form(project: Project | Any, link: str) -> dict[str, str]:
    """What the confirmation page's button posts for this link (a URL or a path)."""
    token = unquote(urlsplit(link).path.rsplit("/", 1)[-1])
    return {"served": served(project, "confirm", token[:200])}


def press_confirm(client: Any, project: Project | Any, link: str) -> Any:
    """A person opening the confirmation link and pressing its button: the GET (which
    changes nothing), then the page's POST. `client` is a TestClient or httpx."""
    page = client.get(link, timeout=10) if not hasattr(client, "app") else client.get(link)
    assert page.status_code == 200 and 'name="served"' in page.text, page.text
    form = confirm_form(project, link)
    if hasattr(client, "app"):
        return client.post(link, data=form)
    return client.post(link, data=form, timeout=10)


def approval_fields(who: Project | Any, page: str, link: str) -> dict[str, str]:
    """What the approval page's form posts once its script has run (its `human` value)
    and a person has read it for a while (its stamp, made as if a few seconds ago)."""
    form = re.search(r'name="form" value="([^"]+)"', page)
    value = re.search(r'id="approve-human" value="" data-value="([^"]+)"', page)
    assert form is not None and value is not None, page[:300]
    token = unquote(urlsplit(link).path.rsplit("/", 1)[-1])
    return {"form": form[1], "human": value[1], "served": served(who, "approve", token)}
