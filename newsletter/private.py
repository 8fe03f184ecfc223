"""Files that hold subscribers' addresses or working unsubscribe links (the database, the
outbox, exports) are created readable by their owner only, whatever the umask: under the
usual 022 they would otherwise be 0644, open to every account on the machine."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

MODE = 0o600


def tighten(path: Path) -> None:
    """Take group and other permissions off an existing file (a database made by an older
    version, or a -wal file SQLite made before it was ours to set)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        path.chmod(stat.S_IMODE(mode) & ~(stat.S_IRWXG | stat.S_IRWXO))


def touch(path: Path) -> None:
    """Create an empty private file unless one exists: SQLite then keeps its mode, and
    gives its -wal and -shm files the same."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE))
    except FileExistsError:
        tighten(path)


def write_bytes(path: Path, data: bytes) -> None:
    """Write a new private file through a temporary name, so it appears whole or not at all."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, MODE)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(temporary, MODE)  # an older temporary file may have had another mode
    temporary.replace(path)


@contextmanager
def open_text(path: Path) -> Iterator[TextIO]:
    """A private text file written through a temporary name and renamed on success."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, MODE)
    os.chmod(temporary, MODE)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            yield handle
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    temporary.replace(path)
