"""The requests a mail left open, and the reply that completes one (issue 11 §6).

A mail answered "this is missing" keeps what it did say as an ``open_request`` event (the
blocks of `mailbot.read.merge.OpenBlock`, as JSON), because the store keeps no mail's bytes and
the customer's answer often holds only the missing line. When a reply completes it, a
``request_completed`` event on the earlier mail and a line in its notes say by which mail: an
earlier mail is completed once, and the console and `mailbot log` show it.

The events table holds them (no migration): they are history as much as state, and both are
read by mail id, which the table indexes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot.store.schema import events, mails, outbox

OPEN_REQUEST = "open_request"
COMPLETED = "request_completed"


@dataclass(frozen=True)
class OpenMail:
    """An earlier mail answered "this is missing", not completed yet."""

    mail: int
    reference: str | None
    sender: str | None
    kind: str | None
    blocks: tuple[dict[str, Any], ...]  # OpenBlock.to_json() of each block it left open


def remember_open(conn: Connection, mail: int, *, kind: str | None,
                  blocks: Sequence[dict[str, Any]], now: dt.datetime) -> None:
    """Keep what a mail answered "this is missing" said, for the reply that completes it."""
    conn.execute(events.insert().values(
        at=now, mail=mail, event=OPEN_REQUEST,
        detail=json.dumps({"kind": kind, "blocks": list(blocks)}, ensure_ascii=False)))


def mails_in_thread(conn: Connection, *, message_ids: Sequence[str],
                    references: Sequence[str]) -> set[int]:
    """The mails a reply's In-Reply-To/References name (one of our replies, or the customer's
    own earlier mail) or whose whole reference (CLV-000123-K7M2QX) it quotes."""
    found: set[int] = set()
    if message_ids:
        found.update(m for m in conn.execute(sa.select(outbox.c.mail).where(
            outbox.c.message_id.in_(list(message_ids)), outbox.c.mail.is_not(None))).scalars())
        found.update(conn.execute(sa.select(mails.c.id).where(
            mails.c.message_id.in_(list(message_ids)))).scalars())
    if references:
        found.update(conn.execute(sa.select(mails.c.id).where(
            mails.c.reference.in_(list(references)))).scalars())
    return found


def open_in_thread(conn: Connection, *, message_ids: Sequence[str], references: Sequence[str],
                   limit: int = 10) -> list[OpenMail]:
    """The mails of the thread still waiting for what was missing, newest first."""
    thread = mails_in_thread(conn, message_ids=message_ids, references=references)
    if not thread:
        return []
    ids = sorted(thread)
    done = sa.select(events.c.mail).where(events.c.event == COMPLETED, events.c.mail.in_(ids))
    rows = conn.execute(
        sa.select(events.c.mail, events.c.detail, mails.c.reference, mails.c.sender)
        .select_from(events.join(mails, events.c.mail == mails.c.id))
        .where(events.c.event == OPEN_REQUEST, events.c.mail.in_(ids),
               events.c.mail.not_in(done))
        .order_by(events.c.mail.desc(), events.c.id.desc()).limit(limit)).all()
    out: list[OpenMail] = []
    seen: set[int] = set()
    for row in rows:
        if row.mail in seen:
            continue
        seen.add(row.mail)
        detail = json.loads(row.detail or "{}")
        out.append(OpenMail(row.mail, row.reference, row.sender, detail.get("kind"),
                            tuple(b for b in detail.get("blocks", ()) if isinstance(b, dict))))
    return out


def claim_open(conn: Connection, mail: int) -> bool:
    """Lock the earlier mail's row (PostgreSQL; SQLite serialises writers anyway) and say
    whether it is still open: of two runs completing it at once, the second waits here, then
    sees the first one's completion and reads its mail on its own."""
    conn.execute(sa.select(mails.c.id).where(mails.c.id == mail).with_for_update()).first()
    return conn.execute(sa.select(events.c.id).where(
        events.c.mail == mail, events.c.event == COMPLETED).limit(1)).first() is None


def mark_completed(conn: Connection, mail: int, *, by_mail: int, by_reference: str | None,
                   fields: Sequence[str], still_missing: bool, now: dt.datetime) -> None:
    """Note on the earlier mail that a reply completed it: it is never completed again. When
    something is `still_missing`, the reply now holds what is open (its own open_request)."""
    conn.execute(events.insert().values(
        at=now, mail=mail, event=COMPLETED,
        detail=json.dumps({"by_mail": by_mail, "by_reference": by_reference,
                           "fields": list(fields), "still_missing": still_missing},
                          ensure_ascii=False)))
    notes = json.loads(conn.execute(sa.select(mails.c.notes).where(mails.c.id == mail))
                       .scalar() or "[]")
    by = by_reference or f"mail {by_mail}"
    notes.append((f"continued by {by}, which still lacks some data" if still_missing
                  else f"completed by {by}: the reply gave what was missing")
                 + f"; fields taken from this mail: {', '.join(fields) or '(none)'}")
    conn.execute(mails.update().where(mails.c.id == mail)
                 .values(notes=json.dumps(notes, ensure_ascii=False)))


def completed_by(conn: Connection, mail: int) -> dict[str, Any] | None:
    """Which reply completed `mail`, or None."""
    detail = conn.execute(sa.select(events.c.detail).where(
        events.c.mail == mail, events.c.event == COMPLETED).order_by(events.c.id)
        .limit(1)).scalar()
    return json.loads(detail) if detail else None
