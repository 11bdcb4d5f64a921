"""The review queue (`/revision`, `GET /api/v1/reviews`), one task with its mail beside it
(`/revision/{id}`, `GET /api/v1/reviews/{id}`) and the actions of `mailbot review` on it: approve,
reject with a template, edit and re-run the rules, assign to me, close without an answer
(`POST /revision/{id}/ACTION` from a form, `POST /api/v1/reviews/{id}/ACTION` with JSON).

The actions are mailbot.ops.review_actions', run under the signed-in account's name with
deliver=False: the console never sends mail, the replies wait in the outbox ("en cola") for
the running service. Two operators on one task: review_actions takes the task first, so exactly
one action wins and the other is told (409, "otra persona ya atendió esta tarea").
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from mailbot.errors import MailbotError
from mailbot.ops import review_actions
from mailbot.ops.review_actions import EDITABLE, REJECTION_TEMPLATES, ActionResult, ReviewError
from mailbot.ops.web.auth import Principal, current_user
from mailbot.ops.web.context import WebContext, context
from mailbot.ops.web.hit_words import shown_hits, task_reason
from mailbot.ops.web.pages import N_, page, render
from mailbot.ops.web.review_words import (
    DONE,
    ERRORS,
    FIELDS,
    KINDS,
    REPLY_STATES,
    STATUSES,
    done_code,
    reason_words,
)
from mailbot.ops.web.review_words import REJECTION_TEMPLATES as TEMPLATE_WORDS
from mailbot.run.app import App
from mailbot.store import ledger, processing_log, reviews

log = logging.getLogger("mailbot.web")
router = APIRouter()

PAGE_SIZE = 50
TaskId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Note = Annotated[str, Field(max_length=2000)]
Value = Annotated[str, Field(max_length=500)]


# --- what the API answers ------------------------------------------------------------------------

class TaskItem(BaseModel):
    id: int
    kind: str
    kind_words: str
    reason: str
    reason_words: str  # the reason in the console's language
    reason_text: str  # the rule's own reason (English, as the CLI prints it)
    reason_text_es: str  # the same, as the page shows it
    status: str
    status_words: str
    reference: str
    sender: str | None
    subject: str
    serial: str | None
    due_at: str
    overdue: bool
    assigned_to: str | None
    created_at: str
    closed_at: str | None
    closed_by: str | None


class Queue(BaseModel):
    filter: Literal["open", "overdue", "all"]
    items: list[TaskItem]
    page: int
    page_size: int
    total: int
    has_next: bool


class ReadRequest(BaseModel):
    serial: str
    system: str
    company: str
    contact_name: str
    contact_email: str
    source: str


class Problem(BaseModel):
    code: str
    field: str | None = None
    source: str | None = None
    detail: str


class Hit(BaseModel):
    rule: str
    reason: str  # English, as the CLI prints it
    reason_es: str  # what the page shows (mailbot.ops.web.hit_words)


class HistoryLine(BaseModel):
    at: str
    action: str
    operator: str
    note: str | None
    note_es: str | None  # the page's: the bot's note (a rule's reason) in Spanish
    changes: dict[str, Any]


class Reply(BaseModel):
    template: str
    recipients: list[str]
    state: str  # queued (until the running service sends it), sent, failed
    state_words: str
    message_id: str
    sent_at: str | None
    last_error: str | None


class UnlockLine(BaseModel):
    id: int
    serial: str
    status: str
    number: int | None
    modality: str | None
    documents: list[str]
    reason: str | None


class TaskDetail(BaseModel):
    task: TaskItem
    received_at: str | None
    requests: list[ReadRequest]
    request_outcome: str | None
    problems: list[Problem]
    documents: list[str]
    hits: list[Hit]
    unlock: UnlockLine | None
    history: list[HistoryLine]
    replies: list[Reply]
    actions: list[str]  # what may be done now (none once the task is closed)
    rejection_templates: list[str]
    editable: list[str]


class QueuedReply(BaseModel):
    template: str
    to: str


class ActionOutcome(BaseModel):
    task: int
    status: str  # the task's status after the action
    summary: str
    queued: list[QueuedReply]  # waiting in the outbox until the running service sends them
    message: str


class ActionRefused(BaseModel):
    detail: str
    code: str
    message: str


class ApproveBody(BaseModel):
    note: Note | None = None


class RejectBody(BaseModel):
    template: Literal[REJECTION_TEMPLATES]  # type: ignore[valid-type]
    note: Annotated[str, Field(min_length=1, max_length=2000)]


class EditBody(BaseModel):
    serial: Value | None = None
    system: Value | None = None
    contact_email: Value | None = None
    company: Value | None = None
    contact_name: Value | None = None
    note: Note | None = None


class CloseBody(BaseModel):
    note: Note | None = None


# --- the queue and one task ----------------------------------------------------------------------

def _iso(moment: Any) -> str | None:
    return moment.isoformat() + "Z" if moment is not None else None


def _words(request: Request) -> Callable[..., str]:
    return request.app.state.renderer.gettext


def _item(request: Request, task: reviews.Task, now: Any) -> dict[str, Any]:
    _ = _words(request)
    serial = (task.snapshot.get("request") or {}).get("serial")
    return {"id": task.id, "kind": task.kind, "kind_words": _(KINDS.get(task.kind, task.kind)),
            "reason": task.reason, "reason_words": _(reason_words(task.kind, task.reason)),
            "reason_text": task.reason_text,
            "reason_text_es": task_reason(task.reason_text, task.snapshot,
                                          request.app.state.renderer.hit_reason),
            "status": task.status,
            "status_words": _(STATUSES.get(task.status, task.status)),
            "reference": task.reference, "sender": task.sender, "subject": task.subject,
            "serial": serial if isinstance(serial, str) else None,
            "due_at": _iso(task.due_at), "overdue": task.overdue(now),
            "assigned_to": task.assigned_to, "created_at": _iso(task.created_at),
            "closed_at": _iso(task.closed_at), "closed_by": task.closed_by}


@page(router, html="/revision", api="/api/v1/reviews", template="reviews.html",
      title=N_("Review queue"), response_model=Queue,
      summary="The review queue: open tasks by due time (overdue first), or overdue, or all")
def queue(request: Request, status: Literal["open", "overdue", "all"] = "open",
          page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> dict[str, Any]:
    web = context(request)
    now = web.now()
    filters = {"include_closed": status == "all",
               "overdue_at": now if status == "overdue" else None}
    with web.store.transaction() as conn:
        total = reviews.count(conn, **filters)
        found = reviews.tasks(conn, **filters, limit=PAGE_SIZE + 1,
                              offset=(page - 1) * PAGE_SIZE)
    return {"filter": status, "items": [_item(request, t, now) for t in found[:PAGE_SIZE]],
            "page": page, "page_size": PAGE_SIZE, "total": total,
            "has_next": len(found) > PAGE_SIZE}


def task_detail(request: Request, task_id: int) -> dict[str, Any]:
    web = context(request)
    _ = _words(request)
    with web.store.transaction() as conn:
        task = reviews.get(conn, task_id)
        if task is None:
            raise HTTPException(404, _("There is no such review task."))
        row = reviews.request_of(conn, task)
        entry = ledger.entry(conn, task.unlock) if task.unlock is not None else None
        history = reviews.history(conn, task.id)
        messages = processing_log.messages_of(conn, task.mail)
    snapshot = task.snapshot
    reading = snapshot.get("reading") or {}
    extraction = reading.get("extraction") or {}
    shown = ([row._mapping] if row is not None
             else [snapshot["request"]] if snapshot.get("request")
             else extraction.get("requests") or [])
    requests = [{k: str(r.get(k) or "") for k in ReadRequest.model_fields} for r in shown]
    hits = snapshot.get("hits") or snapshot.get("sender_checks") or []
    said = request.app.state.renderer.hit_reason
    is_open = task.status == reviews.OPEN
    actions = []
    if is_open:
        actions = ["approve", "reject", *(["edit"] if task.request is not None else []),
                   "assign", "close"]
    return {
        "task": _item(request, task, web.now()),
        "received_at": _iso_text(reading.get("received_at")),
        "requests": requests,
        "request_outcome": row.outcome if row is not None else None,
        "problems": [{"code": str(p.get("code", "")), "field": p.get("field"),
                      "source": p.get("source"), "detail": str(p.get("detail", ""))}
                     for p in extraction.get("problems") or []],
        "documents": [str(d) for d in reading.get("documents") or []],
        "hits": shown_hits(hits, said),
        "unlock": None if entry is None else {
            "id": entry.id, "serial": entry.serial, "status": entry.status,
            "number": entry.number, "modality": entry.modality,
            "documents": ledger.stored_documents(entry), "reason": entry.reason},
        "history": [{**h, "at": _iso(h["at"]),  # the bot's note is a hit's reason: in words
                     "note_es": h["note"] and task_reason(h["note"], snapshot, said)}
                    for h in history],
        "replies": [{"template": m.template, "recipients": json.loads(m.recipients or "[]"),
                     "state": m.status, "state_words": _(REPLY_STATES.get(m.status, m.status)),
                     "message_id": m.message_id, "sent_at": _iso(m.sent_at),
                     "last_error": m.last_error} for m in messages],
        "actions": actions,
        "rejection_templates": list(REJECTION_TEMPLATES),
        "editable": list(EDITABLE),
    }


def _iso_text(value: Any) -> str | None:
    """A time stored as ISO text (naive: UTC) as the API writes times."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return _iso(moment)


@page(router, html="/revision/{task_id}", api="/api/v1/reviews/{task_id}",
      template="review.html", title=N_("Review task"), response_model=TaskDetail,
      summary="One review task: the mail, what was read, the rules' reasons, the history, "
              "the replies and what may be done")
def task_page(request: Request, task_id: TaskId,
              done: Annotated[str | None, Query(max_length=20)] = None) -> dict[str, Any]:
    # The JSON twin answers TaskDetail's fields only: the page's extras are left out by it.
    return {**task_detail(request, task_id), **_page_extras(request, done=done)}


def _page_extras(request: Request, *, done: str | None = None, error: str = "",
                 error_detail: str = "", form: dict[str, str] | None = None) -> dict[str, Any]:
    """What only the HTML page needs: the words of the choices, the notice after an action."""
    _ = _words(request)
    return {"done": _(DONE[done]) if done in DONE else "", "error": error,
            "error_detail": error_detail, "form": form or {},
            "template_words": {t: _(w) for t, w in TEMPLATE_WORDS.items()},
            "field_words": {f: _(w) for f, w in FIELDS.items()}}


# --- the actions ---------------------------------------------------------------------------------

class ConsoleSendsNothing:
    """The source and the sink of the console's App: the console reads no mailbox and sends no
    mail (the running service does both), so a call here is a bug that must fail, not deliver."""

    name = "console"

    def fetch_new(self) -> Iterator[Any]:
        raise RuntimeError("the console reads no mailbox")

    def file(self, mail_id: str, folder: str) -> None:
        raise RuntimeError("the console files no mail")

    def restore(self, *args: Any, **kwargs: Any) -> str:
        raise RuntimeError("the console restores no mail")

    def send(self, envelope_from: str, recipients: Sequence[str], message: bytes,
             message_id: str) -> None:
        raise RuntimeError("the console never sends mail; the running service does")

    def close(self) -> None:
        pass


def action_app(console: FastAPI) -> App:
    """The App the review actions run in: the console's config, rules, store and clock, the
    reply templates, and no mailbox or sink. Built once per console app."""
    app = getattr(console.state, "review_app", None)
    if app is None:
        from mailbot.run.wiring import open_renderer

        web: WebContext = console.state.web
        nothing = ConsoleSendsNothing()
        app = App(config=web.config, rules=web.rules, store=web.store,
                  renderer=open_renderer(web.config), source=nothing, sink=nothing,
                  clock=web.clock)
        console.state.review_app = app
    return app


def _run(request: Request, action: str, task_id: int, user: Principal,
         **values: Any) -> ActionResult:
    app = action_app(request.app)
    operator = user.name
    if action == "approve":
        result = review_actions.approve(app, task_id, operator=operator, deliver=False,
                                        **values)
    elif action == "reject":
        result = review_actions.reject(app, task_id, operator=operator, deliver=False,
                                       **values)
    elif action == "edit":
        result = review_actions.edit(app, task_id, values["changes"], operator=operator,
                                     note=values.get("note"), deliver=False)
    elif action == "assign":
        result = review_actions.assign(app, task_id, operator=operator)
    else:
        result = review_actions.close_without_answer(app, task_id, operator=operator,
                                                     **values)
    log.info("event=review_%s task=%d operator=%s via=%s status=%s", action, task_id,
             operator, user.via, result.status)
    return result


def _refusal(exc: MailbotError) -> tuple[int, str, str]:
    """(HTTP status, code, msgid) of an action that could not be done."""
    code = exc.code if isinstance(exc, ReviewError) else "refused"
    status, words = ERRORS.get(code, ERRORS["refused"])
    return status, code, words


def _changed(request: Request, task_id: int, submitted: dict[str, str | None]) -> dict[str, str]:
    """The fields whose value differs from what the task's request holds now: the edit form
    sends all of them, and only a change is a correction."""
    web = context(request)
    with web.store.transaction() as conn:
        task = reviews.get(conn, task_id)
        row = reviews.request_of(conn, task) if task is not None else None
    current = row._mapping if row is not None else {}
    return {k: v for k, v in submitted.items()
            if v is not None and v.strip() != str(current.get(k) or "").strip()}


# JSON, for the vendor's systems (a Bearer token; a browser session needs X-CSRF-Token).

def _api(request: Request, action: str, task_id: int, user: Principal,
         **values: Any) -> Response:
    _ = _words(request)
    try:
        result = _run(request, action, task_id, user, **values)
    except MailbotError as exc:
        status, code, words = _refusal(exc)
        return JSONResponse({"detail": str(exc), "code": code, "message": _(words)}, status)
    return JSONResponse(ActionOutcome(
        task=result.task, status=result.status, summary=result.summary,
        queued=[QueuedReply(template=t, to=to) for t, to in result.messages],
        message=_(DONE[done_code(action, result.status, len(result.messages))])).model_dump())


REFUSED = {404: {"model": ActionRefused}, 409: {"model": ActionRefused},
           422: {"model": ActionRefused}}
User = Annotated[Principal, Depends(current_user)]


@router.post("/api/v1/reviews/{task_id}/approve", response_model=ActionOutcome,
             responses=REFUSED, summary="Approve: queue the answer the rules would have sent")
def api_approve(request: Request, task_id: TaskId, user: User,
                body: ApproveBody | None = None) -> Response:
    return _api(request, "approve", task_id, user, note=(body.note if body else None) or None)


@router.post("/api/v1/reviews/{task_id}/reject", response_model=ActionOutcome,
             responses=REFUSED, summary="Reject: queue a rejection template with the note")
def api_reject(request: Request, task_id: TaskId, user: User, body: RejectBody) -> Response:
    return _api(request, "reject", task_id, user, template=body.template, note=body.note)


@router.post("/api/v1/reviews/{task_id}/edit", response_model=ActionOutcome,
             responses=REFUSED, summary="Correct what was read and run the rules again")
def api_edit(request: Request, task_id: TaskId, user: User, body: EditBody) -> Response:
    changes = {k: v for k, v in body.model_dump(exclude={"note"}).items() if v is not None}
    return _api(request, "edit", task_id, user, changes=changes, note=body.note or None)


@router.post("/api/v1/reviews/{task_id}/assign", response_model=ActionOutcome,
             responses=REFUSED, summary="Assign the task to the calling account")
def api_assign(request: Request, task_id: TaskId, user: User) -> Response:
    return _api(request, "assign", task_id, user)


@router.post("/api/v1/reviews/{task_id}/close", response_model=ActionOutcome,
             responses=REFUSED, summary="Close without an answer (nothing is sent)")
def api_close(request: Request, task_id: TaskId, user: User,
              body: CloseBody | None = None) -> Response:
    return _api(request, "close", task_id, user, note=(body.note if body else None) or None)


# Forms, for the page: after an action back to the task (303); a refusal shows the page again
# with what happened, its status saying so.

def _form(request: Request, action: str, task_id: int, user: Principal,
          form: dict[str, str], **values: Any) -> Response:
    _ = _words(request)
    try:
        result = _run(request, action, task_id, user, **values)
    except MailbotError as exc:
        status, _code, words = _refusal(exc)
        if status == 404:
            raise HTTPException(404, _(words)) from None
        return render(request, "review.html", {
            "title": _("Review task"), **task_detail(request, task_id),
            **_page_extras(request, error=_(words), error_detail=str(exc), form=form)},
            status_code=status)
    done = done_code(action, result.status, len(result.messages))
    return RedirectResponse(f"/revision/{task_id}?done={done}", status_code=303)


FormText = Annotated[str, Form(max_length=2000)]
FormValue = Annotated[str | None, Form(max_length=500)]


@router.post("/revision/{task_id}/approve", include_in_schema=False)
def form_approve(request: Request, task_id: TaskId, user: User,
                 note: FormText = "") -> Response:
    return _form(request, "approve", task_id, user, {"note": note}, note=note.strip() or None)


@router.post("/revision/{task_id}/reject", include_in_schema=False)
def form_reject(request: Request, task_id: TaskId, user: User,
                template: Annotated[str, Form(max_length=100)] = "",
                note: FormText = "") -> Response:
    form = {"template": template, "reject_note": note}
    if template not in REJECTION_TEMPLATES or not note.strip():
        return _refused_form(request, task_id, form)
    return _form(request, "reject", task_id, user, form, template=template, note=note.strip())


@router.post("/revision/{task_id}/edit", include_in_schema=False)
def form_edit(request: Request, task_id: TaskId, user: User, serial: FormValue = None,
              system: FormValue = None, contact_email: FormValue = None,
              company: FormValue = None, contact_name: FormValue = None,
              note: FormText = "") -> Response:
    submitted = {"serial": serial, "system": system, "contact_email": contact_email,
                 "company": company, "contact_name": contact_name}
    changes = _changed(request, task_id, submitted)
    form = {k: v or "" for k, v in submitted.items()} | {"edit_note": note}
    return _form(request, "edit", task_id, user, form, changes=changes,
                 note=note.strip() or None)


@router.post("/revision/{task_id}/assign", include_in_schema=False)
def form_assign(request: Request, task_id: TaskId, user: User) -> Response:
    return _form(request, "assign", task_id, user, {})


@router.post("/revision/{task_id}/close", include_in_schema=False)
def form_close(request: Request, task_id: TaskId, user: User,
               note: FormText = "") -> Response:
    return _form(request, "close", task_id, user, {"close_note": note},
                 note=note.strip() or None)


def _refused_form(request: Request, task_id: int, form: dict[str, str]) -> Response:
    _ = _words(request)
    return render(request, "review.html", {
        "title": _("Review task"), **task_detail(request, task_id),
        **_page_extras(request, error=_("Choose a template and write the note the customer "
                                        "will read."), form=form)}, status_code=422)
