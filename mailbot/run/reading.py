"""Step 2: what was read from a mail, and whether it continues an unlock in progress.

`Reading` is also what a review task keeps, so an operator's approval decides later exactly as
the pass would have decided then."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from mailbot.model import Extraction, ParsedMail, Problem, RawMail, Request
from mailbot.read.extract import read_mail
from mailbot.run import unlock_flow
from mailbot.run.app import App
from mailbot.store import Connection, ledger

log = logging.getLogger("mailbot")


def read_raw(app: App, raw: RawMail) -> tuple[ParsedMail | None, Extraction]:
    if raw.oversized:
        limit = app.config.limits.max_message_bytes
        return None, Extraction(
            kind=None, ignored=None, sender=None, subject="", message_id=None,
            problems=(Problem("message_too_large",
                              f"the mail is {raw.size} bytes, over the limit of {limit} "
                              "([limits] max_message_bytes); it was not read"),))
    parsed, extraction = read_mail(raw.data, app.rules, app.config.limits, app.own_addresses,
                                   reference_prefix=app.config.bot.reference_prefix)
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
    def from_json(cls, data: dict[str, Any]) -> Reading:
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



def reading_of(app: App, conn: Connection, parsed: ParsedMail | None,
             extraction: Extraction) -> Reading:
    """What was read, and whether the mail answers an unlock request in progress (only its
    registered contact or whoever asked can continue one: see `find_continuation`)."""
    received_at = app.clock().astimezone(dt.UTC)
    if parsed is None:
        return Reading(extraction, received_at)
    documents = tuple(a.filename for a in parsed.attachments if a.filename)
    reading = Reading(extraction, received_at, parsed.references, documents)
    if extraction.ignored or extraction.kind == "free_update" or not extraction.sender:
        return reading
    entry = unlock_flow.find_continuation(
        conn, sender=extraction.sender, references=parsed.references,
        texts=(parsed.subject, parsed.text), prefix=app.config.bot.reference_prefix)
    if entry is None or entry.request is None:
        return reading
    row = app.store.request(conn, entry.request)
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
