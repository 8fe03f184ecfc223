"""Every word a reader sees, in the newsletter's language.

The words are gettext messages: English in the code and the theme (the source language),
translated in a catalogue per language shipped in the package
(`newsletter/locales/<language>.po`, read through Babel and compiled in memory once per
process). Dates, day and month names, plurals and the text's direction come from CLDR
through Babel, never from tables of our own. A message a catalogue lacks falls back to
English for that message alone (`missing` says which, for `issue check`). The editors' CLI
stays English.
"""

from __future__ import annotations

import functools
import gettext as gettext_module
import io
from datetime import date
from importlib import resources
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from newsletter.errors import ConfigError

SOURCE = "en"
LOCALES = "newsletter.locales"


def available() -> tuple[str, ...]:
    """The languages a reader can get: English and each shipped catalogue."""
    shipped = [
        entry.name.removesuffix(".po")
        for entry in resources.files(LOCALES).iterdir()
        if entry.name.endswith(".po")
    ]
    return (SOURCE, *sorted(shipped))


def check_language(tag: str) -> str:
    """A BCP 47 tag (`uk`, `en-GB`) as the catalogue it uses, or a ConfigError naming the
    languages there are and the fix."""
    try:
        locale = Locale.parse(tag.strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        locale = None
    choices = available()
    if locale is None or locale.language not in choices:
        raise ConfigError(
            f"no catalogue for the language {tag!r}: use one of {', '.join(choices)}, or "
            f"add newsletter/locales/{tag}.po"
        )
    return locale.language


@functools.lru_cache(maxsize=16)
def catalog(language: str) -> Catalog | None:
    """The language's catalogue as written (None for English, the source)."""
    if language == SOURCE:
        return None
    data = resources.files(LOCALES).joinpath(f"{language}.po").read_bytes()
    return read_po(io.BytesIO(data), locale=language)


@functools.lru_cache(maxsize=16)
def translations(language: str) -> gettext_module.NullTranslations:
    """gettext's translations for the language, compiled once; English returns the source
    text itself (and its plural rule)."""
    found = catalog(language)
    if found is None:
        return gettext_module.NullTranslations()
    compiled = io.BytesIO()
    write_mo(compiled, found)
    compiled.seek(0)
    return Translations(fp=compiled)


def missing(language: str, messages: set[str]) -> list[str]:
    """The messages a catalogue has no translation for (shown in English)."""
    found = catalog(language)
    if found is None:
        return []
    translated = {
        str(m.id if isinstance(m.id, str) else m.id[0])
        for m in found
        if m.id and m.string and (isinstance(m.string, str) or all(m.string))
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
