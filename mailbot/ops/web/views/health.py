"""`GET /healthz` (no login, for a load balancer or systemd's watchdog) and `GET /metrics`
(Prometheus text format; a session or a token, like every other route).

Both read the store on each request, so they tell the state of the service that shares it,
whichever process runs the passes. Until `mailbot run` logs a `pass_finished` event the last
pass is the newest event of any kind, named so ("newest_event") in both answers.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mailbot.ops.web.context import WebContext, context
from mailbot.store import panel

log = logging.getLogger("mailbot.web")
router = APIRouter()


@router.get("/healthz", summary="200 when the store answers and the last pass is recent; "
                                "503 with the reason otherwise")
def healthz(request: Request) -> JSONResponse:
    web = context(request)
    try:
        with web.store.transaction() as conn:
            panel.ping(conn)
            last = panel.last_pass(conn)
    except Exception:  # the reason is logged; the answer names no URL, user or password
        log.exception("event=health_store_unreachable")
        return JSONResponse({"status": "error", "reason": "the store does not answer"}, 503)
    limit = web.max_pass_age
    if last is None:
        return JSONResponse({"status": "error", "reason": "no pass recorded yet",
                             "max_pass_age_seconds": limit.total_seconds()}, 503)
    age = (web.now() - last.at).total_seconds()
    body = {"last_pass_at": last.at.isoformat() + "Z", "last_pass_source": last.source,
            "last_pass_age_seconds": round(age, 1),
            "max_pass_age_seconds": limit.total_seconds()}
    if age > limit.total_seconds():
        return JSONResponse({"status": "error", "reason": f"the last pass is {int(age)} s old, "
                             f"more than {int(limit.total_seconds())} s", **body}, 503)
    return JSONResponse({"status": "ok", **body})


class StoreCollector(Collector):
    """Builds every mailbot_ metric from the store at each scrape (no counters kept in the
    process, so any number of console processes report the same figures)."""

    def __init__(self, web: WebContext) -> None:
        self.web = web

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("mailbot_store_up", "1 when the store answered this scrape")
        try:
            families = list(self._from_store())
        except Exception:
            log.exception("event=metrics_store_unreachable")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _from_store(self) -> Iterator[Metric]:
        web = self.web
        with web.store.transaction() as conn:
            outcomes = panel.mails_by_outcome(conn)
            messages = panel.outbox_counts(conn)
            open_tasks, overdue = panel.review_counts(conn, web.now())
            pool = web.store.pool_counts(conn)
            last = panel.last_pass(conn)
            alerts = panel.alerts_by_title(conn)
        mails = GaugeMetricFamily("mailbot_mails", "Mails in the store by outcome "
                                  "(\"none\": not decided yet)", labels=["outcome"])
        for outcome, count in sorted(outcomes.items()):
            mails.add_metric([outcome or "none"], count)
        yield mails
        replies = GaugeMetricFamily("mailbot_outbox_messages", "Outbox messages by state "
                                    "(queued, sent, failed) and purpose (reply, keys, alert)",
                                    labels=["state", "purpose"])
        for (status, purpose), count in sorted(messages.items()):
            replies.add_metric([status, purpose], count)
        yield replies
        yield GaugeMetricFamily("mailbot_review_tasks_open", "Open review tasks",
                                value=open_tasks)
        yield GaugeMetricFamily("mailbot_review_tasks_overdue",
                                "Open review tasks past their due time", value=overdue)
        free = GaugeMetricFamily("mailbot_keys_free", "Free keys in the pool per system",
                                 labels=["system"])
        assigned = GaugeMetricFamily("mailbot_keys_assigned", "Keys bound to a serial per "
                                     "system", labels=["system"])
        systems = dict.fromkeys([*web.rules.catalogue.names, *sorted(pool)])
        for system in systems:
            counts = pool.get(system, (0, 0))
            free.add_metric([system], counts[0])
            assigned.add_metric([system], counts[1])
        yield free
        yield assigned
        if last is not None:
            yield GaugeMetricFamily("mailbot_last_pass_timestamp_seconds",
                                    "When the last pass ended (Unix time)",
                                    value=last.at.replace(tzinfo=dt.UTC).timestamp())
            if last.duration_seconds is not None:
                yield GaugeMetricFamily("mailbot_last_pass_duration_seconds",
                                        "How long the last pass took",
                                        value=last.duration_seconds)
            if last.errors is not None:
                yield GaugeMetricFamily("mailbot_last_pass_errors",
                                        "Faults the last pass met: mailbox (IMAP), SMTP, store",
                                        value=last.errors)
        raised = CounterMetricFamily("mailbot_alerts", "Operator alerts raised, by title "
                                     "(delivery failed, mailbox unreachable, quarantine...)",
                                     labels=["title"])
        for title, count in sorted(alerts.items()):
            raised.add_metric([title], count)
        yield raised


def metrics_registry(web: WebContext) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(web))
    return registry


@router.get("/metrics", summary="Prometheus metrics, every name prefixed mailbot_")
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics),
                    media_type=CONTENT_TYPE_LATEST)
