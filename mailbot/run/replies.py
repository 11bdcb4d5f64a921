"""Rendering a planned answer and putting it in the outbox, inside the caller's transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from mailbot.answer import plan as answer
from mailbot.answer.message import build_reply, make_message_id
from mailbot.model import Extraction, ParsedMail
from mailbot.run.app import App
from mailbot.store import Connection, MailRecord

log = logging.getLogger("mailbot")


def reply_context(app: App, rec: MailRecord, extraction: Extraction,
             rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    kind_id = extraction.kind or "free_update"
    ctx = answer.base_context(
        reference=rec.reference or "", kind_title=app.rules.kind(kind_id).title,
        original_subject=extraction.subject, requester=extraction.sender, today=app.today(),
        target_version=app.rules.free_update.target_version,
        phone=app.rules.free_update.installation.phone,
        eligible_from=app.rules.free_update.eligible_from, bot_name=app.config.bot.from_name,
        extraction=extraction, rows=rows)
    if rows:
        ctx["requester"]["name"] = rows[0].get("contact_name") or ""
    ctx["identify_help"] = app.rules.unlock.identify_help if app.rules.unlock else ""
    return ctx



def queue_message(app: App, conn: Connection, rec: MailRecord, extraction: Extraction,
                  parsed: ParsedMail | None, planned: answer.Planned, *,
                  references: Sequence[str] | None = None) -> None:
    """Render a planned answer and put it in the outbox, inside the caller's transaction."""
    context = reply_context(app, rec, extraction, planned.rows)
    context.update(planned.extra)
    rendered = app.renderer.render(planned.template, context)
    domain = app.config.bot.address.rpartition("@")[2]
    message_id = make_message_id(domain)
    if references is None:
        references = parsed.references if parsed else ()
    data = build_reply(
        from_address=app.config.bot.address, from_name=app.config.bot.from_name,
        to=[planned.to], original_subject=extraction.subject,
        in_reply_to=extraction.message_id,
        references=references, rendered=rendered,
        reference=context["reference"] or "", message_id=message_id, date=app.clock())
    app.store.enqueue(conn, mail=rec.id, purpose=planned.purpose, template=planned.template,
                      message_id=message_id, envelope_from=envelope_from(app),
                      recipients=[planned.to], data=data)



def envelope_from(app: App) -> str:
    return app.config.smtp.envelope_from or app.config.bot.address
