"""One mail (`/correos/{reference}`, `GET /api/v1/mails/{reference}`): the original, what was
read from it, each request's decision with every rule that fired, every reply and its state,
the unlock ledger lines and review history that belong to it; its attachments as downloads;
and the operator's actions: resend a reply, retry a quarantined mail.

The store keeps what mailbot did, not the mail's bytes: the original is read again from the
mailbox it came from (`Source.original`, checked against the fingerprint recorded when it
arrived, so another mail is never shown in its place). When the mailbox cannot give it, the
page says where it is and shows everything stored.

Nothing here sends mail: a resend is queued in the outbox and a retry puts the mail back in
the inbox; the running service does the rest. Each action is recorded with the account's name.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from mailbot.errors import MailbotError
from mailbot.model import Attachment, ParsedMail
from mailbot.ops.logview import used_versions
from mailbot.ops.resend import resend_reply
from mailbot.ops.web.auth import Principal, current_user, is_api
from mailbot.ops.web.context import WebContext, context
from mailbot.ops.web.hit_words import HitReason, shown_hits, task_reason
from mailbot.ops.web.mail_view import (
    DOWNLOAD_HEADERS,
    PAGE_POLICY,
    content_disposition,
    mask_key,
    reply_display,
    safe_filename,
    sanitised_html,
)
from mailbot.ops.web.pages import N_, page
from mailbot.ops.web.views.mails import iso
from mailbot.read.mime import parse_mail
from mailbot.store import mail_log, reviews, versions
from mailbot.store.database import fingerprint
from mailbot.transport.seams import MailNotFound, SinkUnavailable

log = logging.getLogger("mailbot.web")
router = APIRouter()

Reference = Annotated[str, Path(max_length=60)]
NOTICES = ("resent", "retried")  # ?aviso= after an action: a fixed word, never free text


# --- the original, read from the mailbox -----------------------------------------------------

@dataclass(frozen=True)
class Original:
    parsed: ParsedMail | None
    folder: str  # where the mailbox keeps it, as the operator finds it there
    missing: str | None  # why it could not be read: other_mailbox, too_large, not_found...


def mailbox_folder(web: WebContext, folder: str | None) -> str:
    """The folder's name as the mailbox shows it (IMAP's configured names, Maildir's .name)."""
    if folder is None:
        return web.config.imap.inbox if web.config.source.type == "imap" else "INBOX"
    if web.config.source.type == "imap":
        return getattr(web.config.imap, f"folder_{folder}", folder)
    return f".{folder}"


def read_original(web: WebContext, mail: Any) -> Original:
    """The mail's bytes from its mailbox, parsed as the pipeline parses them, or why not."""
    from mailbot.run.wiring import open_source

    folder = mail.folder if mail.filed else None
    where = mailbox_folder(web, folder)
    if mail.size is None or mail.fingerprint.startswith("oversized:"):
        return Original(None, where, "too_large")
    try:
        source = open_source(web.config)
    except MailbotError as exc:
        log.warning("event=original_unavailable reference=%s error=%s", mail.reference, exc)
        return Original(None, where, "unreachable")
    try:
        if source.name != mail.source:
            return Original(None, where, "other_mailbox")
        expected = mail.fingerprint
        data = source.original(mail.mail_id, folder, size=mail.size,
                               matches=lambda data: fingerprint(data) == expected)
    except MailNotFound:
        return Original(None, where, "not_found")
    except MailbotError as exc:
        log.warning("event=original_unavailable reference=%s error=%s", mail.reference, exc)
        return Original(None, where, "unreachable")
    finally:
        source.close()
    return Original(parse_mail(data), where, None)


def _attachment_url(reference: str, index: int) -> str:
    return f"/correos/{quote(reference, safe='')}/adjuntos/{index}"


def _original_json(reference: str, original: Original) -> dict[str, Any]:
    parsed = original.parsed
    if parsed is None:
        return {"available": False, "folder": original.folder, "missing": original.missing,
                "headers": {}, "text": "", "html": "", "attachments": []}
    return {
        "available": True, "folder": original.folder, "missing": None,
        "headers": {name: parsed.header(name) or "" for name in ("from", "to", "cc", "date",
                                                                  "subject")},
        "text": parsed.text, "html": sanitised_html(parsed.html),
        "attachments": [{"index": n, "filename": safe_filename(a.filename),
                         "content_type": a.content_type, "size": len(a.payload),
                         "url": _attachment_url(reference, n)}
                        for n, a in enumerate(parsed.attachments)],
    }


# --- what is stored --------------------------------------------------------------------------

def _mail_row(web: WebContext, reference: str) -> Any:
    if not reference.isprintable():  # no reference holds one (and PostgreSQL refuses a NUL)
        raise HTTPException(404, "no such mail")
    with web.store.transaction() as conn:
        row = mail_log.by_reference(conn, reference)
    if row is None:
        raise HTTPException(404, f"no mail {reference!r}")
    return row


def _masked(text: str, secrets: list[str]) -> str:
    for key in secrets:
        text = text.replace(key, mask_key(key) or "")
    return text


def _stored(web: WebContext, mail: Any, user: Principal, said: HitReason) -> dict[str, Any]:
    """Everything the store holds about `mail`; keys masked for anyone but an admin."""
    with web.store.transaction() as conn:
        reqs = mail_log.requests_with_keys(conn, mail.id)
        messages = mail_log.messages(conn, mail.id)
        unlocks = mail_log.unlocks_of(conn, mail.id)
        tasks = [(t, reviews.history(conn, t.id))
                 for t in reviews.tasks(conn, include_closed=True, mail_ids=[mail.id])]
        events = mail_log.events_of(conn, mail.id)
        known = versions.hashes(conn)
    hidden = [] if user.is_admin else [r.key_text for r in reqs if r.key_text]
    extraction = json.loads(mail.extraction or "{}")
    replies = []
    for m in messages:
        shown = reply_display(bytes(m.data))
        replies.append({
            "id": m.id, "purpose": m.purpose, "template": m.template,
            "recipients": json.loads(m.recipients), "status": m.status,
            "message_id": m.message_id, "created_at": iso(m.created_at),
            "sent_at": iso(m.sent_at), "attempts": m.attempts, "error": m.last_error,
            "subject": shown["subject"], "text": _masked(shown["text"], hidden),
            "resendable": m.status != "queued" and m.purpose != "alert",
            **used_versions(m, known), "versions": version_list(m, known),
        })
    return {
        "reference": mail.reference, "received_at": iso(mail.received_at),
        "sender": mail.sender, "subject": mail.subject, "kind": mail.kind,
        "ignored": mail.ignored, "status": mail.status, "outcome": mail.outcome,
        "folder": mail.folder, "filed": bool(mail.filed), "attempts": mail.attempts,
        "error": mail.error, "source": mail.source, "mail_id": mail.mail_id,
        "size": mail.size, "notes": json.loads(mail.notes or "[]"),
        **used_versions(mail, known), "versions": version_list(mail, known),
        "problems": [{"code": p.get("code", ""), "field": p.get("field"),
                      "source": p.get("source"), "detail": p.get("detail", "")}
                     for p in extraction.get("problems", [])],
        "requests": [{
            "position": r.position, "kind": r.kind, "serial": r.serial, "system": r.system,
            "company": r.company, "contact_name": r.contact_name,
            "contact_email": r.contact_email, "source": r.source, "outcome": r.outcome,
            "recipient": r.recipient, "hits": shown_hits(json.loads(r.hits or "[]"), said),
            "key": r.key_text if user.is_admin else mask_key(r.key_text),
        } for r in reqs],
        "replies": replies,
        "unlocks": [{
            "id": u.id, "serial": u.serial, "number": u.number, "modality": u.modality,
            "status": u.status, "reason": u.reason, "approved_by": u.approved_by,
            "documents": json.loads(u.documents or "[]"), "role": role,
            "due_at": iso(u.due_at), "created_at": iso(u.created_at),
            "decided_at": iso(u.decided_at),
        } for u, role in unlocks],
        "reviews": [{
            "id": t.id, "kind": t.kind, "reason": t.reason, "reason_text": t.reason_text,
            "reason_text_es": task_reason(t.reason_text, t.snapshot, said),
            "status": t.status, "due_at": iso(t.due_at), "closed_by": t.closed_by,
            "history": [{"at": iso(h["at"]), "action": h["action"], "operator": h["operator"],
                         "note": h["note"],
                         "note_es": h["note"] and task_reason(h["note"], t.snapshot, said)}
                        for h in history],
        } for t, history in tasks],
        "events": [{"at": iso(e.at), "event": e.event,
                    "detail": {k: str(v) for k, v in json.loads(e.detail or "{}").items()}}
                   for e in events],
        "retryable": mail.status == "quarantined",
    }


def version_list(row: Any, known: dict[tuple[str, int], str]) -> list[dict[str, Any]]:
    """The versions a mail was decided with (a reply rendered with), for the page's line:
    [{kind, number, hash (8 characters)}], empty when none was recorded."""
    return [{"kind": column.removesuffix("_version"), "number": v["number"],
             "hash": (v["hash"] or "")[:8]}
            for column, v in used_versions(row, known).items() if v is not None]


@page(router, html="/correos/{reference}", api="/api/v1/mails/{reference}",
      template="mail.html", title=N_("Mail"), headers={"Content-Security-Policy": PAGE_POLICY},
      summary="One mail: the original, what was read, the decisions, the replies, the history")
def mail_page(request: Request, reference: Reference,
              aviso: Annotated[str, Query(max_length=20, include_in_schema=False)] = ""
              ) -> dict[str, Any]:
    web = context(request)
    mail = _mail_row(web, reference)
    stored = _stored(web, mail, current_user(request), request.app.state.renderer.hit_reason)
    return {**stored, "original": _original_json(mail.reference, read_original(web, mail)),
            "notice": aviso if aviso in NOTICES else ""}


# --- attachments ----------------------------------------------------------------------------

def attachment(request: Request, reference: Reference,
               index: Annotated[int, Path(ge=0, le=10_000)]) -> Response:
    """An attachment of the original, always as a download under a safe name, never shown."""
    web = context(request)
    mail = _mail_row(web, reference)
    original = read_original(web, mail)
    if original.parsed is None or index >= len(original.parsed.attachments):
        raise HTTPException(404, "no such attachment")
    part: Attachment = original.parsed.attachments[index]
    return Response(part.payload, media_type="application/octet-stream", headers={
        **DOWNLOAD_HEADERS, "Content-Disposition": content_disposition(part.filename)})


router.add_api_route("/correos/{reference}/adjuntos/{index}", attachment, methods=["GET"],
                     include_in_schema=False)
router.add_api_route("/api/v1/mails/{reference}/attachments/{index}", attachment,
                     methods=["GET"], response_class=Response,
                     summary="An attachment of the mail, as a download")


# --- actions --------------------------------------------------------------------------------

def _done(request: Request, reference: str, notice: str, body: dict[str, Any]) -> Response:
    """A page's form comes back to the mail with a notice; the API gets JSON (202: queued)."""
    if is_api(request):
        return JSONResponse(body, 202)
    return RedirectResponse(f"/correos/{quote(reference, safe='')}?aviso={notice}", 303)


RESEND_REFUSALS = {
    "no_such_reply": (404, N_("This mail has no such reply.")),
    "alert": (409, N_("Alerts to operators are not resent from here.")),
    "still_queued": (409, N_("This reply is still queued: it has not been sent yet, or a "
                             "resend of it is waiting. Nothing was added.")),
}


def resend(request: Request, reference: Reference,
           message: Annotated[int, Path(ge=1)]) -> Response:
    """Queue the reply again as a new message (its own Message-ID), recorded with the name."""
    web = context(request)
    user = current_user(request)
    mail = _mail_row(web, reference)
    try:
        message_id = resend_reply(web.store, web.config, mail=mail.id, message=message,
                                  operator=user.name, now=web.clock())
    except mail_log.ResendRefused as refused:
        status, text = RESEND_REFUSALS[refused.code]
        raise HTTPException(status, refused.code if is_api(request)
                            else request.app.state.renderer.gettext(text)) from None
    log.info("event=reply_resent reference=%s message=%d operator=%s", mail.reference, message,
             user.name)
    return _done(request, mail.reference, "resent",
                 {"reference": mail.reference, "message_id": message_id, "status": "queued"})


router.add_api_route("/correos/{reference}/respuestas/{message}/reenviar", resend,
                     methods=["POST"], include_in_schema=False)
router.add_api_route("/api/v1/mails/{reference}/replies/{message}/resend", resend,
                     methods=["POST"], summary="Queue a reply again as a new message")


def retry(request: Request, reference: Reference) -> Response:
    """Put a quarantined mail back in the inbox: the next pass decides it again."""
    from mailbot.ops.retry import RetryError
    from mailbot.ops.retry import retry as retry_mail

    web = context(request)
    user = current_user(request)
    mail = _mail_row(web, reference)
    _ = request.app.state.renderer.gettext
    try:
        with mailbox_app(web) as app:
            result = retry_mail(app, mail.reference, operator=user.name)
    except (RetryError, MailbotError) as exc:
        raise HTTPException(409, str(exc) if is_api(request) else
                            _("This mail cannot be retried: %(reason)s", reason=str(exc))
                            ) from None
    log.info("event=mail_retried reference=%s operator=%s", mail.reference, user.name)
    return _done(request, mail.reference, "retried",
                 {"reference": result.reference, "status": "received",
                  "previous_error": result.previous_error})


router.add_api_route("/correos/{reference}/reintentar", retry, methods=["POST"],
                     include_in_schema=False)
router.add_api_route("/api/v1/mails/{reference}/retry", retry, methods=["POST"],
                     summary="Retry a quarantined mail on the next pass")


class _NoSink:
    """The console never sends: a sink that refuses, so nothing can go out from here."""

    def send(self, envelope_from: str, recipients: Any, message: bytes,
             message_id: str) -> None:
        raise SinkUnavailable("the console does not send mail; `mailbot run` does")

    def close(self) -> None:
        pass


@contextlib.contextmanager
def mailbox_app(web: WebContext) -> Iterator[Any]:
    """The run's App over the console's store and the configured mailbox, to call an action
    of ops/ that moves mail in the mailbox (retry); the mailbox is closed after it."""
    from mailbot.run.app import App
    from mailbot.run.wiring import open_renderer, open_source

    source = open_source(web.config)
    try:
        yield App(config=web.config, rules=web.rules, store=web.store,
                  renderer=open_renderer(web.config), source=source, sink=_NoSink(),
                  clock=web.clock)
    finally:
        source.close()
