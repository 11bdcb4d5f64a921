"""The console's log and mail pages in the store: mails filtered and counted page by page, one
mail with everything that belongs to it, and an operator's resend of a reply.

A mail's outcome is the outcomes of its requests joined by commas (or one word), so an outcome
filter matches one of those words exactly, or the outcome of one of its requests.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot.store.database import utcnow
from mailbot.store.schema import (
    events,
    keys,
    mails,
    outbox,
    outbox_recipients,
    requests,
    unlock_mails,
    unlocks,
)

# "CLV-000042" finds "CLV-000042-K7M2QX": operators read the number, customers quote it all.
_SHORT_REFERENCE = re.compile(r"[A-Za-z0-9]+-\d+\Z")
LIKE_ESCAPE = "\\"


@dataclass(frozen=True)
class MailFilter:
    """What the log is asked for; every field optional, all of them must hold."""

    sender: str | None = None  # exact, lower case
    serial: str | None = None  # normalised
    reference: str | None = None  # whole, or without its code
    outcome: str | None = None  # one stored outcome word
    kind: str | None = None
    since: dt.datetime | None = None  # naive UTC, inclusive
    until: dt.datetime | None = None  # naive UTC, exclusive
    text: str | None = None  # a substring of the subject or the sender, any case


def like_pattern(text: str) -> str:
    """`%text%` with LIKE's wildcards in `text` taken literally (escaped with LIKE_ESCAPE)."""
    escaped = (text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%")
               .replace("_", LIKE_ESCAPE + "_"))
    return f"%{escaped}%"


def _conditions(f: MailFilter) -> list[Any]:
    where: list[Any] = []
    if f.sender:
        where.append(mails.c.sender == f.sender)
    if f.reference:
        condition = mails.c.reference == f.reference
        if _SHORT_REFERENCE.match(f.reference):
            condition = sa.or_(condition, mails.c.reference.like(f"{f.reference}-%"))
        where.append(condition)
    if f.serial:
        where.append(mails.c.id.in_(sa.select(requests.c.mail)
                                    .where(requests.c.serial == f.serial)))
    if f.outcome:
        o = f.outcome
        where.append(sa.or_(
            mails.c.outcome == o, mails.c.outcome.like(f"{o},%"),
            mails.c.outcome.like(f"%,{o}"), mails.c.outcome.like(f"%,{o},%"),
            mails.c.id.in_(sa.select(requests.c.mail).where(requests.c.outcome == o))))
    if f.kind:
        where.append(mails.c.kind == f.kind)
    if f.since is not None:
        where.append(mails.c.received_at >= f.since)
    if f.until is not None:
        where.append(mails.c.received_at < f.until)
    if f.text:
        pattern = like_pattern(f.text)
        where.append(sa.or_(mails.c.subject.ilike(pattern, escape=LIKE_ESCAPE),
                            mails.c.sender.ilike(pattern, escape=LIKE_ESCAPE)))
    return where


_LIST_COLUMNS = (mails.c.id, mails.c.reference, mails.c.received_at, mails.c.sender,
                 mails.c.subject, mails.c.kind, mails.c.outcome, mails.c.status,
                 mails.c.folder)


def search(conn: Connection, f: MailFilter, *, offset: int, limit: int) -> list[Any]:
    """Mails that pass `f`, newest first: the columns of a log line."""
    query = (sa.select(*_LIST_COLUMNS).where(*_conditions(f))
             .order_by(mails.c.id.desc()).offset(offset).limit(limit))
    return conn.execute(query).all()


def count(conn: Connection, f: MailFilter) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(mails)
                        .where(*_conditions(f))).scalar_one()


def search_before(conn: Connection, f: MailFilter, *, before_id: int | None,
                  limit: int) -> list[Any]:
    """As `search`, the next `limit` mails older than `before_id` (the CSV export walks the
    whole selection this way, one short transaction per chunk)."""
    where = _conditions(f)
    if before_id is not None:
        where.append(mails.c.id < before_id)
    return conn.execute(sa.select(*_LIST_COLUMNS).where(*where)
                        .order_by(mails.c.id.desc()).limit(limit)).all()


def serials_of(conn: Connection, mail_ids: Sequence[int]) -> dict[int, list[str]]:
    """The serials each mail asked about, in request order."""
    out: dict[int, list[str]] = {}
    if not mail_ids:
        return out
    rows = conn.execute(sa.select(requests.c.mail, requests.c.serial)
                        .where(requests.c.mail.in_(list(mail_ids)))
                        .order_by(requests.c.mail, requests.c.position))
    for mail, serial in rows:
        if serial not in out.setdefault(mail, []):
            out[mail].append(serial)
    return out


# --- one mail ---------------------------------------------------------------------------------

def by_reference(conn: Connection, reference: str) -> Any | None:
    """The whole mail row with this reference (or this short one, when only one has it)."""
    text = reference.strip().upper()
    condition = mails.c.reference == text
    if _SHORT_REFERENCE.match(text):
        condition = sa.or_(condition, mails.c.reference.like(f"{text}-%"))
    rows = conn.execute(sa.select(mails).where(condition).order_by(mails.c.id).limit(2)).all()
    return rows[0] if len(rows) == 1 else None


def requests_with_keys(conn: Connection, mail: int) -> list[Any]:
    """The mail's requests in order, each with the key bound to it (`key_text`, or None)."""
    return conn.execute(
        sa.select(requests, keys.c.key.label("key_text"))
        .select_from(requests.outerjoin(keys, keys.c.id == requests.c.key))
        .where(requests.c.mail == mail).order_by(requests.c.position)).all()


def messages(conn: Connection, mail: int) -> list[Any]:
    """The mail's outbox messages, bytes included, oldest first."""
    return conn.execute(sa.select(outbox).where(outbox.c.mail == mail)
                        .order_by(outbox.c.id)).all()


def events_of(conn: Connection, mail: int) -> list[Any]:
    return conn.execute(sa.select(events).where(events.c.mail == mail)
                        .order_by(events.c.id)).all()


def unlocks_of(conn: Connection, mail: int) -> list[Any]:
    """The unlock ledger entries this mail opened or touched, each with the mail's `role`
    ("asked" for the one it opened, when no link row says otherwise)."""
    linked = {u: role for u, role in conn.execute(
        sa.select(unlock_mails.c.unlock, unlock_mails.c.role)
        .where(unlock_mails.c.mail == mail))}
    rows = conn.execute(sa.select(unlocks).where(sa.or_(
        unlocks.c.mail == mail, unlocks.c.id.in_(list(linked) or [-1])))
        .order_by(unlocks.c.id)).all()
    return [(row, linked.get(row.id, "asked")) for row in rows]


# --- resending a reply ------------------------------------------------------------------------

class ResendRefused(Exception):
    """The reply cannot be resent as asked; `code` says why (the console words it)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def resend(conn: Connection, *, mail: int, message: int, new_message_id: str,
           copy: Callable[[bytes], bytes], operator: str) -> int:
    """Queue `copy(bytes of outbox message `message` of `mail`)`, whose Message-ID is
    `new_message_id`, to the same recipients, and record who asked, in the caller's
    transaction; returns the copy's outbox id.

    Refused while a message of the mail with the same template and recipients is still
    queued: the original not sent yet, or another resend (a second operator, a double
    click). The original's row is updated first, as a lock, so two resends at once are
    decided one after the other: on PostgreSQL the second waits for the first's row lock and
    then sees its copy; on SQLite the first write takes the database's write lock.
    """
    locked = conn.execute(outbox.update().where(outbox.c.id == message, outbox.c.mail == mail)
                          .values(attempts=outbox.c.attempts))
    if locked.rowcount != 1:
        raise ResendRefused("no_such_reply")
    original = conn.execute(sa.select(outbox).where(outbox.c.id == message)).one()
    if original.purpose == "alert":
        raise ResendRefused("alert")
    waiting = conn.execute(sa.select(outbox.c.id).where(
        outbox.c.mail == mail, outbox.c.status == "queued",
        outbox.c.template == original.template,
        outbox.c.recipients == original.recipients).limit(1)).first()
    if waiting is not None:
        raise ResendRefused("still_queued")
    now = utcnow()
    new_id = conn.execute(outbox.insert().values(
        mail=mail, purpose=original.purpose, template=original.template,
        message_id=new_message_id, envelope_from=original.envelope_from,
        recipients=original.recipients, data=copy(bytes(original.data)), status="queued",
        attempts=0, created_at=now)).inserted_primary_key[0]
    addresses = conn.execute(sa.select(outbox_recipients.c.address)
                             .where(outbox_recipients.c.message == message)).scalars().all()
    if addresses:
        conn.execute(outbox_recipients.insert(), [
            {"message": new_id, "address": a, "purpose": original.purpose, "created_at": now}
            for a in addresses])
    conn.execute(events.insert().values(at=now, mail=mail, event="reply_resent",
                                        detail=json.dumps({
                                            "operator": operator, "template": original.template,
                                            "of": original.message_id,
                                            "message_id": new_message_id},
                                            ensure_ascii=False)))
    return new_id
