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
synchronous=FULL), except the decisions of step 2 and the "sent" marks of step 3
(`Store.transaction(sync_later=True)`): the decisions are synced together, with one fsync of
the WAL (`Store.sync`), before the first of their replies is sent; each mark before the
next reply is sent (`sending.Send.sync_first`); all of them before any mail is filed. A power
cut can only undo a suffix of the commits, so it leaves the store as a crash would have: the
decisions it undoes have no reply out and their mails are still in the inbox, and the one
mark it may undo is the last reply's, which then goes out once more, as after a crash.

Mails go through in batches (BATCH_SIZE), which changes no step of any single mail, only how
steps of different mails interleave: the new mails of each group of LOOK_AGAIN are recorded
together in one commit before any of them is read, each attempt counted before its mail is read
(in that commit, or in the decision commit of the mail before it: mailbot.run.record_group);
each mail of the batch is decided as above, one after the other (worker processes may read the
next ones meanwhile: mailbot.run.readahead);
then the batch's replies are sent, each marked sent as soon as the server took it; then the
copies for the Sent folder are made in one go (a reply whose copy is not made yet is marked so
in the store, and a crash leaves the copy to the next run); then the mails whose answers are
all out are filed, one move per folder. Over SMTP (mailbot.run.courier) the replies of a
batch go in groups of mails as they are decided, while the next ones are decided: from the
courier process in a pass of several batches, from the pass itself between two mails in a
pass of one; the order of each mail's commits, and of the sends, is the same, and a batch is
still filed whole.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from mailbot.errors import StoreError
from mailbot.model import RawMail
from mailbot.run import versions
from mailbot.run.alerts import flag_overdue, send_alerts
from mailbot.run.app import BATCH_SIZE, App, RunReport
from mailbot.run.claims import ClaimLost, let_go
from mailbot.run.courier import Batch, Deliveries
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
                   workers=app.read_workers) as readahead, Deliveries(app, report) as out:
        batch: list[RawMail] = []
        for raw in app.source.fetch_new():
            report.seen += 1
            batch.append(raw)
            if len(batch) >= BATCH_SIZE:
                process_batch(app, batch, report, readahead, out)
                batch = []
        if batch:
            process_batch(app, batch, report, readahead, out)
        report.read_ahead += readahead.read_by_workers
    flag_overdue(app)
    send_alerts(app)
    deliver_due(app, report)
    with app.store.transaction() as conn:
        panel.record_pass(conn, at=app.now(), duration_seconds=time.monotonic() - started,
                          seen=report.seen, decided=report.decided, sent=report.sent,
                          errors=len(report.errors))
    return report


def process_batch(app: App, raws: Sequence[RawMail], report: RunReport,
                  readahead: ReadAhead | None = None,
                  deliveries: Deliveries | None = None) -> list[MailRecord]:
    """Handle a batch of fetched mails, keeping the order of commits of every single mail.

    The new mails of each group of LOOK_AGAIN are recorded and claimed (one commit; the others
    each in their own), then per mail `after_fetch`, then it is read and decided (one commit);
    then the replies of the whole batch go out, each marked sent as soon as the SMTP server
    took it; then the mails whose answers are all out are filed, one move
    per folder; then the claims are let go. A mail another run holds is left to it.
    A store or mailbox fault on one mail leaves it for the next run and the others go on.
    With `readahead`, worker processes read the mails that will need reading while this
    process records and decides the ones before them (see mailbot.run.readahead).
    With `deliveries` (any sink but reply files), the batch's replies go out in groups of
    mails as they are decided, while the next ones are decided, and it is filed once they are
    all out (see mailbot.run.courier).
    """
    claimed: list[int] = []  # the mails this run holds, let go whatever happens
    batch = None
    if deliveries is not None and deliveries.overlaps:
        # Its claims are held there from now on, and let go once it is filed.
        batch = deliveries.open(claimed, more_to_come=len(raws) >= BATCH_SIZE)
    try:
        handled = _process_batch(app, raws, report, readahead, claimed, deliveries, batch)
        if batch is not None:
            deliveries.close(batch)  # type: ignore[union-attr]
        elif handled:
            answer_and_file(app, handled, report)
        return handled
    finally:
        if batch is None:
            let_go(app, claimed)


def answer_and_file(app: App, handled: Sequence[MailRecord], report: RunReport) -> None:
    """Send the batch's replies, each marked sent as the server takes it, then file its mails
    whose answers are all out. A fault other than the store's leaves the mails in the inbox;
    the next run finishes them."""
    ids = [rec.id for rec in handled]
    try:
        deliver_due(app, report, mail_ids=ids, keep_claims=True)
        file_mails(app, ids, report)
    except StoreError:
        raise
    except Exception as exc:  # the mails stay in the inbox; the next run finishes them
        log.exception("batch of %d mails: %s", len(ids), exc)
        report.errors.append(f"{len(ids)} mails from {handled[0].reference}: {exc}")


def _process_batch(app: App, raws: Sequence[RawMail], report: RunReport,
                   readahead: ReadAhead | None, claimed: list[int],
                   deliveries: Deliveries | None = None,
                   batch: Batch | None = None) -> list[MailRecord]:
    """Record, claim and decide the batch's mails (process_batch); the records decided.
    With `batch` (open in `deliveries`), each mail handled is added to it, so that its replies
    may go out while the next ones are decided."""
    store = app.store
    handled: list[MailRecord] = []

    def handle(rec: MailRecord) -> None:
        handled.append(rec)
        if batch is not None:
            batch.add(rec)

    with store.transaction() as conn:  # the look-ups of the whole batch, in a few queries
        known: dict[tuple[str, str], MailRecord] = {}
        for source in dict.fromkeys(r.source for r in raws):
            found = store.find_mails(conn, source, [r.mail_id for r in raws if r.source == source])
            known.update(((source, mail_id), rec) for mail_id, rec in found.items())
        fps = {mail_key(r): mail_fingerprint(r) for r in raws if mail_key(r) not in known}
        originals = store.originals_by_fingerprint(conn, list(fps.values())) if fps else {}
    if readahead is not None:
        readahead.submit(to_read(raws, known, fps, originals))
    elsewhere: set[tuple[str, str]] = set()
    attempts = Attempts()  # the mails a group recorded (mailbot.run.record_group)
    for position, raw in enumerate(raws):
        if deliveries is not None:
            deliveries.poll()  # the batch before's reply out: marked, and the next one given
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
                app.source.file(rec.mail_id, rec.folder or REVIEW)
                continue
            app.hook("after_fetch")
            if rec.status == "received":
                following = raws[position + 1] if position + 1 < len(raws) else None
                then = attempts.piggyback(following)
                try:
                    read = (readahead.take(raw, meanwhile=deliveries.poll if deliveries
                                           is not None else None)
                            if readahead is not None else None)
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
                        handle(failed)
                        continue
                    with store.transaction() as conn:
                        store.update_mail(conn, rec.id, error=f"{type(exc).__name__}: {exc}")
                    continue
                app.hook("after_decision")
            handle(rec)
        except StoreError:
            raise  # a damaged or full store ends the pass; every mail stays where it is
        except Exception as exc:  # a store or mailbox fault: the mail stays for the next run
            log.exception("mail %s: %s", raw.mail_id, exc)
            report.errors.append(f"{raw.mail_id}: {exc}")
    return handled
