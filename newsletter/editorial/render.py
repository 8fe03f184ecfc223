"""An issue into what subscribers get: inlined HTML, plain text and the web version.

The pipeline, once per issue: Jinja2 (StrictUndefined, so a misspelt variable is an error and
not a blank) fills `email.mjml.j2`; mjml-python compiles the MJML; premailer inlines the
`mj-style inline="inline"` rules. MRML (the Rust MJML behind mjml-python) does not inline
anything itself and emits those rules as an ordinary <style> block, so we take them out of
the MJML ourselves and hand them to premailer, while every <style> MJML generated (media
queries with their `!important`, resets, dark mode) is marked for premailer to leave alone.
premailer never fetches anything (allow_network=False) and its cssutils logging is silenced.

Per-subscriber values are `%%name%%` placeholders in the output. `Template` splits a rendered
part once; `personalize` fills it per recipient with values escaped for that part, which costs
microseconds; nothing is rendered twice.
"""

from __future__ import annotations

import functools
import html
import importlib.resources
import logging
import re
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any, Literal

import jinja2
import sqlalchemy as sa
from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlmodel import Session, col, select

from newsletter import languages, site_urls
from newsletter.atomic_files import atomic_write
from newsletter.collect.authors import split_byline
from newsletter.collect.store import profiles_of
from newsletter.config import Config, NewsletterSettings, RenderSettings
from newsletter.dates import parse_week
from newsletter.editorial.issue_file import (
    IssueFile,
    effective_preheader,
    issue_articles,
    issue_path,
    read_issue,
    week_dates,
)
from newsletter.errors import NewsletterError, RenderError
from newsletter.models import Article, Subscription
from newsletter.sanitize import card_html, clean_html, html_to_text
from newsletter.untrusted import shown_name, strip_controls

DEFAULT_SUPPORT_TEXT = RenderSettings.model_fields["support_text"].default
DEFAULT_NAME_FALLBACK = NewsletterSettings.model_fields["name_fallback"].default
# `reader`: the signed reader token of counted links, per-subscriber tracking only
# (delivery/tracking.py); empty otherwise.
PLACEHOLDERS = ("first_name", "unsubscribe_url", "view_url", "reader", "preferences_url")
_TOKEN = re.compile(r"%%(" + "|".join(PLACEHOLDERS) + r")%%")
_INLINE_STYLE = re.compile(
    r"<mj-style\b[^>]*\binline\s*=\s*[\"']inline[\"'][^>]*>(.*?)</mj-style>", re.S | re.I
)
_STYLE_TAG = re.compile(r"<style(?![^>]*data-premailer)", re.I)
_markdown = MarkdownIt("commonmark", {"html": False, "typographer": True})


@dataclass(frozen=True)
class Template:
    """A rendered part split at its placeholders: literal, name, literal, ..., literal."""

    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        return cls(tuple(_TOKEN.split(text)))

    @property
    def source(self) -> str:
        return "".join(
            f"%%{part}%%" if index % 2 else part for index, part in enumerate(self.parts)
        )

    def names(self) -> set[str]:
        return set(self.parts[1::2])


@dataclass(frozen=True)
class Recipient:
    first_name: str | None
    unsubscribe_url: str
    view_url: str
    reader: str = ""
    preferences_url: str = ""


def personalize(
    template: Template, recipient: Recipient, fallback: str, kind: Literal["html", "text"]
) -> str:
    """Fill the placeholders. HTML gets entity-escaped values (they may sit in an attribute);
    every value loses control characters and line breaks, so a hostile name can neither
    break out of an attribute nor forge lines in the text part or a header."""
    values = placeholder_values(recipient, fallback, kind)
    parts = template.parts
    return "".join(parts[i] if i % 2 == 0 else values[parts[i]] for i in range(len(parts)))


def placeholder_values(
    recipient: Recipient, fallback: str, kind: Literal["html", "text"]
) -> dict[str, str]:
    """One recipient's values, made safe for the part they go into (see personalize)."""
    values = {
        "first_name": shown_name(recipient.first_name) or fallback,
        "unsubscribe_url": strip_controls(recipient.unsubscribe_url, ""),
        "view_url": strip_controls(recipient.view_url, ""),
        "reader": strip_controls(recipient.reader, ""),
        "preferences_url": strip_controls(recipient.preferences_url, ""),
    }
    return html_escaped(values) if kind == "html" else values


def html_escaped(values: dict[str, str]) -> dict[str, str]:
    """Text values for the HTML part (they may sit in an attribute)."""
    return {key: html.escape(value, quote=True) for key, value in values.items()}


def personal_urls(base_url: str, token: str, mark: str | None = None) -> tuple[str, str]:
    """One recipient's unsubscribe link (with the message's `u-` mark, which tells the
    report which issue they left from) and preferences link: built here only, for the
    send, test sends and previews."""
    return site_urls.unsubscribe(base_url, token, mark), site_urls.preferences(base_url, token)


def sample_recipient(config: Config, slug: str) -> Recipient:
    """What previews and checks fill in: a real-looking, https, unsubscribe link."""
    unsubscribe, preferences = personal_urls(config.base_url, "preview")
    return Recipient(
        first_name=None,
        unsubscribe_url=unsubscribe,
        view_url=config.archive_url(slug),
        preferences_url=preferences,
    )


@dataclass(frozen=True)
class Card:
    title: str
    url: str
    image: str | None
    # What the picture shows (the source's caption); empty when the source says nothing,
    # and the picture is then decoration, not a link (a link needs a name).
    image_alt: str
    byline: str
    date: str
    reading: str
    summary_html: Markup
    summary_text: str
    note_html: Markup | None
    note_text: str | None


@dataclass(frozen=True)
class Section:
    title: str | None
    cards: list[Card] = field(default_factory=list)


@dataclass(frozen=True)
class RenderedIssue:
    slug: str
    subject: str
    preheader: str
    html: Template
    text: Template
    web_html: str
    articles: list[Article]


def markdown_html(text: str) -> Markup:
    """Editor-written Markdown (raw HTML off) as sanitised HTML."""
    return Markup(clean_html(_markdown.render(text))) if text.strip() else Markup("")


def text_with_links(fragment: str) -> str:
    """Plain text of an HTML fragment with every link's address after its words, so the
    text part carries the same links as the HTML part."""

    def expand(match: re.Match[str]) -> str:
        href, words = html.unescape(match[1]), match[2]
        label = html_to_text(words)
        return f"{words} ({href})" if label and label != href else href

    linked = re.sub(r'<a\b[^>]*\bhref="([^"]*)"[^>]*>(.*?)</a>', expand, fragment, flags=re.S)
    return html_to_text(linked)


def byline(names: list[str]) -> str:
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def build_sections(
    issue: IssueFile,
    articles: list[Article],
    zone: tzinfo,
    language: str = languages.SOURCE,
    theme: Path | None = None,
) -> list[Section]:
    words = languages.translations(language, theme)
    sections: list[Section] = []
    current: Section | None = None
    for item, article in zip(issue.articles, articles, strict=True):
        if current is None or (item.section and item.section != current.title):
            current = Section(item.section)
            sections.append(current)
        note_html = markdown_html(item.note) if item.note else None
        local = article.published.astimezone(zone)
        summary = card_html(article.summary_html)
        current.cards.append(
            Card(
                title=article.title,
                url=article.url,
                # An image must be on https (mixed content is blocked by mail clients and
                # fails the checks); without one the card is a single column.
                image=article.image if (article.image or "").startswith("https://") else None,
                image_alt=article.image_caption,
                byline=byline(article.author_names),
                date=languages.long_date(local.date(), language),
                reading=words.ngettext(
                    "%(minutes)d min read", "%(minutes)d min read", article.reading_minutes
                )
                % {"minutes": article.reading_minutes},
                summary_html=Markup(summary),
                summary_text=text_with_links(summary),
                note_html=note_html,
                note_text=text_with_links(note_html) if note_html else None,
            )
        )
    return sections


def theme_folder() -> Path:
    """The default theme's folder, wherever the package is installed (the checkout's
    templates/ in development, newsletter/theme/ inside the wheel)."""
    folder = importlib.resources.files("newsletter.theme")
    if not isinstance(folder, Path):  # a zipped install: nothing we build makes one
        raise RenderError("the default theme must be installed as files, not inside a zip")
    return folder


def environment(config: Config, *, autoescape: bool) -> jinja2.Environment:
    """The theme's Jinja2 environment. The default theme's is made once per process and
    keeps its compiled templates (compiling the email theme was half of a render); a
    newsletter's own theme gets a fresh one each time, because its editor may be changing
    the files (Jinja notices an edit by its mtime, which two saves within a clock tick
    share)."""
    if config.theme is not None:
        return _environment.__wrapped__(config.theme, autoescape, config.language)
    return _environment(None, autoescape, config.language)


@functools.lru_cache(maxsize=8)
def _environment(theme: Path | None, autoescape: bool, language: str) -> jinja2.Environment:
    """With gettext's `_` and `ngettext` for the newsletter's language (chosen once here,
    not per recipient)."""
    folders = [str(theme)] if theme else []
    folders.append(str(theme_folder()))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(languages.translations(language, theme), newstyle=True)  # type: ignore[attr-defined]
    return env


def render_template(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as error:
        raise RenderError(f"{error.filename or name}:{error.lineno}: {error.message}") from None
    except jinja2.TemplateNotFound:
        raise RenderError(f"template {name} not found in {env.loader}") from None
    except (jinja2.UndefinedError, TypeError, ValueError) as error:
        frames = [f for f in traceback.extract_tb(sys.exc_info()[2]) if f.filename.endswith(".j2")]
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else name
        raise RenderError(f"{where}: {error}") from None


def compile_mjml(mjml: str, template_name: str) -> str:
    # Imported here: premailer (with cssutils) and MJML take about 0.3 s to import, and the
    # commands that run unattended (send, serve) never compile MJML.
    from mjml import mjml2html
    from premailer import Premailer

    inline_css = "\n".join(_INLINE_STYLE.findall(mjml))
    source = _INLINE_STYLE.sub("", mjml)
    try:
        compiled = mjml2html(source, fonts={}, disable_comments=True)
    except ValueError as error:
        raise RenderError(f"{template_name}: the MJML it produced is invalid: {error}") from None
    marked = _STYLE_TAG.sub('<style data-premailer="ignore"', compiled)
    inliner = Premailer(
        marked,
        css_text=inline_css or None,
        allow_network=False,
        strip_important=False,
        keep_style_tags=False,
        remove_classes=False,
        disable_validation=True,
        exclude_pseudoclasses=True,
        cssutils_logging_level=logging.CRITICAL,
    )
    inlined = inliner.transform().replace(' data-premailer="ignore"', "")
    # premailer serialises the root element only: the doctype MJML wrote must go back on.
    return "<!doctype html>\n" + re.sub(r"^\s*<!doctype[^>]*>\s*", "", inlined, flags=re.I)


@dataclass(frozen=True)
class Reporter:
    """The "from the reporter" block: whose digest this is, as the sources describe them."""

    name: str
    role: str
    bio: str
    photo: str | None  # https only: mail clients block the rest


def issue_reporters(config: Config, issue: IssueFile, session: Session) -> list[Reporter]:
    """The issue's author (its `author`, else the config's `authors`), with a card."""
    names = split_byline(issue.author) if issue.author else list(config.authors)
    return [
        Reporter(
            name=row.name,
            role=row.role,
            bio=row.bio,
            photo=row.photo if (row.photo or "").startswith("https://") else None,
        )
        for row in profiles_of(session, names)
    ]


def render_issue(
    config: Config,
    issue: IssueFile,
    articles: list[Article],
    reporters: list[Reporter] | None = None,
    lists: int = 1,
) -> RenderedIssue:
    zone = config.timezone
    dates = issue.week and _dates(issue.week, config)
    intro_html = markdown_html(issue.intro)
    preheader = effective_preheader(issue.preheader, [a.title for a in articles], config.language)
    context: dict[str, Any] = {
        "newsletter": newsletter_context(config),
        "issue": {
            "subject": issue.subject,
            "preheader": preheader,
            "slug": issue.slug,
            "week": issue.week,
            "dates": dates or "",
        },
        "intro_html": intro_html,
        "intro_text": text_with_links(intro_html),
        "greeting": greeting_words(config, issue),
        "sections": build_sections(issue, articles, zone, config.language, config.theme),
        "reporters": reporters or [],
        "first_name": "%%first_name%%",
        "unsubscribe_url": "%%unsubscribe_url%%",
        "view_url": "%%view_url%%",
        "preferences_url": "%%preferences_url%%",
        # Lists in this database: with more than one, the footer links to the preferences.
        "lists": lists,
        "subscribe_url": site_urls.subscribe(config.base_url),
        "web": False,
    }
    html_env = environment(config, autoescape=True)
    email_html = compile_mjml(render_template(html_env, "email.mjml.j2", context), "email.mjml.j2")
    web_context = context | {"web": True, "first_name": reader_name(config)}
    web_html = compile_mjml(
        render_template(html_env, "email.mjml.j2", web_context), "email.mjml.j2"
    )
    text = render_template(environment(config, autoescape=False), "email.txt.j2", context)
    return RenderedIssue(
        slug=issue.slug,
        subject=issue.subject,
        preheader=preheader,
        html=Template.parse(email_html),
        text=Template.parse(re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"),
        web_html=web_html,
        articles=articles,
    )


def issue_outline(config: Config, issue: IssueFile, articles: list[Article]) -> dict[str, Any]:
    """What a welcome mail shows of an issue (delivery/welcome.py), frozen with its
    approval: its lead (the intro) and headlines with their links, in the issue's order."""
    intro_html = markdown_html(issue.intro)
    return {
        "subject": issue.subject,
        "dates": (issue.week and _dates(issue.week, config)) or "",
        "intro_html": str(intro_html),
        "intro_text": text_with_links(intro_html),
        "headlines": [
            {"title": article.title, "url": article.url, "section": item.section or ""}
            for item, article in zip(issue.articles, articles, strict=True)
        ],
    }


def greeting_words(config: Config, issue: IssueFile) -> str:
    """The greeting above the intro, `%%first_name%%` where the reader's name goes: the
    issue file's words, none (`greeting: false`, when the intro greets), or the theme's."""
    if issue.greeting is False:
        return ""
    if isinstance(issue.greeting, str):
        return issue.greeting.replace("{name}", "%%first_name%%")
    return config.words.gettext("Hello, %(name)s,") % {"name": "%%first_name%%"}


_BODY = re.compile(r"<body\b[^>]*>", re.I)


def after_body(page: str, block: str) -> str:
    """`block` right after the page's <body> tag (before everything, without one): a
    welcome's band, an approval's banner or panel above a rendered issue."""
    if not _BODY.search(page):
        return block + page
    return _BODY.sub(lambda match: match[0] + block, page, count=1)


def newsletter_context(config: Config) -> dict[str, Any]:
    """The theme's `newsletter` variable, for every mail to readers (issues, welcome)."""
    words = config.words
    return {
        "name": config.name,
        "base_url": config.base_url,
        "language": config.language,
        "direction": languages.direction(config.language),
        "postal_address": config.postal_address,
        "reason": config.reason
        or words.gettext("You are receiving %(name)s because you subscribed to it.")
        % {"name": config.name},
        "logo": config.logo,
        "support_url": config.support_url,
        # The default's words in the newsletter's language; an editor's own as written.
        "support_text": words.gettext("Our reporting is free to read and paid for by readers.")
        if config.support_text == DEFAULT_SUPPORT_TEXT
        else config.support_text,
        "forward_prompt": config.forward_prompt,
    }


def list_count(session: Session) -> int:
    """Lists in this database: with more than one, the footer links to the preferences."""
    found = session.exec(select(sa.func.count(sa.distinct(col(Subscription.newsletter))))).one()
    return max(int(found), 1)


def _dates(week: str, config: Config) -> str | None:
    try:
        return week_dates(parse_week(week, config.timezone), config)
    except NewsletterError:
        return None


def reader_name(config: Config) -> str:
    """The greeting's name for a reader who gave none: the default's word in the
    newsletter's language, an editor's own as written."""
    if config.name_fallback == DEFAULT_NAME_FALLBACK:
        return config.words.gettext("reader")
    return config.name_fallback


@dataclass(frozen=True)
class Written:
    folder: Path
    files: dict[str, int]


def write_rendered(rendered: RenderedIssue, folder: Path) -> Written:
    """email.html and email.txt keep their placeholders (they are what a send fills);
    web.html is the view-in-browser page."""
    folder.mkdir(parents=True, exist_ok=True)
    outputs = {
        "email.html": rendered.html.source,
        "email.txt": rendered.text.source,
        "web.html": rendered.web_html,
    }
    sizes: dict[str, int] = {}
    for name, content in outputs.items():
        data = content.encode("utf-8")
        atomic_write(folder / name, data)
        sizes[name] = len(data)
    return Written(folder, sizes)


def render_file(
    config: Config, session: Session, slug_or_path: str
) -> tuple[IssueFile, RenderedIssue]:
    """Read an issue file, look up its articles and render it."""
    issue = read_issue(issue_path(config, slug_or_path))
    reporters = issue_reporters(config, issue, session)
    articles = issue_articles(issue, session)
    return issue, render_issue(config, issue, articles, reporters, list_count(session))


def build_folder(config: Config, slug: str) -> Path:
    return config.root / "build" / slug
