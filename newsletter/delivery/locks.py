"""One sender per issue at a time, across processes and machines.

On PostgreSQL a session advisory lock: the server releases it the moment the holding
connection dies, however the process ended. On SQLite (one machine by design) a row in
`run_locks`: taken by inserting it (atomic on its primary key), released by deleting it, and
taken over when the process that holds it is no longer alive on this host. This is what
makes two timers firing at once, or a run started while a slow one goes on, harmless.

Senders started with `--worker` (PostgreSQL only) share an issue instead: each takes the
issue's lock in shared mode, so they exclude a plain sender but not each other, and holds an
advisory lock on its own identity for as long as it runs. Another sender that finds rows
left in `sending` asks the server whether that identity's lock is still held: if not, its
holder is gone (crashed, killed, its machine down) and those rows are in doubt.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col

from newsletter.errors import IdentityLost
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
def run_lock(engine: Engine, name: str, *, shared: bool = False) -> Iterator[bool]:
    """Yields True when this process holds the lock for the block, False when another does.
    `shared` (PostgreSQL only): any number of shared holders, but none while an exclusive
    one holds it."""
    if engine.dialect.name == "postgresql":
        kind = "_shared" if shared else ""
        with engine.connect() as connection:
            # Advisory locks are per database, not per schema: two newsletters sharing a
            # database in their own schemas would otherwise hold each other's issue 1.
            schema = connection.execute(sa.text("SELECT current_schema()")).scalar()
            number = _lock_number(f"{schema}\x00{name}")
            got = bool(
                connection.execute(
                    sa.text(f"SELECT pg_try_advisory_lock{kind}(:n)"), {"n": number}
                ).scalar()
            )
            connection.commit()
            try:
                yield got
            finally:
                if got:
                    connection.execute(
                        sa.text(f"SELECT pg_advisory_unlock{kind}(:n)"), {"n": number}
                    )
                    connection.commit()
        return
    if shared:
        raise ValueError("shared run locks need PostgreSQL")
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
                session.add(RunLock(name=name, host=host, pid=pid, taken_at=datetime.now(UTC)))
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


@dataclass
class SenderIdentity:
    """A worker's name for the rows it claims (`host:pid:random`), and the connection that
    holds its advisory lock (None off PostgreSQL)."""

    name: str
    connection: Connection | None = None

    def confirm(self) -> None:
        """Raises IdentityLost unless the lock's connection still answers. Called before
        each claim; the query also keeps the connection from being cut as idle."""
        if self.connection is None:
            return
        try:
            self.connection.execute(sa.text("SELECT 1"))
            self.connection.commit()
        except SQLAlchemyError:
            raise IdentityLost(
                f"lost the database connection that holds worker {self.name}'s identity; "
                "claiming no more (its rows may be reported unknown by the other workers)"
            ) from None


@contextmanager
def sender_identity(engine: Engine) -> Iterator[SenderIdentity]:
    """This worker's identity, held as an advisory lock on a connection of its own until
    the block ends (see `sender_alive`), and named in pg_stat_activity's application_name."""
    name = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"
    if engine.dialect.name != "postgresql":
        yield SenderIdentity(name)
        return
    number = _lock_number(f"sender:{name}")
    with engine.connect() as connection:
        connection.execute(
            sa.text("SELECT set_config('application_name', :a, false)"),
            {"a": f"newsletter worker {name}"[:63]},
        )
        connection.execute(sa.text("SELECT pg_advisory_lock(:n)"), {"n": number})
        connection.commit()
        try:
            yield SenderIdentity(name, connection)
        finally:
            try:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:n)"), {"n": number})
                # The pool may hand this connection to someone else: not under our name.
                connection.execute(sa.text("SELECT set_config('application_name', '', false)"))
                connection.commit()
            except SQLAlchemyError:
                connection.invalidate()  # the connection is gone, and the lock with it


def sender_alive(engine: Engine, identity: str) -> bool:
    """Whether the sender of that identity still runs: its lock is held. PostgreSQL frees a
    session's advisory locks the moment its connection ends, however the process ended.
    (Off PostgreSQL there are no workers to ask about.)"""
    if engine.dialect.name != "postgresql":
        return False
    number = _lock_number(f"sender:{identity}")
    with engine.connect() as connection:
        free = bool(
            connection.execute(sa.text("SELECT pg_try_advisory_lock(:n)"), {"n": number}).scalar()
        )
        if free:
            connection.execute(sa.text("SELECT pg_advisory_unlock(:n)"), {"n": number})
        connection.commit()
    return not free
