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
view for the whole run). Rows the dry run writes stay locked until it ends, so it must write no
row a running pass needs: above all the free keys of the pool. A running pass skips a locked
key (SKIP LOCKED) as taken, and with few keys left a real customer would be told their key was
being prepared for as long as a dry run lasted. So there the key pool is kept in this object:
a key the dry run gives is picked with a plain read, remembered here as bound, and never
written (nor named by the request's foreign key, whose check would lock it FOR KEY SHARE); the
look-ups of bound keys see what it remembers. What a dry run still locks (the stored mails it
decides again and their rows) is never what a pass deciding new mail writes.
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

from mailbot.store.database import BoundKey, Store, utcnow
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
    committed; `snapshot()` rolls the outer transaction back. `live`: the outer transaction is
    on the live database, and the keys it gives are kept here, not written (module docstring)."""

    def __init__(self, engine: sa.Engine, conn: Connection, *, live: bool = False) -> None:
        # Not Store.__init__: the engine exists already (the live one, or the copy's).
        self.url = str(engine.url)
        self.engine = engine
        self._conn = conn
        self._live = live
        self._given: dict[str, BoundKey] = {}  # serial -> the key this dry run gave it
        self._given_ids: set[int] = set()
        self._wal = None  # nothing written here is ever acted on: nothing to sync

    def migrate(self, revision: str = "head") -> None:
        raise RuntimeError("a dry run's snapshot is never migrated")

    @contextlib.contextmanager
    def transaction(self, *, sync_later: bool = False) -> Iterator[Connection]:
        with store_faults(self.engine.url), self._conn.begin_nested():
            yield self._conn

    def close(self) -> None:
        """Nothing: `snapshot()` ends the outer transaction and closes the connection."""

    # -- the key pool of a dry run on the live database -----------------------------------

    def assign_key(self, conn: Connection, *, system: str, serial: str) -> Any | None:
        if not self._live:
            return super().assign_key(conn, system=system, serial=serial)
        query = (sa.select(keys).where(keys.c.system == system, keys.c.serial.is_(None))
                 .order_by(keys.c.id).limit(1))
        if self._given_ids:
            query = query.where(keys.c.id.not_in(sorted(self._given_ids)))
        row = conn.execute(query).first()  # no FOR UPDATE: nothing of the live pool is locked
        if row is None:
            return None
        given = BoundKey(row.id, row.system, row.key, serial, None, row.imported_at, utcnow())
        self._given[serial], self._given_ids = given, self._given_ids | {row.id}
        return given

    def key_for_serial(self, conn: Connection, serial: str) -> Any | None:
        if serial in self._given:
            return self._given[serial]
        return super().key_for_serial(conn, serial)

    def keys_for_serials(self, conn: Connection, serials: Sequence[str]) -> dict[str, Any]:
        found = super().keys_for_serials(conn, [s for s in serials if s not in self._given])
        found.update((s, self._given[s]) for s in serials if s in self._given)
        return found

    def licence_and_key(self, conn: Connection, serial: str) -> tuple[Any | None,
                                                                   dict[str, Any] | None]:
        row, bound = super().licence_and_key(conn, serial)
        if row is not None and serial in self._given:
            bound = {serial: self._given[serial]}
        return row, bound

    def add_request(self, conn: Connection, *, key_id: int | None, **fields: Any) -> int:
        # A key only this object knows is bound stays out of the row: its foreign key check
        # would lock the live key FOR KEY SHARE.
        return super().add_request(
            conn, key_id=None if key_id in self._given_ids else key_id, **fields)

    def bind_keys_to_requests(self, conn: Connection, binds: Sequence[tuple[int, int]]) -> None:
        super().bind_keys_to_requests(conn, [b for b in binds if b[0] not in self._given_ids])

    def bind_key_to_request(self, conn: Connection, key_id: int, request_id: int) -> None:
        if key_id not in self._given_ids:
            super().bind_key_to_request(conn, key_id, request_id)


@contextlib.contextmanager
def snapshot(store: Store) -> Iterator[SnapshotStore]:
    """A Store to decide in; whatever is written there is gone when the block ends."""
    if store.engine.dialect.name == "sqlite":
        with _sqlite_copy(store) as engine:
            yield from _rolled_back(engine)
        return
    yield from _rolled_back(store.engine, isolation="REPEATABLE READ", live=True)


def _rolled_back(engine: sa.Engine, isolation: str | None = None,
                 live: bool = False) -> Iterator[SnapshotStore]:
    conn = engine.connect()
    if isolation:
        conn = conn.execution_options(isolation_level=isolation)
    outer = conn.begin()
    try:
        yield SnapshotStore(engine, conn, live=live)
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

def stored_since(conn: Connection, since: dt.datetime, limit: int | None = None) -> list[Any]:
    """The mails received since `since` (naive UTC), oldest first, whole rows; with `limit`,
    only the newest `limit` of them."""
    query = sa.select(mails).where(mails.c.received_at >= since)
    if limit is None:
        return conn.execute(query.order_by(mails.c.id)).all()
    return sorted(conn.execute(query.order_by(mails.c.id.desc()).limit(limit)).all(),
                  key=lambda row: row.id)


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
