"""One pass over the inbox: each mail flows read -> decide -> render -> outbox -> send -> file.

Crash safety comes from the order of commits:
1. the mail is recorded (source, id, content fingerprint) before anything else;
2. what was read, every decision, every key assignment and every rendered reply are committed
   in ONE transaction, with the replies' Message-IDs generated beforehand;
3. replies are delivered from the outbox and marked sent;
4. only then is the mail filed out of the inbox.
A crash between any two steps resumes at the next one on the next run: a mail is never
answered twice (the decision transaction happens once) and never lost (it stays in the inbox
until its answers are out). The only window no design can close is between the SMTP server
accepting a reply and the store marking it sent: then the same bytes, with the same
Message-ID, go out once more.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import zoneinfo
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot import answer, review, unlock_flow
from mailbot.business_hours import DEFAULT_WEEK, BusinessCalendar
from mailbot.config import Config
from mailbot.decide import decide_free_update
from mailbot.extract import read_mail
from mailbot.model import (ISSUED, PENDING, Decision, Extraction, ParsedMail, Problem, RawMail,
                           Request, RuleHit)
from mailbot.model import REVIEW as REVIEW_OUTCOME
from mailbot.render import Renderer
from mailbot.reply import build_alert, build_reply, make_message_id
from mailbot.ruleset import Ruleset
from mailbot.seams import (FAILED, IGNORED, REVIEW, PartiallyDelivered, PermanentDeliveryError,
                           Sink, SinkUnavailable, Source, TemporaryDeliveryError)
from mailbot.sender_checks import (FROM_HEADERS, FROM_MAILBOXES, check_sender,
                                   reply_to_differs)
from mailbot.store import MailRecord, Store, fingerprint, licences, mails, requests
from mailbot.unlock import calendar_for

log = logging.getLogger("mailbot")

MAX_ATTEMPTS = 3  # a mail that fails this many times is quarantined for operators
MAX_RETRY_DELAY = dt.timedelta(hours=1)


def _noop_hook(point: str) -> None:
    pass


@dataclass
class App:
    """Everything a run needs, passed explicitly (no module-level state)."""

    config: Config
    rules: Ruleset
    store: Store
    renderer: Renderer
    source: Source
    sink: Sink
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)
    hook: Callable[[str], None] = _noop_hook  # crash points for the fault tests
    after_send: Callable[[bytes], None] | None = None  # e.g. copy to the IMAP Sent folder
    _calendar: BusinessCalendar | None = field(default=None, repr=False, compare=False)

    def calendar(self) -> BusinessCalendar:
        """The business calendar of rules/unlock.toml: every due time and window runs on it."""
        if self._calendar is None:
            self._calendar = (calendar_for(self.rules) if self.rules.unlock is not None
                              else BusinessCalendar(DEFAULT_WEEK, self.config.bot.timezone))
        return self._calendar

    @property
    def own_addresses(self) -> tuple[str, ...]:
        return (self.config.bot.address.lower(),)

    def now(self) -> dt.datetime:
        """Naive UTC, as the store keeps it."""
        return self.clock().astimezone(dt.timezone.utc).replace(tzinfo=None)

    def today(self) -> dt.date:
        return self.clock().astimezone(zoneinfo.ZoneInfo(self.config.bot.timezone)).date()


@dataclass
class RunReport:
    seen: int = 0
    decided: int = 0
    duplicates: int = 0
    sent: int = 0
    filed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class StoreKeyPool:
    """The KeyPool the rules see, inside the decision's transaction."""

    def __init__(self, store: Store, conn: Connection) -> None:
        self.store, self.conn = store, conn
        self.assigned: dict[str, int] = {}  # serial -> key row id, to bind to the request

    def existing(self, serial: str) -> tuple[str, dt.datetime | None] | None:
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
        return row.key


def run_once(app: App) -> RunReport:
    """Finish what an earlier run left, then handle every mail waiting in the inbox."""
    report = RunReport()
    fulfil_pending(app)
    deliver_due(app, report)
    finish_unfiled(app, report)
    for raw in app.source.fetch_new():
        report.seen += 1
        try:
            process(app, raw, report)
        except Exception as exc:  # a store or mailbox fault: the mail stays for the next run
            log.exception("mail %s: %s", raw.mail_id, exc)
            report.errors.append(f"{raw.mail_id}: {exc}")
    flag_overdue(app)
    send_alerts(app)
    deliver_due(app, report)
    return report


def process(app: App, raw: RawMail, report: RunReport) -> MailRecord:
    store = app.store
    with store.transaction() as conn:
        rec = store.find_mail(conn, raw.source, raw.mail_id)
        if rec is None:
            fp = (fingerprint(raw.data) if not raw.oversized
                  else f"oversized:{raw.source}:{raw.mail_id}:{raw.size}")
            original = store.mail_by_fingerprint(conn, fp)
            if original is not None:
                rec = store.add_mail(conn, source=raw.source, mail_id=raw.mail_id, fp=fp,
                                     size=rec_size(raw), status="duplicate",
                                     duplicate_of=original.id,
                                     folder=original.folder or IGNORED,
                                     prefix=app.config.bot.reference_prefix)
                store.update_mail(conn, rec.id, outcome="duplicate",
                                  notes=[f"the same mail as {original.reference}: not answered again"])
                store.log_event(conn, "duplicate", mail=rec.id, of=original.id)
                report.duplicates += 1
                log.info("event=duplicate reference=%s mail_id=%s same_as=%s", rec.reference,
                         raw.mail_id, original.reference)
            else:
                rec = store.add_mail(conn, source=raw.source, mail_id=raw.mail_id, fp=fp,
                                     size=rec_size(raw),
                                     prefix=app.config.bot.reference_prefix)
                log.info("event=mail_received reference=%s mail_id=%s size=%d", rec.reference,
                         raw.mail_id, rec_size(raw))
        if rec.status == "received":
            if rec.attempts >= MAX_ATTEMPTS:
                store.update_mail(conn, rec.id, status="quarantined", folder=FAILED,
                                  outcome="quarantined")
                log.error("event=quarantined reference=%s attempts=%d", rec.reference, rec.attempts)
                store.log_event(conn, "alert", mail=rec.id, title="Correo en cuarentena",
                                detail=f"{rec.reference} falló {rec.attempts} veces; revisar")
            else:
                store.update_mail(conn, rec.id, attempts=rec.attempts + 1)
        rec = store.get_mail(conn, rec.id)
    if rec.filed:  # handled before, yet back in the inbox (restored by hand): file it again
        app.source.file(rec.mail_id, rec.folder or REVIEW)
        return rec
    app.hook("after_fetch")
    if rec.status == "received":
        try:
            decide_mail(app, rec, raw)
            report.decided += 1
        except Exception as exc:
            log.exception("mail %s (%s) could not be decided", rec.reference, raw.mail_id)
            with store.transaction() as conn:
                store.update_mail(conn, rec.id, error=f"{type(exc).__name__}: {exc}")
            report.errors.append(f"{rec.reference}: {exc}")
            return rec
        app.hook("after_decision")
    deliver_due(app, report, mail=rec.id)
    with store.transaction() as conn:
        rec = store.get_mail(conn, rec.id)
    file_mail(app, rec, report)
    return rec


def rec_size(raw: RawMail) -> int:
    return raw.size if raw.size is not None else len(raw.data)


def _read(app: App, raw: RawMail) -> tuple[ParsedMail | None, Extraction]:
    if raw.oversized:
        limit = app.config.limits.max_message_bytes
        return None, Extraction(
            kind=None, ignored=None, sender=None, subject="", message_id=None,
            problems=(Problem("message_too_large",
                              f"the mail is {raw.size} bytes, over the limit of {limit} "
                              "([limits] max_message_bytes); it was not read"),))
    parsed, extraction = read_mail(raw.data, app.rules, app.config.limits, app.own_addresses)
    return parsed, extraction


@dataclass(frozen=True)
class Reading:
    """What deciding a mail needs of what was read from it.

    Review tasks keep it in their snapshot, so an operator's approval decides later exactly as
    the pipeline would have decided then.
    """

    extraction: Extraction
    received_at: dt.datetime  # aware: when mailbot read the mail; windows count from it
    references: tuple[str, ...] = ()  # In-Reply-To and References, for threading the replies
    documents: tuple[str, ...] = ()  # attached file names (an unlock's documentation)
    continues: int | None = None  # the unlock ledger entry this mail answers

    def to_json(self) -> dict[str, Any]:
        return {"extraction": self.extraction.to_json(),
                "notes": list(self.extraction.notes),
                "received_at": self.received_at.isoformat(),
                "references": list(self.references), "documents": list(self.documents),
                "continues": self.continues}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Reading":
        e = data["extraction"]
        extraction = Extraction(
            kind=e.get("kind"), ignored=e.get("ignored"), sender=e.get("sender"),
            subject=e.get("subject") or "", message_id=e.get("message_id"),
            requests=tuple(Request(**r) for r in e.get("requests", ())),
            problems=tuple(Problem(**p) for p in e.get("problems", ())),
            notes=tuple(data.get("notes", ())))
        return cls(extraction=extraction,
                   received_at=dt.datetime.fromisoformat(data["received_at"]),
                   references=tuple(data.get("references", ())),
                   documents=tuple(data.get("documents", ())), continues=data.get("continues"))


def decide_mail(app: App, rec: MailRecord, raw: RawMail) -> None:
    """Read, decide, render and queue the answers of one mail in one transaction."""
    parsed, extraction = _read(app, raw)
    store = app.store
    with store.transaction() as conn:
        reading = _reading(app, conn, parsed, extraction)
        extraction = reading.extraction
        notes: list[str] = list(_sender_notes(app, conn, rec, parsed, extraction))
        if reading.continues is not None:
            notes.append(extraction.notes[-1])  # "answers the unlock request CLV-..."
        decisions: list[Decision] = []
        plan = _hold(app, conn, rec, raw, parsed, reading)
        if plan is None:
            plan, decisions = decide_reading(app, conn, rec, reading)
        app.hook("after_key_assigned")
        store.update_mail(
            conn, rec.id, status="decided", folder=plan.folder, outcome=plan.outcome,
            message_id=(extraction.message_id or "")[:1000] or None,
            sender=extraction.sender, subject=extraction.subject, kind=extraction.kind,
            ignored=extraction.ignored, extraction=extraction.to_json(),
            notes=[*plan.notes, *notes], decided_at=app.now(), error=None)
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
    continues = (unlock_flow.entry(conn, reading.continues)
                 if reading.continues is not None else None)
    decisions: list[Decision] = []
    for position, request in enumerate(extraction.requests):
        licence = store.licence(conn, request.serial)
        step = None
        throttle = None if skip_throttles else _request_throttle(app, conn, reading, request,
                                                                 licence)
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
            store.bind_key_to_request(conn, key_id, request_id)
        entry_id = (unlock_flow.record(conn, step, request_id=request_id, mail_id=rec.id,
                                       now=app.now()) if step is not None else None)
        if decision.outcome == REVIEW_OUTCOME:
            _request_task(app, conn, rec, reading, request_id=request_id, entry_id=entry_id,
                          decision=decision, repeat=step is not None
                          and step.mode == unlock_flow.REPEAT_OPEN)
        decisions.append(decision)
    plan = answer.plan_answers(extraction, decisions)
    for planned in plan.messages:
        _queue(app, conn, rec, extraction, None, planned, references=reading.references)
    return plan, decisions


def _reading(app: App, conn: Connection, parsed: ParsedMail | None,
             extraction: Extraction) -> Reading:
    """What was read, and whether the mail answers an unlock request in progress."""
    received_at = app.clock().astimezone(dt.timezone.utc)
    if parsed is None:
        return Reading(extraction, received_at)
    documents = tuple(a.filename for a in parsed.attachments if a.filename)
    reading = Reading(extraction, received_at, parsed.references, documents)
    if extraction.ignored or extraction.kind == "free_update" or not extraction.sender:
        return reading
    entry = unlock_flow.find_continuation(
        conn, references=parsed.references, texts=(parsed.subject, parsed.text),
        prefix=app.config.bot.reference_prefix)
    if entry is None or entry.request is None:
        return reading
    row = conn.execute(sa.select(requests).where(requests.c.id == entry.request)).one()
    reference = unlock_flow.reference_of(conn, entry)
    own = [r for r in extraction.requests if r.serial == entry.serial]
    wanted = list(extraction.requests) if own else [
        Request(row.company, row.contact_name, row.contact_email, row.system, row.serial,
                source=f"reply to {reference}"), *extraction.requests]
    notes = (*extraction.notes, f"answers the unlock request {reference} "
                                f"({entry.serial}, {entry.status})")
    continued = Extraction(
        kind="unlock", ignored=None, sender=extraction.sender, subject=extraction.subject,
        message_id=extraction.message_id, requests=tuple(wanted),
        problems=extraction.problems if extraction.requests else (), notes=notes)
    return Reading(continued, received_at, parsed.references, documents, entry.id)


def _sender_notes(app: App, conn: Connection, rec: MailRecord, parsed: ParsedMail | None,
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


def _hold(app: App, conn: Connection, rec: MailRecord, raw: RawMail, parsed: ParsedMail | None,
          reading: Reading) -> answer.Plan | None:
    """Mails the rules must not decide: each becomes a review task instead of an answer.

    Too large to read; a request without one usable From mailbox; no request subject; a From
    address that fails the sender checks ([security]); more answers to one sender than
    [throttle] allows. None: the rules may decide.
    """
    extraction = reading.extraction
    if raw.oversized and extraction.sender is None:
        text = "over the size limit ([limits] max_message_bytes): not read"
        _mail_task(app, conn, rec, reading, review.TOO_LARGE, "message_too_large", text)
        return answer.Plan("too_large", REVIEW, (), (text,))
    if extraction.ignored:
        if extraction.ignored == "no_sender" and extraction.kind and parsed is not None:
            verdict = check_sender(parsed, require_authentication=False,
                                   trusted_authserv_ids=())
            hit = (verdict.hits[0] if verdict.hits
                   else RuleHit(FROM_MAILBOXES, "the mail has no usable From address"))
            _mail_task(app, conn, rec, reading, review.SENDER, hit.rule, hit.reason)
            return answer.Plan("sender_check", REVIEW, (), (f"not answered: {hit.reason}",))
        return None
    if extraction.kind is None:
        text = (f"the subject {extraction.subject!r} is no request subject of "
                "rules/kinds.toml: not answered")
        _mail_task(app, conn, rec, reading, review.UNRECOGNISED, "unrecognised_subject", text)
        return answer.Plan("not_a_request", REVIEW, (),
                           ("no recognised request subject: filed for operators, not answered",))
    security = app.config.security
    if parsed is not None:
        verdict = check_sender(parsed, require_authentication=security.require_authentication,
                               trusted_authserv_ids=security.trusted_authserv_ids)
        if not verdict.ok:
            hit = verdict.hits[-1]
            _mail_task(app, conn, rec, reading, review.SENDER, hit.rule, hit.reason,
                       sender_checks=[{"rule": h.rule, "reason": h.reason}
                                      for h in verdict.hits])
            messages: tuple[answer.Planned, ...] = ()
            if extraction.sender and hit.rule not in (FROM_HEADERS, FROM_MAILBOXES) \
                    and not _throttled(app, conn, extraction.sender):
                # Tell the sender we have it; the answer waits for an operator.
                messages = (answer.Planned("reply", "under_review", extraction.sender, ()),)
            for planned in messages:
                _queue(app, conn, rec, extraction, parsed, planned)
            return answer.Plan("sender_check", REVIEW, messages,
                               (f"held for operators: {hit.rule}: {hit.reason}",))
    if _throttled(app, conn, extraction.sender):
        text = (f"throttled: {app.config.throttle.max_replies_per_sender} or more answers to "
                f"{extraction.sender} in {app.config.throttle.window_minutes} min "
                "([throttle]); held for operators")
        _mail_task(app, conn, rec, reading, review.THROTTLED, "throttled_sender", text)
        return answer.Plan("throttled", REVIEW, (), (text,))
    return None


def _mail_task(app: App, conn: Connection, rec: MailRecord, reading: Reading, kind: str,
               reason: str, text: str, **snapshot: Any) -> int:
    due = review.due_at(app.rules, app.calendar(), reading.received_at)
    return review.create(conn, mail=rec.id, kind=kind, reason=reason, reason_text=text,
                         due_at=due, snapshot={"reading": reading.to_json(), **snapshot},
                         now=app.now())


def _request_task(app: App, conn: Connection, rec: MailRecord, reading: Reading, *,
                  request_id: int, entry_id: int | None, decision: Decision,
                  repeat: bool) -> None:
    """A review task for one request, or a line in the history of the one already open."""
    now = app.now()
    if repeat and entry_id is not None:
        task = review.open_for_unlock(conn, entry_id)
        if task is not None:
            brought = decision.facts.get("documents") or []
            review.record(conn, task.id, "repeat", review.BOT, now,
                          note=f"{rec.reference} from {reading.extraction.sender} asks again"
                               + (f"; documents so far: {', '.join(brought)}" if brought else ""),
                          changes={"mail": rec.reference})
            return
    code, text = review.reason_of(reading.extraction.kind or "", decision.hits, decision.facts)
    review.create(conn, mail=rec.id, request=request_id, unlock=entry_id,
                  kind=reading.extraction.kind or "", reason=code, reason_text=text,
                  due_at=review.due_at(app.rules, app.calendar(), reading.received_at,
                                       decision.facts),
                  snapshot=task_snapshot(reading, decision), now=now)


def task_snapshot(reading: Reading, decision: Decision) -> dict[str, Any]:
    return {"reading": reading.to_json(), "request": decision.request.to_json(),
            "outcome": decision.outcome,
            "hits": [{"rule": h.rule, "reason": h.reason} for h in decision.hits],
            "facts": {k: v for k, v in decision.facts.items() if k != "installation"}}


def _request_throttle(app: App, conn: Connection, reading: Reading, request: Request,
                      licence: Any | None) -> Decision | None:
    """A review decision when earlier mails asked for this serial or this company more often
    than [security] allows within its window; None otherwise."""
    security = app.config.security
    since = app.now() - dt.timedelta(minutes=security.window_minutes)
    recent = (sa.select(sa.func.count(sa.distinct(requests.c.mail)))
              .select_from(requests.join(mails, requests.c.mail == mails.c.id))
              .where(mails.c.decided_at >= since))
    hit = None
    by_serial = conn.execute(recent.where(requests.c.serial == request.serial)).scalar_one()
    if by_serial >= security.max_requests_per_serial:
        code = "throttled_serial"
        hit = RuleHit("throttle.serial", f"{by_serial} earlier mail(s) asked for "
                                         f"{request.serial} in the last "
                                         f"{security.window_minutes} min; the limit is "
                                         f"{security.max_requests_per_serial} ([security] "
                                         "max_requests_per_serial): held for an operator")
    else:
        company = licence.company if licence is not None else request.company
        of_company = sa.select(licences.c.serial).where(licences.c.company == company)
        by_company = conn.execute(recent.where(sa.or_(
            requests.c.serial.in_(of_company), requests.c.company == company))).scalar_one()
        if by_company >= security.max_requests_per_company:
            code = "throttled_company"
            hit = RuleHit("throttle.company", f"{by_company} earlier mail(s) asked for licences "
                                              f"of {company} in the last "
                                              f"{security.window_minutes} min; the limit is "
                                              f"{security.max_requests_per_company} ([security] "
                                              "max_requests_per_company): held for an operator")
    if hit is None:
        return None
    due = app.calendar().add_business_hours(
        reading.received_at, app.rules.unlock.review_due_hours if app.rules.unlock else 24)
    facts = {"review_reason": code, "due_at": due, "due_text": app.calendar().describe(due),
             "identify_help": app.rules.unlock.identify_help if app.rules.unlock else ""}
    notes = tuple(RuleHit("extract.note", n) for n in request.notes)
    return Decision(request, REVIEW_OUTCOME, (*notes, hit), facts=facts)


def _throttled(app: App, conn: Connection, sender: str | None) -> bool:
    if not sender:
        return False
    since = app.now() - dt.timedelta(minutes=app.config.throttle.window_minutes)
    return app.store.replies_to_since(conn, sender, since) >= app.config.throttle.max_replies_per_sender


def _context(app: App, rec: MailRecord, extraction: Extraction,
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


def _queue(app: App, conn: Connection, rec: MailRecord, extraction: Extraction,
           parsed: ParsedMail | None, planned: answer.Planned, *,
           references: Sequence[str] | None = None) -> None:
    context = _context(app, rec, extraction, planned.rows)
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
                      message_id=message_id, envelope_from=_envelope_from(app),
                      recipients=[planned.to], data=data)


def _envelope_from(app: App) -> str:
    return app.config.smtp.envelope_from or app.config.bot.address


def deliver_due(app: App, report: RunReport, *, mail: int | None = None) -> None:
    """Send queued messages whose time has come; temporary failures retry with backoff."""
    with app.store.transaction() as conn:
        due = app.store.due_messages(conn, now=app.now(), mail=mail)
    smtp = app.config.smtp
    for msg in due:
        recipients = json.loads(msg.recipients)
        try:
            app.sink.send(msg.envelope_from, recipients, msg.data, msg.message_id)
        except SinkUnavailable as exc:
            # Nothing can go out until an operator fixes the setup: keep every message's
            # attempts, retry the whole batch later, alert once per pass that sees it.
            with app.store.transaction() as conn:
                app.store.mark_retry(conn, msg.id, error=str(exc), count_attempt=False,
                                     next_attempt_at=app.now() + dt.timedelta(
                                         seconds=smtp.retry_base_seconds))
            log.error("event=sink_unavailable error=%r", str(exc))
            report.errors.append(f"sink unavailable: {exc}")
            break
        except TemporaryDeliveryError as exc:
            with app.store.transaction() as conn:
                if msg.attempts + 1 >= smtp.max_attempts:
                    app.store.mark_failed(conn, msg.id, error=str(exc))
                    _delivery_failed(app, conn, msg, str(exc))
                    report.failed += 1
                else:
                    delay = min(dt.timedelta(seconds=smtp.retry_base_seconds * 2 ** msg.attempts),
                                MAX_RETRY_DELAY)
                    app.store.mark_retry(conn, msg.id, error=str(exc),
                                         next_attempt_at=app.now() + delay)
            log.warning("event=delivery_deferred message_id=%s error=%r", msg.message_id, str(exc))
            continue
        except PartiallyDelivered as exc:
            # Delivered to some recipients: resending would duplicate it for them.
            with app.store.transaction() as conn:
                app.store.mark_sent(conn, msg.id, error=str(exc))
                _delivery_failed(app, conn, msg, str(exc))
            log.error("event=delivery_partial message_id=%s error=%r", msg.message_id, str(exc))
            continue
        except PermanentDeliveryError as exc:
            with app.store.transaction() as conn:
                app.store.mark_failed(conn, msg.id, error=str(exc))
                _delivery_failed(app, conn, msg, str(exc))
            report.failed += 1
            log.error("event=delivery_failed message_id=%s error=%r", msg.message_id, str(exc))
            continue
        app.hook("after_smtp_accept")
        if app.after_send is not None and msg.purpose != "alert":
            try:
                app.after_send(msg.data)
            except Exception as exc:  # the copy in Sent is a courtesy, never a reason to resend
                log.warning("could not keep a copy of %s: %s", msg.message_id, exc)
        with app.store.transaction() as conn:
            app.store.mark_sent(conn, msg.id)
        report.sent += 1
        log.info("event=reply_sent message_id=%s template=%s to=%s", msg.message_id,
                 msg.template, ",".join(recipients))


def _delivery_failed(app: App, conn: Connection, msg: Any, error: str) -> None:
    if msg.mail is not None:
        app.store.update_mail(conn, msg.mail, folder=REVIEW)
    if msg.purpose != "alert":
        app.store.log_event(conn, "alert", mail=msg.mail, title="Entrega fallida",
                            detail=f"{msg.message_id} a {', '.join(json.loads(msg.recipients))}: {error}")


def file_mail(app: App, rec: MailRecord, report: RunReport) -> None:
    """File a decided mail once none of its answers is still waiting to go out."""
    if rec.filed or rec.status == "received":
        return
    with app.store.transaction() as conn:
        if app.store.unsent_for_mail(conn, rec.id):
            return
        rec = app.store.get_mail(conn, rec.id)
    app.hook("before_file")
    app.source.file(rec.mail_id, rec.folder or REVIEW)
    with app.store.transaction() as conn:
        app.store.update_mail(conn, rec.id, filed=True, filed_at=app.now())
        if rec.status == "decided":
            app.store.update_mail(conn, rec.id, status="done")
    report.filed += 1
    log.info("event=mail_filed reference=%s folder=%s", rec.reference, rec.folder or REVIEW)


def finish_unfiled(app: App, report: RunReport) -> None:
    with app.store.transaction() as conn:
        pending = app.store.mails_to_finish(conn, app.source.name)
    for rec in pending:
        file_mail(app, rec, report)


def fulfil_pending(app: App) -> int:
    """Requests that waited for keys get them as soon as the pool has some."""
    done = 0
    with app.store.transaction() as conn:
        waiting = app.store.pending_requests(conn)
    for req in waiting:
        with app.store.transaction() as conn:
            key = app.store.assign_key(conn, system=req.system, serial=req.serial)
            if key is None:
                continue
            hits = [RuleHit(**h) for h in json.loads(req.hits)]
            hits.append(RuleHit("keys.assign", f"keys were imported: a new key from the "
                                               f"{req.system} pool is bound to {req.serial}"))
            app.store.update_request(conn, req.id, outcome=ISSUED, hits=hits, key_id=key.id)
            app.store.bind_key_to_request(conn, key.id, req.id)
            request = Request(req.company, req.contact_name, req.contact_email, req.system,
                              req.serial, req.source)
            decision = Decision(request, ISSUED, tuple(hits), key=key.key, recipient=req.recipient)
            mail = app.store.get_mail(conn, req.mail)
            stored = json.loads(app.store.mail_extraction(conn, mail.id) or "{}")
            extraction = Extraction(kind=stored.get("kind"), ignored=None,
                                    sender=stored.get("sender"),
                                    subject=stored.get("subject", ""),
                                    message_id=stored.get("message_id"))
            planned = answer.Planned("keys", "keys_issued", req.recipient,
                                     (answer.row(decision, show_key=True,
                                                 requester=extraction.sender),))
            _queue(app, conn, mail, extraction, None, planned)
            app.store.log_event(conn, "pending_fulfilled", mail=req.mail, serial=req.serial)
            done += 1
    return done


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
                              message_id=message_id, envelope_from=_envelope_from(app),
                              recipients=list(operators), data=data)
        app.store.mark_alerted(conn, max(e["id"] for e in pending))
