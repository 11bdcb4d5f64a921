"""The store on SQLite and on a real PostgreSQL: schema, de-duplication, atomic keys."""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from mailbot.store.database import Store, keys, utcnow


@dataclass(frozen=True)
class Key:
    system: str
    key: str


@dataclass(frozen=True)
class Licence:
    serial: str
    system: str = "CONTPAQ i Bancos"
    company: str = "Empresa"
    contact_email: str | None = "a@b.mx"
    purchase_date: dt.date = dt.date(2012, 1, 1)
    modality: str = "fisico"
    support_until: dt.date | None = None
    users: int | None = 1


def test_migrating_twice_is_harmless(store):
    store.migrate()
    with store.transaction() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {"mails", "requests", "licences", "keys", "outbox", "events"} <= tables


def test_a_mail_is_recorded_once_per_source_and_id(store):
    with store.transaction() as conn:
        rec = store.add_mail(conn, source="maildir:/x", mail_id="1", fp="f" * 64, size=10)
        # the number operators read, and a random code (no 0/O, 1/I/L) that customers quote
        assert re.fullmatch(rf"CLV-{rec.id:06d}-[2-9A-HJKMNP-Z]{{6}}", rec.reference)
    with pytest.raises(sa.exc.IntegrityError):
        with store.transaction() as conn:
            store.add_mail(conn, source="maildir:/x", mail_id="1", fp="e" * 64, size=10)
    with store.transaction() as conn:
        assert store.find_mail(conn, "maildir:/x", "1").fingerprint == "f" * 64
        assert store.mail_by_fingerprint(conn, "f" * 64).id == rec.id


def test_registry_import_upserts_by_serial(store):
    with store.transaction() as conn:
        assert store.upsert_licences(conn, [Licence("AAAA-BBBB-CCCC-DDDD")]) == (1, 0)
        assert store.upsert_licences(conn, [Licence("AAAA-BBBB-CCCC-DDDD", users=5),
                                            Licence("AAAA-BBBB-CCCC-EEEE")]) == (1, 1)
        assert store.licence(conn, "AAAA-BBBB-CCCC-DDDD").users == 5


def test_keys_already_stored_are_refused(store):
    with store.transaction() as conn:
        assert store.add_keys(conn, [Key("CONTPAQ i Bancos", "K1")]) == []
        assert store.add_keys(conn, [Key("CONTPAQ i Bancos", "K1"),
                                     Key("CONTPAQ i Bancos", "K2")]) == ["K1"]
        assert store.pool_counts(conn) == {"CONTPAQ i Bancos": (2, 0)}


def test_a_key_is_bound_to_one_serial_only(store):
    with store.transaction() as conn:
        store.add_keys(conn, [Key("CONTPAQ i Bancos", "K1")])
        assert store.assign_key(conn, system="CONTPAQ i Bancos", serial="S1").key == "K1"
        assert store.assign_key(conn, system="CONTPAQ i Bancos", serial="S2") is None
        assert store.key_for_serial(conn, "S1").key == "K1"
    with pytest.raises(sa.exc.IntegrityError):
        with store.transaction() as conn:  # the schema itself refuses a second key per serial
            conn.execute(sa.insert(keys).values(system="CONTPAQ i Bancos", key="K9",
                                                serial="S1", imported_at=utcnow()))


def test_concurrent_assignments_never_share_a_key(store):
    with store.transaction() as conn:
        store.add_keys(conn, [Key("CONTPAQ i Bancos", f"K{i}") for i in range(20)])
    got: list[str] = []
    errors: list[Exception] = []

    def worker(n: int) -> None:
        try:
            for i in range(5):
                with store.transaction() as conn:
                    row = store.assign_key(conn, system="CONTPAQ i Bancos", serial=f"S{n}-{i}")
                    if row is not None:
                        got.append(row.key)
        except Exception as exc:  # SQLite may report "database is locked" under contention
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(got) == len(set(got)) == 20


def test_outbox_retry_and_sent_states(store):
    now = utcnow()
    with store.transaction() as conn:
        mid = store.enqueue(conn, mail=None, purpose="reply", template="t", message_id="<1@x>",
                            envelope_from="claves@x", recipients=["a@b.mx"], data=b"x")
        assert [m.id for m in store.due_messages(conn, now=now)] == [mid]
        store.mark_retry(conn, mid, error="451", next_attempt_at=now + dt.timedelta(minutes=1))
        assert store.due_messages(conn, now=now) == []
        assert [m.id for m in store.due_messages(conn, now=now + dt.timedelta(minutes=2))] == [mid]
        assert store.replies_to_since(conn, "a@b.mx", now - dt.timedelta(hours=1)) == 1
        store.mark_sent(conn, mid)
        assert store.due_messages(conn, now=now + dt.timedelta(hours=1)) == []


def test_an_unreachable_database_is_a_clear_error():
    from mailbot.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot open"):
        Store("postgresql://postgres@127.0.0.1:1/nothing?connect_timeout=2").migrate()


# --- indexes the look-ups rely on (migrations 0008, 0009) ---------------------------------------

def _plan(conn, dialect: str, query) -> str:
    """The database's plan for `query` (PostgreSQL: asked whether it could use an index at all,
    the tables here being tiny)."""
    from sqlalchemy.dialects import postgresql, sqlite

    if dialect == "sqlite":
        sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
        return " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    return " ".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}"))


def _assert_index_only_from(store, index: str, query, revision_before: str) -> None:
    """`query` goes through `index` at the newest schema, not at `revision_before`, and again
    once upgraded from it."""
    dialect = store.engine.dialect.name
    with store.transaction() as conn:
        assert index in _plan(conn, dialect, query)
    store.downgrade(revision_before)
    store.engine.dispose()  # SQLite: a pooled connection may keep the old plan of the query
    try:
        with store.transaction() as conn:
            assert index not in _plan(conn, dialect, query)
    finally:
        store.migrate()
        store.engine.dispose()
    with store.transaction() as conn:
        assert index in _plan(conn, dialect, query)


def test_a_reply_finds_the_mail_it_answers_by_message_id_through_an_index(store):
    """Without ix_mails_message_id every reply read the whole mails table (issue 11 §6's
    thread look-up, the unlock ledger); migration 0008 adds it, and 0007 has none."""
    from mailbot.store.schema import mails

    thread_lookup = sa.select(mails.c.id).where(mails.c.message_id.in_(["<a@x>", "<b@x>"]))
    _assert_index_only_from(store, "ix_mails_message_id", thread_lookup, "0007")


def test_a_key_is_found_for_any_system_through_one_index_seek(store):
    """With only an index on `system`, SQLite took the first free key of a system by walking
    the unique index on `serial` through every free key of every system (0.5 ms an assignment
    at 8,000 free keys, growing with the pool); 0009 indexes (system, serial), 0008 has not."""
    from mailbot.store.schema import keys

    first_free = (sa.select(keys.c.id).where(keys.c.system == "CONTPAQ i Nóminas",
                                             keys.c.serial.is_(None))
                  .order_by(keys.c.id).limit(1))  # Store.assign_key's look-up
    _assert_index_only_from(store, "ix_keys_system_serial", first_free, "0008")


def test_a_sqlite_store_checkpoints_its_wal_every_8000_pages(tmp_path):
    """A pass rewrites the same pages commit after commit; SQLite's default checkpoint every
    1,000 pages copied them back about every 40 decisions (WAL_CHECKPOINT_PAGES)."""
    from mailbot.store.database import WAL_CHECKPOINT_PAGES

    store = Store(f"sqlite:///{tmp_path / 'mailbot.db'}")
    store.migrate()
    try:
        with store.transaction() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == \
                WAL_CHECKPOINT_PAGES == 8000
    finally:
        store.close()
