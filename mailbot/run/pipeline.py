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

Mails go through in batches (BATCH_SIZE), which changes no step of any single mail, only how
steps of different mails interleave: each mail of the batch is recorded and decided as above,
one after the other (worker processes may read the next ones meanwhile: mailbot.run.readahead);
then the batch's replies are sent, each marked sent as soon as the server took it; then the
copies for the Sent folder are made in one go (a reply whose copy is not made yet is marked so
in the store, and a crash leaves the copy to the next run); then the mails whose answers are
all out are filed, one move per folder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import zoneinfo
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot.store import reviews, ledger
from mailbot.answer import plan as answer
from mailbot.run import review
from mailbot.run import unlock_flow
from mailbot.business_hours import DEFAULT_WEEK, BusinessCalendar
from mailbot.config import Config
from mailbot.decide.free_update import decide_free_update
from mailbot.read.extract import read_mail
from mailbot.model import (ISSUED, PENDING, Decision, Extraction, ParsedMail, Problem, RawMail,
                           Request, RuleHit)
from mailbot.model import REVIEW as REVIEW_OUTCOME
from mailbot.run.readahead import ReadAhead
from mailbot.answer.render import Renderer
from mailbot.answer.message import build_alert, build_reply, make_message_id
from mailbot.ruleset import Ruleset
from mailbot.transport.seams import (FAILED, IGNORED, REVIEW, PartiallyDelivered, PermanentDeliveryError,
                           Sink, SinkUnavailable, Source, TemporaryDeliveryError)
from mailbot.decide.sender import (FROM_HEADERS, FROM_MAILBOXES, check_sender,
                                   reply_to_differs)
from mailbot.store.database import MailRecord, Store, fingerprint, licences, mails, requests
from mailbot.decide.unlock import calendar_for

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
    # The same for many replies at once (one IMAP MULTIAPPEND). When set (and after_send is),
    # copies are made after each batch of sends instead of one by one; by default it is the
    # source's append_sent_many when after_send is the source's append_sent.
    after_send_many: Callable[[Sequence[bytes]], None] | None = None
    # Worker processes that read mails ahead in large batches (mailbot.run.readahead): None picks
    # as many as the machine has cores to spare, 0 reads every mail in this process.
    read_workers: int | None = None
    _calendar: BusinessCalendar | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.after_send_many is None and self.after_send is not None:
            own = getattr(self.source, "append_sent", None)
            if own is not None and self.after_send == own:
                self.after_send_many = getattr(self.source, "append_sent_many", None)

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
    read_ahead: int = 0  # mails read by worker processes (mailbot.run.readahead)
    errors: list[str] = field(default_factory=list)


class StoreKeyPool:
    """The KeyPool the rules see, inside the decision's transaction."""

    def __init__(self, store: Store, conn: Connection) -> None:
        self.store, self.conn = store, conn
        self.assigned: dict[str, int] = {}  # serial -> key row id, to bind to the request
        self._known: dict[str, Any] | None = None  # serial -> key row, after prefetch()
        self._prefetched: set[str] = set()

    def prefetch(self, serials: Sequence[str]) -> None:
        """Look up the keys of all these serials in one query (a mail with many requests)."""
        self._known = self.store.keys_for_serials(self.conn, serials)
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


BATCH_SIZE = 100  # mails decided one by one, then answered and filed together


def run_once(app: App) -> RunReport:
    """Finish what an earlier run left, then handle every mail waiting in the inbox."""
    report = RunReport()
    fulfil_pending(app)
    deliver_due(app, report)
    finish_copies(app)
    finish_unfiled(app, report)
    with ReadAhead(app.rules, app.config.limits, app.own_addresses,
                   workers=app.read_workers) as readahead:
        batch: list[RawMail] = []
        for raw in app.source.fetch_new():
            report.seen += 1
            batch.append(raw)
            if len(batch) >= BATCH_SIZE:
                process_batch(app, batch, report, readahead)
                batch = []
        if batch:
            process_batch(app, batch, report, readahead)
        report.read_ahead += readahead.read_by_workers
    flag_overdue(app)
    send_alerts(app)
    deliver_due(app, report)
    return report


def process_batch(app: App, raws: Sequence[RawMail], report: RunReport,
                  readahead: ReadAhead | None = None) -> list[MailRecord]:
    """Handle a batch of fetched mails, keeping the order of commits of every single mail.

    Each mail is recorded (its own commit), then `after_fetch`, then read and decided (one
    commit); then the replies of the whole batch go out, each marked sent as soon as the SMTP
    server took it; then the mails whose answers are all out are filed, one move per folder.
    A store or mailbox fault on one mail leaves it for the next run and the others go on.
    With `readahead`, worker processes read the mails that will need reading while this
    process records and decides the ones before them (see mailbot.run.readahead).
    """
    store = app.store
    with store.transaction() as conn:  # the look-ups of the whole batch, in a few queries
        known: dict[tuple[str, str], MailRecord] = {}
        for source in dict.fromkeys(r.source for r in raws):
            found = store.find_mails(conn, source, [r.mail_id for r in raws if r.source == source])
            known.update(((source, mail_id), rec) for mail_id, rec in found.items())
        fps = {_key(r): _fingerprint(r) for r in raws if _key(r) not in known}
        originals = store.originals_by_fingerprint(conn, list(fps.values())) if fps else {}
    if readahead is not None:
        readahead.submit(_to_read(raws, known, fps, originals))
    handled: list[MailRecord] = []
    for raw in raws:
        try:
            rec = _record(app, raw, report, known.get(_key(raw)), fps, originals)
            if rec.status != "received" and readahead is not None:
                readahead.drop(raw)
            if rec.filed:  # handled before, yet back in the inbox (restored by hand): file it again
                app.source.file(rec.mail_id, rec.folder or REVIEW)
                continue
            app.hook("after_fetch")
            if rec.status == "received":
                try:
                    read = readahead.take(raw) if readahead is not None else None
                    rec = decide_mail(app, rec, raw, read)
                    report.decided += 1
                except Exception as exc:
                    log.exception("mail %s (%s) could not be decided", rec.reference,
                                  raw.mail_id)
                    with store.transaction() as conn:
                        store.update_mail(conn, rec.id, error=f"{type(exc).__name__}: {exc}")
                    report.errors.append(f"{rec.reference}: {exc}")
                    continue
                app.hook("after_decision")
            handled.append(rec)
        except Exception as exc:  # a store or mailbox fault: the mail stays for the next run
            log.exception("mail %s: %s", raw.mail_id, exc)
            report.errors.append(f"{raw.mail_id}: {exc}")
    if not handled:
        return handled
    ids = [rec.id for rec in handled]
    try:
        deliver_due(app, report, mail_ids=ids)
        file_mails(app, ids, report)
    except Exception as exc:  # the mails stay in the inbox; the next run finishes them
        log.exception("batch of %d mails: %s", len(ids), exc)
        report.errors.append(f"{len(ids)} mails from {handled[0].reference}: {exc}")
    return handled


def _key(raw: RawMail) -> tuple[str, str]:
    return raw.source, raw.mail_id


def _to_read(raws: Sequence[RawMail], known: dict[tuple[str, str], MailRecord],
             fps: dict[tuple[str, str], str], originals: dict[str, MailRecord]) -> list[RawMail]:
    """The mails of a batch that will be read: new ones that are no copy of a stored mail or
    of an earlier one in the batch, and stored ones still waiting for a decision."""
    out, seen = [], set(originals)
    for raw in raws:
        rec = known.get(_key(raw))
        if rec is not None:
            if rec.status == "received" and rec.attempts < MAX_ATTEMPTS:
                out.append(raw)
            continue
        fp = fps[_key(raw)]
        if fp not in seen:
            seen.add(fp)
            out.append(raw)
    return out


def _fingerprint(raw: RawMail) -> str:
    return (fingerprint(raw.data) if not raw.oversized
            else f"oversized:{raw.source}:{raw.mail_id}:{raw.size}")


def _record(app: App, raw: RawMail, report: RunReport, rec: MailRecord | None,
            fps: dict[tuple[str, str], str], originals: dict[str, MailRecord]) -> MailRecord:
    """Step 1, its own commit: the mail is in the store (and its attempt counted) before it is
    read. `rec` and `originals` come from the batch's look-ups; recording a new original adds
    it to `originals`, so a copy later in the same batch is a duplicate of it."""
    store = app.store
    with store.transaction() as conn:
        if rec is None:
            fp = fps.get(_key(raw)) or _fingerprint(raw)
            original = originals.get(fp)
            if original is not None:
                rec = store.add_mail(
                    conn, source=raw.source, mail_id=raw.mail_id, fp=fp, size=rec_size(raw),
                    status="duplicate", duplicate_of=original.id,
                    folder=original.folder or IGNORED, prefix=app.config.bot.reference_prefix,
                    outcome="duplicate",
                    notes=[f"the same mail as {original.reference}: not answered again"])
                store.log_event(conn, "duplicate", mail=rec.id, of=original.id)
                report.duplicates += 1
                log.info("event=duplicate reference=%s mail_id=%s same_as=%s", rec.reference,
                         raw.mail_id, original.reference)
                return rec
            # A new mail is recorded with its first attempt counted.
            rec = store.add_mail(conn, source=raw.source, mail_id=raw.mail_id, fp=fp,
                                 size=rec_size(raw), prefix=app.config.bot.reference_prefix,
                                 attempts=1)
            log.info("event=mail_received reference=%s mail_id=%s size=%d", rec.reference,
                     raw.mail_id, rec_size(raw))
            new = rec
        else:
            new = None
            if rec.status == "received":
                if rec.attempts >= MAX_ATTEMPTS:
                    store.update_mail(conn, rec.id, status="quarantined", folder=FAILED,
                                      outcome="quarantined")
                    log.error("event=quarantined reference=%s attempts=%d", rec.reference,
                              rec.attempts)
                    store.log_event(conn, "alert", mail=rec.id, title="Correo en cuarentena",
                                    detail=f"{rec.reference} falló {rec.attempts} veces; revisar")
                    rec = dataclasses.replace(rec, status="quarantined", folder=FAILED)
                else:
                    store.update_mail(conn, rec.id, attempts=rec.attempts + 1)
                    rec = dataclasses.replace(rec, attempts=rec.attempts + 1)
    if new is not None:  # committed: a later copy in this batch is a duplicate of it
        originals.setdefault(new.fingerprint, new)
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


def decide_mail(app: App, rec: MailRecord, raw: RawMail,
                read: tuple[ParsedMail | None, Extraction] | None = None) -> MailRecord:
    """Read, decide, render and queue the answers of one mail in one transaction.

    `read` is what `_read` gives for `raw`, when it was read beforehand. Returns the record as
    the transaction left it (decided, and the folder it is to be filed in).
    """
    parsed, extraction = read if read is not None else _read(app, raw)
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
    registry = store.licences_for(conn, serials) if serials else {}
    if len(set(serials)) > 1:
        pool.prefetch(serials)
    for position, request in enumerate(extraction.requests):
        licence = registry.get(request.serial)
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
        queue_message(app, conn, rec, extraction, None, planned, references=reading.references)
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
    reference = ledger.reference_of(conn, entry)
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
                queue_message(app, conn, rec, extraction, parsed, planned)
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
    return reviews.create(conn, mail=rec.id, kind=kind, reason=reason, reason_text=text,
                         due_at=due, snapshot={"reading": reading.to_json(), **snapshot},
                         now=app.now())


def _request_task(app: App, conn: Connection, rec: MailRecord, reading: Reading, *,
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
            "hits": [{"rule": h.rule, "reason": h.reason} for h in decision.hits],
            "facts": {k: v for k, v in decision.facts.items() if k != "installation"}}


def _request_throttle(app: App, conn: Connection, reading: Reading, request: Request,
                      licence: Any | None) -> Decision | None:
    """A review decision when earlier mails asked for this serial or this company more often
    than [security] allows within its window; None otherwise."""
    security = app.config.security
    since = app.now() - dt.timedelta(minutes=security.window_minutes)
    company = licence.company if licence is not None else request.company
    by_serial, by_company = conn.execute(_REQUEST_THROTTLE, {
        "_since": since, "_serial": request.serial, "_company": company}).one()
    hit = None
    if by_serial >= security.max_requests_per_serial:
        code = "throttled_serial"
        hit = RuleHit("throttle.serial", f"{by_serial} earlier mail(s) asked for "
                                         f"{request.serial} in the last "
                                         f"{security.window_minutes} min; the limit is "
                                         f"{security.max_requests_per_serial} ([security] "
                                         "max_requests_per_serial): held for an operator")
    elif by_company >= security.max_requests_per_company:
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


def _request_throttle_statement() -> Any:
    """Both counts of the request throttle in one query: distinct earlier mails, decided within
    the window, that asked for this serial; and that asked for a licence of this company (a
    registered serial of it, or the company as the request wrote it).

    Written as a UNION ALL of three index look-ups (requests.serial; licences.company joined
    to requests.serial; requests.company) so that SQLite and PostgreSQL both look up only the
    company's and the serial's own requests: an OR with `IN (subquery)` makes PostgreSQL scan
    every request. The cost follows the company's history, not the table's.
    """
    kind = sa.literal_column("'s'", sa.String).label("kind")
    by_serial = sa.select(requests.c.mail.label("mail"), kind).where(
        requests.c.serial == sa.bindparam("_serial"))
    company = sa.literal_column("'c'", sa.String)
    by_licence = (sa.select(requests.c.mail, company)
                  .select_from(requests.join(licences, licences.c.serial == requests.c.serial))
                  .where(licences.c.company == sa.bindparam("_company")))
    by_name = sa.select(requests.c.mail, company).where(
        requests.c.company == sa.bindparam("_company"))
    asked = sa.union_all(by_serial, by_licence, by_name).subquery("asked")
    return (sa.select(sa.func.count(sa.distinct(sa.case((asked.c.kind == "s", asked.c.mail)))),
                      sa.func.count(sa.distinct(sa.case((asked.c.kind == "c", asked.c.mail)))))
            .select_from(asked.join(mails, mails.c.id == asked.c.mail))
            .where(mails.c.decided_at >= sa.bindparam("_since")))


_REQUEST_THROTTLE = _request_throttle_statement()


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


def queue_message(app: App, conn: Connection, rec: MailRecord, extraction: Extraction,
                  parsed: ParsedMail | None, planned: answer.Planned, *,
                  references: Sequence[str] | None = None) -> None:
    """Render a planned answer and put it in the outbox, inside the caller's transaction."""
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


def deliver_due(app: App, report: RunReport, *, mail: int | None = None,
                mail_ids: Sequence[int] | None = None) -> None:
    """Send queued messages whose time has come (all, or those of `mail` or of `mail_ids`);
    temporary failures retry with backoff."""
    with app.store.transaction() as conn:
        due = app.store.due_messages(conn, now=app.now(), mail=mail, mail_ids=mail_ids)
    smtp = app.config.smtp
    copy_many = app.after_send_many if app.after_send is not None else None
    copies: list[tuple[int, bytes]] = []  # sent, copy for the Sent folder still to make
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
        copy = app.after_send is not None and msg.purpose != "alert"
        if copy and copy_many is None:
            try:
                app.after_send(msg.data)  # type: ignore[misc]
            except Exception as exc:  # the copy in Sent is a courtesy, never a reason to resend
                log.warning("could not keep a copy of %s: %s", msg.message_id, exc)
        pending = copy and copy_many is not None
        with app.store.transaction() as conn:
            app.store.mark_sent(conn, msg.id, copy_pending=pending)
        if pending:
            copies.append((msg.id, msg.data))
        report.sent += 1
        log.info("event=reply_sent message_id=%s template=%s to=%s", msg.message_id,
                 msg.template, ",".join(recipients))
    if copies:
        _make_copies(app, copies)


def _make_copies(app: App, copies: Sequence[tuple[int, bytes]]) -> None:
    """Copies of sent replies for the Sent folder, all at once; then they are no longer
    pending. A failure leaves them pending for the next run (`finish_copies`)."""
    copy_many = app.after_send_many if app.after_send is not None else None
    if copy_many is not None:
        try:
            copy_many([data for _, data in copies])
        except Exception as exc:  # the copy in Sent is a courtesy, never a reason to resend
            log.warning("could not keep copies of %d replies now (next run tries again): %s",
                        len(copies), exc)
            return
    elif app.after_send is not None:
        for _, data in copies:
            try:
                app.after_send(data)
            except Exception as exc:
                log.warning("could not keep a copy of a reply: %s", exc)
    with app.store.transaction() as conn:
        app.store.copies_made(conn, [message for message, _ in copies])


def finish_copies(app: App) -> None:
    """Copies for the Sent folder that a crash (or an unreachable mailbox) left unmade."""
    with app.store.transaction() as conn:
        pending = app.store.pending_copies(conn)
    if pending:
        _make_copies(app, [(row.id, row.data) for row in pending])


def _delivery_failed(app: App, conn: Connection, msg: Any, error: str) -> None:
    if msg.mail is not None:
        app.store.update_mail(conn, msg.mail, folder=REVIEW)
    if msg.purpose != "alert":
        app.store.log_event(conn, "alert", mail=msg.mail, title="Entrega fallida",
                            detail=f"{msg.message_id} a {', '.join(json.loads(msg.recipients))}: {error}")


def file_mails(app: App, mail_ids: Sequence[int], report: RunReport) -> None:
    """File the decided mails among `mail_ids` whose answers are all out: one move per folder
    (where the source can move many at once), then one commit per folder marks them filed."""
    store = app.store
    with store.transaction() as conn:
        unsent = store.mails_with_unsent(conn, mail_ids)
        records = {rec.id: rec for rec in store.records(conn, mail_ids)}
    current = [records[m] for m in mail_ids if m in records]
    ready = [rec for rec in current
             if not rec.filed and rec.status != "received" and rec.id not in unsent]
    if not ready:
        return
    for _ in ready:
        app.hook("before_file")
    by_folder: dict[str, list[MailRecord]] = {}
    for rec in ready:
        by_folder.setdefault(rec.folder or REVIEW, []).append(rec)
    file_many = getattr(app.source, "file_many", None)
    for folder, recs in by_folder.items():
        if file_many is not None and len(recs) > 1:
            file_many([rec.mail_id for rec in recs], folder)
        else:
            for rec in recs:
                app.source.file(rec.mail_id, folder)
        with store.transaction() as conn:
            store.mark_filed(conn, [rec.id for rec in recs], app.now())
        report.filed += len(recs)
        for rec in recs:
            log.info("event=mail_filed reference=%s folder=%s", rec.reference, folder)


def finish_unfiled(app: App, report: RunReport) -> None:
    with app.store.transaction() as conn:
        pending = app.store.mails_to_finish(conn, app.source.name)
    for start in range(0, len(pending), BATCH_SIZE):
        file_mails(app, [rec.id for rec in pending[start:start + BATCH_SIZE]], report)


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
            queue_message(app, conn, mail, extraction, None, planned)
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
