"""The processing log's reads: recent mails by sender, serial, outcome or reference, with their
requests and outbox messages. `mailbot.ops.logview` shapes them for people."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot.store.schema import mails, outbox, requests


def recent_mails(conn: Connection, *, sender: str | None = None, serial: str | None = None,
                 outcome: str | None = None, reference: str | None = None,
                 limit: int = 50) -> list[Any]:
    """Mails newest first. `outcome` matches a mail's own outcome (one of its comma-joined
    words) or the outcome of one of its requests."""
    q = sa.select(mails).order_by(mails.c.id.desc()).limit(limit)
    if sender:
        q = q.where(mails.c.sender == sender)
    if reference:
        q = q.where(mails.c.reference == reference)
    if serial:
        q = q.where(mails.c.id.in_(sa.select(requests.c.mail).where(requests.c.serial == serial)))
    if outcome:
        q = q.where(sa.or_(mails.c.outcome == outcome, mails.c.outcome.like(f"%{outcome}%"),
                           mails.c.id.in_(sa.select(requests.c.mail)
                                          .where(requests.c.outcome == outcome))))
    return conn.execute(q).all()


def requests_of(conn: Connection, mail: int) -> list[Any]:
    return conn.execute(sa.select(requests).where(requests.c.mail == mail)
                        .order_by(requests.c.position)).all()


def messages_of(conn: Connection, mail: int) -> list[Any]:
    """The outbox messages of a mail (without their bytes), oldest first."""
    return conn.execute(sa.select(outbox.c.template, outbox.c.recipients, outbox.c.status,
                                  outbox.c.message_id, outbox.c.last_error, outbox.c.sent_at,
                                  outbox.c.rules_version, outbox.c.templates_version)
                        .where(outbox.c.mail == mail).order_by(outbox.c.id)).all()
