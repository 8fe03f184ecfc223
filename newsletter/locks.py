"""One sender per issue at a time, across processes and machines.

On PostgreSQL a session advisory lock: the server releases it the moment the holding
connection dies, however the process ended. On SQLite (one machine by design) a row in
`run_locks`: taken by inserting it (atomic on its primary key), released by deleting it, and
taken over when the process that holds it is no longer alive on this host. This is what
makes two timers firing at once, or a run started while a slow one goes on, harmless.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from newsletter.models import RunLock


def _lock_number(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(engine: Engine, name: str) -> Iterator[bool]:
    """Yields True when this process holds the lock for the block, False when another does."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            number = _lock_number(name)
            got = bool(
                connection.execute(
                    sa.text("SELECT pg_try_advisory_lock(:n)"), {"n": number}
                ).scalar()
            )
            connection.commit()
            try:
                yield got
            finally:
                if got:
                    connection.execute(sa.text("SELECT pg_advisory_unlock(:n)"), {"n": number})
                    connection.commit()
        return
    host, pid = socket.gethostname(), os.getpid()
    got = _take_row(engine, name, host, pid)
    try:
        yield got
    finally:
        if got:
            with Session(engine) as session:
                session.execute(
                    sa.delete(RunLock).where(
                        col(RunLock.name) == name,
                        col(RunLock.host) == host,
                        col(RunLock.pid) == pid,
                    )
                )
                session.commit()


def _take_row(engine: Engine, name: str, host: str, pid: int) -> bool:
    for _ in range(2):
        with Session(engine) as session:
            try:
                session.add(RunLock(name=name, host=host, pid=pid, heartbeat_at=datetime.now(UTC)))
                session.commit()
                return True
            except IntegrityError:
                session.rollback()
            holder = session.get(RunLock, name)
            if holder is None:
                continue
            if holder.host != host or _alive(holder.pid):
                return False
            # The holder died (kill -9, power loss): remove exactly its row and try again.
            session.execute(
                sa.delete(RunLock).where(
                    col(RunLock.name) == name,
                    col(RunLock.host) == holder.host,
                    col(RunLock.pid) == holder.pid,
                )
            )
            session.commit()
    return False
