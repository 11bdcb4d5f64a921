"""The panel (`/`) and its JSON twin (`GET /api/v1/summary`): today's mails by outcome, the
review queue, keys left per system, the outbox, the last pass and the recent alerts.

The model of every page: a view returns its data; `page()` serves it as HTML and as JSON.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from mailbot.ops.pool_levels import levels
from mailbot.ops.web.context import context
from mailbot.ops.web.pages import N_, page
from mailbot.store import panel

router = APIRouter()


class MailsToday(BaseModel):
    total: int
    by_outcome: dict[str, int]


class ReviewCounts(BaseModel):
    open: int
    overdue: int


class KeyStock(BaseModel):
    system: str
    free: int
    assigned: int
    low: bool


class OutboxCounts(BaseModel):
    queued: int
    failed: int


class LastPass(BaseModel):
    at: str | None
    source: str | None  # "pass_finished", or "newest_event" as a stand-in
    duration_seconds: float | None


class Alert(BaseModel):
    at: str
    reference: str | None
    title: str
    detail: str


class Summary(BaseModel):
    today: str  # the business day, in the business zone
    mails_today: MailsToday
    reviews: ReviewCounts
    low_stock_threshold: int
    keys: list[KeyStock]
    outbox: OutboxCounts
    last_pass: LastPass
    alerts: list[Alert]


def _iso(moment: Any) -> str | None:
    return moment.isoformat() + "Z" if moment is not None else None


@page(router, html="/", api="/api/v1/summary", template="panel.html", title=N_("Panel"),
      response_model=Summary,
      summary="The panel: today's mails, the review queue, keys left, the outbox, alerts")
def summary(request: Request) -> dict[str, Any]:
    web = context(request)
    now = web.now()
    with web.store.transaction() as conn:
        outcomes = panel.mails_by_outcome(conn, since=web.today_start())
        open_tasks, overdue = panel.review_counts(conn, now)
        threshold = web.config.web.low_stock_threshold
        stock = levels(conn, web.store, web.rules.catalogue, low_stock_threshold=threshold)
        messages = panel.outbox_counts(conn)
        last = panel.last_pass(conn)
        alerts = panel.recent_alerts(conn, limit=10)
    keys = [{"system": s.system, "free": s.free, "assigned": s.assigned, "low": s.low}
            for s in stock]
    by_status: dict[str, int] = {}
    for (status, _purpose), count in messages.items():
        by_status[status] = by_status.get(status, 0) + count
    return {
        "today": web.clock().astimezone(web.zone).date().isoformat(),
        "mails_today": {"total": sum(outcomes.values()),
                        "by_outcome": dict(sorted(outcomes.items()))},
        "reviews": {"open": open_tasks, "overdue": overdue},
        "low_stock_threshold": threshold,
        "keys": keys,
        "outbox": {"queued": by_status.get("queued", 0), "failed": by_status.get("failed", 0)},
        "last_pass": {"at": _iso(last.at) if last else None,
                      "source": last.source if last else None,
                      "duration_seconds": last.duration_seconds if last else None},
        "alerts": [{**a, "at": _iso(a["at"])} for a in alerts],
    }
