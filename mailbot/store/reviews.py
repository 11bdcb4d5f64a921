"""The review queue in the store: tasks and the history of every action on them.

What a task is and when it is due is `mailbot.run.review`'s business; this module only reads and
writes rows. Statuses: `open`; `approved` and `rejected` (an operator's decision); `resolved`
(after an operator's edit the rules decided it themselves); `closed` (an operator closed it
without an answer).

Two operators may act on one task at once (the console, the CLI): an action first `take`s the
task, a conditional UPDATE that holds the task's row until the action commits and finds it only
while it is open, and `close` is conditional on `open` too; exactly one action wins, the other
is told and rolls back whole.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot.store.schema import mails, requests, review_actions, reviews

OPEN = "open"
APPROVED = "approved"
REJECTED = "rejected"
RESOLVED = "resolved"
CLOSED = "closed"  # closed by an operator without an answer
STATUSES = (OPEN, APPROVED, REJECTED, RESOLVED, CLOSED)

BOT = "mailbot"  # the operator name of what the bot itself does to a task



@dataclass(frozen=True)
class Task:
    id: int
    mail: int
    request: int | None
    unlock: int | None
    kind: str
    reason: str
    reason_text: str
    status: str
    due_at: dt.datetime
    snapshot: Mapping[str, Any]
    created_at: dt.datetime
    closed_at: dt.datetime | None
    closed_by: str | None
    overdue_alerted_at: dt.datetime | None
    reference: str
    sender: str | None
    subject: str
    assigned_to: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Task:
        return cls(row.id, row.mail, row.request, row.unlock, row.kind, row.reason,
                   row.reason_text, row.status, row.due_at, json.loads(row.snapshot or "{}"),
                   row.created_at, row.closed_at, row.closed_by, row.overdue_alerted_at,
                   row.reference or "", row.sender, row.subject or "", row.assigned_to)

    def overdue(self, now: dt.datetime) -> bool:
        return self.status == OPEN and self.due_at <= now


def _select() -> sa.Select:
    return (sa.select(reviews, mails.c.reference, mails.c.sender, mails.c.subject)
            .select_from(reviews.join(mails, reviews.c.mail == mails.c.id)))


# --- creating and changing tasks ---------------------------------------------------------------

def create(conn: Connection, *, mail: int, kind: str, reason: str, reason_text: str,
           due_at: dt.datetime, snapshot: Mapping[str, Any], now: dt.datetime,
           request: int | None = None, unlock: int | None = None) -> int:
    """Open a task; its history starts with "created" by the bot, naming the reason."""
    result = conn.execute(reviews.insert().values(
        mail=mail, request=request, unlock=unlock, kind=kind, reason=reason[:40],
        reason_text=reason_text, status=OPEN, due_at=due_at,
        snapshot=_json(snapshot), created_at=now))
    task_id = result.inserted_primary_key[0]
    record(conn, task_id, "created", BOT, now, note=reason_text, changes={"reason": reason})
    return task_id


def record(conn: Connection, task_id: int, action: str, operator: str, now: dt.datetime, *,
           note: str | None = None, changes: Mapping[str, Any] | None = None) -> None:
    conn.execute(review_actions.insert().values(
        review=task_id, action=action, operator=operator, at=now, note=note,
        changes=_json(changes) if changes else None))


def update(conn: Connection, task_id: int, **values: Any) -> None:
    if "snapshot" in values and not isinstance(values["snapshot"], str):
        values["snapshot"] = _json(values["snapshot"])
    conn.execute(reviews.update().where(reviews.c.id == task_id).values(**values))


def take(conn: Connection, task_id: int) -> bool:
    """Lock an open task for this transaction: True when it is open (and now held until the
    transaction ends), False when it is gone or closed.

    An UPDATE that changes nothing still takes the row's write lock (PostgreSQL) or the
    database's (SQLite), so a second action on the task waits here and then finds it closed:
    nothing it reads before deciding can be stale.
    """
    taken = conn.execute(reviews.update()
                         .where(reviews.c.id == task_id, reviews.c.status == OPEN)
                         .values(status=reviews.c.status))
    return taken.rowcount == 1


def close(conn: Connection, task_id: int, status: str, *, operator: str,
          now: dt.datetime) -> bool:
    """open -> `status`, only while open: False (nothing changed) when another action closed
    it first; the caller must then roll its transaction back."""
    assert status in (APPROVED, REJECTED, RESOLVED, CLOSED)
    closed = conn.execute(reviews.update()
                          .where(reviews.c.id == task_id, reviews.c.status == OPEN)
                          .values(status=status, closed_at=now, closed_by=operator))
    return closed.rowcount == 1


def assign(conn: Connection, task_id: int, operator: str) -> bool:
    """An open task is taken by `operator`; False when it is not open."""
    done = conn.execute(reviews.update()
                        .where(reviews.c.id == task_id, reviews.c.status == OPEN)
                        .values(assigned_to=operator))
    return done.rowcount == 1


# --- reading the queue -------------------------------------------------------------------------

def get(conn: Connection, task_id: int) -> Task | None:
    row = conn.execute(_select().where(reviews.c.id == task_id)).first()
    return Task.from_row(row) if row else None


def open_for_unlock(conn: Connection, entry_id: int) -> Task | None:
    row = conn.execute(_select().where(reviews.c.unlock == entry_id, reviews.c.status == OPEN)
                       .order_by(reviews.c.id.desc()).limit(1)).first()
    return Task.from_row(row) if row else None


def tasks(conn: Connection, *, include_closed: bool = False,
          overdue_at: dt.datetime | None = None,
          mail_ids: Sequence[int] | None = None, limit: int | None = None,
          offset: int = 0) -> list[Task]:
    """Open tasks (or all), the most urgent first; `overdue_at`: only those due by then;
    `limit` and `offset` for a page of them."""
    query = _filtered(include_closed=include_closed, overdue_at=overdue_at)
    if mail_ids is not None:
        in_mails = sa.select(requests.c.id).where(requests.c.mail.in_(list(mail_ids)))
        query = query.where(sa.or_(reviews.c.mail.in_(list(mail_ids)),
                                   reviews.c.request.in_(in_mails)))
    query = query.order_by((reviews.c.status != OPEN), reviews.c.due_at, reviews.c.id)
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return [Task.from_row(r) for r in conn.execute(query).all()]


def count(conn: Connection, *, include_closed: bool = False,
          overdue_at: dt.datetime | None = None) -> int:
    """How many tasks `tasks` would list with the same filters (for paging)."""
    query = _filtered(include_closed=include_closed, overdue_at=overdue_at)
    return conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()


def _filtered(*, include_closed: bool, overdue_at: dt.datetime | None) -> sa.Select:
    query = _select()
    if not include_closed:
        query = query.where(reviews.c.status == OPEN)
    if overdue_at is not None:
        query = query.where(reviews.c.status == OPEN, reviews.c.due_at <= overdue_at)
    return query


def history(conn: Connection, task_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(sa.select(review_actions).where(review_actions.c.review == task_id)
                        .order_by(review_actions.c.id)).all()
    return [{"action": r.action, "operator": r.operator, "at": r.at, "note": r.note,
             "changes": json.loads(r.changes) if r.changes else {}} for r in rows]


def overdue_unalerted(conn: Connection, now: dt.datetime) -> list[Task]:
    """Open tasks past their due time whose operators were not alerted yet, most overdue first."""
    rows = conn.execute(_select().where(reviews.c.status == OPEN, reviews.c.due_at <= now,
                                        reviews.c.overdue_alerted_at.is_(None))
                        .order_by(reviews.c.due_at, reviews.c.id)).all()
    return [Task.from_row(r) for r in rows]


def request_of(conn: Connection, task: Task) -> Any | None:
    """The stored request a request-level task is about (None for a mail-level task)."""
    if task.request is None:
        return None
    return conn.execute(sa.select(requests).where(requests.c.id == task.request)).first()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
