"""`newsletter.toml` plus `NEWSLETTER_*` overrides, validated once into a `Config`.

Every message names the file and the key, because the person reading it is about to open the
file in an editor. Unknown keys are errors: a misspelt `timezone` silently falling back to UTC
would move articles into the wrong week.
"""

from __future__ import annotations

import functools
import gettext
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import datetime
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from newsletter import __version__, languages, site_urls
from newsletter.dates import parse_datetime
from newsletter.errors import ConfigError
from newsletter.languages import check_language
from newsletter.untrusted import has_control, strip_controls

CONFIG_FILE = "newsletter.toml"
DEFAULT_DATABASE = "sqlite:///newsletter.db"
SourceKind = Literal["feed", "page", "text"]


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
class Config:
    """newsletter.toml resolved: the [newsletter], [render] and [delivery] keys flat, the
    other tables as their validated models. Nothing here has a default or a type of its
    own: both are the tables' (below), and `parse_config` copies each table's values
    across by name, so a new key is one line in its table (and the starter file, which a
    test holds to the tables)."""

    path: Path
    name: str
    timezone: ZoneInfo
    sender: str
    reply_to: str | None
    base_url: str
    language: str
    description: str | None
    database_url: str
    collect: CollectSettings
    sources: tuple[Source, ...]
    postal_address: str | None
    reason: str | None
    name_fallback: str
    # Whose week an issue collects when `issue new` gets no --author.
    authors: tuple[str, ...]
    approvers: tuple[str, ...]
    editor: str | None
    approval_hours: float
    require_approval: bool
    approvals_needed: int
    approval_proof: str
    test_recipients: tuple[str, ...]
    rate: float | None
    daily_limit: int | None
    warmup: int | None
    warmup_factor: float
    quota_shared_with: tuple[str, ...]
    theme: Path | None
    # The masthead's logo, and the footer's "support us" and "forwarded to you?" blocks.
    logo: str | None
    support_url: str | None
    support_text: str
    forward_prompt: bool
    key_file: Path | None
    transport: str
    dkim_selector: str | None
    dkim_key_file: Path | None
    dkim_ed25519_selector: str | None
    dkim_ed25519_key_file: Path | None
    feedback_id: str | None
    retry_hours: float
    bounce_address: str | None
    bounces: BounceSettings
    tracking: TrackingSettings
    welcome: WelcomeSettings
    # The newsletter's stable identity ([newsletter] id, else its name slugified):
    # subscriptions, the ledger and every signed link use it, so renaming the newsletter
    # (its `name`) breaks nothing. Not the signing key (`signing_key_file`).
    newsletter_id: str

    @functools.cached_property
    def from_address(self) -> Address:
        """The From address, parsed once (every message's From, Message-ID domain and
        envelope sender start from it)."""
        name, address = parseaddr(strip_controls(self.sender))
        local, _, domain = address.rpartition("@")
        return Address(display_name=name, username=local, domain=domain)

    @property
    def words(self) -> gettext.NullTranslations:
        """Every word a reader sees, in the newsletter's language: the package's catalogue
        and the theme's own (languages.py)."""
        return languages.translations(self.language, self.theme)

    def archive_url(self, slug: str | None = None) -> str:
        """The public archive, or one issue's page in it (the "view in your browser" link)."""
        return site_urls.archive(self.base_url, slug)

    @property
    def signing_key_file(self) -> Path:
        return self.key_file or self.root / "newsletter.key"

    @property
    def issues_dir(self) -> Path:
        return self.root / "issues"

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
    chosen = explicit or environment_value("NEWSLETTER_CONFIG")
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


def check_sender(value: str, what: str = "From") -> str:
    """An address header's value (From, Reply-To): `Name <user@example.org>` or a bare
    address, one address, no control characters."""
    _, address = parseaddr(value)
    if not address or has_control(value):
        raise ConfigError(f"bad {what} address {value!r}: use 'Name <user@example.org>'")
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        raise ConfigError(f"bad {what} address {value!r}: {error}") from None
    return value


def check_reply_to(value: str) -> str:
    return check_sender(value, "Reply-To")


def check_person(value: str) -> str:
    """An approver, an editor or a test recipient: `Name <user@example.org>`."""
    return check_sender(value, "person's")


# Room for "+" and a return token (row_tokens.py) within RFC 5321's 64-character local part.
BOUNCE_LOCAL_MAX = 20
_SNS_ARN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$"


def check_bounce_address(value: str) -> str:
    """A plain address whose local part leaves room for a VERP token."""
    try:
        valid = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(f"{value!r} is not an address: {error}") from None
    local = valid.local_part
    if not re.fullmatch(rf"[A-Za-z0-9._-]{{1,{BOUNCE_LOCAL_MAX}}}", local):
        raise ValueError(
            f"{value!r}: the part before @ must be at most {BOUNCE_LOCAL_MAX} of A-Z, a-z, "
            "0-9, '.', '_' and '-' (room for the per-recipient token), as in bounces@example.org"
        )
    return value


def check_https_url(value: str) -> str:
    """An https URL: the logo (mail clients block other schemes' images) and the support
    link (the checks refuse plain http links)."""
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc or has_control(value):
        raise ConfigError(f"{value!r} is not an https:// URL")
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


@dataclass(frozen=True)
class Hint:
    """How a key is written right, for its one-line error (`_friendly`): said once, on the
    type or the key, never by the key's name elsewhere. `{input}` is the value given."""

    text: str


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):  # TOML's true is not a number of seconds
        raise PydanticCustomError("not_a_number", "not a number")
    return value


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value > 0 else value


def _zone(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return check_timezone(value.strip())
        except ConfigError as error:
            raise ValueError(str(error)) from None
    return value


def _checked(check: Any) -> Any:
    """A check of ours (raising ConfigError) as a validator; its result is the value's
    final type (a ZoneInfo, a URL without its trailing slash)."""

    def validate(value: Any) -> Any:
        try:
            return check(value)
        except ConfigError as error:
            raise ValueError(str(error)) from None

    return AfterValidator(validate)


def _beside_file(value: Any, info: ValidationInfo) -> Any:
    """A path relative to the config file's folder (the validation context's `root`), not
    to the working directory, so cron and the editor's shell find the same file."""
    root = (info.context or {}).get("root")
    if isinstance(value, str) and value.strip() and root is not None:
        return (Path(root) / value.strip()).resolve()
    return value


Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1), Hint("must be a non-empty string")
]
Positive = Annotated[
    float, BeforeValidator(_no_bool), Field(gt=0), Hint("must be a positive number")
]
Bytes = Annotated[
    int,
    BeforeValidator(_whole),
    BeforeValidator(_no_bool),
    Field(gt=0),
    Hint("must be a positive number"),
]
FilePath = Annotated[Path, BeforeValidator(_beside_file), Hint("must be a file's path")]
Folder = Annotated[
    Text,
    StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,50}$"),
    Hint("{input!r}: use A-Z, a-z, 0-9, _ and - (a folder name)"),
]


class _Table(BaseModel):
    """A table of newsletter.toml: unknown keys are errors (a typo must not be ignored).
    Its fields are the keys, their types the final ones, their defaults the defaults."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, arbitrary_types_allowed=True
    )


_SLUG = "{input!r}: use a-z, 0-9 and -"


class NewsletterSettings(_Table):
    id: (
        Annotated[
            Text, StringConstraints(pattern=_ID.pattern), Hint("{input!r}: use a-z, 0-9 and -")
        ]
        | None
    ) = None
    name: Text
    timezone: Annotated[ZoneInfo, BeforeValidator(_zone)] = ZoneInfo("UTC")
    sender: Annotated[Text, _checked(check_sender)] = Field(alias="from")
    reply_to: Annotated[Text, _checked(check_reply_to)] | None = None
    base_url: Annotated[Text, _checked(check_base_url)]
    language: Annotated[Text, _checked(check_language)] = "en"
    description: Text | None = None
    postal_address: Text | None = None
    reason: Text | None = None
    name_fallback: Text = "reader"
    key_file: FilePath | None = None
    authors: Annotated[tuple[Text, ...], Hint('must be a list of names: authors = ["A", "B"]')] = ()
    logo: Annotated[Text, _checked(check_https_url)] | None = None
    # Who signs an issue off (issue 25's flow, docs/approval.md), and who usually asks.
    approvers: Annotated[
        tuple[Annotated[Text, _checked(check_person)], ...],
        Hint('must be a list of addresses: approvers = ["Olha Koval <olha@example.org>"]'),
    ] = ()
    editor: Annotated[Text, _checked(check_person)] | None = None
    approval_hours: Positive = 72.0
    require_approval: bool = False
    approvals_needed: Annotated[
        int, BeforeValidator(_no_bool), Field(ge=1, le=2), Hint("must be 1 or 2")
    ] = 1
    # "passkey": only approvals signed with the approver's own passkey count
    # (editorial/passkeys.py); "link": their link and click do.
    approval_proof: Annotated[Literal["link", "passkey"], Hint('must be "link" or "passkey"')] = (
        "link"
    )

    @model_validator(mode="after")
    def _enough_approvers(self) -> NewsletterSettings:
        if self.require_approval and len(self.approvers) < self.approvals_needed:
            raise ValueError(
                f"require_approval needs {self.approvals_needed} approver(s) in approvers"
            )
        return self


class DatabaseSettings(_Table):
    url: Text | None = None


class CollectSettings(_Table):
    """How documents are fetched (collect/fetch.py)."""

    # Without one in the file: newsletter/VERSION (+base_url), set by parse_config.
    user_agent: Text = f"newsletter/{__version__}"
    timeout: Positive = 20.0
    max_bytes: Bytes = 10_000_000


class RenderSettings(_Table):
    templates: FilePath | None = None
    support_url: Annotated[Text, _checked(check_https_url)] | None = None
    support_text: Text = "Our reporting is free to read and paid for by readers."
    forward_prompt: bool = True


class DeliverySettings(_Table):
    transport: Text = "file://outbox"
    dkim_selector: Text | None = None
    dkim_key_file: FilePath | None = None
    dkim_ed25519_selector: Text | None = None
    dkim_ed25519_key_file: FilePath | None = None
    feedback_id: Text | None = None
    retry_hours: Positive = 72.0
    bounce_address: Annotated[Text, _checked(check_bounce_address)] | None = None
    # Pace (delivery/pace.py): messages a second, a day, and a new sender's ramp.
    rate: Positive | None = None
    daily_limit: (
        Annotated[
            int, BeforeValidator(_no_bool), Field(ge=1), Hint("must be a whole number above 0")
        ]
        | None
    ) = None
    warmup: (
        Annotated[
            int, BeforeValidator(_no_bool), Field(ge=1), Hint("must be a whole number above 0")
        ]
        | None
    ) = None
    warmup_factor: Annotated[
        float, BeforeValidator(_no_bool), Field(gt=1, le=10), Hint("must be above 1, e.g. 2")
    ] = 2.0
    # Other newsletters (their ids) on this database that send from the same domain or IP:
    # one day's quota and one warm-up for all of them.
    quota_shared_with: Annotated[
        tuple[Annotated[Text, StringConstraints(pattern=_ID.pattern)], ...],
        Hint('must be a list of newsletter ids: quota_shared_with = ["war-notes-uk"]'),
    ] = ()
    # A seed list that gets every test send (and every approval request's copy).
    test_recipients: Annotated[
        tuple[Annotated[Text, _checked(check_person)], ...],
        Hint('must be a list of addresses: test_recipients = ["desk@example.org"]'),
    ] = ()

    @model_validator(mode="after")
    def _dkim_pair(self) -> DeliverySettings:
        if bool(self.dkim_selector) != bool(self.dkim_key_file):
            raise ValueError("DKIM needs both dkim_selector and dkim_key_file")
        if bool(self.dkim_ed25519_selector) != bool(self.dkim_ed25519_key_file):
            raise ValueError("DKIM needs both dkim_ed25519_selector and dkim_ed25519_key_file")
        if self.dkim_ed25519_selector and not self.dkim_selector:
            raise ValueError(
                "an Ed25519 DKIM signature goes beside an RSA one (receivers that do not "
                "know Ed25519 ignore it): set dkim_selector and dkim_key_file too"
            )
        return self


class BounceSettings(_Table):
    """How returned mail is judged (feedback/policy.py) and where webhooks come from."""

    soft_limit: Annotated[
        int,
        BeforeValidator(_no_bool),
        Field(ge=1, le=100),
        Hint("must be a whole number from 1 to 100"),
    ] = 3
    soft_days: Positive = 30.0
    proof_days: Positive = 30.0
    processed_folder: Folder = "Processed"
    unrecognised_folder: Folder = "Unrecognised"
    ses_topic_arns: Annotated[
        tuple[Annotated[Text, StringConstraints(pattern=_SNS_ARN)], ...],
        Hint('must be a list of SNS topic ARNs: ["arn:aws:sns:REGION:ACCOUNT:TOPIC"]'),
    ] = ()
    ses_certificate_file: FilePath | None = None
    webhook_max_age: Positive = 3600.0


class TrackingSettings(_Table):
    """What a sent message counts (delivery/tracking.py; docs/privacy.md)."""

    clicks: bool = True
    per_subscriber: bool = False
    opens: bool = False


class WelcomeSettings(_Table):
    """The mail a new reader gets when they confirm (delivery/welcome.py)."""

    enabled: bool = True
    # Without one: "Welcome to NAME" in the newsletter's language.
    subject: Text | None = None
    # Markdown; without either: the theme's words in the newsletter's language.
    text: Text | None = None
    text_file: FilePath | None = None
    include: Annotated[
        Literal["headlines", "issue", "none"],
        Hint('must be "headlines" (the latest issue\'s lead and headlines), "issue" or "none"'),
    ] = "headlines"

    @model_validator(mode="after")
    def _one_text(self) -> WelcomeSettings:
        if self.text and self.text_file:
            raise ValueError("give text or text_file, not both")
        return self


class SourceSettings(_Table):
    name: Text | None = None
    kind: SourceKind
    location: Text
    url: Text | None = None
    published: datetime | Text | None = None


class ConfigFile(_Table):
    """newsletter.toml, one class per table; `starter_config` writes every key documented
    and every default as the tables have it (tests/test_config.py checks both)."""

    newsletter: NewsletterSettings
    database: DatabaseSettings = DatabaseSettings()
    collect: CollectSettings = CollectSettings()
    render: RenderSettings = RenderSettings()
    delivery: DeliverySettings = DeliverySettings()
    bounces: BounceSettings = BounceSettings()
    tracking: TrackingSettings = TrackingSettings()
    welcome: WelcomeSettings = WelcomeSettings()
    sources: tuple[SourceSettings, ...] = ()


# Every environment variable the program reads, in one place: code reads them through
# `environment_value`, and docs/configuration.md lists each (tests/test_config.py checks).
ENVIRONMENT: dict[str, str] = {
    "NEWSLETTER_CONFIG": "the config file's path",
    "NEWSLETTER_DATABASE_URL": "[database] url",
    "NEWSLETTER_TRANSPORT_URL": "[delivery] transport",
    "NEWSLETTER_SMTP_PASSWORD": "the SMTP password (a secret: read where it is used, never kept)",
    "NEWSLETTER_SECRET_KEY": "the signing key (a secret: read where it is used, never kept)",
    "NEWSLETTER_CHROMIUM": "the Chromium executable for screenshots",
    "NEWSLETTER_IMAP_PASSWORD": "the IMAP password for `bounces process imap://...` (a secret)",
    "NEWSLETTER_MAILGUN_SIGNING_KEY": "Mailgun's webhook signing key (a secret)",
    "NEWSLETTER_MAILGUN_API_KEY": "Mailgun's API key, for the mailgun:// transport (a secret)",
    "NEWSLETTER_POSTMARK_TOKEN": "Postmark's server token, for postmark:// (a secret)",
    "NEWSLETTER_DEBUG": "show the traceback of an unexpected error",
}


def environment_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A NEWSLETTER_* variable (one of ENVIRONMENT), or None when unset or empty."""
    if name not in ENVIRONMENT:
        raise KeyError(f"{name} is not one of the environment variables in config.ENVIRONMENT")
    return (os.environ if environ is None else environ).get(name) or None


# The variables that override a key of the file, applied in parse_config and nowhere else.
ENV_OVERRIDES = {
    "NEWSLETTER_DATABASE_URL": ("database", "url"),
    "NEWSLETTER_TRANSPORT_URL": ("delivery", "transport"),
}


def parse_config(data: dict[str, Any], path: Path, env: Mapping[str, str]) -> Config:
    data = dict(data)
    for variable, (table, key) in ENV_OVERRIDES.items():
        value = environment_value(variable, env)
        if value:
            section = data.get(table, {})
            if isinstance(section, dict):
                data[table] = section | {key: value}
    try:
        model = ConfigFile.model_validate(data, context={"root": path.parent})
    except ValidationError as error:
        raise ConfigError(f"{path}: {_friendly(error.errors()[0])}") from None
    news, render = model.newsletter, model.render
    welcome_file = model.welcome.text_file
    if welcome_file is not None and not welcome_file.is_file():
        raise ConfigError(
            f"{path}: [welcome] text_file: no file {welcome_file}; write it (Markdown) or "
            "remove the key"
        )
    if render.templates is not None and not render.templates.is_dir():
        raise ConfigError(f"{path}: [render] templates: folder {render.templates} does not exist")
    try:
        languages.require(news.language, render.templates)
    except ConfigError as error:
        raise ConfigError(f"{path}: [newsletter] language: {error}") from None
    sources = tuple(
        _source(item, index, path, news.timezone) for index, item in enumerate(model.sources, 1)
    )
    names = [s.name for s in sources]
    for source_name in names:
        if names.count(source_name) > 1:
            raise ConfigError(f"{path}: two [[sources]] are named {source_name!r}; rename one")
    collect = model.collect
    if "user_agent" not in collect.model_fields_set:
        collect = collect.model_copy(
            update={"user_agent": f"{collect.user_agent} (+{news.base_url})"}
        )
    flat = {  # the [newsletter], [render] and [delivery] keys, by name (_flat_keys)
        key: value
        for table in (news, render, model.delivery)
        for key, value in table
        if key not in _RENAMED
    }
    return Config(
        path=path,
        **flat,
        database_url=resolve_database_url(model.database.url or DEFAULT_DATABASE, path.parent),
        collect=collect,
        sources=sources,
        newsletter_id=news.id or slugify(news.name),
        theme=render.templates,
        bounces=model.bounces,
        tracking=model.tracking,
        welcome=model.welcome,
    )


# Keys of the flat tables that reach Config under another name, or resolved.
_RENAMED = {"id": "newsletter_id", "templates": "theme"}
_FLAT_TABLES = (NewsletterSettings, RenderSettings, DeliverySettings)


def _flat_keys() -> set[str]:
    """Every key of [newsletter], [render] and [delivery], checked against Config at import:
    a key added to one of those tables without its field in Config stops the package from
    loading, instead of validating and then reaching nothing."""
    keys = {key for table in _FLAT_TABLES for key in table.model_fields} - set(_RENAMED)
    fields = {item.name for item in dataclass_fields(Config)}
    missing = keys - fields
    if missing:
        raise TypeError(f"Config has no field for the table key(s) {sorted(missing)}")
    return keys


_flat_keys()


_TABLES: dict[str, type[BaseModel]] = {
    name: field.annotation.__args__[0] if name == "sources" else field.annotation  # type: ignore[union-attr,misc]
    for name, field in ConfigFile.model_fields.items()
}


def _friendly(error: Any) -> str:
    """One pydantic error as the one line a person needs: where (table and key), what is
    wrong, and how it is written right (the key's `Hint`)."""
    loc = list(error["loc"])
    kind, message = error["type"], str(error["msg"]).removeprefix("Value error, ")
    if not loc:
        return message
    table = str(loc[0])
    if table == "sources" and len(loc) >= 2 and isinstance(loc[1], int):
        where, rest = f"[[sources]] #{loc[1] + 1}", loc[2:]
    else:
        where, rest = ("the top level" if len(loc) == 1 else f"[{table}]"), loc[1:]
    key = str(rest[0]) if rest else table
    model = _TABLES.get(table)
    if kind == "extra_forbidden":
        if len(loc) == 1:
            expected = sorted(_TABLES)
        else:
            expected = sorted(f.alias or n for n, f in model.model_fields.items()) if model else []
        return f"unknown key {key!r} in {where} (expected one of {', '.join(expected)})"
    if kind == "missing":
        if len(loc) == 1:
            return f"no [{table}] table: add it (newsletter init writes one)"
        return f'{where} needs {key} = "..."'
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"[{table}] must be a table"
    if kind in ("tuple_type", "list_type", "iterable_type") and table == "sources" and not rest:
        return "'sources' must be an array of tables: write [[sources]]"
    if kind == "literal_error":
        return (
            f"{where} {key} {error.get('input')!r} must be one of {', '.join(get_args(SourceKind))}"
        )
    if kind == "value_error":  # a check of ours, which says what is wrong and the fix
        return f"[{table}] {message}" if not rest else f"{where} {key}: {message}"
    if kind in ("bool_type", "bool_parsing"):
        return f"{where} {key} must be true or false"
    hint = _hint(model, key)
    if hint is not None:
        return f"{where} {key} " + hint.text.format(input=error.get("input"))
    return f"{where} {key} {message}"


def _hint(model: type[BaseModel] | None, key: str) -> Hint | None:
    """The key's own hint before its type's (a folder name before 'a non-empty string')."""
    for name, field in (model.model_fields if model else {}).items():
        if key in (name, field.alias):
            hints = [item for item in field.metadata if isinstance(item, Hint)]
            for option in get_args(field.annotation) if not hints else ():  # `X | None`
                hints += [m for m in getattr(option, "__metadata__", ()) if isinstance(m, Hint)]
            return hints[-1] if hints else None  # the last: the most specific
    return None


def _source(item: SourceSettings, index: int, path: Path, timezone: ZoneInfo) -> Source:
    where = f"[[sources]] #{index}"
    name = item.name or item.location
    published_raw = item.published
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
    if item.kind == "text" and (item.url is None or published is None):
        raise ConfigError(
            f"{path}: {where} ({name}) is a saved text: "
            'give it url = "..." and published = "YYYY-MM-DD"'
        )
    return Source(
        name=name, kind=item.kind, location=item.location, url=item.url, published=published
    )


def starter_config(
    *,
    name: str,
    timezone: str,
    sender: str,
    base_url: str,
    postal_address: str | None = None,
    language: str = "en",
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
# Where readers' replies go (the reporter, the desk); an issue file's reply_to: overrides it.
# reply_to = "Asami Terajima <asami@example.org>"
# Public address of the web endpoints (unsubscribe, archive).
base_url = {q(base_url)}
# The language of every word a reader sees (en, uk, or one your theme brings a catalogue
# for): docs/languages.md.
language = {q(language)}
# One line about the newsletter, shown where readers choose among a database's newsletters.
# description = "Asami Terajima's week at the front, every Monday."
# The footer of every issue: where the sender can be reached by post (required by CAN-SPAM
# and most providers' terms) and why the reader gets the email.
{postal_line}
# reason = "You are receiving this because you subscribed to our weekly digest."
# The greeting's name when a subscriber gave none: "Hello, reader".
name_fallback = "reader"
# Whose articles `newsletter issue new` collects when no --author is given (an article by
# any of them, or by several, appears once): a weekly cron line then needs no flags.
# authors = ["Asami Terajima", "Illia Ponomarenko"]
# A logo for the masthead (https, about 2x the 40 px it is shown at): the name shows without.
# logo = "https://example.org/war-notes-logo.png"
# The key that signs confirm and unsubscribe links: `newsletter init` creates it with mode
# 0600 and lists it in .gitignore. NEWSLETTER_SECRET_KEY overrides it. Never share it.
# key_file = "newsletter.key"
# Sign-off (docs/approval.md): `issue request-approval` mails each approver a test copy with
# a link to approve it (from a phone) for `approval_hours`; the editor is who usually asks.
# approvers = ["Olha Koval <olha@example.org>"]
# editor = "Asami Terajima <asami@example.org>"
approval_hours = 72
# true: `send` refuses an issue no approver signed off; with 2, two approvers, neither the
# one who asked.
require_approval = false
approvals_needed = 1
# "passkey": only approvals made with the approver's own passkey count (`newsletter
# approvers passkey ADDRESS` mails them a link to make one); "link": their link does.
approval_proof = "link"

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


[delivery]
# Where mail goes: file://DIR (one .eml per message, relative to this file), console://, or
# smtp://[user@]host[:port] / smtps://host (password in NEWSLETTER_SMTP_PASSWORD).
# NEWSLETTER_TRANSPORT_URL overrides it.
transport = "file://outbox"
# DKIM signing of every issue (the signature covers both List-Unsubscribe headers): the
# selector published in DNS and the PEM private key (keep it outside the repository).
# dkim_selector = "news2022"
# dkim_key_file = "/etc/newsletter/dkim.pem"
# A second signature with Ed25519 (RFC 8463), beside the RSA one; PEM or dkimpy's base64.
# dkim_ed25519_selector = "news2022e"
# dkim_ed25519_key_file = "/etc/newsletter/dkim-ed25519.pem"
# How long a message refused with a 4xx (mailbox full, greylisting) is retried before it
# counts as failed; retries back off from 5 minutes to at most 6 hours.
retry_hours = 72
# Gmail's Feedback-ID header, to see complaint rates per campaign in Postmaster Tools.
# feedback_id = "war-notes:newsletter:example"
# The mailbox that takes returned mail. Set, each message's envelope sender becomes
# bounces+<signed token>@... (the MTA must deliver bounces+anything to it: Postfix does
# with its recipient_delimiter set to +), and List-Unsubscribe gains a mailto: there too.
# `newsletter bounces process` reads the mailbox (docs/bounces.md).
# bounce_address = "bounces@news.example.org"
# A seed list that gets every test send and every approval request's copy.
# test_recipients = ["Desk <desk@example.org>"]
# Pace: at most this many messages a second (send --rate overrides it), a day (a send that
# reaches it stops with exit 75; send --due goes on the next day), and a new domain's or
# IP's warm-up: the first day's count, multiplied by warmup_factor each day after the first
# send, up to daily_limit (docs/providers.md).
# rate = 20
# daily_limit = 50000
# warmup = 500
warmup_factor = 2
# Newsletters of this database sending from the same domain or IP share one quota and one
# warm-up: name each other here (their ids), each with the same daily_limit and warmup.
# quota_shared_with = ["war-notes-uk"]

[bounces]
# Soft bounces (mailbox full, a refusal that is not about the address) on this many
# distinct issues within soft_days make a subscription bounced; a delivery between that
# did not bounce starts the count again.
soft_limit = 3
soft_days = 30
# A bounce or complaint acts only on mail sent within this many days: the token that
# proves an older message is ours has had time to leak (mailto unsubscribes always act).
proof_days = 30
# Folders that processed mail, and mail no one could read, are moved to (Maildir, IMAP;
# an mbox file gets FILE.processed and FILE.unrecognised beside it).
processed_folder = "Processed"
unrecognised_folder = "Unrecognised"
# Amazon SES notifications through SNS are believed only from these topics, signed by
# Amazon's certificate (fetched from sns.REGION.amazonaws.com, or this pinned PEM file).
# ses_topic_arns = ["arn:aws:sns:eu-west-1:123456789012:ses-feedback"]
# ses_certificate_file = "/etc/newsletter/sns.pem"
# Webhook calls older than this many seconds are refused (replays); Mailgun's key comes from
# NEWSLETTER_MAILGUN_SIGNING_KEY.
webhook_max_age = 3600

[tracking]
# Article links (and the intro's and notes' links) in sent messages go through a signed
# redirect on base_url that counts clicks per issue and link, never per person
# (docs/privacy.md). false: links go straight to the articles.
clicks = true
# Also record which subscriber clicked (shown by `subscribers show`, erased with them).
per_subscriber = false
# A 1-pixel image that counts opens; Apple Mail and some proxies fetch every image, so
# the report separates those and says how little the number means.
opens = false

[welcome]
# When someone confirms a subscription they get a welcome mail, once, in the newsletter's
# language, with the latest issue's lead and headlines ("issue": the whole issue; "none").
enabled = true
include = "headlines"
# subject = "Welcome to War Notes"
# Your own words (Markdown), here or in a file beside this one; the theme's otherwise.
# text = "Thank you for joining. Every Monday, Asami's week at the front."
# text_file = "welcome.md"

[render]
# A folder with your own email.mjml.j2 / email.txt.j2 (any file you leave out comes from the
# default theme).
# templates = "theme"
# A "support us" block above the footer, linking here (a membership or donation page).
# support_url = "https://example.org/membership"
support_text = "Our reporting is free to read and paid for by readers."
# "Was this forwarded to you? Subscribe" in every issue.
forward_prompt = true

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
