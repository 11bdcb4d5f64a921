"""Step 3, one transaction per mail: decide every request, bind keys, open review tasks and
queue the replies (rendered, with their Message-IDs) in the outbox."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from mailbot.answer import plan as answer
from mailbot.decide.free_update import decide_free_update
from mailbot.decide.sender import reply_to_differs
from mailbot.decide.throttle import request_throttle_hit
from mailbot.model import PENDING, Decision, Extraction, ParsedMail, RawMail, Request, RuleHit
from mailbot.model import REVIEW as REVIEW_OUTCOME
from mailbot.run import claims, completion, review, unlock_flow, versions
from mailbot.run.app import App
from mailbot.run.holds import hold
from mailbot.run.reading import Reading, read_raw, reading_of
from mailbot.run.replies import queue_message
from mailbot.store import Connection, MailRecord, Store, ledger, reviews
from mailbot.transport.seams import REVIEW

log = logging.getLogger("mailbot")


class StoreKeyPool:
    """The KeyPool the rules see, inside the decision's transaction."""

    def __init__(self, store: Store, conn: Connection) -> None:
        self.store, self.conn = store, conn
        self.assigned: dict[str, int] = {}  # serial -> key row id, to bind to the request
        self._known: dict[str, Any] | None = None  # serial -> key row, after prefetch()
        self._prefetched: set[str] = set()

    def prefetch(self, serials: Sequence[str], known: dict[str, Any] | None = None) -> None:
        """Look up the keys of all these serials in one query (a mail with many requests);
        `known`: already looked up (`Store.licence_and_key`)."""
        self._known = (self.store.keys_for_serials(self.conn, serials) if known is None
                       else dict(known))
        self._prefetched = set(serials)

    def existing(self, serial: str) -> tuple[str, dt.datetime | None] | None:
        if self._known is not None and serial in self._prefetched:
            row = self._known.get(serial)
        else:
            row = self.store.key_for_serial(self.conn, serial)
        if row is None:
            return None
        self.assigned[serial] = row.id
        return row.key, row.assigned_at

    def assign(self, system: str, serial: str) -> str | None:
        row = self.store.assign_key(self.conn, system=system, serial=serial)
        if row is None:
            return None
        self.assigned[serial] = row.id
        if self._known is not None:
            self._known[serial] = row
        return row.key



def decide_mail(app: App, rec: MailRecord, raw: RawMail,
                read: tuple[ParsedMail | None, Extraction] | None = None, *,
                count_attempt_of: int | None = None) -> MailRecord:
    """Read, decide, render and queue the answers of one mail in one transaction.

    `read` is what `read_raw` gives for `raw`, when it was read beforehand. Returns the record as
    the transaction left it (decided, and the folder it is to be filed in). `count_attempt_of`:
    the next mail, recorded with no attempt yet, whose attempt this commit also counts
    (mailbot.run.record_group), so that it is counted before it is read without a commit of
    its own.
    """
    parsed, extraction = read if read is not None else read_raw(app, raw)
    store = app.store
    # Synced to the disk before any reply of it goes out (the batch's sends: Store.sync).
    with store.transaction(sync_later=True) as conn:
        reading = reading_of(app, conn, parsed, extraction)
        thread = completion.complete_from_thread(app, conn, rec, parsed, reading)
        reading = thread.reading
        extraction = reading.extraction
        # How the mail was read (a forward or a reply, the HTML part, files left unread): the
        # log and the console show it beside the decision.
        shown = extraction.notes[:-1] if reading.continues is not None else extraction.notes
        notes: list[str] = [*shown, *sender_notes(app, conn, rec, parsed, extraction),
                            *thread.notes]
        if reading.continues is not None:
            notes.append(extraction.notes[-1])  # "answers the unlock request CLV-..."
        decisions: list[Decision] = []
        plan = hold(app, conn, rec, raw, parsed, reading)
        if plan is None:
            plan, decisions = decide_reading(app, conn, rec, reading)
        completion.remember(app, conn, rec, parsed, thread, plan)
        app.hook("after_key_assigned")
        # Committed only while the mail is still this run's to decide: else all of it rolls back.
        if not store.update_mail(
                conn, rec.id, claimed_by=app.run_id, status="decided", folder=plan.folder,
                outcome=plan.outcome, message_id=(extraction.message_id or "")[:1000] or None,
                sender=extraction.sender, subject=extraction.subject, kind=extraction.kind,
                ignored=extraction.ignored, extraction=extraction.to_json(),
                notes=[*plan.notes, *notes], decided_at=app.now(), error=None,
                claim_expires_at=claims.lease_end(app), **versions.in_use(app, conn)):
            raise claims.ClaimLost(f"{rec.reference} is no longer this run's to decide")
        if count_attempt_of is not None:
            store.count_attempt(conn, count_attempt_of, claimed_by=app.run_id)
        if plan.folder == REVIEW:
            store.log_event(conn, "alert", mail=rec.id, title="Solicitud para revisión",
                            detail=f"{rec.reference} de {extraction.sender or '?'}: {plan.outcome}")
        if any(d.outcome == PENDING for d in decisions):
            systems = sorted({d.request.system for d in decisions if d.outcome == PENDING})
            store.log_event(conn, "alert", mail=rec.id, title="Sin claves disponibles",
                            detail=f"{rec.reference}: no quedan claves para {', '.join(systems)}")
    log.info("event=mail_decided reference=%s sender=%s kind=%s outcome=%s folder=%s replies=%d",
             rec.reference, extraction.sender, extraction.kind, plan.outcome, plan.folder,
             len(plan.messages))
    return dataclasses.replace(rec, status="decided", folder=plan.folder)



def decide_reading(app: App, conn: Connection, rec: MailRecord, reading: Reading, *,
                   skip_throttles: bool = False) -> tuple[answer.Plan, list[Decision]]:
    """Decide every request of a mail, record it, open review tasks and queue the replies.

    The pipeline calls it in the mail's decision transaction; an operator's approval of a
    held mail calls it in the approval's transaction (`skip_throttles`: the operator let the
    mail through).
    """
    store = app.store
    extraction = reading.extraction
    if extraction.ignored or extraction.kind is None or extraction.sender is None:
        return answer.plan_answers(extraction, []), []
    pool = StoreKeyPool(store, conn)
    continues = (ledger.entry(conn, reading.continues)
                 if reading.continues is not None else None)
    decisions: list[Decision] = []
    serials = [r.serial for r in extraction.requests]
    if len(set(serials)) == 1:  # the usual mail: its licence and bound key in one look-up
        licence, bound = store.licence_and_key(conn, serials[0])
        registry = {} if licence is None else {licence.serial: licence}
        if bound is not None:
            pool.prefetch(serials[:1], bound)
    else:
        registry = store.licences_for(conn, serials) if serials else {}
        if serials:
            pool.prefetch(serials)
    counts = None if skip_throttles else throttle_counts(app, conn, rec, extraction, registry)
    binds: list[tuple[int, int]] = []  # (key, request): bound in one statement after the loop
    for position, request in enumerate(extraction.requests):
        licence = registry.get(request.serial)
        step = None
        throttle = None if counts is None else request_throttle(app, reading, request, licence,
                                                                counts)
        if throttle is not None:
            decision = throttle
        elif extraction.kind == "unlock":
            step = unlock_flow.decide(
                conn, request, requester=extraction.sender, licence=licence,
                documents=reading.documents, received_at=reading.received_at, now=app.now(),
                rules=app.rules, calendar=app.calendar(),
                repeat_hours=app.config.security.unlock_repeat_hours, continues=continues)
            decision = step.decision
        else:
            decision = decide_free_update(
                request, requester=extraction.sender, licence=licence, today=app.today(),
                rules=app.rules, pool=pool)
        key_id = pool.assigned.get(decision.request.serial) if decision.key else None
        request_id = store.add_request(
            conn, mail=rec.id, position=position, kind=extraction.kind,
            request=decision.request, outcome=decision.outcome, hits=decision.hits,
            recipient=decision.recipient, key_id=key_id)
        if key_id is not None:
            binds.append((key_id, request_id))
        entry_id = (unlock_flow.record(conn, step, request_id=request_id, mail_id=rec.id,
                                       now=app.now()) if step is not None else None)
        if decision.outcome == REVIEW_OUTCOME:
            request_task(app, conn, rec, reading, request_id=request_id, entry_id=entry_id,
                          decision=decision, repeat=step is not None
                          and step.mode == unlock_flow.REPEAT_OPEN)
        decisions.append(decision)
    store.bind_keys_to_requests(conn, binds)
    plan = answer.plan_answers(extraction, decisions, answers=app.rules.free_update.answers)
    for planned in plan.messages:
        queue_message(app, conn, rec, extraction, None, planned, references=reading.references)
    return plan, decisions



def sender_notes(app: App, conn: Connection, rec: MailRecord, parsed: ParsedMail | None,
                  extraction: Extraction) -> list[str]:
    """Log lines about the sender: Reply-To never receives anything, so a different one is
    only noted."""
    if parsed is None or extraction.ignored:
        return []
    hit = reply_to_differs(parsed)
    if hit is None:
        return []
    app.store.log_event(conn, "reply_to_differs", mail=rec.id, reason=hit.reason)
    log.info("event=reply_to_differs reference=%s", rec.reference)
    return [f"{hit.rule}: {hit.reason}"]



def request_task(app: App, conn: Connection, rec: MailRecord, reading: Reading, *,
                  request_id: int, entry_id: int | None, decision: Decision,
                  repeat: bool) -> None:
    """A review task for one request, or a line in the history of the one already open."""
    now = app.now()
    if repeat and entry_id is not None:
        task = reviews.open_for_unlock(conn, entry_id)
        if task is not None:
            brought = decision.facts.get("documents") or []
            reviews.record(conn, task.id, "repeat", reviews.BOT, now,
                          note=f"{rec.reference} from {reading.extraction.sender} asks again"
                               + (f"; documents so far: {', '.join(brought)}" if brought else ""),
                          changes={"mail": rec.reference})
            return
    code, text = review.reason_of(reading.extraction.kind or "", decision.hits, decision.facts)
    reviews.create(conn, mail=rec.id, request=request_id, unlock=entry_id,
                  kind=reading.extraction.kind or "", reason=code, reason_text=text,
                  due_at=review.due_at(app.rules, app.calendar(), reading.received_at,
                                       decision.facts),
                  snapshot=task_snapshot(reading, decision), now=now)



def task_snapshot(reading: Reading, decision: Decision) -> dict[str, Any]:
    return {"reading": reading.to_json(), "request": decision.request.to_json(),
            "outcome": decision.outcome,
            "hits": [h.to_json() for h in decision.hits],
            "facts": {k: v for k, v in decision.facts.items() if k != "installation"}}



ThrottleCounts = tuple[dict[str, int], dict[str, int]]  # by serial, by company


def company_of(request: Request, licence: Any | None) -> str:
    """Whose licence the request is about: the registry's company, else the one written."""
    return licence.company if licence is not None else request.company


def throttle_counts(app: App, conn: Connection, rec: MailRecord, extraction: Extraction,
                    registry: dict[str, Any]) -> ThrottleCounts:
    """How many other mails within [security]'s window asked for each serial and each company
    of this mail: one grouped look-up per mail, before any of its requests is written."""
    since = app.now() - dt.timedelta(minutes=app.config.security.window_minutes)
    requests_ = extraction.requests
    return app.store.request_counts(
        conn, serials=[r.serial for r in requests_],
        companies=[company_of(r, registry.get(r.serial)) for r in requests_],
        since=since, mail=rec.id)


def request_throttle(app: App, reading: Reading, request: Request, licence: Any | None,
                     counts: ThrottleCounts) -> Decision | None:
    """A review decision when earlier mails asked for this serial or this company more often
    than [security] allows within its window; None otherwise."""
    security = app.config.security
    company = company_of(request, licence)
    throttled = request_throttle_hit(serial=request.serial, company=company,
                                     by_serial=counts[0].get(request.serial, 0),
                                     by_company=counts[1].get(company, 0), security=security)
    if throttled is None:
        return None
    code, hit = throttled
    due = app.calendar().add_business_hours(
        reading.received_at, app.rules.unlock.review_due_hours if app.rules.unlock else 24)
    facts = {"review_reason": code, "due_at": due, "due_text": app.calendar().describe(due),
             "identify_help": app.rules.unlock.identify_help if app.rules.unlock else ""}
    notes = tuple(RuleHit("extract.note", n) for n in request.notes)
    return Decision(request, REVIEW_OUTCOME, (*notes, hit), facts=facts)
