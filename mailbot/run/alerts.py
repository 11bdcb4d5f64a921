"""Operator alerts: overdue review tasks, and one grouped mail per pass for everything flagged."""

from __future__ import annotations

import logging

from mailbot.answer.message import build_alert, make_message_id
from mailbot.run import review, versions
from mailbot.run.app import App
from mailbot.run.replies import envelope_from

log = logging.getLogger("mailbot")


def flag_overdue(app: App) -> list[int]:
    """One operator alert per review task past its due time (each task alerts once)."""
    with app.store.transaction() as conn:
        return review.flag_overdue(app.store, conn, app.now(), app.calendar())



def send_alerts(app: App) -> None:
    """One grouped alert to the operators for everything flagged since the last one."""
    operators = app.config.bot.operators
    with app.store.transaction() as conn:
        pending = app.store.unalerted(conn)
        if not pending:
            return
        if operators:
            alerts = [{"title": e["title"], "detail": e["detail"], "reference": e["reference"]}
                      for e in pending]
            rendered = app.renderer.render("operator_alert", {
                "alerts": alerts, "bot_name": app.config.bot.from_name, "today": app.today()})
            domain = app.config.bot.address.rpartition("@")[2]
            message_id = make_message_id(domain)
            data = build_alert(from_address=app.config.bot.address,
                               from_name=app.config.bot.from_name, to=list(operators),
                               subject=f"[mailbot] {len(alerts)} aviso(s) para operadores",
                               rendered=rendered, message_id=message_id)
            app.store.enqueue(conn, mail=None, purpose="alert", template="operator_alert",
                              message_id=message_id, envelope_from=envelope_from(app),
                              recipients=list(operators), data=data,
                              versions=versions.in_use(app, conn))
        app.store.mark_alerted(conn, max(e["id"] for e in pending))
