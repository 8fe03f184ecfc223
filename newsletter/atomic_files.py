"""Writing files safely: whole or not at all, and private when they hold personal data.

Every file the program writes goes through a temporary name in the same folder and a rename,
so a crash or a full disk never leaves half an issue file, config or outbox message. Files
that hold subscribers' addresses or working unsubscribe links (the database, outbox messages,
exports) are created readable by their owner only, whatever the umask: under the usual 022
they would otherwise be 0644, open to every account on the machine.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

PRIVATE = 0o600


def atomic_write(path: Path, data: bytes | str, *, private: bool = False) -> None:
    """Write `data` (text as UTF-8) to `path` through a temporary file and a rename."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with _replacing(path, private) as descriptor, os.fdopen(descriptor, "wb") as handle:
        handle.write(payload)


@contextmanager
def atomic_open(path: Path, *, private: bool = False) -> Iterator[TextIO]:
    """A UTF-8 text file (line ends as written) that appears at `path` when the block ends
    without an error, and not at all when it fails."""
    with (
        _replacing(path, private) as descriptor,
        os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle,
    ):
        yield handle


@contextmanager
def _replacing(path: Path, private: bool) -> Iterator[int]:
    temporary = path.with_name(f".{path.name}.tmp")
    mode = PRIVATE if private else 0o666  # the umask applies to the latter, as for open()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    if private:
        os.chmod(temporary, PRIVATE)  # an older temporary file may have had another mode
    try:
        yield descriptor
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    temporary.replace(path)


def tighten(path: Path) -> None:
    """Take group and other permissions off an existing file (a database made by an older
    version, or a -wal file SQLite made before it was ours to set)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        path.chmod(stat.S_IMODE(mode) & ~(stat.S_IRWXG | stat.S_IRWXO))


def touch_private(path: Path) -> None:
    """Create an empty private file unless one exists (then tighten it): SQLite keeps the
    mode of a database file it opens, and gives its -wal and -shm files the same."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE))
    except FileExistsError:
        tighten(path)
