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

A power cut is a crash too, as long as nothing left the process on the strength of a commit
the disk does not have yet. Every commit is synced before it returns (SQLite: WAL with
synchronous=FULL), except the decisions of step 2 (`Store.transaction(sync_later=True)`):
they are synced together, with one fsync of the WAL (`Store.sync`), before the first reply
of the batch is sent and before any mail is filed. A power cut can only undo a suffix of the
commits, so it leaves the store as a crash before the first undone decision would have, with
none of its replies out and its mail still in the inbox. A reply's mark (step 3) commits the
same way and is synced by itself right after, before the next reply goes out: as durable as
a synced commit, with the fsync made once the write lock is free for others.

Mails go through in batches (BATCH_SIZE), which changes no step of any single mail, only how
steps of different mails interleave: the new mails of each group of LOOK_AGAIN are recorded
together in one commit before any of them is read, each attempt counted before its mail is read
(in that commit, or in the decision commit of the mail before it: mailbot.run.record_group);
each mail of the batch is decided as above, one after the other (worker processes may read the
next ones meanwhile: mailbot.run.readahead);
then the batch's replies are sent, each marked sent as soon as the server took it; then the
copies for the Sent folder are made in one go (a reply whose copy is not made yet is marked so
in the store, and a crash leaves the copy to the next run); then the mails whose answers are
all out are filed, one move per folder.

A pass whose first batch is full (a backlog) splits these steps between two processes
(mailbot.run.decider): a decider records and decides (`decide_batch`), this process sends and
files (`answer_batch`) each part once the decider has reported it, decided and committed. The
steps of each mail and their order are the ones above; only the steps of different mails
overlap more.
"""

from __future__ import annotations

import collections
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Sequence

from mailbot.errors import StoreError
from mailbot.model import RawMail
from mailbot.run import versions
from mailbot.run.alerts import flag_overdue, send_alerts
from mailbot.run.app import BATCH_SIZE, App, RunReport
from mailbot.run.claims import ClaimLost, let_go
from mailbot.run.decider import (
    DECIDER_AHEAD,
    DECIDER_PART,
    Decider,
    DeciderGone,
    may_decide_elsewhere,
)
from mailbot.run.deciding import decide_mail
from mailbot.run.deliver import deliver_due, finish_copies
from mailbot.run.filing import file_mails, finish_unfiled
from mailbot.run.pending import fulfil_pending
from mailbot.run.quarantine import quarantine_now, will_fail_again
from mailbot.run.readahead import ReadAhead
from mailbot.run.record import (
    LOOK_AGAIN,
    look_again,
    mail_fingerprint,
    mail_key,
    record_mail,
    to_read,
)
from mailbot.run.record_group import Attempts, record_group
from mailbot.store import MailRecord, panel
from mailbot.transport.seams import REVIEW

log = logging.getLogger("mailbot")



def run_once(app: App) -> RunReport:
    """Finish what an earlier run left, then handle every mail waiting in the inbox."""
    started = time.monotonic()
    report = RunReport()
    versions.refresh(app)  # a changed rules or templates folder: used if valid, else refused
    app.renderer.refresh()  # templates an admin edited since the last pass (compiled once)
    fulfil_pending(app)
    deliver_due(app, report)
    finish_copies(app)
    finish_unfiled(app, report)
    with ReadAhead(app.rules, app.config.limits, app.own_addresses,
                   reference_prefix=app.config.bot.reference_prefix,
                   workers=app.read_workers) as readahead:
        handle_inbox(app, report, readahead)
        report.read_ahead += readahead.read_by_workers
    flag_overdue(app)
    send_alerts(app)
    deliver_due(app, report)
    with app.store.transaction() as conn:
        panel.record_pass(conn, at=app.now(), duration_seconds=time.monotonic() - started,
                          seen=report.seen, decided=report.decided, sent=report.sent,
                          errors=len(report.errors))
    return report


def _batches(app: App, report: RunReport) -> Iterator[list[RawMail]]:
    batch: list[RawMail] = []
    for raw in app.source.fetch_new():
        report.seen += 1
        batch.append(raw)
        if len(batch) >= BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


def handle_inbox(app: App, report: RunReport, readahead: ReadAhead) -> None:
    """Every mail waiting in the inbox, batch by batch: each decided, answered and filed here;
    or, when the first batch is full and the App allows it, the first decided here and the next
    ones by a decider process while this one answers those decided before (mailbot.run.
    decider)."""
    batches = _batches(app, report)
    first = next(batches, None)
    if first is None:
        return
    decider = (Decider.start(app) if len(first) == BATCH_SIZE and may_decide_elsewhere(app)
               else None)
    if decider is None:
        process_batch(app, first, report, readahead)
        for batch in batches:
            process_batch(app, batch, report, readahead)
        return
    finished = False
    try:
        _with_decider(app, report, readahead, decider, first, batches)
        finished = True
    finally:
        decider.close(abort=not finished)


def _with_decider(app: App, report: RunReport, readahead: ReadAhead, decider: Decider,
                  first: list[RawMail], batches: Iterator[list[RawMail]]) -> None:
    """The first batch decided here, a group of LOOK_AGAIN at a time, until the decider has
    started; then the rest, in parts of DECIDER_PART, goes to the decider, and the oldest part
    decided is answered while the decider works on the next ones (at most DECIDER_AHEAD parts
    wait for it). Parts half a batch long keep the pipeline short: the last part the decider
    decides is answered sooner. A decider that is gone hands its parts back: they are handled
    here."""
    claimed: list[int] = []
    handled: list[MailRecord] = []
    done = 0
    try:  # read here: the decider's readers take over, a worker of our own would not pay
        while done < len(first) and (done == 0 or not decider.ready.is_set()):
            group = first[done:done + LOOK_AGAIN]
            handled.extend(decide_batch(app, group, report, None, claimed,
                                        refile=app.source.file))
            done += len(group)
    except BaseException:
        let_go(app, claimed)
        raise
    rest = first[done:]
    here: tuple[list[MailRecord], list[int]] | None = (handled, claimed)
    waiting: collections.deque[list[RawMail]] = collections.deque()  # given to the decider
    helper: Decider | None = decider
    for part in _parts(rest, batches):
        if helper is None:
            process_batch(app, part, report, readahead)
            continue
        helper.submit(part)
        waiting.append(part)
        if here is not None:  # the head, now that the decider has work
            _answer(app, report, *here)
            here = None
        while helper is not None and len(waiting) > DECIDER_AHEAD:
            helper = _answer_next(app, report, helper, waiting)
    if here is not None:
        _answer(app, report, *here)
    while waiting:
        if helper is None:
            process_batch(app, waiting.popleft(), report, readahead)
        else:
            helper = _answer_next(app, report, helper, waiting)


def _parts(rest: list[RawMail], batches: Iterator[list[RawMail]]) -> Iterator[list[RawMail]]:
    """`rest`, then every further batch, cut in parts of at most DECIDER_PART mails."""
    for batch in itertools.chain([rest], batches):
        for start in range(0, len(batch), DECIDER_PART):
            yield batch[start:start + DECIDER_PART]


def _answer_next(app: App, report: RunReport, decider: Decider,
                 waiting: collections.deque[list[RawMail]]) -> Decider | None:
    """Answer the oldest batch the decider was given, once it has decided it. None: the decider
    is gone, and the batches still waiting (this one included) are to be handled here."""
    try:
        decided = decider.next()
    except DeciderGone as exc:
        log.warning("event=decider_gone error=%r: the rest of the pass is decided in-process",
                    str(exc))
        decider.close(abort=True)
        return None
    waiting.popleft()
    report.decided += decided.decided
    report.decided_elsewhere += decided.decided
    report.duplicates += decided.duplicates
    report.read_ahead += decided.read_ahead
    report.errors.extend(decided.errors)
    if decided.store_error is not None:  # as in-process: the pass ends, the mails stay
        let_go(app, decided.claimed)
        raise StoreError(decided.store_error)
    _answer(app, report, decided.handled, decided.claimed, decided.refile)
    return decider


def _answer(app: App, report: RunReport, handled: list[MailRecord], claimed: list[int],
            refile: Sequence[tuple[str, str]] = ()) -> None:
    """Answer and file a decided batch, then let go of its claims whatever happens."""
    try:
        for mail_id, folder in refile:  # handled before, back in the inbox: file it again
            try:
                app.source.file(mail_id, folder)
            except Exception as exc:  # a mailbox fault: the mail stays for the next run
                log.exception("mail %s: %s", mail_id, exc)
                report.errors.append(f"{mail_id}: {exc}")
        answer_batch(app, handled, report)
    finally:
        let_go(app, claimed)


def process_batch(app: App, raws: Sequence[RawMail], report: RunReport,
                  readahead: ReadAhead | None = None) -> list[MailRecord]:
    """Handle a batch of fetched mails, keeping the order of commits of every single mail.

    The new mails of each group of LOOK_AGAIN are recorded and claimed (one commit; the others
    each in their own), then per mail `after_fetch`, then it is read and decided (one commit);
    then the replies of the whole batch go out, each marked sent as soon as the SMTP server
    took it; then the mails whose answers are all out are filed, one move
    per folder; then the claims are let go. A mail another run holds is left to it.
    A store or mailbox fault on one mail leaves it for the next run and the others go on.
    With `readahead`, worker processes read the mails that will need reading while this
    process records and decides the ones before them (see mailbot.run.readahead).
    """
    claimed: list[int] = []  # the mails this run holds, let go whatever happens
    try:
        return _process_batch(app, raws, report, readahead, claimed)
    finally:
        let_go(app, claimed)


def _process_batch(app: App, raws: Sequence[RawMail], report: RunReport,
                   readahead: ReadAhead | None, claimed: list[int]) -> list[MailRecord]:
    handled = decide_batch(app, raws, report, readahead, claimed, refile=app.source.file)
    answer_batch(app, handled, report)
    return handled


def decide_batch(app: App, raws: Sequence[RawMail], report: RunReport,
                 readahead: ReadAhead | None, claimed: list[int],
                 refile: Callable[[str, str], None]) -> list[MailRecord]:
    """Record, claim and decide the mails of a batch, one after the other (the first half of
    `process_batch`, which the decider process runs for the batches after the first:
    mailbot.run.decider). The mails it handled are returned, the claims it took are appended
    to `claimed`; `refile(mail_id, folder)` files a mail that was handled before and is back
    in the inbox."""
    store = app.store
    with store.transaction() as conn:  # the look-ups of the whole batch, in a few queries
        known: dict[tuple[str, str], MailRecord] = {}
        for source in dict.fromkeys(r.source for r in raws):
            found = store.find_mails(conn, source, [r.mail_id for r in raws if r.source == source])
            known.update(((source, mail_id), rec) for mail_id, rec in found.items())
        fps = {mail_key(r): mail_fingerprint(r) for r in raws if mail_key(r) not in known}
        originals = store.originals_by_fingerprint(conn, list(fps.values())) if fps else {}
    if readahead is not None:
        readahead.submit(to_read(raws, known, fps, originals))
    handled: list[MailRecord] = []
    elsewhere: set[tuple[str, str]] = set()
    attempts = Attempts()  # the mails a group recorded (mailbot.run.record_group)
    for position, raw in enumerate(raws):
        try:
            if position % LOOK_AGAIN == 0:
                group = raws[position:position + LOOK_AGAIN]
                elsewhere = look_again(app, group, known)
                recorded = record_group(app, group, report, known, elsewhere, fps, originals)
                claimed.extend(rec.id for rec in recorded.values())  # let go whatever happens
                attempts.add(recorded)
            if mail_key(raw) in elsewhere:  # another run is working on it
                if readahead is not None:
                    readahead.drop(raw)
                continue
            grouped, rec = attempts.take(app, raw)
            if not grouped:
                rec = record_mail(app, raw, report, known.get(mail_key(raw)), fps, originals)
            if rec is None:  # another run is working on it
                if readahead is not None:
                    readahead.drop(raw)
                continue
            claimed.append(rec.id)
            if rec.status != "received" and readahead is not None:
                readahead.drop(raw)
            if rec.filed:  # handled before, yet back in the inbox (restored by hand): file it again
                refile(rec.mail_id, rec.folder or REVIEW)
                continue
            app.hook("after_fetch")
            if rec.status == "received":
                following = raws[position + 1] if position + 1 < len(raws) else None
                then = attempts.piggyback(following)
                try:
                    read = readahead.take(raw) if readahead is not None else None
                    rec = decide_mail(app, rec, raw, read,
                                      count_attempt_of=then.id if then is not None else None)
                    if then is not None:
                        attempts.counted(then)
                    report.decided += 1
                except StoreError:
                    raise  # the store cannot be written: the next mails would fail alike
                except ClaimLost as exc:  # its lease ran out and another run took it
                    log.warning("event=claim_lost reference=%s: %s", rec.reference, exc)
                    continue
                except Exception as exc:
                    log.exception("mail %s (%s) could not be decided", rec.reference,
                                  raw.mail_id)
                    report.errors.append(f"{rec.reference}: {exc}")
                    reason = will_fail_again(app, exc)
                    failed = quarantine_now(app, rec, exc, reason) if reason else None
                    if failed is not None:  # filed in `failed` with the batch, not retried
                        handled.append(failed)
                        continue
                    with store.transaction() as conn:
                        store.update_mail(conn, rec.id, error=f"{type(exc).__name__}: {exc}")
                    continue
                app.hook("after_decision")
            handled.append(rec)
        except StoreError:
            raise  # a damaged or full store ends the pass; every mail stays where it is
        except Exception as exc:  # a store or mailbox fault: the mail stays for the next run
            log.exception("mail %s: %s", raw.mail_id, exc)
            report.errors.append(f"{raw.mail_id}: {exc}")
    return handled


def answer_batch(app: App, handled: Sequence[MailRecord], report: RunReport) -> None:
    """Send the replies of the decided mails of a batch, each marked sent as soon as the SMTP
    server took it, then file the mails whose answers are all out (the second half of
    `process_batch`). A mailbox or server fault leaves the mails in the inbox for the next run."""
    if not handled:
        return
    ids = [rec.id for rec in handled]
    try:
        deliver_due(app, report, mail_ids=ids, keep_claims=True)
        file_mails(app, ids, report)
    except StoreError:
        raise
    except Exception as exc:  # the mails stay in the inbox; the next run finishes them
        log.exception("batch of %d mails: %s", len(ids), exc)
        report.errors.append(f"{len(ids)} mails from {handled[0].reference}: {exc}")
