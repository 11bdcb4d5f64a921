"""The store's per-mail statements run on the driver's cursor (mailbot.store.prepared) write and
read exactly what the same statements give through `Connection.execute`, on SQLite and on a
real PostgreSQL: dates and times in the same form, defaults, errors and the cursor events."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from mailbot.store import database
from mailbot.store.database import keys, licences, mails, outbox
from mailbot.store.prepared import Prepared

WHEN = dt.datetime(2026, 12, 2, 1, 2, 3)  # no microseconds: SQLite's text form shows them anyway
LATER = dt.datetime(2026, 12, 2, 1, 2, 3, 456789)


def _without_id(row) -> dict:
    values = dict(row._mapping)
    values.pop("id")
    return values


def test_rows_written_through_the_cursor_equal_rows_written_by_sqlalchemy(store):
    with store.transaction() as conn:
        mail = dict(source="INBOX", fingerprint="f", size=10, status="received",
                    duplicate_of=None, folder=None, filed=False, attempts=0, outcome=None,
                    notes=None, received_at=WHEN, claimed_by="run", claim_expires_at=LATER)
        ours = database._INSERT_MAIL.scalar(conn, {**mail, "mail_id": "1"})
        theirs = conn.execute(database._INSERT_MAIL.statement, {**mail, "mail_id": "2"}).scalar()
        message = dict(mail=ours, purpose="reply", template="t", envelope_from="a@b.mx",
                       recipients="[]", data=b"\x00bytes\xff", status="queued", attempts=0,
                       created_at=LATER)  # copy_pending: the column's default
        out_a = database._INSERT_OUTBOX.scalar(conn, {**message, "message_id": "<a@b>"})
        out_b = conn.execute(database._INSERT_OUTBOX.statement,
                             {**message, "message_id": "<b@b>"}).scalar()
        sent = {"_now": LATER, "_error": None, "_copy": True}
        database._MARK_SENT.run(conn, {**sent, "_id": out_a})
        conn.execute(database._MARK_SENT.statement, {**sent, "_id": out_b})
        rows = {r.id: r for r in conn.execute(sa.select(mails))}
        # the same text in the file, not only the same values once read back
        raw = {r[0]: r[1:] for r in conn.execute(sa.text(
            "SELECT id, received_at, claim_expires_at FROM mails"))}
        boxes = {r.id: r for r in conn.execute(sa.select(outbox))}
    assert _without_id(rows[ours]) == {**_without_id(rows[theirs]), "mail_id": "1"}
    assert raw[ours] == raw[theirs]
    assert rows[ours].received_at == WHEN and rows[ours].claim_expires_at == LATER
    a, b = _without_id(boxes[out_a]), _without_id(boxes[out_b])
    assert a == {**b, "message_id": "<a@b>"}
    assert a["status"] == "sent" and a["attempts"] == 1 and a["copy_pending"] is True
    assert a["data"] == b"\x00bytes\xff" and a["sent_at"] == LATER


def test_rows_read_through_the_cursor_equal_rows_read_by_sqlalchemy(store):
    with store.transaction() as conn:
        conn.execute(licences.insert().values(
            serial="AAAA-BBBB-CCCC-DDDD", system="CONTPAQ i Bancos", company="Empresa",
            purchase_date=dt.date(2012, 1, 1), modality="fisico", users=1, updated_at=WHEN))
        conn.execute(keys.insert().values(system="CONTPAQ i Bancos", key="K1",
                                          imported_at=WHEN))
        assign = (database._ASSIGN_KEY_PG if conn.dialect.name == "postgresql"
                  else database._ASSIGN_KEY)
        key = assign.first(conn, {"_system": "CONTPAQ i Bancos", "_serial": "AAAA-BBBB-CCCC-DDDD",
                                  "_now": LATER})
        params = {"_serial": "AAAA-BBBB-CCCC-DDDD"}
        ours = database._LICENCE_AND_KEY.first(conn, params)
        theirs = conn.execute(database._LICENCE_AND_KEY.statement, params).first()
        missing = database._LICENCE_AND_KEY.first(conn, {"_serial": "NONE"})
        count = database._FREE_KEY.first(conn, {"_system": "CONTPAQ i Bancos"})
    assert key.key == "K1" and key.serial == "AAAA-BBBB-CCCC-DDDD" and key.assigned_at == LATER
    assert ours._fields == tuple(theirs._fields)
    assert tuple(ours) == tuple(theirs)
    assert ours.purchase_date == dt.date(2012, 1, 1) and ours.bound_key_assigned_at == LATER
    assert ours.bound_key_imported_at == WHEN and ours.bound_key == "K1"
    assert missing is None and count is None  # the only key is taken


def test_a_broken_constraint_is_sqlalchemys_integrity_error(store):
    mail = dict(source="INBOX", mail_id="1", fingerprint="f", size=1, status="received",
                filed=False, attempts=0, received_at=WHEN)
    with pytest.raises(sa.exc.IntegrityError), store.transaction() as conn:
        database._INSERT_MAIL.scalar(conn, mail)
        database._INSERT_MAIL.scalar(conn, mail)  # the same source and mail id again
    with store.transaction() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(mails)).scalar() == 0


def test_the_engines_cursor_events_see_every_statement(store):
    seen: list[tuple[str, bool]] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement.split()[0], executemany))

    sa.event.listen(store.engine, "before_cursor_execute", before)
    try:
        with store.transaction() as conn:
            database._SET_REFERENCE.run_many(conn, [{"_id": 1, "reference": "A"},
                                                    {"_id": 2, "reference": "B"}])
            database._FREE_KEY.first(conn, {"_system": "x"})
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", before)
    assert seen == [("UPDATE", True), ("SELECT", False)]


def test_what_it_cannot_run_as_sqlalchemy_would_is_refused_at_once(store):
    expanding = Prepared(sa.select(mails.c.id).where(mails.c.id.in_(sa.bindparam("_ids"))))
    computed = sa.Table("computed", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                        sa.Column("at", sa.DateTime, default=dt.datetime.now))
    with store.transaction() as conn:
        with pytest.raises(TypeError, match="expanded"):
            expanding.first(conn, {"_ids": [1, 2]})
        with pytest.raises(TypeError, match="default"):
            Prepared(computed.insert()).run(conn, {"id": 1})
        with pytest.raises(TypeError, match="no value for _id"):
            database._MARK_SENT.run(conn, {"_now": WHEN, "_error": None, "_copy": False})


def test_a_lost_server_connection_is_dropped_and_the_next_transaction_gets_a_new_one(
        postgres_url):
    """As SQLAlchemy does: the statement fails as a DBAPIError saying so, and the pool does not
    hand the dead connection out again."""
    from mailbot.store.database import Store

    store = Store(postgres_url)
    store.migrate()
    killer = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with store.engine.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            with killer.connect() as other:
                other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(sa.exc.DBAPIError) as failed:
                database._FREE_KEY.first(conn, {"_system": "x"})
            assert failed.value.connection_invalidated and conn.invalidated
        with store.transaction() as conn:
            assert database._FREE_KEY.first(conn, {"_system": "x"}) is None
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        killer.dispose()
        store.close()
