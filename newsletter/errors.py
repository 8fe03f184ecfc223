"""Errors that reach the user as one line, never as a traceback, and the exit codes.

The CLI catches `NewsletterError` at its edge and prints `str(error)`; so every message
names the input it is about and, where there is one, the fix.

Every command exits with one of the codes below: `EXIT_CODES` is the table, which
docs/exit-codes.md repeats (a test keeps the two equal) and tests/test_exit_codes.py
checks every command against.
"""

from typing import Final, Literal

DONE: Final = 0
FAILED: Final = 1
USAGE: Final = 2
SOFTWARE: Final = 70
TEMPFAIL: Final = 75

EXIT_CODES: Final = (
    (DONE, "done, nothing was due, or another process is already sending it"),
    (FAILED, "some of the work failed: recipients refused or in doubt, a source unreadable, "
     "rows rejected, a check failed; the rest was done"),
    (USAGE, "usage or input to fix: a bad flag or value, an unknown or unapproved issue, a "
     "missing or invalid configuration, an unreadable file"),
    (TEMPFAIL, "try again later: the relay is unreachable, rows are deferred or the send "
     "paused (sysexits EX_TEMPFAIL)"),
    (SOFTWARE, "a bug: an unexpected error (sysexits EX_SOFTWARE); please report it"),
)  # fmt: skip


class NewsletterError(Exception):
    """A failure the user can act on; `exit_code` is what the CLI returns."""

    exit_code: int = FAILED


class UsageError(NewsletterError):
    """The command line or the configuration is wrong (exit 2)."""

    exit_code = USAGE


class ConfigError(UsageError):
    """newsletter.toml or a NEWSLETTER_* variable is missing or invalid."""


class DatabaseError(NewsletterError):
    """The database cannot be opened or migrated."""

    exit_code = USAGE


class SourceError(NewsletterError):
    """A source (feed, page, saved text) cannot be read or understood."""


class NotFoundError(UsageError):
    """A named thing (issue, article, subscriber) does not exist: the input is wrong (2)."""


class IssueFileError(UsageError):
    """An issue file that cannot be read; the message names the file and line (exit 2: the
    editor fixes the file)."""


class RenderError(NewsletterError):
    """A template or MJML problem; the message names the template file and line."""


class CheckFailed(NewsletterError):
    """The issue has check errors, so it cannot be approved."""


class InvalidAddress(NewsletterError):
    """An address that cannot be a subscriber's; the message is the reason."""

    exit_code = USAGE


class UnreadableFile(NewsletterError):
    """The CSV file as a whole cannot be read (exit 2)."""

    exit_code = USAGE


# How far a message got when the transport failed: `before-dot` means the server cannot
# have it, `after-dot` that it may (the reply never came).
Stage = Literal["connect", "envelope", "before-dot", "after-dot", "reply"]


class TransportError(NewsletterError):
    """The message was not accepted. `code` is the SMTP reply code when there was one;
    `stage` says how far it got (see Stage)."""

    def __init__(self, message: str, code: int | None = None, stage: Stage = "reply") -> None:
        super().__init__(message)
        self.code = code
        self.stage = stage
        # Seconds the other side asked us to wait (HTTP Retry-After), when it said.
        self.retry_after: float | None = None
        # Whether `code` is a real SMTP reply: only then does a 5.1.x in the words mean "no
        # such user" (a provider's words quote anything, even another server's reply).
        self.smtp = True
        # For a command: a refusal is a failure; anything else may pass later.
        self.exit_code = FAILED if self.permanent else TEMPFAIL

    @property
    def permanent(self) -> bool:
        return self.code is not None and 500 <= self.code < 600


class ProviderPaused(NewsletterError):
    """A provider's answer that is not about one reader and would be the same for every one
    (a malformed request, a redirect, a refusal of the request itself): the send pauses,
    nobody is marked, and the cause is named (exit 75: fix it, then run the send again)."""

    exit_code = TEMPFAIL


class IdentityLost(NewsletterError):
    """The connection holding a worker's identity lock is gone: peers may now count the
    worker's rows in doubt, so it must claim no more (exit 75: a later run goes on)."""

    exit_code = TEMPFAIL
