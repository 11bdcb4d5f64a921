"""The console's serial page in the store: a serial's registry entry, the key bound to it, and
every mail and unlock that names it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot.store.schema import keys, licences, mails, requests, unlocks

MAX_MAILS = 500  # a serial's mails on one page: far more than a real serial ever gets


def licence(conn: Connection, serial: str) -> Any | None:
    return conn.execute(sa.select(licences).where(licences.c.serial == serial)).first()


def bound_key(conn: Connection, serial: str) -> Any | None:
    return conn.execute(sa.select(keys).where(keys.c.serial == serial)).first()


def mails_for(conn: Connection, serial: str, *, limit: int = MAX_MAILS) -> list[Any]:
    """Every request that named `serial`, newest mail first, with its mail's log columns."""
    return conn.execute(
        sa.select(mails.c.reference, mails.c.received_at, mails.c.sender, mails.c.subject,
                  mails.c.kind, mails.c.outcome.label("mail_outcome"), mails.c.folder,
                  requests.c.outcome, requests.c.source, requests.c.system,
                  requests.c.recipient)
        .select_from(requests.join(mails, mails.c.id == requests.c.mail))
        .where(requests.c.serial == serial)
        .order_by(mails.c.id.desc(), requests.c.position).limit(limit)).all()


def unlocks_for(conn: Connection, serial: str) -> list[Any]:
    """The serial's unlock ledger, oldest first, with the reference of the mail that asked."""
    return conn.execute(
        sa.select(unlocks, mails.c.reference)
        .select_from(unlocks.join(mails, mails.c.id == unlocks.c.mail))
        .where(unlocks.c.serial == serial).order_by(unlocks.c.id)).all()
