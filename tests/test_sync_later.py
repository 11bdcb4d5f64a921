"""Decisions commit without waiting for the disk, and are synced before anything acts on them.

A decision's commit (`Store.transaction(sync_later=True)`) returns once it is in SQLite's WAL:
a killed process keeps it, a power cut may undo it (and every later commit, never an earlier
one). What must hold is that no reply leaves and no mail leaves the inbox on the strength of a
commit the disk does not have yet: `Store.sync()` (one fsync of the WAL) comes first. These
tests watch the real fsyncs of a real pass and the connection's own setting.
"""

from __future__ import annotations

import contextlib
import os

import pytest
import sqlalchemy as sa
from test_durability import FREE_UPDATE, inbox, maildir_bot
from test_unlock_flow import FACTURA, FREE, RAUL, request_mail

from mailbot import config as config_module
from mailbot.run.pipeline import run_once
from mailbot.run.wiring import open_app
from mailbot.store.database import Store
from mailbot.store.schema import events


def synchronous(conn) -> int:
    return conn.execute(sa.text("PRAGMA synchronous")).scalar()


def test_only_the_sync_later_commit_skips_the_wait_and_the_connection_goes_back_in_full(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'mailbot.db'}")
    store.migrate()
    try:
        with store.transaction(sync_later=True) as conn:
            assert synchronous(conn) == 1  # NORMAL: in the WAL, synced later
            conn.execute(events.insert().values(at=sa.func.now(), event="kept"))
        with store.transaction() as conn:
            assert synchronous(conn) == 2  # FULL again for every other commit
        with pytest.raises(RuntimeError), store.transaction(sync_later=True) as conn:
            conn.execute(events.insert().values(at=sa.func.now(), event="rolled back"))
            raise RuntimeError("a decision that fails")
        with store.transaction() as conn:
            assert synchronous(conn) == 2
            assert [r.event for r in conn.execute(sa.select(events.c.event))] == ["kept"]
    finally:
        store.close()


def test_no_reply_is_sent_and_no_mail_filed_before_the_decisions_are_on_the_disk(tmp_path,
                                                                                  monkeypatch):
    """In the order things happen in a pass: every send and every move out of the inbox comes
    after an fsync of the WAL that follows the last decision's commit."""
    config = maildir_bot(tmp_path)
    for number in range(3):
        (tmp_path / "inbox" / "new" / f"m{number}").write_bytes(request_mail(
            sender=RAUL, serial=FREE, system=FACTURA, subject=FREE_UPDATE,
            message_id=f"<m{number}@example.com>"))
    app = open_app(config_module.load(config))
    wal = str(tmp_path / "mailbot.db") + "-wal"
    happened: list[str] = []
    real_fsync, real_transaction = os.fsync, app.store.transaction

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}") == wal:
            happened.append("wal synced")
        return real_fsync(fd)

    @contextlib.contextmanager
    def transaction(**kwargs):
        with real_transaction(**kwargs) as conn:
            yield conn
        if kwargs.get("sync_later"):
            happened.append("decided")

    real_send, real_file_many = app.sink.send, app.source.file_many

    def send(*args, **kwargs):
        happened.append("sent")
        return real_send(*args, **kwargs)

    def file_many(*args, **kwargs):  # the Maildir's one way out of the inbox (`file` too)
        happened.append("filed")
        return real_file_many(*args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(app.store, "transaction", transaction)
    monkeypatch.setattr(app.sink, "send", send)
    monkeypatch.setattr(app.source, "file_many", file_many)
    try:
        report = run_once(app)
    finally:
        app.store.close()
    assert report.sent >= 3 and inbox(tmp_path) == []  # the replies (and an operator alert)
    # The three decisions, and each reply's "sent" mark: synced by the next send, or before
    # the mails are filed (so no send ever goes with an earlier reply's mark still unsynced).
    assert happened.count("decided") == 3 + report.sent
    assert {"sent", "filed"} <= set(happened)
    unsynced = False
    for event in happened:
        if event == "decided":
            unsynced = True
        elif event == "wal synced":
            unsynced = False
        else:
            assert not unsynced, f"{event} before the decisions were synced: {happened}"
