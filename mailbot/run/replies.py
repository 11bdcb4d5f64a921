"""Rendering a planned answer and putting it in the outbox, inside the caller's transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from mailbot.addresses import addresses_match, ascii_address
from mailbot.answer import plan as answer
from mailbot.answer.message import build_reply, make_message_id
from mailbot.answer.results_sheet import MIME_TYPE, results_sheet, sheet_filename
from mailbot.model import Extraction, ParsedMail
from mailbot.run import versions
from mailbot.run.app import App
from mailbot.store import Connection, MailRecord

log = logging.getLogger("mailbot")


def reply_context(app: App, conn: Connection, rec: MailRecord, extraction: Extraction,
                  planned: answer.Planned) -> dict[str, Any]:
    rows = planned.rows
    kind_id = extraction.kind or "free_update"
    ctx = answer.base_context(
        reference=rec.reference or "", kind_title=app.rules.kind(kind_id).title,
        original_subject=extraction.subject, requester=extraction.sender, today=app.today(),
        target_version=app.rules.free_update.target_version,
        phone=app.rules.free_update.installation.phone,
        eligible_from=app.rules.free_update.eligible_from, bot_name=app.config.bot.from_name,
        extraction=extraction, rows=rows)
    ctx["requester"]["name"] = greeting_name(app, conn, extraction, planned)
    ctx["identify_help"] = app.rules.unlock.identify_help if app.rules.unlock else ""
    return ctx



def greeting_name(app: App, conn: Connection, extraction: Extraction,
                  planned: answer.Planned) -> str:
    """Whom the greeting names: the contact the sender wrote, in a mail to the sender; in a
    mail to anyone else (keys sent to a registered contact), the registered company of its
    serials, never the name a third party wrote."""
    if not planned.rows:
        return ""
    if extraction.sender and addresses_match(planned.to, extraction.sender):
        return planned.rows[0].get("contact_name") or ""
    serials = [r["serial"] for r in planned.rows if r.get("serial")]
    registry = app.store.licences_for(conn, serials) if serials else {}
    companies = {(registry[s].company or "").strip() for s in serials if s in registry}
    return companies.pop() if len(companies) == 1 else ""


def queue_message(app: App, conn: Connection, rec: MailRecord, extraction: Extraction,
                  parsed: ParsedMail | None, planned: answer.Planned, *,
                  references: Sequence[str] | None = None) -> None:
    """Render a planned answer and put it in the outbox, inside the caller's transaction."""
    context = reply_context(app, conn, rec, extraction, planned)
    context.update(planned.extra)
    attachments = results_attachment(app, context, planned)
    context["attachment"] = attachments[0][0] if attachments else None
    rendered = app.renderer.render(planned.template, context)
    domain = app.config.bot.address.rpartition("@")[2]
    message_id = make_message_id(domain)
    if references is None:
        references = parsed.references if parsed else ()
    to = ascii_address(planned.to)  # the envelope and the To header: one form of the domain
    data = build_reply(
        from_address=app.config.bot.address, from_name=app.config.bot.from_name,
        to=[to], original_subject=extraction.subject,
        in_reply_to=extraction.message_id,
        references=references, rendered=rendered,
        reference=context["reference"] or "", message_id=message_id, date=app.clock(),
        attachments=attachments)
    app.store.enqueue(conn, mail=rec.id, purpose=planned.purpose, template=planned.template,
                      message_id=message_id, envelope_from=envelope_from(app),
                      recipients=[to], data=data, versions=versions.in_use(app, conn))



def results_attachment(app: App, context: dict[str, Any],
                       planned: answer.Planned) -> list[tuple[str, bytes, tuple[str, str]]]:
    """The results spreadsheet the plan asked for, as (file name, bytes, MIME type); the
    problems of the mail, and the contact its sender wrote, go to its sender only."""
    if not planned.results_sheet:
        return []
    rules = app.rules.free_update
    to_sender = planned.purpose == "reply"
    data = results_sheet(planned.rows, context["problems"] if to_sender else (),
                         answers=rules.answers, target_version=rules.target_version,
                         eligible_from=rules.eligible_from, requester_columns=to_sender)
    return [(sheet_filename(rules.answers, context["reference"]), data, MIME_TYPE)]


def envelope_from(app: App) -> str:
    return app.config.smtp.envelope_from or app.config.bot.address
