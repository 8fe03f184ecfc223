"""Every word a reader sees, in the newsletter's language.

The words are gettext messages: English in the code and the theme (the source language),
translated in a catalogue per language shipped in the package
(`newsletter/locales/<language>.po`, read through Babel and compiled in memory once per
process). Dates, day and month names, plurals and the text's direction come from CLDR
through Babel, never from tables of our own. A message a catalogue lacks falls back to
English for that message alone (`missing` says which, for `issue check`). A newsletter's
own theme may bring a catalogue (`THEME/locales/<language>.po`): its messages are added to
the package's and win over them, and it may be a language the package has no catalogue for.
The editors' CLI stays English.
"""

from __future__ import annotations

import functools
import gettext as gettext_module
import io
import logging
import re
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from newsletter.errors import ConfigError

SOURCE = "en"
LOCALES = "newsletter.locales"


def available(theme: Path | None = None) -> tuple[str, ...]:
    """The languages a reader can get: English, each shipped catalogue and the theme's."""
    shipped = {
        entry.name.removesuffix(".po")
        for entry in resources.files(LOCALES).iterdir()
        if entry.name.endswith(".po")
    }
    if theme is not None and (theme / "locales").is_dir():
        shipped |= {path.stem for path in (theme / "locales").glob("*.po")}
    return (SOURCE, *sorted(shipped - {SOURCE}))


def check_language(tag: str) -> str:
    """A BCP 47 tag (`uk`, `en-GB`) as the language CLDR knows, or a ConfigError (whether a
    catalogue exists for it is `require`'s question: the theme may bring one)."""
    try:
        return str(Locale.parse(tag.strip().replace("-", "_")).language)
    except (UnknownLocaleError, ValueError, TypeError):
        raise ConfigError(
            f"{tag!r} is not a language CLDR knows: use a BCP 47 tag such as "
            f"{', '.join(available())}"
        ) from None


def require(language: str, theme: Path | None = None) -> None:
    """A ConfigError naming the languages there are and the fix, unless the package or the
    theme has a catalogue for the language."""
    choices = available(theme)
    if language not in choices:
        where = f"{theme}/locales/{language}.po" if theme else f"THEME/locales/{language}.po"
        raise ConfigError(
            f"no catalogue for the language {language!r}: use one of {', '.join(choices)}, "
            f"or write {where} beside your theme ([render] templates; docs/languages.md)"
        )
    translations(language, theme)  # read and checked now, with the config: never mid-send


def _theme_file(language: str, theme: Path | None) -> Path | None:
    if theme is None:
        return None
    path = theme / "locales" / f"{language}.po"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=16)
def _shipped(language: str) -> Catalog | None:
    source = resources.files(LOCALES).joinpath(f"{language}.po")
    if language == SOURCE or not source.is_file():
        return None
    return read_po(io.BytesIO(source.read_bytes()), locale=language)


def catalog(language: str, theme: Path | None = None) -> Catalog | None:
    """The language's catalogue as written: the package's, with the theme's messages added
    and winning (None for English without a theme catalogue)."""
    own = _theme_file(language, theme)
    if own is None:
        return _shipped(language)
    return _merged(language, own, own.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _merged(language: str, own: Path, mtime: int) -> Catalog:
    """(`mtime` in the key: an editor's edit is read again.)"""
    try:
        theirs = read_po(io.BytesIO(own.read_bytes()), locale=language)
    except Exception as error:  # Babel raises several kinds on a malformed file
        raise ConfigError(f"{own}: not a gettext catalogue Babel can read ({error})") from None
    for message in theirs:
        if message.id and _translated(message.string):
            _check_message(own, message)
    merged = Catalog(locale=language)
    base = _shipped(language)
    # Catalog(locale=...) takes the plural rule CLDR gives the language. The theme's go in
    # first: a message set again keeps the string it had.
    for source in [theirs] + ([base] if base is not None else []):
        for message in source:
            if message.id and _translated(message.string) and message.id not in merged:
                merged[message.id] = message
    return merged


_PLACEHOLDER = re.compile(r"%(?:\((\w+)\))?[-#0 +]*\d*(?:\.\d+)?([a-zA-Z%])")
_TAG = re.compile(r"<[^>]*>|&[#\w]+;")


def _check_message(own: Path, message: Any) -> None:
    """A theme's translation must fill in as its message does: the same %(name)s
    placeholders (a wrong one made `issue check` crash and every subscribe POST answer 500),
    and no markup the message has not (a translation goes into the page as it is, where
    the values filled into it are escaped)."""
    ids = [message.id] if isinstance(message.id, str) else list(message.id)
    strings = [message.string] if isinstance(message.string, str) else list(message.string)
    allowed = {name for text in ids for name, _ in _PLACEHOLDER.findall(text)}
    kinds = {kind for text in ids for _, kind in _PLACEHOLDER.findall(text)} | {"%"}
    tags = sorted(tag for tag in _TAG.findall(ids[0]))
    where = f"{own}:{message.lineno}"
    for text in strings:
        for name, kind in _PLACEHOLDER.findall(text):
            if kind == "%":
                continue
            if (name and name not in allowed) or (not name and allowed) or kind not in kinds:
                wanted = ", ".join(f"%({n})s" for n in sorted(allowed)) or "none"
                raise ConfigError(
                    f"{where}: the translation of {ids[0]!r} has the placeholder "
                    f"{'%(' + name + ')' if name else '%'}{kind}; its message has {wanted}: "
                    "use the message's own placeholders"
                )
        if sorted(_TAG.findall(text)) != tags:
            raise ConfigError(
                f"{where}: the translation of {ids[0]!r} has markup its message has not "
                "(a translation is inserted as it is): write it as plain text"
            )


def _translated(string: str | tuple[str, ...] | list[str] | None) -> bool:
    return bool(string) and (isinstance(string, str) or all(string or ()))


def translations(language: str, theme: Path | None = None) -> gettext_module.NullTranslations:
    """gettext's translations for the language (and the theme's catalogue), compiled once;
    English returns the source text itself (and its plural rule). A theme catalogue edited
    into a broken one while a server runs keeps the last good one there (logged): the
    config's check refuses it at the next start."""
    own = _theme_file(language, theme)
    try:
        found = _translations(language, own, own.stat().st_mtime_ns if own else 0)
    except ConfigError as error:
        previous = _last_good.get((language, own))
        if previous is None:
            raise
        log.error("%s; the catalogue read before goes on being used", error)
        return previous
    _last_good[(language, own)] = found
    return found


_last_good: dict[tuple[str, Path | None], gettext_module.NullTranslations] = {}
log = logging.getLogger("newsletter.languages")


@functools.lru_cache(maxsize=16)
def _translations(language: str, own: Path | None, mtime: int) -> gettext_module.NullTranslations:
    found = _merged(language, own, mtime) if own is not None else _shipped(language)
    if found is None:
        return gettext_module.NullTranslations()
    compiled = io.BytesIO()
    write_mo(compiled, found)
    compiled.seek(0)
    return Translations(fp=compiled)


def missing(language: str, messages: set[str], theme: Path | None = None) -> list[str]:
    """The messages a catalogue has no translation for (shown in English)."""
    if language == SOURCE:
        return []
    found = catalog(language, theme)
    if found is None:
        return sorted(messages)
    translated = {
        str(m.id if isinstance(m.id, str) else m.id[0])
        for m in found
        if m.id and _translated(m.string)
    }
    return sorted(messages - translated)


def messages(theme: Path | None = None) -> set[str]:
    """Every message the project writes for readers: `_()` and `ngettext()` in the default
    theme (and a newsletter's own, when given) and in the package's code."""
    package = Path(str(resources.files("newsletter")))
    found = theme_messages(Path(str(resources.files("newsletter.theme"))))
    found |= _extract([(package, [("**.py", "python")])])
    return found | (theme_messages(theme) if theme is not None else set())


def theme_messages(folder: Path) -> set[str]:
    """The messages a theme's templates write (fast: `issue check` reads a newsletter's
    own theme with it)."""
    return _extract([(folder, [("**.j2", "jinja2.ext:babel_extract")])])


def _extract(sources: list[tuple[Path, list[tuple[str, str]]]]) -> set[str]:
    from babel.messages.extract import extract_from_dir

    found: set[str] = set()
    for folder, method_map in sources:
        for _, _, message, _, _ in extract_from_dir(
            str(folder),
            method_map,
            keywords={"_": None, "gettext": None, "ngettext": (1, 2)},
            options_map={"**.j2": {"extensions": "jinja2.ext.i18n"}},
        ):
            found.add(message if isinstance(message, str) else message[0])
    return found


@functools.lru_cache(maxsize=64)
def display_name(language: str, shown_in: str) -> str:
    """A language's name in another's words, as CLDR has it: `uk` in English is
    "Ukrainian", `en` in Ukrainian "англійська"."""
    return str(Locale.parse(language).get_display_name(shown_in) or language)


@functools.lru_cache(maxsize=16)
def direction(language: str) -> str:
    """`ltr` or `rtl`, as CLDR knows the language."""
    return str(Locale.parse(language).text_direction)


def long_date(day: date, language: str) -> str:
    """`20 December 2022`, `20 грудня 2022`: the day, the month's name in the form CLDR
    gives for a date, the year."""
    return str(format_date(day, "d MMMM y", locale=language))


def week_range(first: date, last: date, language: str) -> str:
    """`19–25 December 2022`, `19–25 грудня 2022`; `28 November – 4 December 2022`;
    `26 December 2022 – 1 January 2023`."""
    end = long_date(last, language)
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}–{end}"
    if first.year == last.year:
        return f"{format_date(first, 'd MMMM', locale=language)} – {end}"
    return f"{long_date(first, language)} – {end}"
