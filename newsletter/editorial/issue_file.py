"""Issue files: the editor's side of an issue, in `issues/<slug>.md`.

A file is YAML front matter (newsletter, slug, subject, preheader, author, week and the ordered
articles with optional `note` and `section`) and a Markdown introduction. Editors change it in
any text editor; the helpers here (add, remove, move) edit it through ruamel.yaml's round-trip
mode, so the editor's comments, quoting and introduction survive every change.
"""

from __future__ import annotations

import difflib
import functools
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from sqlmodel import Session

from newsletter import languages
from newsletter.atomic_files import atomic_write
from newsletter.collect import store
from newsletter.config import Config, check_sender
from newsletter.dates import Period, parse_week
from newsletter.errors import ConfigError, IssueFileError, NotFoundError, UsageError
from newsletter.models import Article
from newsletter.untrusted import has_control
from newsletter.urls import url_key

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_FENCE = re.compile(r"^(?:---|\.\.\.)\s*$")


@dataclass
class IssueArticle:
    url: str
    note: str | None = None
    section: str | None = None


@dataclass
class IssueFile:
    """An issue file as read. The front matter's ruamel map is the one truth for what
    editing changes (the article list): `articles` is read from it each time, so add,
    remove and move edit the map alone and the comments in it survive. The other fields are
    never edited, only read."""

    path: Path
    newsletter: str
    slug: str
    subject: str
    preheader: str
    author: str | None
    week: str | None
    intro: str
    front: CommentedMap = field(repr=False, default_factory=CommentedMap)
    # Replies to this issue (the column's author): `reply_to:` in the front matter.
    reply_to: str | None = None
    # The per-reader greeting: None the theme's ("Hello, Olena,"), False none (the intro
    # greets), or the editor's words, `{name}` standing for the reader's name.
    greeting: str | bool | None = None

    @classmethod
    def build(cls, path: Path, articles: list[IssueArticle], **fields: Any) -> IssueFile:
        """An issue made in code (tests, previews): its front map holds the articles."""
        seq = CommentedSeq(
            CommentedMap(
                [("url", a.url)]
                + ([("note", a.note)] if a.note else [])
                + ([("section", a.section)] if a.section else [])
            )
            for a in articles
        )
        return cls(path=path, front=CommentedMap(articles=seq), **fields)

    @property
    def articles(self) -> list[IssueArticle]:
        seq = self.front.get("articles") or CommentedSeq()
        return [_article(item, index, seq, self.path) for index, item in enumerate(seq)]

    def summary(self) -> dict[str, object]:
        """`issue list --json` (and the head of `issue show --json`)."""
        return {
            "slug": self.slug,
            "week": self.week,
            "subject": self.subject,
            "articles": len(self.articles),
            "path": str(self.path),
        }

    def article_urls(self) -> list[str]:
        return [article.url for article in self.articles]

    def index_of(self, url: str) -> int:
        key = url_key(url)
        for index, item in enumerate(self.articles):
            if url_key(item.url) == key:
                return index
        raise NotFoundError(f"{url} is not in issue {self.slug} ({self.path})")


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long subject or URL onto two lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def issue_path(config: Config, slug_or_path: str) -> Path:
    """SLUG means issues/SLUG.md; anything that looks like a path is taken as one."""
    if slug_or_path.endswith(".md") or "/" in slug_or_path:
        path = Path(slug_or_path).expanduser()
        return path if path.is_absolute() else Path.cwd() / path
    return config.issues_dir / f"{slug_or_path}.md"


def read_issue(path: Path) -> IssueFile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(
            f"no issue file {path}: create it with 'newsletter issue new --week YYYY-Www'"
        ) from None
    except UnicodeDecodeError:
        raise IssueFileError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    return parse_issue(text, path)


def parse_issue(text: str, path: Path) -> IssueFile:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise IssueFileError(f"{path}:1: an issue file starts with a '---' line")
    end = next((i for i in range(1, len(lines)) if _FENCE.match(lines[i])), None)
    if end is None:
        raise IssueFileError(f"{path}: the front matter has no closing '---' line")
    try:
        front = _yaml().load("".join(lines[1:end]))
    except MarkedYAMLError as error:
        # An unclosed bracket or quote is reported where the file ends; the line where it
        # was opened (the context) is the one the editor must fix.
        mark = error.context_mark or error.problem_mark
        line = mark.line + 2 if mark else 1
        problem = error.problem or "invalid YAML"
        context = f" ({error.context})" if error.context and error.context_mark else ""
        raise IssueFileError(f"{path}:{line}: {problem}{context}") from None
    if not isinstance(front, CommentedMap):
        raise IssueFileError(f"{path}:2: the front matter must be a mapping (key: value lines)")
    intro = "".join(lines[end + 1 :]).strip("\n")

    def line_of(key: str) -> int:
        position = front.lc.key(key) if key in front else None
        return position[0] + 2 if position else 2

    for key in front:  # a misspelt key would be dropped on the way to readers: refused
        _known(key, FRONT_KEYS, f"{path}:{line_of(str(key))}", "the front matter")

    def text_field(key: str, *, required: bool) -> str | None:
        value = front.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise IssueFileError(f"{path}:{line_of(key)}: '{key}' is missing or empty")
            return None
        if not isinstance(value, str | int | float):
            raise IssueFileError(f"{path}:{line_of(key)}: '{key}' must be text")
        return str(value).strip()

    slug = text_field("slug", required=True) or ""
    if not _SLUG.match(slug):
        raise IssueFileError(
            f"{path}:{line_of('slug')}: slug {slug!r} may hold only A-Z a-z 0-9 . _ -"
        )
    raw_articles = front.get("articles")
    if raw_articles is None:
        raw_articles = CommentedSeq()
        front["articles"] = raw_articles
    if not isinstance(raw_articles, list):
        raise IssueFileError(f"{path}:{line_of('articles')}: 'articles' must be a list")
    for index, item in enumerate(raw_articles):  # every entry checked now, with its line
        _article(item, index, raw_articles, path)
    return IssueFile(
        path=path,
        newsletter=text_field("newsletter", required=False) or "",
        slug=slug,
        subject=text_field("subject", required=True) or "",
        preheader=text_field("preheader", required=False) or "",
        author=text_field("author", required=False),
        week=text_field("week", required=False),
        intro=intro,
        front=front,
        reply_to=_reply_to(text_field("reply_to", required=False), f"{path}:{line_of('reply_to')}"),
        greeting=_greeting(front.get("greeting"), f"{path}:{line_of('greeting')}"),
    )


# Every key an issue file may hold, in its front matter and in each article entry.
FRONT_KEYS = (
    "newsletter", "slug", "subject", "preheader", "author", "week", "articles", "reply_to",
    "greeting",
)  # fmt: skip
ARTICLE_KEYS = ("url", "note", "section")


def _known(key: object, known: tuple[str, ...], where: str, what: str) -> None:
    """Refuse a key the file may not hold, naming the nearest one it may."""
    if key in known:
        return
    name = str(key)
    close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"{what} knows {', '.join(known)}"
    raise IssueFileError(f"{where}: unknown key '{name}' in {what}: {hint}")


def _greeting(value: object, where: str) -> str | bool | None:
    """`greeting: false` (none), `greeting: "Dear {name},"`, or absent (the theme's)."""
    if value is None or value is True:
        return None
    if value is False:
        return False
    if not isinstance(value, str) or not value.strip() or has_control(value.strip()):
        raise IssueFileError(
            f"{where}: 'greeting' is false (no greeting) or one line of text, "
            'e.g. greeting: "Dear {name},"'
        )
    words = " ".join(value.split())
    if re.search(r"\{(?!name\})[^{}]*\}", words):
        raise IssueFileError(f"{where}: 'greeting' knows only {{name}}, the reader's name")
    return words[:200]


def _reply_to(value: str | None, where: str) -> str | None:
    """An issue's Reply-To, checked as the From address is."""
    if value is None:
        return None
    try:
        return check_sender(value, "Reply-To")
    except ConfigError as error:
        raise IssueFileError(f"{where}: {error}") from None


def _article(item: Any, index: int, seq: Any, path: Path) -> IssueArticle:
    try:
        position = seq.lc.item(index)  # where the entry was read; None for one made in code
    except (AttributeError, KeyError):
        position = None
    line = position[0] + 2 if position else 2
    if isinstance(item, str):
        return IssueArticle(url=item.strip())
    if not isinstance(item, dict) or not isinstance(item.get("url"), str):
        raise IssueFileError(f"{path}:{line}: article {index + 1} needs 'url: https://...'")
    for key in item:
        try:
            key_line = getattr(item, "lc").key(key)[0] + 2  # noqa: B009 - a plain dict has none
        except (AttributeError, KeyError, TypeError):
            key_line = line
        _known(key, ARTICLE_KEYS, f"{path}:{key_line}", f"article {index + 1}")
    note, section = item.get("note"), item.get("section")
    for key, value in (("note", note), ("section", section)):
        if value is not None and not isinstance(value, str):
            raise IssueFileError(f"{path}:{line}: article {index + 1}: '{key}' must be text")
    return IssueArticle(
        url=item["url"].strip(),
        note=note.strip() or None if isinstance(note, str) else None,
        section=section.strip() or None if isinstance(section, str) else None,
    )


def write_issue(issue: IssueFile) -> None:
    """Write the front matter back (comments kept) and the introduction untouched, through a
    temporary file so an interrupted write never leaves half a file."""
    buffer = io.StringIO()
    _yaml().dump(issue.front, buffer)
    text = (
        f"---\n{buffer.getvalue()}---\n{issue.intro}\n"
        if issue.intro
        else (f"---\n{buffer.getvalue()}---\n")
    )
    atomic_write(issue.path, text)


def lead_preheader(titles: list[str], language: str = languages.SOURCE) -> str:
    """The inbox preview `issue new` writes: the lead's title and how many follow."""
    if not titles:
        return ""
    return _lead(" ".join(titles[0].split()), len(titles) - 1, language)


def _lead(title: str, more: int, language: str) -> str:
    words = languages.translations(language)
    if not more:
        return words.gettext("This week: %(title)s") % {"title": title}
    text = words.ngettext(
        "This week: %(title)s and %(count)d more", "This week: %(title)s and %(count)d more", more
    )
    return text % {"title": title, "count": more}


def effective_preheader(preheader: str, titles: list[str], language: str = languages.SOURCE) -> str:
    """The preheader to send: one the editor wrote stays as written; one `issue new` wrote
    (naming one of the issue's articles as the lead, or none at all) follows the issue as
    it is now, so moving another story to the top changes the inbox preview with it."""
    written = " ".join(preheader.split())
    leads = {" ".join(title.split()) for title in titles}
    found = (pattern.match(written) for pattern in _lead_patterns(language))
    written_by_us = not written or any(m is not None and m["title"] in leads for m in found)
    return lead_preheader(titles, language) if written_by_us else preheader


@functools.lru_cache(maxsize=8)
def _lead_patterns(language: str) -> list[re.Pattern[str]]:
    """What `_lead` writes in this language, with any title and count."""
    words = languages.translations(language)
    many = "This week: %(title)s and %(count)d more"
    forms = {words.gettext("This week: %(title)s")}
    forms |= {words.ngettext(many, many, count) for count in range(1, 120)}
    return [
        re.compile(
            "^"
            + re.escape(form)
            .replace(re.escape("%(title)s"), "(?P<title>.*?)")
            .replace(re.escape("%(count)d"), r"\d+")
            + "$",
            re.S,
        )
        for form in forms
    ]


def week_dates(period: Period, config: Config) -> str:
    """'19–25 December 2022', or '26 December 2022 – 1 January 2023' across months."""
    first = period.start.astimezone(config.timezone)
    last = (period.end - timedelta(seconds=1)).astimezone(config.timezone)
    return languages.week_range(first.date(), last.date(), config.language)


def new_issue(
    config: Config,
    session: Session,
    *,
    week: str = "last",
    authors: Sequence[str] = (),
    newsletter: str | None = None,
    slug: str | None = None,
    force: bool = False,
) -> IssueFile:
    """The issue file for a week (by default the last complete one) with the articles of
    `authors` (by default the config's `authors`; everyone's when neither names any)."""
    if newsletter and newsletter not in (config.name, config.newsletter_id):
        raise UsageError(
            f"--newsletter {newsletter!r}: {config.path} configures {config.newsletter_id!r}; "
            "use --config for another newsletter"
        )
    period = parse_week(week, config.timezone)
    slug = slug or period.label
    if not _SLUG.match(slug):
        raise UsageError(f"bad --slug {slug!r}: use only A-Z a-z 0-9 . _ -")
    path = config.issues_dir / f"{slug}.md"
    if path.exists() and not force:
        raise UsageError(f"{path} already exists: edit it, or pass --force to replace it")
    authors = list(authors) or list(config.authors)
    author = " and ".join(authors) if authors else None
    found = store.query(session, authors=authors, period=period)
    if not found:
        who = f" by {author}" if author else ""
        raise NotFoundError(
            f"no articles{who} in {period.label}: run 'newsletter collect' first, "
            "or check --author and --week"
        )
    dates = week_dates(period, config)
    subject = f"{config.name}: {dates}"
    preheader = lead_preheader([article.title for article in found], config.language)
    # What the theme will say above the intro, so the editor sees the greeting they send.
    theme_greeting = config.words.gettext("Hello, %(name)s,") % {"name": "{name}"}
    text = _starter(
        config.name, slug, subject, preheader, author, period.label, found, theme_greeting
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    issue = parse_issue(text, path)
    atomic_write(path, text)
    return issue


def _starter(
    name: str,
    slug: str,
    subject: str,
    preheader: str,
    author: str | None,
    week: str,
    found: list[Article] | Any,
    theme_greeting: str,
) -> str:
    def q(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = [
        "---",
        f"newsletter: {q(name)}",
        f"slug: {q(slug)}",
        f"subject: {q(subject)}",
        "# The preview text inboxes show after the subject.",
        f"preheader: {q(preheader)}",
    ]
    if author:
        lines.append(f"author: {q(author)}")
    lines += [
        f"week: {q(week)}",
        "# Each reader's greeting above the intro ({name}: their name). The theme says the",
        "# line below; write your own, or false for none (when the intro greets itself).",
        f"# greeting: {q(theme_greeting)}",
        "# In the order readers see them. Each may have a 'note' (Markdown, shown under the",
        "# card) and a 'section' (a heading for it and the articles after it).",
        "articles:",
    ]
    for article in found:
        title = " ".join(article.title.split()).replace("#", "")
        lines.append(f"  - url: {q(article.url)}  # {title}")
    lines += ["---", "", ""]
    return "\n".join(lines)


def add_article(
    issue: IssueFile,
    session: Session,
    url: str,
    *,
    note: str | None = None,
    section: str | None = None,
    position: int | None = None,
) -> Article:
    article = store.find(session, url)
    if article is None:
        raise NotFoundError(f"no stored article at {url}: collect it first")
    if any(url_key(item.url) == url_key(url) for item in issue.articles):
        raise UsageError(f"{article.url} is already in issue {issue.slug}")
    entry = CommentedMap(url=article.url)
    if note:
        entry["note"] = note
    if section:
        entry["section"] = section
    seq = _seq(issue)
    index = len(seq) if position is None else _position(position, len(seq) + 1)
    entry.yaml_add_eol_comment(" ".join(article.title.split()).replace("#", ""), "url")
    seq.insert(index, entry)
    return article


def remove_article(issue: IssueFile, url: str) -> None:
    del _seq(issue)[issue.index_of(url)]


def move_article(issue: IssueFile, url: str, to: int) -> None:
    index = issue.index_of(url)
    seq = _seq(issue)
    target = _position(to, len(seq))
    seq.insert(target, seq.pop(index))


def _seq(issue: IssueFile) -> CommentedSeq:
    seq = issue.front.get("articles")
    if not isinstance(seq, CommentedSeq):
        seq = CommentedSeq(seq or [])
        issue.front["articles"] = seq
    return seq


def _position(number: int, count: int) -> int:
    if not 1 <= number <= max(count, 1):
        raise UsageError(f"position {number} is out of range: use 1 to {max(count, 1)}")
    return number - 1


@dataclass
class IssueListing:
    """The issue files that read, and beside them the ones that do not, with their errors."""

    issues: list[IssueFile]
    broken: dict[Path, IssueFileError]


def list_issues(config: Config) -> IssueListing:
    """Every issue file, newest slug first."""
    listing = IssueListing([], {})
    for path in sorted(config.issues_dir.glob("*.md"), reverse=True):
        try:
            listing.issues.append(read_issue(path))
        except IssueFileError as error:
            listing.broken[path] = error
    return listing


def issue_articles(issue: IssueFile, session: Session) -> list[Article]:
    """The stored articles of the issue, in its order; a URL not in the store is an error
    naming the file, because rendering a card without its article would be a silent hole."""
    rows: list[Article] = []
    for item in issue.articles:
        article = store.find(session, item.url)
        if article is None:
            raise IssueFileError(
                f"{issue.path}: {item.url} is not a stored article: collect it or remove it"
            )
        rows.append(article)
    return rows
