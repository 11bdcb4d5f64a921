"""The review queue's actions and views, behind `mailbot review ...`.

Each action is crash-safe like the pipeline: the action in the task's history, the decision it
makes (request outcome, keys, unlock ledger) and the replies it queues are ONE transaction;
the replies then go out through the outbox (`deliver_due`), so a crash never loses an answer
and never sends one twice. A mistake (unknown task, a task already closed, a value that does
not read) is one line and changes nothing.

- approve: sends the answer the rules would have sent. A free-update request runs the rules
  again with the operator's approval (a system that differs from the registry's is taken from
  the registry) and the keys go only to the registered address, exactly as in the pipeline; an
  unlock is recorded as approved in the ledger and confirmed; a held mail (sender checks,
  throttle) is decided now as the pipeline would have; a mail that asked nothing is closed
  without an answer.
- reject: sends the chosen template, with the operator's note, to the sender.
- edit: corrects what was read (serial, system, contact_email, company, contact_name) and runs
  the rules again; the new decision may answer (the task is `resolved`) or stay in review.
- close_without_answer: for a mail that asked for nothing, or a task an operator decides needs
  no answer: closed, recorded, nothing sent. assign: an operator takes the task (informational).

Two operators acting on one task at once: each action first takes the task (`reviews.take`, a
conditional UPDATE that holds its row) and closes it only while it is open; exactly one wins and
the other raises TaskTaken, its whole transaction rolled back. `deliver=False` (the console,
which never sends mail) leaves the replies queued for the running service.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import getpass
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mailbot.addresses import UndeliverableAddress
from mailbot.answer import plan as answer
from mailbot.decide.free_update import decide_free_update
from mailbot.decide.unlock import UNLOCKED
from mailbot.errors import MailbotError
from mailbot.model import REVIEW, Decision, Request, RuleHit
from mailbot.ops.choices import CLOSED_UNANSWERED, EDITABLE, REJECTED, REJECTION_TEMPLATES
from mailbot.ops.timefmt import operator_time
from mailbot.read.fields import SystemMatcher, normalise_serial, parse_email
from mailbot.run import review, unlock_flow
from mailbot.run.app import App, RunReport
from mailbot.run.deciding import StoreKeyPool, decide_reading, task_snapshot
from mailbot.run.deliver import deliver_due
from mailbot.run.reading import Reading
from mailbot.run.replies import queue_message
from mailbot.store import Connection, ledger, reviews
from mailbot.store.database import MailRecord
from mailbot.wording import N_

# Templates an operator may send with `review reject` (they promise nothing that was not done),
# the fields `review edit` corrects, and the outcomes an operator's action leaves: in
# mailbot.ops.choices, so the command line lists them without importing this module.
LOADED = "review_loaded"  # the App hook's point: the task is taken and read, nothing written yet


class ReviewError(MailbotError):
    """An operator's action that cannot be done as asked; nothing was changed. `code` names the
    case for the console, which words it in the operator's language."""

    def __init__(self, message: str, code: str = "refused") -> None:
        super().__init__(message)
        self.code = code


def _refuses_undeliverable(action: Callable[..., ActionResult]) -> Callable[..., ActionResult]:
    """An answer to an address no reply can reach refuses the whole action (its transaction
    rolls back, nothing changes) and tells the operator to close the task instead."""

    @functools.wraps(action)
    def guarded(app: App, task_id: int, *args: Any, **kwargs: Any) -> ActionResult:
        try:
            return action(app, task_id, *args, **kwargs)
        except UndeliverableAddress as exc:
            raise ReviewError(f"task #{task_id}: no answer can be sent: {exc}; close the task "
                              f"without an answer (`mailbot review close {task_id}`)",
                              "undeliverable") from None

    return guarded


class TaskNotFound(ReviewError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "not_found")


class TaskTaken(ReviewError):
    """Another action closed the task first (or did so while this one waited for it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "taken")


@dataclass(frozen=True)
class ActionResult:
    task: int
    status: str  # the task's status after the action
    messages: tuple[tuple[str, str], ...]  # (template, recipient) queued and delivered
    summary: str


def default_operator() -> str:
    """$MAILBOT_OPERATOR, else the OS user."""
    name = os.environ.get("MAILBOT_OPERATOR", "").strip()
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return "operator"


# --- actions -------------------------------------------------------------------------------------

@_refuses_undeliverable
def approve(app: App, task_id: int, *, operator: str, note: str | None = None,
            deliver: bool = True) -> ActionResult:
    with app.store.transaction() as conn:
        task, rec, reading = _load(app, conn, task_id)
        if task.kind == "unlock":
            result = _approve_unlock(app, conn, task, rec, reading, operator, note)
        elif task.kind == "free_update":
            result = _approve_free_update(app, conn, task, rec, reading, operator, note)
        elif task.kind in (review.SENDER, review.THROTTLED):
            result = _approve_held_mail(app, conn, task, rec, reading, operator)
        else:  # unrecognised, too large: the rules answer nothing
            _close(conn, task, reviews.APPROVED, operator=operator, now=app.now())
            result = ActionResult(task.id, reviews.APPROVED, (),
                                  "closed without an answer (the rules send none for this mail)")
        reviews.record(conn, task.id, "approve", operator, app.now(), note=note,
                      changes={"status": result.status, "summary": result.summary,
                               "messages": [f"{t} to {to}" for t, to in result.messages]})
    if deliver:
        deliver_due(app, RunReport())
    return result


@_refuses_undeliverable
def reject(app: App, task_id: int, *, template: str, note: str, operator: str,
           deliver: bool = True) -> ActionResult:
    if template not in REJECTION_TEMPLATES:
        raise ReviewError(f"--template {template!r} is not a rejection template; use one of "
                          f"{', '.join(REJECTION_TEMPLATES)}", "bad_value")
    with app.store.transaction() as conn:
        task, rec, reading = _load(app, conn, task_id)
        extraction = reading.extraction
        to = extraction.sender
        if not to:
            raise ReviewError(f"task #{task.id}: the mail has no usable sender address to answer; "
                              f"close it with `mailbot review approve {task.id}`", "no_sender")
        now = app.now()
        extra: dict[str, Any] = {"note": note}
        rows: tuple[dict[str, Any], ...] = ()
        request = None
        if task.request is not None:
            row = _request_row(app, conn, task.request)
            request = _request(row)
            hits = (*_hits(row), RuleHit.said("review.reject",
                                              N_("rejected by %(operator)s: %(note)s"),
                                              operator=operator, note=note))
            app.store.correct_request(conn, row.id, request, outcome=REJECTED, hits=hits,
                            key_id=row.key, recipient=row.recipient)
            rejected = Decision(request, REJECTED, hits, recipient=row.recipient)
            rows = (answer.row(rejected, show_key=False, requester=to),)
        if template == "unlock_rejected" or task.kind == "unlock":
            if request is None:
                raise ReviewError(f"task #{task.id} is not about an unlock request; use "
                                  "--template review_rejected", "not_an_unlock")
            facts: dict[str, Any] = {"identify_help": _identify_help(app)}
            if task.unlock is not None:
                entry = ledger.entry(conn, task.unlock)
                facts = {**ledger.stored_facts(entry), **facts, "repeat": False}
                unlock_flow.reject(conn, task.unlock, operator=operator, now=now, note=note)
                extra["reference"] = ledger.reference_of(conn, entry)
            facts.setdefault("document_types_text", _document_types(app))
            extra["unlock"] = answer.unlock_context(Decision(request, REJECTED, (), facts=facts))
        if task.kind == review.UNRECOGNISED:
            extra["kind_title"] = ""
        planned = answer.Planned("reply", template, to, rows, extra)
        queue_message(app, conn, rec, extraction, None, planned, references=reading.references)
        _close(conn, task, reviews.REJECTED, operator=operator, now=now)
        reviews.record(conn, task.id, "reject", operator, now, note=note,
                      changes={"template": template, "to": to})
    if deliver:
        deliver_due(app, RunReport())
    return ActionResult(task.id, reviews.REJECTED, ((template, to),),
                        f"{template} sent to {to}")


@_refuses_undeliverable
def edit(app: App, task_id: int, changes: Mapping[str, str], *, operator: str,
         note: str | None = None, deliver: bool = True) -> ActionResult:
    values = _read_changes(app, changes)
    with app.store.transaction() as conn:
        task, rec, reading = _load(app, conn, task_id)
        if task.request is None:
            raise ReviewError(f"task #{task.id} is about the whole mail ({task.kind}: "
                              f"{task.reason}), not one request; approve or reject it",
                              "whole_mail")
        now = app.now()
        row = _request_row(app, conn, task.request)
        old = _request(row)
        new = dataclasses.replace(old, **values)
        diff = {k: [getattr(old, k), getattr(new, k)] for k in values
                if getattr(old, k) != getattr(new, k)}
        if not diff:
            raise ReviewError(f"task #{task.id}: nothing changes ({', '.join(values)} already "
                              "read that way)", "nothing_changes")
        said = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items())
        edit_hit = RuleHit.said("review.edit",
                                N_("%(operator)s corrected %(changes)s; the rules ran again"),
                                operator=operator, changes=said)
        requester = reading.extraction.sender
        licence = app.store.licence(conn, new.serial)
        pool = StoreKeyPool(app.store, conn)
        entry_id = task.unlock
        if task.kind == "unlock":
            entry = ledger.entry(conn, entry_id) if entry_id is not None else None
            documents = [*(ledger.stored_documents(entry) if entry else []),
                         *reading.documents]
            step = unlock_flow.decide(
                conn, new, requester=requester, licence=licence,
                documents=list(dict.fromkeys(documents)), received_at=reading.received_at,
                now=now, rules=app.rules, calendar=app.calendar(),
                repeat_hours=app.config.security.unlock_repeat_hours, own_entry=entry)
            decision = step.decision
            entry_id = unlock_flow.record(conn, step, request_id=row.id, mail_id=rec.id,
                                          now=now, approved_by=f"rules, after {operator}'s edit")
        else:
            decision = decide_free_update(new, requester=requester, licence=licence,
                                          today=app.today(), rules=app.rules, pool=pool)
        hits = (edit_hit, *decision.hits)
        decision = dataclasses.replace(decision, hits=hits)
        changes_out: dict[str, Any] = {"fields": diff, "outcome": decision.outcome}
        if decision.outcome == REVIEW:
            app.store.correct_request(conn, row.id, new, outcome=REVIEW, hits=hits, key_id=None,
                            recipient=decision.recipient)
            code, text = review.reason_of(task.kind, decision.hits, decision.facts)
            due = review.due_at(app.rules, app.calendar(), reading.received_at, decision.facts)
            reviews.update(conn, task.id, reason=code[:40], reason_text=text, due_at=due,
                          unlock=entry_id, snapshot=task_snapshot(reading, decision))
            changes_out["reason"] = code
            reviews.record(conn, task.id, "edit", operator, now, note=note, changes=changes_out)
            result = ActionResult(task.id, reviews.OPEN, (),
                                  f"corrected {said}; still in review: {text}")
        else:
            messages = _answer(app, conn, rec, reading, row.id, decision, pool)
            reviews.update(conn, task.id, unlock=entry_id)
            _close(conn, task, reviews.RESOLVED, operator=operator, now=now)
            changes_out["messages"] = [f"{t} to {to}" for t, to in messages]
            reviews.record(conn, task.id, "edit", operator, now, note=note, changes=changes_out)
            result = ActionResult(task.id, reviews.RESOLVED, messages,
                                  f"corrected {said}; the rules decided: {decision.outcome}")
    if deliver:
        deliver_due(app, RunReport())
    return result


def close_without_answer(app: App, task_id: int, *, operator: str,
                         note: str | None = None) -> ActionResult:
    """Close a task with no answer to anyone: a mail that asked for nothing, or one an operator
    decides needs none. Its request (if any) is recorded as closed; an unlock is not counted."""
    with app.store.transaction() as conn:
        task, rec, _reading = _load(app, conn, task_id)
        now = app.now()
        closed = (RuleHit.said("review.close", N_("closed without an answer by %(operator)s: "
                                                  "%(note)s"), operator=operator, note=note)
                  if note else
                  RuleHit.said("review.close", N_("closed without an answer by %(operator)s"),
                               operator=operator))
        said = closed.reason
        if task.request is not None:
            row = _request_row(app, conn, task.request)
            app.store.correct_request(conn, row.id, _request(row), outcome=CLOSED_UNANSWERED,
                                      hits=(*_hits(row), closed),
                                      key_id=row.key, recipient=row.recipient)
        if task.unlock is not None:
            unlock_flow.reject(conn, task.unlock, operator=operator, now=now,
                               note=f"closed without an answer{': ' + note if note else ''}")
        notes = app.store.mail_notes(conn, rec.id)
        notes.append(said)
        app.store.update_mail(conn, rec.id, notes=notes)
        _close(conn, task, reviews.CLOSED, operator=operator, now=now)
        reviews.record(conn, task.id, "close", operator, now, note=note,
                       changes={"status": reviews.CLOSED})
    return ActionResult(task.id, reviews.CLOSED, (), "closed without an answer")


def assign(app: App, task_id: int, *, operator: str) -> ActionResult:
    """`operator` takes an open task, so the others see who works it; it changes no decision."""
    with app.store.transaction() as conn:
        task, _rec, _reading = _load(app, conn, task_id)
        if not reviews.assign(conn, task.id, operator):
            raise TaskTaken(f"task #{task.id} is no longer open")
        reviews.record(conn, task.id, "assign", operator, app.now(),
                       changes={"assigned_to": [task.assigned_to, operator]})
    return ActionResult(task.id, reviews.OPEN, (), f"assigned to {operator}")


# --- approve, by kind ----------------------------------------------------------------------------

def _approve_unlock(app: App, conn: Connection, task: reviews.Task, rec: MailRecord,
                    reading: Reading, operator: str, note: str | None) -> ActionResult:
    now = app.now()
    row = _request_row(app, conn, task.request)
    request = _request(row)
    licence = app.store.licence(conn, request.serial)
    entry_id = task.unlock
    if entry_id is None:  # held by a throttle before the unlock rules ran
        facts = {"modality": licence.modality if licence else None}
        step = unlock_flow.UnlockStep(Decision(request, REVIEW, (), facts=facts),
                                      unlock_flow.NEW, None, ())
        entry_id = unlock_flow.record(conn, step, request_id=row.id, mail_id=rec.id, now=now)
        reviews.update(conn, task.id, unlock=entry_id)
    facts = unlock_flow.approve(conn, entry_id, operator=operator, now=now, rules=app.rules,
                                note=note)
    entry = ledger.entry(conn, entry_id)
    modality = app.rules.unlock.modalities.get(entry.modality) if app.rules.unlock else None
    facts.update(identify_help=_identify_help(app), repeat=False,
                 modality_label=facts.get("modality_label") or (modality.label if modality
                                                                else None))
    hit = (RuleHit.said("review.approve", N_("unlock approved by %(operator)s: %(note)s"),
                        operator=operator, note=note) if note else
           RuleHit.said("review.approve", N_("unlock approved by %(operator)s"),
                        operator=operator))
    hits = (*_hits(row), hit)
    registered = (licence.contact_email or "").strip() if licence is not None else ""
    to = registered or reading.extraction.sender
    if not to:
        raise ReviewError(f"task #{task.id}: no registered contact and no sender to confirm to")
    decision = Decision(request, UNLOCKED, hits, recipient=to, facts=facts)
    app.store.correct_request(conn, row.id, request, outcome=UNLOCKED, hits=hits, key_id=None,
                    recipient=to)
    planned = answer.Planned(
        "reply", "unlocked", to,
        (answer.row(decision, show_key=False, requester=reading.extraction.sender),),
        {"unlock": answer.unlock_context(decision),
         "reference": ledger.reference_of(conn, entry)})
    queue_message(app, conn, rec, reading.extraction, None, planned, references=reading.references)
    _close(conn, task, reviews.APPROVED, operator=operator, now=now)
    return ActionResult(task.id, reviews.APPROVED, (("unlocked", to),),
                        f"unlock {entry.number} of {request.serial} approved; confirmation "
                        f"sent to {to}")


def _approve_free_update(app: App, conn: Connection, task: reviews.Task, rec: MailRecord,
                         reading: Reading, operator: str, note: str | None) -> ActionResult:
    row = _request_row(app, conn, task.request)
    request = _request(row)
    licence = app.store.licence(conn, request.serial)
    values: dict[str, str] = {"operator": operator, **({"note": note} if note else {})}
    if licence is not None and licence.system != request.system:
        values.update(registered=repr(licence.system), requested=repr(request.system))
        template = (N_("approved by %(operator)s: %(note)s; the registry's system "
                       "%(registered)s is taken instead of %(requested)s") if note else
                    N_("approved by %(operator)s; the registry's system %(registered)s is "
                       "taken instead of %(requested)s"))
        request = dataclasses.replace(request, system=licence.system)
    else:
        template = (N_("approved by %(operator)s: %(note)s") if note else
                    N_("approved by %(operator)s"))
    approved = RuleHit.said("review.approve", template, **values)
    pool = StoreKeyPool(app.store, conn)
    decision = decide_free_update(request, requester=reading.extraction.sender,
                                  licence=licence, today=app.today(), rules=app.rules, pool=pool)
    if decision.outcome == REVIEW:
        raise ReviewError(f"task #{task.id}: the rules still cannot answer it: "
                          f"{decision.hits[-1].reason}; correct what was read with `mailbot "
                          f"review edit {task.id} FIELD=VALUE`, fix the registry, or reject it",
                          "rules_cannot_answer")
    decision = dataclasses.replace(decision,
                                   hits=(approved, *decision.hits))
    messages = _answer(app, conn, rec, reading, row.id, decision, pool)
    _close(conn, task, reviews.APPROVED, operator=operator, now=app.now())
    return ActionResult(task.id, reviews.APPROVED, messages,
                        f"{request.serial}: {decision.outcome}; "
                        + "; ".join(f"{t} to {to}" for t, to in messages))


def _approve_held_mail(app: App, conn: Connection, task: reviews.Task, rec: MailRecord,
                       reading: Reading, operator: str) -> ActionResult:
    """A mail the sender checks or the throttle held: decided now, as the pipeline would have."""
    existing = app.store.count_requests(conn, rec.id)
    if existing:
        raise ReviewError(f"task #{task.id}: the requests of {rec.reference} were already "
                          "decided")
    plan, decisions = decide_reading(app, conn, rec, reading, skip_throttles=True)
    notes = app.store.mail_notes(conn, rec.id)
    notes.append(f"approved by {operator}: decided by the rules ({plan.outcome})")
    app.store.update_mail(conn, rec.id, outcome=plan.outcome, notes=notes)
    _close(conn, task, reviews.APPROVED, operator=operator, now=app.now())
    messages = tuple((m.template, m.to) for m in plan.messages)
    return ActionResult(task.id, reviews.APPROVED, messages,
                        f"{rec.reference} decided by the rules: {plan.outcome} "
                        f"({len(decisions)} request(s))")


def _answer(app: App, conn: Connection, rec: MailRecord, reading: Reading, request_id: int,
            decision: Decision, pool: StoreKeyPool) -> tuple[tuple[str, str], ...]:
    """Record a decision on a stored request and queue the answers the pipeline would send."""
    key_id = pool.assigned.get(decision.request.serial) if decision.key else None
    app.store.correct_request(conn, request_id, decision.request, outcome=decision.outcome,
                    hits=decision.hits, key_id=key_id, recipient=decision.recipient)
    if key_id is not None:
        app.store.bind_key_to_request(conn, key_id, request_id)
    extraction = dataclasses.replace(reading.extraction, problems=())
    plan = answer.plan_answers(extraction, [decision])
    for planned in plan.messages:
        queue_message(app, conn, rec, extraction, None, planned, references=reading.references)
    return tuple((m.template, m.to) for m in plan.messages)


# --- helpers -------------------------------------------------------------------------------------

def _load(app: App, conn: Connection, task_id: int) -> tuple[reviews.Task, MailRecord, Reading]:
    """Take the task (held until this transaction ends) and read it; TaskTaken when it is
    closed, by an earlier action or by the one this transaction waited for."""
    taken = reviews.take(conn, task_id)
    task = reviews.get(conn, task_id)
    if task is None:
        raise TaskNotFound(f"no review task #{task_id}; see `mailbot review list --all`")
    if not taken or task.status != reviews.OPEN:
        when = (f" on {operator_time(task.closed_at, app.calendar().tz)}" if task.closed_at
                else "")
        raise TaskTaken(f"task #{task.id} is already {task.status} (by {task.closed_by}"
                        f"{when}); see `mailbot review show {task.id}`")
    rec = app.store.get_mail(conn, task.mail)
    reading = Reading.from_json(task.snapshot["reading"])
    app.hook(LOADED)
    return task, rec, reading


def _close(conn: Connection, task: reviews.Task, status: str, *, operator: str,
           now: dt.datetime) -> None:
    """Close the task only while it is open; otherwise another action won and this one rolls
    back (the exception leaves the transaction)."""
    if not reviews.close(conn, task.id, status, operator=operator, now=now):
        raise TaskTaken(f"task #{task.id} was closed by another action meanwhile; see "
                        f"`mailbot review show {task.id}`")


def _request_row(app: App, conn: Connection, request_id: int | None) -> Any:
    assert request_id is not None
    return app.store.request(conn, request_id)


def _request(row: Any) -> Request:
    return Request(row.company, row.contact_name, row.contact_email, row.system, row.serial,
                   row.source)


def _hits(row: Any) -> tuple[RuleHit, ...]:
    return tuple(RuleHit.from_json(h) for h in json.loads(row.hits or "[]"))


def _read_changes(app: App, changes: Mapping[str, str]) -> dict[str, str]:
    """FIELD=VALUE pairs read the way the pipeline reads a request; one line per mistake."""
    if not changes:
        raise ReviewError(f"nothing to edit; write FIELD=VALUE with FIELD one of "
                          f"{', '.join(EDITABLE)}", "nothing_changes")
    values: dict[str, str] = {}
    for field_name, raw in changes.items():
        value = raw.strip()
        if field_name not in EDITABLE:
            raise ReviewError(f"{field_name!r} cannot be edited; FIELD is one of "
                              f"{', '.join(EDITABLE)}", "bad_value")
        if field_name == "serial":
            serial = normalise_serial(value)
            if serial is None:
                raise ReviewError(f"serial={raw!r} is not a serial (four groups of four letters "
                                  "or digits, e.g. AAAA-BBBB-CCCC-DDDD)", "bad_value")
            values[field_name] = serial
        elif field_name == "system":
            name, why = SystemMatcher(app.rules.catalogue).explain(value)
            if name is None:
                raise ReviewError(f"system={raw!r} is not in the catalogue ({why}); systems: "
                                  f"{', '.join(app.rules.catalogue.names)}", "bad_value")
            values[field_name] = name
        elif field_name == "contact_email":
            address = parse_email(value)
            if address is None:
                raise ReviewError(f"contact_email={raw!r} is not one e-mail address",
                                  "bad_value")
            values[field_name] = address
        else:
            if not value:
                raise ReviewError(f"{field_name} must not be empty", "bad_value")
            values[field_name] = value
    return values


def _identify_help(app: App) -> str:
    return app.rules.unlock.identify_help if app.rules.unlock else ""


def _document_types(app: App) -> str | None:
    if not app.rules.unlock:
        return None
    types = [t.upper() for t in app.rules.unlock.document_types]
    return types[0] if len(types) == 1 else f"{', '.join(types[:-1])} o {types[-1]}"
