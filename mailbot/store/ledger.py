"""The unlock ledger in the store: one entry per unlock a serial asked for, and the mails that
touched it. The decisions over it live in `mailbot.run.unlock_flow`; this module only reads
and writes rows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot.store.schema import licences, mails, unlock_mails, unlocks
from mailbot.store.threads import mails_in_thread

# Ledger statuses.
APPROVED = "approved"
IN_REVIEW = "in_review"
AWAITING_DOCUMENTS = "awaiting_documents"
REJECTED = "rejected"
OPEN = (IN_REVIEW, AWAITING_DOCUMENTS)


def entry(conn: Connection, entry_id: int) -> Any | None:
    return conn.execute(sa.select(unlocks).where(unlocks.c.id == entry_id)).first()


def entries(conn: Connection, *, serial: str | None = None) -> list[Any]:
    query = sa.select(unlocks).order_by(unlocks.c.id)
    if serial:
        query = query.where(unlocks.c.serial == serial)
    return conn.execute(query).all()


def counts(conn: Connection, serial: str, *, now: dt.datetime, period_days: int,
           exclude: int | None = None) -> tuple[int, int]:
    """(approved unlocks of `serial`, approved within the last `period_days`)."""
    base = sa.select(sa.func.count()).select_from(unlocks).where(
        unlocks.c.serial == serial, unlocks.c.status == APPROVED)
    if exclude is not None:
        base = base.where(unlocks.c.id != exclude)
    total = conn.execute(base).scalar_one()
    since = now - dt.timedelta(days=period_days)
    recent = conn.execute(base.where(unlocks.c.decided_at >= since)).scalar_one()
    return total, recent


def open_entry(conn: Connection, serial: str, *, exclude: int | None = None) -> Any | None:
    query = (sa.select(unlocks).where(unlocks.c.serial == serial, unlocks.c.status.in_(OPEN))
             .order_by(unlocks.c.id.desc()).limit(1))
    if exclude is not None:
        query = query.where(unlocks.c.id != exclude)
    return conn.execute(query).first()


def last_approved(conn: Connection, serial: str, *, exclude: int | None = None) -> Any | None:
    query = (sa.select(unlocks).where(unlocks.c.serial == serial, unlocks.c.status == APPROVED)
             .order_by(unlocks.c.decided_at.desc(), unlocks.c.id.desc()).limit(1))
    if exclude is not None:
        query = query.where(unlocks.c.id != exclude)
    return conn.execute(query).first()


def reference_of(conn: Connection, row: Any) -> str:
    """The reference of the mail that opened a ledger entry (what the customer quotes)."""
    return conn.execute(sa.select(mails.c.reference).where(mails.c.id == row.mail)).scalar() or ""


def stored_facts(row: Any) -> dict[str, Any]:
    return json.loads(row.facts or "{}")


def stored_documents(row: Any) -> list[str]:
    return json.loads(row.documents or "[]")


def open_entries_touched_by(conn: Connection, *, message_ids: Sequence[str],
                            references: Sequence[str], limit: int = 10) -> list[Any]:
    """The open entries, newest first, touched by a mail that one of `message_ids` names (one
    of our replies, or the customer's own earlier mail) or that has one of our `references`."""
    mail_ids = mails_in_thread(conn, message_ids=message_ids, references=references)
    if not mail_ids:
        return []
    touched = sa.select(unlock_mails.c.unlock).where(unlock_mails.c.mail.in_(sorted(mail_ids)))
    return conn.execute(
        sa.select(unlocks).where(unlocks.c.id.in_(touched), unlocks.c.status.in_(OPEN))
        .order_by(unlocks.c.id.desc()).limit(limit)).all()


def entry_contacts(conn: Connection, row: Any) -> tuple[str | None, str | None]:
    """(the registered contact of the entry's serial, the sender of the mail that opened it):
    the two who may continue the entry."""
    registered = conn.execute(sa.select(licences.c.contact_email)
                              .where(licences.c.serial == row.serial)).scalar()
    opener = conn.execute(sa.select(mails.c.sender).where(mails.c.id == row.mail)).scalar()
    return registered, opener


def insert(conn: Connection, **values: Any) -> int:
    """A new entry; returns its id."""
    return conn.execute(unlocks.insert().values(**values)).inserted_primary_key[0]


def update(conn: Connection, entry_id: int, **values: Any) -> None:
    conn.execute(unlocks.update().where(unlocks.c.id == entry_id).values(**values))


def link(conn: Connection, entry_id: int, mail_id: int, role: str) -> None:
    """Note that a mail touched an entry (asked / repeat / documents), once per mail."""
    exists = conn.execute(sa.select(unlock_mails.c.role).where(
        unlock_mails.c.unlock == entry_id, unlock_mails.c.mail == mail_id)).first()
    if exists is None:
        conn.execute(unlock_mails.insert().values(unlock=entry_id, mail=mail_id, role=role))
