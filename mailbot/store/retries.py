"""The store's side of `mailbot retry`: find a mail by the reference an operator types, and
give a quarantined mail a fresh start, as one conditional UPDATE."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot.store.database import MailRecord
from mailbot.store.schema import events, mails

# "CLV-000042" finds "CLV-000042-K7M2QX": operators read the number, customers quote it all.
_SHORT_REFERENCE = re.compile(r"[A-Za-z0-9]+-\d+\Z")
RETRYABLE = ("quarantined", "received")  # received: only after a retry (`was_retried`)


@dataclass(frozen=True)
class RetryCandidate:
    record: MailRecord
    size: int | None  # bytes, as the source reported them: how the source finds it again
    error: str | None  # the error of the last failed attempt


def by_reference(conn: Connection, reference: str) -> RetryCandidate | None:
    """The mail with this reference, or with this short one (the reference without its code)."""
    text = reference.strip()
    condition = mails.c.reference == text
    if _SHORT_REFERENCE.match(text):
        condition = sa.or_(condition, mails.c.reference.like(f"{text}-%"))
    rows = conn.execute(sa.select(mails).where(condition).order_by(mails.c.id).limit(2)).all()
    if len(rows) != 1:
        return None
    row = rows[0]
    return RetryCandidate(MailRecord.from_row(row), row.size, row.error)


def reset(conn: Connection, mail: int, *, mail_id: str) -> bool:
    """The mail is waiting for a decision again under `mail_id`, its attempts at zero, so the
    next pass decides it afresh; False when it is no longer quarantined (a pass or another
    retry got there first). Its request rows, if any, stay: a quarantined mail has none."""
    done = conn.execute(mails.update().where(
        mails.c.id == mail, mails.c.status.in_(RETRYABLE)).values(
        mail_id=mail_id, status="received", attempts=0, folder=None, filed=False,
        filed_at=None, outcome=None, error=None, claimed_by=None, claim_expires_at=None))
    return done.rowcount == 1


def was_retried(conn: Connection, mail: int) -> bool:
    """Whether a retry reset this mail: one cut short before its move may be run again."""
    return conn.execute(sa.select(events.c.id).where(
        events.c.mail == mail, events.c.event == "retried").limit(1)).first() is not None


def holder(conn: Connection, source: str, mail_id: str) -> MailRecord | None:
    """The record that already holds `mail_id` of `source`, if any."""
    row = conn.execute(sa.select(mails).where(mails.c.source == source,
                                              mails.c.mail_id == mail_id)).first()
    return MailRecord.from_row(row) if row else None
