"""Step 1 for a few mails at once: the new mails of a group recorded and claimed in one commit.

Recording each new mail in a commit of its own (mailbot.run.record) costs a synchronous disk
write per mail; the pipeline records the new mails of each group of LOOK_AGAIN mails together
instead, still before any of them is read. What must not change is what an attempt means: it
is counted, and committed, before the mail is read, so a mail that kills the process while it
is read or decided is quarantined after MAX_ATTEMPTS runs, and a mail that was never started
is not blamed. So the group's commit counts the attempt of its first new mail only; each later
one is counted in the commit of the decision just before it (`Attempts.piggyback`), or, when
there was none (a duplicate, a failed decision), in a commit of its own
(`mailbot.run.record.record_again`), as the one-by-one path does.

A group whose commit fails (another run recorded one of its mails meanwhile: the unique
(source, mail id) refused the insert) records nothing, and its mails take the one-by-one path,
which knows how to meet another run's record.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from mailbot.errors import StoreError
from mailbot.model import RawMail
from mailbot.run import claims
from mailbot.run.app import App, RunReport
from mailbot.run.record import mail_fingerprint, mail_key, rec_size, record_again
from mailbot.store import MailRecord
from mailbot.transport.seams import IGNORED

log = logging.getLogger("mailbot")

Key = tuple[str, str]


def record_group(app: App, raws: Sequence[RawMail], report: RunReport,
                 known: dict[Key, MailRecord], elsewhere: set[Key], fps: dict[Key, str],
                 originals: dict[str, MailRecord]) -> dict[Key, MailRecord]:
    """Record and claim, in one commit, those of `raws` the store does not know (and no other
    run holds): a copy of an original is a duplicate, never answered again; the first new
    original has its attempt counted, the others none yet (see the module docstring).
    Returns their records by key; {} when nothing was recorded (the commit failed)."""
    fresh = [raw for raw in raws if mail_key(raw) not in known and mail_key(raw) not in elsewhere]
    if not fresh:
        return {}
    store = app.store
    before = dict(originals)
    out: dict[Key, MailRecord] = {}
    duplicates: list[tuple[MailRecord, MailRecord]] = []
    counted = False
    try:
        with store.transaction() as conn:
            until = claims.lease_end(app)
            references: list[dict] = []  # the group's references, set in one executemany
            for raw in fresh:
                fp = fps.get(mail_key(raw)) or mail_fingerprint(raw)
                original = originals.get(fp)
                if original is not None:
                    rec = store.add_mail(
                        conn, source=raw.source, mail_id=raw.mail_id, fp=fp,
                        size=rec_size(raw), status="duplicate", duplicate_of=original.id,
                        folder=original.folder or IGNORED,
                        prefix=app.config.bot.reference_prefix, outcome="duplicate",
                        notes=[f"the same mail as {original.reference}: not answered again"],
                        claimed_by=app.run_id, claim_expires_at=until,
                        deferred_references=references)
                    store.log_event(conn, "duplicate", mail=rec.id, of=original.id)
                    duplicates.append((rec, original))
                else:
                    rec = store.add_mail(
                        conn, source=raw.source, mail_id=raw.mail_id, fp=fp,
                        size=rec_size(raw), prefix=app.config.bot.reference_prefix,
                        attempts=0 if counted else 1, claimed_by=app.run_id,
                        claim_expires_at=until, deferred_references=references)
                    counted = True
                    originals.setdefault(fp, rec)  # a later copy is a duplicate of it
                out[mail_key(raw)] = rec
            store.set_references(conn, references)
    except StoreError:
        raise  # a damaged or full store: the one-by-one path would fail alike
    except Exception as exc:  # most likely another run recorded one of them since the look-up
        originals.clear()
        originals.update(before)
        log.info("event=group_not_recorded mails=%d error=%r: one by one", len(fresh), str(exc))
        return {}
    for rec, original in duplicates:
        report.duplicates += 1
        log.info("event=duplicate reference=%s mail_id=%s same_as=%s", rec.reference,
                 rec.mail_id, original.reference)
    for raw in fresh:
        rec = out[mail_key(raw)]
        if rec.status == "received":
            log.info("event=mail_received reference=%s mail_id=%s size=%d", rec.reference,
                     raw.mail_id, rec_size(raw))
    return out


class Attempts:
    """The mails a group recorded with no attempt counted yet, and the piggyback that counts
    the next one's attempt in the commit of the decision before it."""

    def __init__(self) -> None:
        self.recorded: dict[Key, MailRecord] = {}  # this run's group records, not taken yet

    def add(self, records: dict[Key, MailRecord]) -> None:
        self.recorded.update(records)

    def take(self, app: App, raw: RawMail) -> tuple[bool, MailRecord | None]:
        """(True, the record) for a mail a group recorded, its attempt counted now if no
        commit counted it yet (None: another run took it meanwhile); (False, None) for any
        other mail (the one-by-one path records it)."""
        rec = self.recorded.pop(mail_key(raw), None)
        if rec is None:
            return False, None
        if rec.status != "received" or rec.attempts:
            return True, rec
        return True, record_again(app, rec)  # counted in a commit of its own

    def piggyback(self, raw: RawMail | None) -> MailRecord | None:
        """The record whose attempt the next decision's commit is to count: the mail after
        this one, when a group recorded it with no attempt counted yet."""
        if raw is None:
            return None
        rec = self.recorded.get(mail_key(raw))
        if rec is None or rec.status != "received" or rec.attempts:
            return None
        return rec

    def counted(self, rec: MailRecord) -> None:
        """The decision that counted `rec`'s attempt has committed."""
        if mail_key_of(rec) in self.recorded:
            self.recorded[mail_key_of(rec)] = dataclasses.replace(rec, attempts=rec.attempts + 1)


def mail_key_of(rec: MailRecord) -> Key:
    return rec.source, rec.mail_id
