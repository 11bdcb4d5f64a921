"""Step 1 of a pass, its own commit: a fetched mail is in the store before it is read.

A new mail is recorded with its first attempt counted; the same bytes seen again (another id,
or the mailbox renumbered) are a duplicate of the original, never answered again; a mail that
failed MAX_ATTEMPTS times is quarantined. Each is claimed by this run in that same commit
(mailbot.run.claims): a mail another instance holds is left to it, and only the holder counts
an attempt, so runs that meet a mail at once neither count it twice nor quarantine it under
the run deciding it."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from mailbot.model import RawMail
from mailbot.run import claims
from mailbot.run.app import MAX_ATTEMPTS, App, RunReport
from mailbot.store import MailRecord
from mailbot.store.database import fingerprint
from mailbot.transport.seams import FAILED, IGNORED

log = logging.getLogger("mailbot")


def mail_key(raw: RawMail) -> tuple[str, str]:
    return raw.source, raw.mail_id



def to_read(raws: Sequence[RawMail], known: dict[tuple[str, str], MailRecord],
             fps: dict[tuple[str, str], str], originals: dict[str, MailRecord]) -> list[RawMail]:
    """The mails of a batch that will be read: new ones that are no copy of a stored mail or
    of an earlier one in the batch, and stored ones still waiting for a decision."""
    out, seen = [], set(originals)
    for raw in raws:
        rec = known.get(mail_key(raw))
        if rec is not None:
            if rec.status == "received" and rec.attempts < MAX_ATTEMPTS:
                out.append(raw)
            continue
        fp = fps[mail_key(raw)]
        if fp not in seen:
            seen.add(fp)
            out.append(raw)
    return out



LOOK_AGAIN = 10  # mails looked up again together, just before they are recorded


def look_again(app: App, raws: Sequence[RawMail],
               known: dict[tuple[str, str], MailRecord]) -> set[tuple[str, str]]:
    """Refresh `known` for the next few mails of a batch: with several instances on one
    mailbox, another run may have recorded, decided or filed some since the batch's look-up.
    Returns the keys of those another live run holds now, for this run to leave alone; one
    query each instead of a refused insert and a lost claim per mail."""
    store = app.store
    with store.transaction() as conn:
        for source in dict.fromkeys(r.source for r in raws):
            found = store.find_mails(conn, source, [r.mail_id for r in raws if r.source == source])
            known.update(((source, mail_id), rec) for mail_id, rec in found.items())
        ids = {known[mail_key(r)].id: mail_key(r) for r in raws if mail_key(r) in known}
        busy = claims.held_elsewhere(app, conn, list(ids)) if ids else set()
    return {ids[mail] for mail in busy}



def mail_fingerprint(raw: RawMail) -> str:
    return (fingerprint(raw.data) if not raw.oversized
            else f"oversized:{raw.source}:{raw.mail_id}:{raw.size}")



def record_mail(app: App, raw: RawMail, report: RunReport, rec: MailRecord | None,
                fps: dict[tuple[str, str], str],
                originals: dict[str, MailRecord]) -> MailRecord | None:
    """Step 1, its own commit: the mail is in the store, claimed by this run (and its attempt
    counted) before it is read. `rec` and `originals` come from the batch's look-ups;
    recording a new original adds it to `originals`, so a copy later in the same batch is a
    duplicate of it. None: another run is working on this mail; leave it alone."""
    if rec is None:
        try:
            return record_new(app, raw, report, fps, originals)
        except Exception:
            # Another run may have recorded it since the batch's look-up: the unique
            # (source, mail id) refused our insert. Then it is that record we go on with.
            with app.store.transaction() as conn:
                rec = app.store.find_mail(conn, raw.source, raw.mail_id)
            if rec is None:
                raise
            log.info("event=recorded_by_another_run reference=%s mail_id=%s", rec.reference,
                     raw.mail_id)
    return record_again(app, rec)



def record_new(app: App, raw: RawMail, report: RunReport, fps: dict[tuple[str, str], str],
               originals: dict[str, MailRecord]) -> MailRecord:
    """A mail the store has not seen: a duplicate of an original, or new with its first
    attempt counted; either way claimed by this run until the batch is done."""
    store = app.store
    with store.transaction() as conn:
        fp = fps.get(mail_key(raw)) or mail_fingerprint(raw)
        original = originals.get(fp)
        if original is not None:
            rec = store.add_mail(
                conn, source=raw.source, mail_id=raw.mail_id, fp=fp, size=rec_size(raw),
                status="duplicate", duplicate_of=original.id,
                folder=original.folder or IGNORED, prefix=app.config.bot.reference_prefix,
                outcome="duplicate",
                notes=[f"the same mail as {original.reference}: not answered again"])
            claims.claim(app, conn, [rec.id])
            store.log_event(conn, "duplicate", mail=rec.id, of=original.id)
            report.duplicates += 1
            log.info("event=duplicate reference=%s mail_id=%s same_as=%s", rec.reference,
                     raw.mail_id, original.reference)
            return rec
        rec = store.add_mail(conn, source=raw.source, mail_id=raw.mail_id, fp=fp,
                             size=rec_size(raw), prefix=app.config.bot.reference_prefix,
                             attempts=1)
        claims.claim(app, conn, [rec.id])  # nobody else sees it before this commit
        log.info("event=mail_received reference=%s mail_id=%s size=%d", rec.reference,
                 raw.mail_id, rec_size(raw))
    originals.setdefault(rec.fingerprint, rec)  # committed: a later copy is a duplicate of it
    return rec



def record_again(app: App, rec: MailRecord) -> MailRecord | None:
    """A mail the store knows: claimed for this run, or None when another run holds it. One
    still waiting for its decision has one more attempt counted, or, after MAX_ATTEMPTS, is
    quarantined; the count is read after the claim, so runs that meet it at once count once."""
    if rec.filed:  # back in the inbox, or listed before it was filed: filing twice is harmless
        return rec
    store = app.store
    with store.transaction() as conn:
        if not claims.claim(app, conn, [rec.id]):
            return None
        rec = store.get_mail(conn, rec.id)  # as it is now that it is ours, not as looked up
        if rec.status != "received":
            return rec
        if rec.attempts >= MAX_ATTEMPTS:
            store.update_mail(conn, rec.id, status="quarantined", folder=FAILED,
                              outcome="quarantined")
            log.error("event=quarantined reference=%s attempts=%d", rec.reference,
                      rec.attempts)
            store.log_event(conn, "alert", mail=rec.id, title="Correo en cuarentena",
                            detail=f"{rec.reference} falló {rec.attempts} veces; revisar")
            return dataclasses.replace(rec, status="quarantined", folder=FAILED)
        store.update_mail(conn, rec.id, attempts=rec.attempts + 1)
        return dataclasses.replace(rec, attempts=rec.attempts + 1)



def rec_size(raw: RawMail) -> int:
    return raw.size if raw.size is not None else len(raw.data)
