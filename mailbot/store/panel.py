"""The counts the console's panel, /healthz and /metrics read: one query each, grouped in the
database, so a scrape costs the same whatever the history holds."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot.store.schema import events, mails, outbox, reviews

PASS_FINISHED = "pass_finished"  # the event a pass logs when it ends (detail: duration_seconds)


@dataclass(frozen=True)
class LastPass:
    at: dt.datetime
    # "pass_finished": a pass said so (every `run_once` records one); "newest_event": a store
    # no pass has finished on yet, read by its newest event of any kind.
    source: str
    duration_seconds: float | None
    errors: int | None = None  # mailbox, SMTP and store faults the pass met (run_once's report)


def alerts_by_title(conn: Connection) -> dict[str, int]:
    """Operator alerts raised so far, by title ("Entrega fallida", "Buzón inaccesible"...)."""
    title = sa.func.json_extract(events.c.detail, "$.title") if conn.dialect.name == "sqlite" \
        else sa.cast(events.c.detail, sa.JSON)["title"].as_string()
    rows = conn.execute(sa.select(title, sa.func.count()).where(events.c.event == "alert")
                        .group_by(title)).all()
    return {str(name or ""): count for name, count in rows}


def ping(conn: Connection) -> None:
    conn.execute(sa.select(sa.literal(1))).scalar_one()


def mails_by_outcome(conn: Connection, *, since: dt.datetime | None = None) -> dict[str, int]:
    """Mails by their outcome ("" for a mail not decided yet), received since `since`."""
    query = sa.select(mails.c.outcome, sa.func.count()).group_by(mails.c.outcome)
    if since is not None:
        query = query.where(mails.c.received_at >= since)
    return {outcome or "": count for outcome, count in conn.execute(query)}


def outbox_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """(status, purpose) -> messages: queued / sent / failed, of reply / keys / alert."""
    rows = conn.execute(sa.select(outbox.c.status, outbox.c.purpose, sa.func.count())
                        .group_by(outbox.c.status, outbox.c.purpose))
    return {(status, purpose): count for status, purpose, count in rows}


def review_counts(conn: Connection, now: dt.datetime) -> tuple[int, int]:
    """(open tasks, open tasks past their due time)."""
    is_open = reviews.c.status == "open"
    return tuple(conn.execute(sa.select(
        sa.func.count().filter(is_open),
        sa.func.count().filter(is_open, reviews.c.due_at <= now))).one())  # type: ignore[return-value]


def recent_alerts(conn: Connection, *, limit: int = 10) -> list[dict[str, Any]]:
    """The newest alert events, newest first, with the reference of their mail."""
    rows = conn.execute(sa.select(events.c.at, events.c.detail, mails.c.reference)
                        .select_from(events.outerjoin(mails, events.c.mail == mails.c.id))
                        .where(events.c.event == "alert")
                        .order_by(events.c.id.desc()).limit(limit))
    out = []
    for at, detail, reference in rows:
        data = json.loads(detail or "{}")
        out.append({"at": at, "reference": reference, "title": str(data.get("title", "")),
                    "detail": str(data.get("detail", ""))})
    return out


def last_pass(conn: Connection) -> LastPass | None:
    """When the last pass ended: its pass_finished event, else the newest event (a stand-in)."""
    row = conn.execute(sa.select(events.c.at, events.c.detail)
                       .where(events.c.event == PASS_FINISHED)
                       .order_by(events.c.id.desc()).limit(1)).first()
    if row is not None:
        detail = json.loads(row.detail or "{}")
        duration, errors = detail.get("duration_seconds"), detail.get("errors")
        return LastPass(row.at, PASS_FINISHED,
                        float(duration) if isinstance(duration, int | float) else None,
                        errors if isinstance(errors, int) else None)
    newest = conn.execute(sa.select(sa.func.max(events.c.at))).scalar()
    return LastPass(newest, "newest_event", None) if newest is not None else None


KEPT_PASSES = 100  # pass_finished events kept: the panel needs the last one, not a history


def record_pass(conn: Connection, *, at: dt.datetime, duration_seconds: float,
                **counts: int) -> None:
    """Note that a pass ended (the panel's "last pass" and /healthz read it), keeping only the
    newest KEPT_PASSES such events so an idle service polling every minute adds no history."""
    conn.execute(events.insert().values(
        at=at, mail=None, event=PASS_FINISHED,
        detail=json.dumps({"duration_seconds": round(duration_seconds, 3), **counts})))
    keep = (sa.select(events.c.id).where(events.c.event == PASS_FINISHED)
            .order_by(events.c.id.desc()).limit(KEPT_PASSES).subquery())
    conn.execute(events.delete().where(events.c.event == PASS_FINISHED,
                                       events.c.id.not_in(sa.select(keep.c.id))))

