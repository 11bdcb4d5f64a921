"""SQLite's write-ahead log, synced by hand: the decisions' commits (`Store.transaction` with
`sync_later`) skip the fsync a FULL commit does, and `fsync_wal` does it for all of them at
once before anything acts on them (mailbot.run.pipeline's docstring says when)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the courier's helper imports this module and nothing of SQLAlchemy
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
