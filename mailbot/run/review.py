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
from collections.abc import Mapping, Sequence
from typing import Any

from mailbot.business_hours import BusinessCalendar
from mailbot.model import RuleHit
from mailbot.ruleset import Ruleset
from mailbot.store import Connection, Store, reviews

# Mail-level task kinds (request-level tasks carry the request kind).
SENDER = "sender"
THROTTLED = "throttled"
UNRECOGNISED = "unrecognised"
TOO_LARGE = "too_large"
MAIL_KINDS = (SENDER, THROTTLED, UNRECOGNISED, TOO_LARGE)

# Free-update review reasons, named after the rule that sent the request to review.
FREE_UPDATE_REASONS = {
    "registry.known": "unknown_serial",
    "registry.system": "system_mismatch",
    "registry.address": "no_registered_address",
}


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
        due = due.astimezone(dt.UTC).replace(tzinfo=None)
    return due


def flag_overdue(store: Store, conn: Connection, now: dt.datetime,
                 calendar: BusinessCalendar | None = None) -> list[int]:
    """Raise one operator alert per open task past its due time, once per task.

    The alerts join the store's alert events, so `send_alerts` groups them into one mail.
    """
    flagged = []
    for task in reviews.overdue_unalerted(conn, now):
        due = (calendar.describe(task.due_at.replace(tzinfo=dt.UTC)) if calendar
               else f"{task.due_at:%Y-%m-%d %H:%M} UTC")
        store.log_event(conn, "alert", mail=task.mail, title="Revisión vencida",
                        detail=f"tarea #{task.id} ({task.reference}, {task.kind}: "
                               f"{task.reason}) venció el {due}; "
                               f"mailbot review show {task.id}")
        reviews.update(conn, task.id, overdue_alerted_at=now)
        reviews.record(conn, task.id, "overdue_alerted", reviews.BOT, now,
                       note=f"due {due}; operators alerted")
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

