"""Step 4: send what the outbox holds; temporary failures retry with backoff, permanent ones
go to review; copies for the Sent folder are made in one go after the sends."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Generator, Sequence
from typing import Any

from mailbot.run import claims
from mailbot.run.app import MAX_RETRY_DELAY, App, RunReport
from mailbot.run.sending import DELIVERY_OUTCOMES, Outcome, Send
from mailbot.store import Connection
from mailbot.transport.seams import (
    REVIEW,
    PartiallyDelivered,
    PermanentDeliveryError,
    SinkUnavailable,
    TemporaryDeliveryError,
)

log = logging.getLogger("mailbot")


def deliver_due(app: App, report: RunReport, *, mail: int | None = None,
                mail_ids: Sequence[int] | None = None, keep_claims: bool = False) -> None:
    """Send queued messages whose time has come (all, or those of `mail` or of `mail_ids`);
    temporary failures retry with backoff.

    Only the run that holds a mail's claim sends its messages, so two runs never send one
    message; the claims taken here are let go at the end, unless `keep_claims` (the batch that
    decided the mails holds them, and files the mails next)."""
    due, held = claim_due(app, mail=mail, mail_ids=mail_ids)
    try:
        send_due(app, report, due, held)
    finally:
        if not keep_claims:
            claims.let_go(app, sorted(held))


def claim_due(app: App, *, mail: int | None = None, mail_ids: Sequence[int] | None = None
              ) -> tuple[list[Any], set[int]]:
    """The queued messages whose time has come (all, or those of `mail` or of `mail_ids`) of
    the mails this run holds once it has claimed them, and the operator alerts; and the mails
    held."""
    with app.store.transaction() as conn:
        if mail_ids is not None and mail is None:  # the mails' own messages: no alerts
            due = []
            wanting = app.store.mails_with_due(conn, mail_ids, now=app.now())
        else:
            due = app.store.due_messages(conn, now=app.now(), mail=mail, mail_ids=mail_ids)
            wanting = {m.mail for m in due if m.mail is not None}
        held = claims.claim(app, conn, sorted(wanting))
        # Read (again) now that they are ours: another run may have sent some meanwhile.
        due = sorted([*(m for m in due if m.mail is None),
                      *(app.store.due_messages(conn, now=app.now(), mail_ids=sorted(held))
                        if held else ())], key=lambda m: m.id)
    return due, held



def send_due(app: App, report: RunReport, due: Sequence[Any], held: set[int]) -> None:
    """Send `due` (messages of the mails in `held`, which this run holds, and operator alerts,
    each claimed just before it goes out), one after the other."""
    copies: list[tuple[int, bytes]] = []
    send_each(app, delivery_steps(app, report, due, held, copies))
    if copies:
        make_copies(app, copies)


def send_each(app: App, steps: Generator[Send, Outcome, None], job: Send | None = None
              ) -> None:
    """Run `steps` here and now: each message through the app's sink, its outcome handed back
    before the next one goes; `job`: the next message, when the steps were started elsewhere
    (mailbot.run.courier runs the same steps with the sending in a helper process)."""
    try:
        if job is None:
            job = next(steps, None)
        while job is not None:
            try:
                job.go(app.sink, app.store.sync)
            except DELIVERY_OUTCOMES as exc:
                job = next_send(steps, exc)
            else:
                job = next_send(steps, None)
    finally:
        steps.close()  # an unexpected failure of the sink ends the steps where they stand


def next_send(steps: Generator[Send, Outcome, None], outcome: Outcome) -> Send | None:
    """Hand `outcome` of the last send to `steps`; the next message to send, None when done."""
    try:
        return steps.send(outcome)
    except StopIteration:
        return None


def delivery_steps(app: App, report: RunReport, due: Sequence[Any], held: set[int],
                   copies: list[tuple[int, bytes]]) -> Generator[Send, Outcome, None]:
    """Everything a delivery does in the store and the log, one message at a time: yields each
    message to send and is handed back what came of it (`send_each`, or a Courier).
    `copies`: each sent reply's copy for Sent is added to it, for the caller to make later,
    all at once (`make_copies`; until then it is pending in the store).

    Why a generator: the steps (claims, marks, the copies for Sent) stay on the thread that
    owns the store and the mailbox, in this order, whoever does the sending; every reply is
    marked sent before the next one is handed out, so at most one accepted reply is ever
    unmarked (the one window pipeline.py's docstring names)."""
    smtp = app.config.smtp
    copy_many = app.after_send_many if app.after_send is not None else None
    renew_at = app.now() + claims.CLAIM_LEASE / 2
    # What the next send syncs first: the decisions these replies come from
    # (Store.transaction), then each time the last reply's "sent" mark.
    unsynced = bool(due)
    for index, msg in enumerate(due):
        if msg.mail is None:  # an operator alert: whoever claims it first sends it
            with app.store.transaction() as conn:
                if not claims.claim_alert(app, conn, msg.id):
                    continue
        elif app.now() >= renew_at:  # a slow server: keep the claims from lapsing
            with app.store.transaction() as conn:
                held &= claims.claim(app, conn, sorted(held))
            renew_at = app.now() + claims.CLAIM_LEASE / 2
        if msg.mail is not None and msg.mail not in held:
            continue  # its claim lapsed and another run took the mail: that run sends it
        recipients = json.loads(msg.recipients)
        after = due[index + 1] if index + 1 < len(due) else None
        then = (Send(after.envelope_from, json.loads(after.recipients), after.data,
                     after.message_id, sync_first=True) if after is not None else None)
        outcome = yield Send(msg.envelope_from, recipients, msg.data, msg.message_id,
                             sync_first=unsynced, then=then)
        unsynced = False
        if isinstance(outcome, SinkUnavailable):
            # Nothing can go out until an operator fixes the setup: keep every message's
            # attempts, retry the whole batch later, alert once per pass that sees it.
            with app.store.transaction() as conn:
                app.store.mark_retry(conn, msg.id, error=str(outcome), count_attempt=False,
                                     next_attempt_at=app.now() + dt.timedelta(
                                         seconds=smtp.retry_base_seconds))
            log.error("event=sink_unavailable error=%r", str(outcome))
            report.errors.append(f"sink unavailable: {outcome}")
            break
        if isinstance(outcome, TemporaryDeliveryError):
            with app.store.transaction() as conn:
                if msg.attempts + 1 >= smtp.max_attempts:
                    app.store.mark_failed(conn, msg.id, error=str(outcome))
                    delivery_failed(app, conn, msg, str(outcome))
                    report.failed += 1
                else:
                    delay = min(dt.timedelta(seconds=smtp.retry_base_seconds * 2 ** msg.attempts),
                                MAX_RETRY_DELAY)
                    app.store.mark_retry(conn, msg.id, error=str(outcome),
                                         next_attempt_at=app.now() + delay)
            log.warning("event=delivery_deferred message_id=%s error=%r", msg.message_id,
                        str(outcome))
            continue
        if isinstance(outcome, PartiallyDelivered):
            # Delivered to some recipients: resending would duplicate it for them.
            with app.store.transaction() as conn:
                app.store.mark_sent(conn, msg.id, error=str(outcome))
                delivery_failed(app, conn, msg, str(outcome))
            log.error("event=delivery_partial message_id=%s error=%r", msg.message_id,
                      str(outcome))
            continue
        if isinstance(outcome, PermanentDeliveryError):
            with app.store.transaction() as conn:
                app.store.mark_failed(conn, msg.id, error=str(outcome))
                delivery_failed(app, conn, msg, str(outcome))
            report.failed += 1
            log.error("event=delivery_failed message_id=%s error=%r", msg.message_id,
                      str(outcome))
            continue
        app.hook("after_smtp_accept")
        copy = app.after_send is not None and msg.purpose != "alert"
        if copy and copy_many is None:
            try:
                app.after_send(msg.data)  # type: ignore[misc]
            except Exception as exc:  # the copy in Sent is a courtesy, never a reason to resend
                log.warning("could not keep a copy of %s: %s", msg.message_id, exc)
        pending = copy and copy_many is not None
        # On the disk before the next reply goes (its Send syncs it) or the steps end: at most
        # one reply the server took is ever without its mark on the disk, after a crash or a
        # power cut alike.
        with app.store.transaction(sync_later=True) as conn:
            app.store.mark_sent(conn, msg.id, copy_pending=pending)
        unsynced = True
        if pending:
            copies.append((msg.id, msg.data))
        report.sent += 1
        log.info("event=reply_sent message_id=%s template=%s to=%s", msg.message_id,
                 msg.template, ",".join(recipients))
    if unsynced:
        app.store.sync()



def make_copies(app: App, copies: Sequence[tuple[int, bytes]]) -> None:
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
    """Copies for the Sent folder that a crash (or an unreachable mailbox) left unmade; of the
    mails this run can claim (a run still sending holds its own and makes their copies)."""
    with app.store.transaction() as conn:
        mails = {row.mail for row in app.store.pending_copies(conn)}
        held = claims.claim(app, conn, sorted(m for m in mails if m is not None))
        # Again, now that they are ours: another run may have made some meanwhile.
        pending = [row for row in app.store.pending_copies(conn)
                   if row.mail is None or row.mail in held]
    try:
        if pending:
            make_copies(app, [(row.id, row.data) for row in pending])
    finally:
        claims.let_go(app, sorted(held))



def delivery_failed(app: App, conn: Connection, msg: Any, error: str) -> None:
    if msg.mail is not None:
        app.store.update_mail(conn, msg.mail, folder=REVIEW)
    if msg.purpose != "alert":
        app.store.log_event(conn, "alert", mail=msg.mail, title="Entrega fallida",
                            detail=f"{msg.message_id} a "
                                   f"{', '.join(json.loads(msg.recipients))}: {error}")
