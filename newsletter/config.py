"""`newsletter.toml` plus `NEWSLETTER_*` overrides, validated once into a `Config`.

Every message names the file and the key, because the person reading it is about to open the
file in an editor. Unknown keys are errors: a misspelt `timezone` silently falling back to UTC
would move articles into the wrong week.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from newsletter import __version__
from newsletter.dates import parse_datetime
from newsletter.errors import ConfigError
from newsletter.untrusted import has_control

CONFIG_FILE = "newsletter.toml"
DEFAULT_DATABASE = "sqlite:///newsletter.db"
SourceKind = Literal["feed", "page", "text"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("feed", "page", "text")


@dataclass(frozen=True)
class Source:
    """A place articles come from. `url` and `published` only matter for saved texts,
    which carry neither."""

    name: str
    kind: SourceKind
    location: str
    url: str | None = None
    published: datetime | None = None


@dataclass(frozen=True)
class CollectSettings:
    user_agent: str = f"newsletter/{__version__}"
    timeout: float = 20.0
    max_bytes: int = 10_000_000


@dataclass(frozen=True)
class Config:
    path: Path
    name: str
    timezone: ZoneInfo
    sender: str
    base_url: str
    language: str
    database_url: str
    collect: CollectSettings = field(default_factory=CollectSettings)
    sources: tuple[Source, ...] = ()
    postal_address: str | None = None
    reason: str | None = None
    name_fallback: str = "reader"
    # Whose week an issue collects when `issue new` gets no --author.
    authors: tuple[str, ...] = ()
    theme: Path | None = None
    key_file: Path | None = None
    transport: str = "file://outbox"
    dkim_selector: str | None = None
    dkim_key_file: Path | None = None
    feedback_id: str | None = None
    retry_hours: float = 72.0

    def archive_url(self, slug: str | None = None) -> str:
        """The public archive, or one issue's page in it (the "view in your browser" link)."""
        return f"{self.base_url}/archive/" + (f"{slug}/" if slug else "")

    @property
    def signing_key_file(self) -> Path:
        return self.key_file or self.root / "newsletter.key"

    newsletter_id: str = ""

    @property
    def key(self) -> str:
        """The newsletter's stable identity: subscriptions, the ledger and every signed link
        use it, so renaming the newsletter (its `name`) breaks nothing."""
        return self.newsletter_id or slugify(self.name)

    @property
    def issues_dir(self) -> Path:
        return self.root / "issues"

    @property
    def subscription_reason(self) -> str:
        return self.reason or f"You are receiving {self.name} because you subscribed to it."

    @property
    def root(self) -> Path:
        return self.path.parent

    def source(self, name: str) -> Source:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none configured"
        raise ConfigError(f"unknown source {name!r} (known: {known}); add it to {self.path}")


_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:100] or "newsletter"


@dataclass(frozen=True)
class ConfigLocation:
    """Where the config file is, or would be: `searched` lists the folders looked in when
    it was not named (empty when --config or NEWSLETTER_CONFIG named it)."""

    path: Path
    searched: tuple[Path, ...] = ()

    @property
    def named(self) -> bool:
        return not self.searched


def config_path(explicit: str | Path | None = None, cwd: Path | None = None) -> ConfigLocation:
    """The config file: `--config`, else `NEWSLETTER_CONFIG`, else the first newsletter.toml
    in the current folder or one of its parents (as git and ruff find theirs), so commands
    work from `issues/` or `build/` too."""
    chosen = explicit or os.environ.get("NEWSLETTER_CONFIG")
    if chosen:
        return ConfigLocation(Path(chosen).expanduser())
    start = (cwd or Path.cwd()).absolute()
    searched = (start, *start.parents)
    for folder in searched:
        if (folder / CONFIG_FILE).is_file():
            return ConfigLocation(folder / CONFIG_FILE, searched)
    return ConfigLocation(start / CONFIG_FILE, searched)


def missing_config(location: ConfigLocation) -> ConfigError:
    if location.named:
        return ConfigError(
            f"no configuration at {location.path}: run 'newsletter init' or pass --config PATH"
        )
    folders = ", ".join(str(folder) for folder in location.searched)
    return ConfigError(
        f"no {CONFIG_FILE} in {location.searched[0]} or any folder above it (searched {folders}):"
        " run 'newsletter init DIR', cd into a newsletter, or pass --config PATH"
    )


def check_timezone(value: str) -> ZoneInfo:
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {value!r}: use an IANA name such as Europe/Kyiv or UTC"
        ) from None


def check_base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"bad base URL {value!r}: give the public http(s) address, e.g. https://example.org/news"
        )
    return value.rstrip("/")


def check_sender(value: str) -> str:
    _, address = parseaddr(value)
    if not address or has_control(value):
        raise ConfigError(f"bad From address {value!r}: use 'Name <user@example.org>'")
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        raise ConfigError(f"bad From address {value!r}: {error}") from None
    return value


def resolve_database_url(url: str, root: Path) -> str:
    """Relative SQLite paths are relative to the config file, not to the working directory,
    so cron (which starts in $HOME) and the editor's shell open the same database."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        rest = url[len(prefix) :]
        if rest and not rest.startswith(":memory:"):
            return prefix + str((root / rest).resolve())
    return url


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    env = os.environ if environ is None else environ
    if not path.is_file():
        raise ConfigError(
            f"no configuration at {path}: run 'newsletter init' or pass --config PATH"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    return parse_config(data, path.resolve(), env)


def parse_config(data: dict[str, Any], path: Path, env: Mapping[str, str]) -> Config:
    _known(
        data,
        {"newsletter", "database", "collect", "render", "delivery", "sources"},
        path,
        "the top level",
    )
    news = _table(data, "newsletter", path)
    _known(
        news,
        {
            "id",
            "name",
            "timezone",
            "from",
            "base_url",
            "language",
            "postal_address",
            "reason",
            "name_fallback",
            "key_file",
            "authors",
        },
        path,
        "[newsletter]",
    )
    name = _required(news, "name", path, "[newsletter]")
    timezone = _wrap(path, "[newsletter] timezone", check_timezone, news.get("timezone", "UTC"))
    sender = _wrap(
        path,
        "[newsletter] from",
        check_sender,
        _required(news, "from", path, "[newsletter]"),
    )
    base_url = _wrap(
        path,
        "[newsletter] base_url",
        check_base_url,
        _required(news, "base_url", path, "[newsletter]"),
    )
    language = _string(news, "language", path, "[newsletter]") or "en"
    newsletter_id = _string(news, "id", path, "[newsletter]") or slugify(name)
    if not _ID.match(newsletter_id):
        raise ConfigError(f"{path}: [newsletter] id {newsletter_id!r}: use a-z, 0-9 and -")
    key_file = _string(news, "key_file", path, "[newsletter]")
    delivery = _table(data, "delivery", path)
    _known(
        delivery,
        {"transport", "dkim_selector", "dkim_key_file", "feedback_id", "retry_hours"},
        path,
        "[delivery]",
    )
    dkim_selector = _string(delivery, "dkim_selector", path, "[delivery]")
    dkim_key = _string(delivery, "dkim_key_file", path, "[delivery]")
    if bool(dkim_selector) != bool(dkim_key):
        raise ConfigError(f"{path}: [delivery] DKIM needs both dkim_selector and dkim_key_file")
    transport = env.get("NEWSLETTER_TRANSPORT_URL") or _string(
        delivery, "transport", path, "[delivery]"
    )
    render_table = _table(data, "render", path)
    _known(render_table, {"templates"}, path, "[render]")
    theme_dir = _string(render_table, "templates", path, "[render]")
    theme = (path.parent / theme_dir).resolve() if theme_dir else None
    if theme is not None and not theme.is_dir():
        raise ConfigError(f"{path}: [render] templates: folder {theme} does not exist")

    database = _table(data, "database", path)
    _known(database, {"url"}, path, "[database]")
    db_url = env.get("NEWSLETTER_DATABASE_URL") or _string(database, "url", path, "[database]")
    db_url = resolve_database_url(db_url or DEFAULT_DATABASE, path.parent)

    collect_table = _table(data, "collect", path)
    _known(collect_table, {"user_agent", "timeout", "max_bytes"}, path, "[collect]")
    defaults = CollectSettings()
    collect = CollectSettings(
        user_agent=_string(collect_table, "user_agent", path, "[collect]")
        or f"{defaults.user_agent} (+{base_url})",
        timeout=_positive(collect_table, "timeout", defaults.timeout, path),
        max_bytes=int(_positive(collect_table, "max_bytes", defaults.max_bytes, path)),
    )

    raw_sources = data.get("sources", [])
    if not isinstance(raw_sources, list):
        raise ConfigError(f"{path}: 'sources' must be an array of tables: write [[sources]]")
    sources = tuple(
        _source(item, index, path, timezone) for index, item in enumerate(raw_sources, 1)
    )
    names = [s.name for s in sources]
    for source_name in names:
        if names.count(source_name) > 1:
            raise ConfigError(f"{path}: two [[sources]] are named {source_name!r}; rename one")
    return Config(
        path=path,
        name=name,
        timezone=timezone,
        sender=sender,
        base_url=base_url,
        language=language,
        database_url=db_url,
        collect=collect,
        sources=sources,
        postal_address=_string(news, "postal_address", path, "[newsletter]"),
        reason=_string(news, "reason", path, "[newsletter]"),
        name_fallback=_string(news, "name_fallback", path, "[newsletter]") or "reader",
        authors=_strings(news, "authors", path, "[newsletter]"),
        newsletter_id=newsletter_id,
        theme=theme,
        key_file=(path.parent / key_file).resolve() if key_file else None,
        transport=transport or "file://outbox",
        dkim_selector=dkim_selector,
        dkim_key_file=(path.parent / dkim_key).resolve() if dkim_key else None,
        feedback_id=_string(delivery, "feedback_id", path, "[delivery]"),
        retry_hours=_positive(delivery, "retry_hours", 72.0, path, "[delivery]"),
    )


def _source(item: Any, index: int, path: Path, timezone: ZoneInfo) -> Source:
    where = f"[[sources]] #{index}"
    if not isinstance(item, dict):
        raise ConfigError(f"{path}: {where} must be a table")
    _known(item, {"name", "kind", "location", "url", "published"}, path, where)
    kind = _required(item, "kind", path, where)
    if kind not in SOURCE_KINDS:
        raise ConfigError(f"{path}: {where} kind {kind!r} must be one of feed, page, text")
    location = _required(item, "location", path, where)
    name = _string(item, "name", path, where) or location
    url = _string(item, "url", path, where)
    published_raw = item.get("published")
    published = None
    if isinstance(published_raw, datetime):
        published = (
            published_raw if published_raw.tzinfo else published_raw.replace(tzinfo=timezone)
        )
    elif published_raw is not None:
        published = parse_datetime(str(published_raw), timezone)
        if published is None:
            raise ConfigError(
                f"{path}: {where} published {published_raw!r} is not an ISO 8601 date"
            )
    if kind == "text" and (url is None or published is None):
        raise ConfigError(
            f"{path}: {where} ({name}) is a saved text: "
            'give it url = "..." and published = "YYYY-MM-DD"'
        )
    return Source(name=name, kind=kind, location=location, url=url, published=published)


def _wrap(path: Path, key: str, check: Any, value: Any) -> Any:
    try:
        return check(value)
    except ConfigError as error:
        raise ConfigError(f"{path}: {key}: {error}") from None


def _known(table: dict[str, Any], keys: set[str], path: Path, where: str) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {unknown[0]!r} in {where} "
            f"(expected one of {', '.join(sorted(keys))})"
        )


def _table(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{key}] must be a table")
    return value


def _required(table: dict[str, Any], key: str, path: Path, where: str) -> str:
    value = _string(table, key, path, where)
    if value is None:
        raise ConfigError(f'{path}: {where} needs {key} = "..."')
    return value


def _string(table: dict[str, Any], key: str, path: Path, where: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: {where} {key} must be a non-empty string")
    return value.strip()


def _strings(table: dict[str, Any], key: str, path: Path, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(item, str) and item.strip() for item in value
    ):
        raise ConfigError(f'{path}: {where} {key} must be a list of names: {key} = ["A", "B"]')
    return tuple(item.strip() for item in value)


def _positive(
    table: dict[str, Any], key: str, default: float, path: Path, where: str = "[collect]"
) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{path}: {where} {key} must be a positive number")
    return float(value)


def starter_config(
    *, name: str, timezone: str, sender: str, base_url: str, postal_address: str | None = None
) -> str:
    """The commented file `newsletter init` writes: every default says what it means."""

    def q(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)

    postal_line = (
        f"postal_address = {q(postal_address)}"
        if postal_address
        else '# postal_address = "Newsroom, 1 Example Street, Kyiv, Ukraine"'
    )
    return f"""\
# newsletter configuration. Every NEWSLETTER_* environment variable named below overrides
# the value here; secrets (SMTP password, signing key) never go in this file.

[newsletter]
# The newsletter's identity. Never change it: subscriptions, the delivery ledger and every
# unsubscribe link already sent depend on it. The name below may change freely.
id = {q(slugify(name))}
# Shown in the masthead, the subject and the footer.
name = {q(name)}
# IANA time zone: "week 2022-W51" means Monday 00:00 to Sunday 24:00 in this zone.
timezone = {q(timezone)}
# The From header of every issue.
from = {q(sender)}
# Public address of the web endpoints (unsubscribe, archive).
base_url = {q(base_url)}
# The lang attribute of the rendered email.
language = "en"
# The footer of every issue: where the sender can be reached by post (required by CAN-SPAM
# and most providers' terms) and why the reader gets the email.
{postal_line}
# reason = "You are receiving this because you subscribed to our weekly digest."
# The greeting's name when a subscriber gave none: "Hello, reader".
name_fallback = "reader"
# Whose articles `newsletter issue new` collects when no --author is given (an article by
# any of them, or by several, appears once): a weekly cron line then needs no flags.
# authors = ["Asami Terajima", "Illia Ponomarenko"]

[database]
# SQLite file next to this config by default; PostgreSQL works too:
#   url = "postgresql+psycopg://user@host/dbname"
# NEWSLETTER_DATABASE_URL overrides this.
url = "{DEFAULT_DATABASE}"

[collect]
# Sent with every HTTP request [default: newsletter/VERSION (+base_url)].
# user_agent = "War Notes digest (+https://example.org/war-notes)"
# Seconds a whole fetch may take (connect, redirects, every read) before the source fails.
timeout = 20
# Largest document fetched, in bytes.
max_bytes = 10000000

# The key that signs confirm and unsubscribe links: `newsletter init` creates it with mode
# 0600 and lists it in .gitignore. NEWSLETTER_SECRET_KEY overrides it. Never share it.
# key_file = "newsletter.key"

[delivery]
# Where mail goes: file://DIR (one .eml per message, relative to this file), console://, or
# smtp://[user@]host[:port] / smtps://host (password in NEWSLETTER_SMTP_PASSWORD).
# NEWSLETTER_TRANSPORT_URL overrides it.
transport = "file://outbox"
# DKIM signing of every issue (the signature covers both List-Unsubscribe headers): the
# selector published in DNS and the PEM private key (keep it outside the repository).
# dkim_selector = "news2022"
# dkim_key_file = "/etc/newsletter/dkim.pem"
# How long a message refused with a 4xx (mailbox full, greylisting) is retried before it
# counts as failed; retries back off from 5 minutes to at most 6 hours.
retry_hours = 72
# Gmail's Feedback-ID header, to see complaint rates per campaign in Postmaster Tools.
# feedback_id = "war-notes:newsletter:example"

[render]
# A folder with your own email.mjml.j2 / email.txt.j2 (any file you leave out comes from the
# default theme).
# templates = "theme"

# Sources: kind is feed (RSS or Atom), page (an article's web page) or text (a saved article
# text). location is an http(s) URL, a file:// URL, a path or a glob, relative to this file.
#
# [[sources]]
# name = "kyiv-independent"
# kind = "feed"
# location = "https://example.org/rss/"
#
# [[sources]]
# name = "saved"
# kind = "text"
# location = "saved/putin-negotiations.txt"
# url = "https://example.org/news/putin-negotiations/"
# published = "2022-12-25T18:00:00+02:00"
"""
