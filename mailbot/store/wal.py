"""SQLite's write-ahead log, synced by hand: the decisions' commits (`Store.transaction` with
`sync_later`) skip the fsync a FULL commit does, and `fsync_wal` does it for all of them at
once before anything acts on them (mailbot.run.pipeline's docstring says when)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Connection, Engine


def wal_path(engine: Engine) -> str | None:
    """The WAL file of a SQLite file store; None for any other store (nothing to sync by hand:
    every commit there is synced when it returns)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(database) + "-wal"


@contextmanager
def synced_later(conn: Connection) -> Iterator[None]:
    """This connection's next commit with synchronous=NORMAL: in the WAL when it returns (a
    killed process keeps it), on the disk at the next `fsync_wal` or FULL commit. Set outside
    any transaction, as SQLite requires; the connection goes back to FULL whatever happens,
    or is thrown away, never back in the pool syncing less."""
    driver = conn.connection.dbapi_connection
    driver.execute("PRAGMA synchronous=NORMAL")  # type: ignore[union-attr]
    try:
        yield
    finally:
        try:
            driver.execute("PRAGMA synchronous=FULL")  # type: ignore[union-attr]
        except Exception:
            conn.invalidate()
            raise


def fsync_wal(path: str) -> None:
    """Every commit so far on the disk, by this or any other process: one fsync of the WAL
    (what SQLite does itself at each FULL commit). No WAL file: everything was checkpointed,
    and the checkpoint synced it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_HELD = "mailbot.turn"  # in a connection's info: it holds the turn


class Turns:
    """Write transactions taken in turn by the processes of one pass (a pipeline and its
    decider, mailbot.run.decider), through an flock on a file beside the database.

    Why: SQLite lets one writer at a time and makes the others poll (busy_timeout sleeps 1, 2,
    5, 10... ms between tries), so two processes that both commit hundreds of times a second
    spend most of their time asleep waiting for a lock that was free long ago. A blocked flock
    wakes the moment it is released. Only the processes that share one Turns take turns; any
    other process (the console, another instance) still meets SQLite's own lock, as before."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def take(self, holder: dict[Any, Any]) -> None:
        """Wait for the turn, unless `holder` (a connection's info) has it already."""
        if not holder.get(_HELD):
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            holder[_HELD] = True

    def give_back(self, holder: dict[Any, Any]) -> None:
        """The turn `holder` took, if any, for the next one."""
        if holder.pop(_HELD, False):
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    @contextmanager
    def turn(self) -> Iterator[None]:
        holder: dict[Any, Any] = {}
        self.take(holder)
        try:
            yield
        finally:
            self.give_back(holder)

    def close(self) -> None:
        os.close(self._fd)
