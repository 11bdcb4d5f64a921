"""Step 2b: the reply that completes a request we answered "this is missing" (issue 11 §6).

Inside the mail's decision transaction: a mail that by itself makes no complete request, and
answers (In-Reply-To/References, or our whole reference quoted) an earlier mail that was
answered "missing data" and not completed yet, is read together with that mail
(`mailbot.read.merge.complete`) and decided as one complete request. The same rule as for an
unlock in progress keeps strangers out: only the earlier mail's sender, or the registered
contact of every serial the merge yields, completes it; anyone else's mail is read on its own
and learns nothing. The earlier mail is marked completed in the same transaction, so a second
reply never completes it again (and keys are bound once per serial anyway).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from mailbot.addresses import addresses_match
from mailbot.answer.plan import Plan
from mailbot.model import Extraction, ParsedMail
from mailbot.read import merge
from mailbot.read.own_mail import OwnMarks
from mailbot.run.app import App
from mailbot.run.reading import Reading
from mailbot.run.unlock_flow import quoted_references
from mailbot.store import Connection, MailRecord, threads

log = logging.getLogger("mailbot")

# The answers that tell a customer what is missing: only a mail answered so is completed later.
MISSING_TEMPLATES = frozenset({"missing_data", "unlock_missing_data", "results"})


@dataclass(frozen=True)
class Thread:
    """A reading, completed from the earlier mail of its thread when it was."""

    reading: Reading
    notes: tuple[str, ...] = ()  # for the mail's record (operators)
    earlier: int | None = None  # the mail it completed
    still_open: tuple[merge.OpenBlock, ...] | None = None  # None: as this mail's own text says


def _marks(app: App) -> OwnMarks:
    return OwnMarks.of(app.own_addresses, app.config.bot.reference_prefix)


def _field_problems(extraction: Extraction) -> bool:
    return any(p.code in merge.FIELD_CODES and (p.source or "") == merge.BODY
               for p in extraction.problems)


def complete_from_thread(app: App, conn: Connection, rec: MailRecord,
                         parsed: ParsedMail | None, reading: Reading) -> Thread:
    """The reading completed from the earlier mail this one answers, or `reading` as it is."""
    ex = reading.extraction
    if (parsed is None or reading.continues is not None or ex.ignored or not ex.sender
            or ex.requests):
        return Thread(reading)
    refs = [r for r in dict.fromkeys(parsed.references) if r][:50]
    quoted = sorted(quoted_references((parsed.subject, parsed.text),
                                      app.config.bot.reference_prefix))[:50]
    if not refs and not quoted:
        return Thread(reading)
    candidates = threads.open_in_thread(conn, message_ids=refs, references=quoted)
    if not candidates:
        return Thread(reading)
    reply = merge.own_blocks(parsed, app.rules, _marks(app))
    notes: list[str] = []
    for earlier in candidates:
        if earlier.mail == rec.id or (ex.kind and earlier.kind and ex.kind != earlier.kind):
            continue
        blocks = [merge.OpenBlock.from_json(b) for b in earlier.blocks]
        where = earlier.reference or f"mail {earlier.mail}"

        def note(fields: Sequence[str], where: str = where) -> str:
            return (f"completes {where}: {', '.join(fields)} taken from the earlier mail "
                    "(this mail answers our \"missing data\" reply)")

        done = merge.complete(blocks, reply, app.rules, sender=ex.sender, note=note)
        if done is None:
            continue
        if not _may_complete(app, conn, ex.sender, earlier.sender, done):
            notes.append(f"answers {where} but comes neither from its sender nor from the "
                         "registered contact of its serial: read on its own")
            log.info("event=completion_refused reference=%s earlier=%s", rec.reference, where)
            continue
        if not threads.claim_open(conn, earlier.mail):
            continue  # another run completed it meanwhile
        kept = tuple(p for p in ex.problems if (p.source or "") != merge.BODY)
        line = (f"completes {where}: fields {', '.join(done.filled) or '(none)'} from the "
                f"earlier mail, {', '.join(done.given) or '(none)'} from this reply")
        completed = dataclasses.replace(
            ex, kind=ex.kind or earlier.kind, requests=done.requests,
            problems=(*done.problems, *kept), notes=(*ex.notes, line))
        threads.mark_completed(conn, earlier.mail, by_mail=rec.id, by_reference=rec.reference,
                               fields=done.filled, still_missing=bool(done.still_open),
                               now=app.now())
        app.store.log_event(conn, "request_completes", mail=rec.id, earlier=where,
                            fields=list(done.filled), given=list(done.given))
        log.info("event=request_completed reference=%s earlier=%s fields=%s", rec.reference,
                 where, ",".join(done.filled))
        return Thread(dataclasses.replace(reading, extraction=completed), (*notes, line),
                      earlier.mail, done.still_open)
    return Thread(reading, tuple(notes))


def _may_complete(app: App, conn: Connection, sender: str, earlier_sender: str | None,
                  done: merge.Completion) -> bool:
    """Whoever sent the earlier mail, or the registered contact of every serial merged."""
    if earlier_sender and addresses_match(sender, earlier_sender):
        return True
    serials = [r.serial for r in done.requests]
    if not serials or done.still_open:
        return False
    registry = app.store.licences_for(conn, serials)
    return all(s in registry and registry[s].contact_email
               and addresses_match(sender, registry[s].contact_email) for s in serials)


def remember(app: App, conn: Connection, rec: MailRecord, parsed: ParsedMail | None,
             thread: Thread, plan: Plan) -> None:
    """Keep what a mail answered "this is missing" said, so its reply can complete it."""
    ex = thread.reading.extraction
    if (parsed is None or ex.ignored or ex.kind is None or not ex.sender
            or not _field_problems(ex)
            or not any(m.purpose == "reply" and m.template in MISSING_TEMPLATES
                       for m in plan.messages)):
        return
    blocks = (thread.still_open if thread.still_open is not None
              else merge.open_blocks(parsed, app.rules, _marks(app)))
    if blocks:
        threads.remember_open(conn, rec.id, kind=ex.kind,
                              blocks=[b.to_json() for b in blocks], now=app.now())

