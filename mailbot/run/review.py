"""The review queue: what the rules must not decide alone, one task each, with its history.

A task holds the mail, what was read from it (a snapshot, so an operator's approval decides
exactly what the pipeline would have), the reason as a code and as text, and a due time on the
business calendar. Every action on a task is a row of `review_actions`: who, when, what, and
what changed. Tasks are created by the pipeline in the transaction that decides the mail, and
acted on by `mailbot review ...` (`mailbot.ops.cli_review`) in one transaction per action.

Task kinds: `free_update` and `unlock` (one request the rules sent to review), `sender` (the
From address failed the sender checks), `throttled` (more mails from one sender than
[throttle] allows), `unrecognised` (no request subject), `too_large` (over the size limit, not
read). Statuses: `open`; `approved` and `rejected` (an operator's decision); `resolved` (after
an operator's edit the rules decided it themselves).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot.run import unlock_flow  # noqa: F401 - registers the `unlocks` table the FK names
from mailbot.business_hours import BusinessCalendar
from mailbot.model import RuleHit
from mailbot.ruleset import Ruleset
from mailbot.store.database import Store, mails, metadata, requests

OPEN = "open"
APPROVED = "approved"
REJECTED = "rejected"
RESOLVED = "resolved"
STATUSES = (OPEN, APPROVED, REJECTED, RESOLVED)

# Mail-level task kinds (request-level tasks carry the request kind).
SENDER = "sender"
THROTTLED = "throttled"
UNRECOGNISED = "unrecognised"
TOO_LARGE = "too_large"
MAIL_KINDS = (SENDER, THROTTLED, UNRECOGNISED, TOO_LARGE)

BOT = "mailbot"  # the operator name of what the bot itself does to a task

# Free-update review reasons, named after the rule that sent the request to review.
FREE_UPDATE_REASONS = {
    "registry.known": "unknown_serial",
    "registry.system": "system_mismatch",
    "registry.address": "no_registered_address",
}

reviews = sa.Table(
    "reviews", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("mail", sa.Integer, sa.ForeignKey("mails.id"), nullable=False, index=True),
    sa.Column("request", sa.Integer, sa.ForeignKey("requests.id"), index=True),
    sa.Column("unlock", sa.Integer, sa.ForeignKey("unlocks.id")),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("reason", sa.String(40), nullable=False),  # a code: unknown_serial, policy, ...
    sa.Column("reason_text", sa.Text, nullable=False),  # the rule's reason, for people
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("due_at", sa.DateTime, nullable=False, index=True),
    sa.Column("snapshot", sa.Text, nullable=False),  # JSON: what was read, the rules' reasons
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("closed_at", sa.DateTime),
    sa.Column("closed_by", sa.String(200)),
    sa.Column("overdue_alerted_at", sa.DateTime),  # set once: each overdue task alerts once
)

review_actions = sa.Table(
    "review_actions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("review", sa.Integer, sa.ForeignKey("reviews.id"), nullable=False, index=True),
    # created / approve / reject / edit / repeat / overdue_alerted
    sa.Column("action", sa.String(30), nullable=False),
    sa.Column("operator", sa.String(200), nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("changes", sa.Text),  # JSON: what the action changed
)


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

    @classmethod
    def from_row(cls, row: Any) -> "Task":
        return cls(row.id, row.mail, row.request, row.unlock, row.kind, row.reason,
                   row.reason_text, row.status, row.due_at, json.loads(row.snapshot or "{}"),
                   row.created_at, row.closed_at, row.closed_by, row.overdue_alerted_at,
                   row.reference or "", row.sender, row.subject or "")

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


def close(conn: Connection, task_id: int, status: str, *, operator: str,
          now: dt.datetime) -> None:
    assert status in (APPROVED, REJECTED, RESOLVED)
    conn.execute(reviews.update().where(reviews.c.id == task_id).values(
        status=status, closed_at=now, closed_by=operator))


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
          mail_ids: Sequence[int] | None = None) -> list[Task]:
    """Open tasks (or all), the most urgent first; `overdue_at`: only those due by then."""
    query = _select()
    if not include_closed:
        query = query.where(reviews.c.status == OPEN)
    if overdue_at is not None:
        query = query.where(reviews.c.status == OPEN, reviews.c.due_at <= overdue_at)
    if mail_ids is not None:
        in_mails = sa.select(requests.c.id).where(requests.c.mail.in_(list(mail_ids)))
        query = query.where(sa.or_(reviews.c.mail.in_(list(mail_ids)),
                                   reviews.c.request.in_(in_mails)))
    query = query.order_by((reviews.c.status != OPEN), reviews.c.due_at, reviews.c.id)
    return [Task.from_row(r) for r in conn.execute(query).all()]


def history(conn: Connection, task_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(sa.select(review_actions).where(review_actions.c.review == task_id)
                        .order_by(review_actions.c.id)).all()
    return [{"action": r.action, "operator": r.operator, "at": r.at, "note": r.note,
             "changes": json.loads(r.changes) if r.changes else {}} for r in rows]


# --- due times and overdue alerts --------------------------------------------------------------

def due_at(rules: Ruleset, calendar: BusinessCalendar, received_at: dt.datetime,
           facts: Mapping[str, Any] | None = None) -> dt.datetime:
    """When a task is due, naive UTC: an unlock's own window end, else `review_due_hours`
    business hours (rules/unlock.toml) from receipt."""
    due = (facts or {}).get("due_at")
    if isinstance(due, str):
        try:
            due = dt.datetime.fromisoformat(due)
        except ValueError:
            due = None
    if not isinstance(due, dt.datetime):
        hours = rules.unlock.review_due_hours if rules.unlock else 24
        due = calendar.add_business_hours(received_at, hours)
    if due.tzinfo is not None:
        due = due.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return due


def flag_overdue(store: Store, conn: Connection, now: dt.datetime,
                 calendar: BusinessCalendar | None = None) -> list[int]:
    """Raise one operator alert per open task past its due time, once per task.

    The alerts join the store's alert events, so `send_alerts` groups them into one mail.
    """
    rows = conn.execute(_select().where(reviews.c.status == OPEN, reviews.c.due_at <= now,
                                        reviews.c.overdue_alerted_at.is_(None))
                        .order_by(reviews.c.due_at, reviews.c.id)).all()
    flagged = []
    for row in rows:
        task = Task.from_row(row)
        due = (calendar.describe(task.due_at.replace(tzinfo=dt.timezone.utc)) if calendar
               else f"{task.due_at:%Y-%m-%d %H:%M} UTC")
        store.log_event(conn, "alert", mail=task.mail, title="Revisión vencida",
                        detail=f"tarea #{task.id} ({task.reference}, {task.kind}: "
                               f"{task.reason}) venció el {due}; "
                               f"mailbot review show {task.id}")
        conn.execute(reviews.update().where(reviews.c.id == task.id)
                     .values(overdue_alerted_at=now))
        record(conn, task.id, "overdue_alerted", BOT, now, note=f"due {due}; operators alerted")
        flagged.append(task.id)
    return flagged


# --- helpers -------------------------------------------------------------------------------

def reason_of(kind: str, hits: Sequence[RuleHit], facts: Mapping[str, Any]) -> tuple[str, str]:
    """(reason code, reason text) of a request the rules sent to review."""
    text = hits[-1].reason if hits else "the rules sent it to review"
    code = facts.get("review_reason")
    if not code and hits:
        code = FREE_UPDATE_REASONS.get(hits[-1].rule, hits[-1].rule)
    return str(code or "review"), text


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
