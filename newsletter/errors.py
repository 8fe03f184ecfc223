"""Errors that reach the user as one line, never as a traceback.

The CLI catches `NewsletterError` at its edge and prints `str(error)`; so every message
names the input it is about and, where there is one, the fix.
"""


class NewsletterError(Exception):
    """A failure the user can act on; `exit_code` is what the CLI returns."""

    exit_code = 1


class UsageError(NewsletterError):
    """The command line or the configuration is wrong (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """newsletter.toml or a NEWSLETTER_* variable is missing or invalid."""


class DatabaseError(NewsletterError):
    """The database cannot be opened or migrated."""

    exit_code = 2


class SourceError(NewsletterError):
    """A source (feed, page, saved text) cannot be read or understood."""


class NotFoundError(NewsletterError):
    """A named thing (article, source) does not exist."""
