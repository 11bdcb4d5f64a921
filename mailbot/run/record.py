"""Step 1 of a pass, its own commit: a fetched mail is in the store before it is read.

A new mail is recorded with its first attempt counted; the same bytes seen again (another id,
or the mailbox renumbered) are a duplicate of the original, never answered again; a mail that
failed MAX_ATTEMPTS times is quarantined."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from mailbot.model import RawMail
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



def mail_fingerprint(raw: RawMail) -> str:
    return (fingerprint(raw.data) if not raw.oversized
            else f"oversized:{raw.source}:{raw.mail_id}:{raw.size}")



def record_mail(app: App, raw: RawMail, report: RunReport, rec: MailRecord | None,
            fps: dict[tuple[str, str], str], originals: dict[str, MailRecord]) -> MailRecord:
    """Step 1, its own commit: the mail is in the store (and its attempt counted) before it is
    read. `rec` and `originals` come from the batch's look-ups; recording a new original adds
    it to `originals`, so a copy later in the same batch is a duplicate of it."""
    store = app.store
    with store.transaction() as conn:
        if rec is None:
            fp = fps.get(mail_key(raw)) or mail_fingerprint(raw)
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
