"""The store's side of `mailbot dry-run`: a snapshot whose every write is undone, the stored mails
a dry run decides again, and a mail's own decision taken out of the snapshot.

`snapshot(store)` yields a Store the whole decision path can write to as it always does: every
`transaction()` it opens is a SAVEPOINT inside ONE outer transaction on one connection, and the
outer transaction is rolled back at the end, whatever happens. So the mails of a dry run see one
another's effects (a key bound for the first is gone from the pool for the second, throttles
count them) exactly as one pass would, and nothing is ever committed.

On SQLite the snapshot is a copy of the database file (SQLite's online backup: consistent even
while `mailbot run` writes in WAL mode), in a temporary folder removed at the end, and the same
outer transaction runs on the copy: the live file is only read, so a running service is never
locked out for the length of a dry run. pysqlite would commit at the first RELEASE of a
SAVEPOINT (it does not emit BEGIN itself), so the copy's engine emits BEGIN explicitly.

On PostgreSQL the outer transaction runs on the live database, REPEATABLE READ (one consistent
view for the whole run). Rows the dry run writes stay locked until it ends: a running pass skips
the free keys it took (SKIP LOCKED) and takes the next ones.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot.store.database import Store
from mailbot.store.faults import store_faults
from mailbot.store.schema import (
    keys,
    mails,
    outbox,
    outbox_recipients,
    requests,
    review_actions,
    reviews,
    unlock_mails,
    unlocks,
)
from mailbot.store.schema import metadata as _metadata


class SnapshotStore(Store):
    """A Store on one connection inside one outer transaction: `transaction()` is a SAVEPOINT
    (rolled back alone when its block raises, as a real transaction would be), and nothing is
    committed; `snapshot()` rolls the outer transaction back."""

    def __init__(self, engine: sa.Engine, conn: Connection) -> None:
        # Not Store.__init__: the engine exists already (the live one, or the copy's).
        self.url = str(engine.url)
        self.engine = engine
        self._conn = conn
        self._wal = None  # nothing written here is ever acted on: nothing to sync

    def migrate(self, revision: str = "head") -> None:
        raise RuntimeError("a dry run's snapshot is never migrated")

    @contextlib.contextmanager
    def transaction(self, *, sync_later: bool = False) -> Iterator[Connection]:
        with store_faults(self.engine.url), self._conn.begin_nested():
            yield self._conn

    def close(self) -> None:
        """Nothing: `snapshot()` ends the outer transaction and closes the connection."""


@contextlib.contextmanager
def snapshot(store: Store) -> Iterator[SnapshotStore]:
    """A Store to decide in; whatever is written there is gone when the block ends."""
    if store.engine.dialect.name == "sqlite":
        with _sqlite_copy(store) as engine:
            yield from _rolled_back(engine)
        return
    yield from _rolled_back(store.engine, isolation="REPEATABLE READ")


def _rolled_back(engine: sa.Engine, isolation: str | None = None) -> Iterator[SnapshotStore]:
    conn = engine.connect()
    if isolation:
        conn = conn.execution_options(isolation_level=isolation)
    outer = conn.begin()
    try:
        yield SnapshotStore(engine, conn)
    finally:
        outer.rollback()
        conn.close()


@contextlib.contextmanager
def _sqlite_copy(store: Store) -> Iterator[sa.Engine]:
    folder = Path(tempfile.mkdtemp(prefix="mailbot-dry-run-"))
    copy = folder / "snapshot.db"
    raw = store.engine.raw_connection()
    try:
        target = sqlite3.connect(copy)
        try:
            raw.driver_connection.backup(target)
        finally:
            target.close()
    finally:
        raw.close()
    engine = sa.create_engine(f"sqlite:///{copy}")

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite: no implicit BEGIN / COMMIT
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    try:
        yield engine
    finally:
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


# --- what a dry run decides again --------------------------------------------------------------

def stored_since(conn: Connection, since: dt.datetime) -> list[Any]:
    """The mails received since `since` (naive UTC), oldest first, whole rows."""
    return conn.execute(sa.select(mails).where(mails.c.received_at >= since)
                        .order_by(mails.c.id)).all()


def forget_decisions(conn: Connection, mail_ids: Sequence[int], *, run_id: str,
                     claim_expires_at: dt.datetime) -> None:
    """Take these stored mails' own decisions out of the snapshot, so deciding them again (in
    order) sees the store as it is without them: their requests, replies, review tasks and the
    unlock entries they opened are deleted, the keys bound to their requests go back to the
    pool, and each mail (but a duplicate, which stays one) is `received` again, claimed by the
    dry run. A few statements per 500 mails, not per mail. Only ever inside a snapshot."""
    for start in range(0, len(mail_ids), _CHUNK):
        _forget(conn, list(mail_ids[start:start + _CHUNK]), run_id, claim_expires_at)


_CHUNK = 500  # ids per IN (...) list


def _ids(conn: Connection, query: Any) -> list[int]:
    return [i for (i,) in conn.execute(query)]


def _forget(conn: Connection, chunk: list[int], run_id: str,
            claim_expires_at: dt.datetime) -> None:
    asked = _ids(conn, sa.select(requests.c.id).where(requests.c.mail.in_(chunk)))
    opened = _ids(conn, sa.select(unlocks.c.id).where(
        sa.or_(unlocks.c.mail.in_(chunk), unlocks.c.request.in_(asked) if asked else sa.false())))
    tasks = _ids(conn, sa.select(reviews.c.id).where(sa.or_(
        reviews.c.mail.in_(chunk), reviews.c.request.in_(asked) if asked else sa.false(),
        reviews.c.unlock.in_(opened) if opened else sa.false())))
    messages = _ids(conn, sa.select(outbox.c.id).where(outbox.c.mail.in_(chunk)))
    if tasks:
        conn.execute(review_actions.delete().where(review_actions.c.review.in_(tasks)))
        conn.execute(reviews.delete().where(reviews.c.id.in_(tasks)))
    conn.execute(unlock_mails.delete().where(sa.or_(
        unlock_mails.c.mail.in_(chunk),
        unlock_mails.c.unlock.in_(opened) if opened else sa.false())))
    if opened:
        conn.execute(unlocks.delete().where(unlocks.c.id.in_(opened)))
    if asked:
        conn.execute(keys.update().where(keys.c.request.in_(asked))
                     .values(serial=None, request=None, assigned_at=None))
        conn.execute(requests.delete().where(requests.c.id.in_(asked)))
    if messages:
        conn.execute(outbox_recipients.delete().where(outbox_recipients.c.message.in_(messages)))
        conn.execute(outbox.delete().where(outbox.c.id.in_(messages)))
    conn.execute(mails.update().where(mails.c.id.in_(chunk), mails.c.status != "duplicate")
                 .values(status="received", outcome=None, folder=None, filed=False,
                         filed_at=None, decided_at=None, error=None, claimed_by=run_id,
                         claim_expires_at=claim_expires_at))


def mail_row(conn: Connection, mail: int) -> Any:
    return conn.execute(sa.select(mails).where(mails.c.id == mail)).one()


def requests_of(conn: Connection, mail: int) -> list[Any]:
    return conn.execute(sa.select(requests).where(requests.c.mail == mail)
                        .order_by(requests.c.position)).all()


def messages_of(conn: Connection, mail: int) -> list[Any]:
    return conn.execute(sa.select(outbox).where(outbox.c.mail == mail)
                        .order_by(outbox.c.id)).all()


def table_names() -> Sequence[str]:
    """Every table of the schema (the dry-run tests compare each before and after)."""
    return [t.name for t in _metadata.sorted_tables]
