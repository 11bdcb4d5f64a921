"""`mailbot retry REFERENCE`: decide a quarantined mail again once its cause is fixed.

A mail that failed MAX_ATTEMPTS times is quarantined in the `failed` folder, and moving it back
to the inbox by hand only files it straight back (the store says it is handled). A retry is an
operator's decision, so it is recorded first (an event with their name); then the source moves
the mail back to the inbox, and the store resets it (waiting for a decision, attempts at zero,
under its id in the inbox) before any pass can see it there. The next pass decides it like a
new mail, keeping its reference. A retry cut short (a crash) can simply be run again, and so
can one that is done (the mail is found in the inbox) until a pass has decided the mail.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailbot.errors import MailbotError
from mailbot.run.app import MAX_ATTEMPTS, App
from mailbot.store import retries
from mailbot.store.database import fingerprint
from mailbot.transport.seams import FAILED


class RetryError(MailbotError):
    """The mail cannot be retried as asked; the message says why and what to do instead."""


@dataclass(frozen=True)
class RetryResult:
    reference: str
    mail_id: str  # its id in the inbox now
    previous_error: str | None


def retry(app: App, reference: str, *, operator: str) -> RetryResult:
    """Move the quarantined mail `reference` back to the inbox for the next pass to decide."""
    store = app.store
    with store.transaction() as conn:
        found = retries.by_reference(conn, reference)
        if found is None:
            raise RetryError(f"no mail {reference!r} (or more than one); see `mailbot log "
                             "--outcome quarantined` for the references")
        rec = found.record
        if rec.status not in retries.RETRYABLE or (
                rec.status == "received" and not retries.was_retried(conn, rec.id)):
            raise RetryError(f"{rec.reference} is {rec.status}, not quarantined: only a mail "
                             f"that failed {MAX_ATTEMPTS} times is retried by hand (see "
                             f"`mailbot log --reference {rec.reference}`)")
        if rec.source != app.source.name:
            raise RetryError(f"{rec.reference} came from {rec.source}, not from the mailbox "
                             f"configured now ({app.source.name})")
        if found.size is None or rec.fingerprint.startswith("oversized:"):
            raise RetryError(f"{rec.reference} was over the size limit and never read, so it "
                             "cannot be found again by its content; handle it by hand")
        store.log_event(conn, "retry", mail=rec.id, operator=operator,
                        previous_error=found.error, previous_status=rec.status)

    def record(mail_id: str) -> None:
        with store.transaction() as conn:
            other = retries.holder(conn, rec.source, mail_id)
            if other is not None and other.id != rec.id:
                raise RetryError(f"the copy of {rec.reference} in the inbox is recorded as "
                                 f"{other.reference} ({other.status}); run `mailbot run "
                                 f"--once` to file it, then retry {rec.reference} again")
            if not retries.reset(conn, rec.id, mail_id=mail_id):
                raise RetryError(f"{rec.reference} changed meanwhile; see `mailbot log "
                                 f"--reference {rec.reference}`")
            store.log_event(conn, "retried", mail=rec.id, operator=operator, mail_id=mail_id)

    expected = rec.fingerprint
    mail_id = app.source.restore(rec.mail_id, FAILED, size=found.size,
                                 matches=lambda data: fingerprint(data) == expected,
                                 record=record)
    return RetryResult(rec.reference or reference, mail_id, found.error)
