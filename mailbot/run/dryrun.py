"""A dry run: what the whole decision path would do to some mails with some rules and templates,
against a snapshot of the store, with nothing stored, bound, sent or filed.

Each mail goes through the steps a pass runs (`record_mail`, then `decide_mail`: reading,
the sender checks and throttles, the registry, the key pool, the unlock flow, the plan, and
the rendering into the outbox), on a Store whose every write is undone at the end
(`mailbot.store.snapshot`), with a source that never files and a sink that never sends. What
the path wrote into the snapshot (the mail's outcome, its requests with their rule hits, the
rendered replies) is read back before the snapshot is dropped and becomes a `DryResult`.

Mails are decided one after another, each seeing the effects of the ones before, as one pass
would. Stored mails (references, or `--since`) are decided again as if they arrived now: the
run's stored mails' own earlier decisions are taken out of the snapshot first
(`forget_decisions`), so each is neither a repetition of itself nor counted by the throttles,
and, decided again in order, each sees the new decisions of the ones before it. Every mail of a
run is decided at the same moment (the clock is frozen when the run starts), so two runs over
the same mails with other rules (`compare`) differ only by the rules.

The CLI (`mailbot dry-run`, mailbot.ops.dryrun) and later the console format the results.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.header
import email.policy
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailbot.answer.render import Renderer
from mailbot.errors import MailbotError
from mailbot.model import RawMail
from mailbot.ruleset import Ruleset
from mailbot.run import claims
from mailbot.run.app import App, RunReport
from mailbot.run.deciding import decide_mail
from mailbot.run.readahead import ReadAhead
from mailbot.run.reading import read_raw
from mailbot.run.record import mail_fingerprint, mail_key, record_mail
from mailbot.store import Connection, snapshot
from mailbot.store.database import fingerprint
from mailbot.store.mail_log import by_reference
from mailbot.transport.seams import MailNotFound

log = logging.getLogger("mailbot")

DRY_SOURCE = "dry-run"  # the source name of mails given as files: no real mailbox has it


class DryRunError(MailbotError):
    """An input the dry run cannot use (a reference not stored): named, with the fix."""


@dataclass(frozen=True)
class DryMail:
    """One mail to decide: the bytes of a file, or a stored mail (`stored`: its row id)."""

    label: str  # the file's path, or the stored mail's reference
    data: bytes
    stored: int | None = None
    oversized: bool = False  # a stored mail that was over the size limit: never fetched
    problem: str | None = None  # why its bytes could not be had (then it is not decided)
    source: str = DRY_SOURCE  # a stored mail's mailbox and id in it (a file: set by position)
    mail_id: str = ""

    def raw(self, position: int) -> RawMail:
        """The mail as a pass meets it; a file's id is its position and path, so the same
        file given twice is a second mail (a duplicate of the first), as it would be."""
        if self.stored is None:
            return RawMail(source=DRY_SOURCE, mail_id=f"{position}:{self.label}",
                           data=self.data, size=len(self.data))
        return RawMail(source=self.source, mail_id=self.mail_id, data=self.data,
                       size=len(self.data), oversized=self.oversized)


@dataclass(frozen=True)
class DryDecision:
    serial: str
    system: str
    outcome: str
    recipient: str | None
    hits: tuple[tuple[str, str], ...]  # (rule, reason), in the order they fired
    # The same hits as stored (with template and values when the rule wrote words), for the
    # console to say them in its language.
    stored_hits: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)

    def to_json(self, said: Callable[[Mapping[str, Any]], str] | None = None
                ) -> dict[str, Any]:
        """`said`, when given (the console's), adds each hit's `reason_es`."""
        hits: list[dict[str, Any]] = [{"rule": r, "reason": why} for r, why in self.hits]
        if said is not None:
            stored = self.stored_hits if len(self.stored_hits) == len(hits) else hits
            for out, hit in zip(hits, stored, strict=True):
                out["reason_es"] = said(hit)
        return {"serial": self.serial, "system": self.system, "outcome": self.outcome,
                "recipient": self.recipient, "hits": hits}


@dataclass(frozen=True)
class DryReply:
    template: str
    purpose: str  # reply (to the sender) / keys (to a registered contact)
    to: tuple[str, ...]
    subject: str
    text: str
    html: str | None

    def to_json(self, *, show: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"template": self.template, "purpose": self.purpose,
                               "to": list(self.to), "subject": self.subject}
        if show:
            out["text"], out["html"] = self.text, self.html
        return out


@dataclass(frozen=True)
class DryResult:
    """What the path would do with one mail."""

    label: str
    stored: bool  # a stored mail (label is its reference), else a file
    reference: str | None  # the mail's reference in the snapshot (a new one for a file)
    kind: str | None = None
    ignored: str | None = None
    sender: str | None = None
    subject: str = ""
    outcome: str | None = None  # the one word of the log: answered, review, duplicate...
    folder: str | None = None  # where a pass would file it
    requests: tuple[dict[str, Any], ...] = ()
    problems: tuple[dict[str, Any], ...] = ()
    decisions: tuple[DryDecision, ...] = ()
    replies: tuple[DryReply, ...] = ()
    notes: tuple[str, ...] = ()
    error: str | None = None  # the path failed on this mail (a pass would retry it)
    problem: str | None = None  # the mail could not be had at all (an input error)

    def to_json(self, *, show: bool = False,
                said: Callable[[Mapping[str, Any]], str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"reference" if self.stored else "file": self.label}
        if not self.stored:
            out["reference"] = self.reference
        out.update(kind=self.kind, ignored=self.ignored, sender=self.sender,
                   subject=self.subject, outcome=self.outcome, folder=self.folder,
                   requests=list(self.requests), problems=list(self.problems),
                   decisions=[d.to_json(said) for d in self.decisions],
                   replies=[r.to_json(show=show) for r in self.replies],
                   notes=list(self.notes), error=self.error, problem=self.problem)
        return out

    def signature(self) -> Any:
        """What `compare` compares: the outcome, each decision's outcome, and every reply
        (template, recipients, subject and text), the mail's own reference left out (a file
        gets a new random one in each snapshot)."""
        def plain(value: str | None) -> str | None:
            if value is None or not self.reference:
                return value
            return value.replace(self.reference, "{reference}")

        return (self.outcome, self.folder, self.error, self.problem,
                tuple((d.serial, d.outcome, d.recipient) for d in self.decisions),
                tuple((r.template, r.to, plain(r.subject), plain(r.text), plain(r.html))
                      for r in self.replies))


@dataclass(frozen=True)
class Change:
    """A mail whose outcome or replies differ between two rule sets (`compare`)."""

    before: DryResult
    after: DryResult


# --- the seams of a dry run: nothing filed, nothing sent ------------------------------------------

class NeverFiles:
    """The source a dry run's App holds: it reads originals from the real source (read-only:
    `Source.original` leaves a mail where it is), keeps its name (so stored mails keep theirs)
    and never files, moves or restores anything."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self.name: str = source.name
        self.filed: list[Any] = []  # what the path asked to file: kept, never done

    def fetch_new(self) -> Iterator[RawMail]:
        return iter(())

    def file(self, mail_id: str, folder: str) -> None:
        self.filed.append((mail_id, folder))

    def file_many(self, moves: Any) -> None:
        self.filed.extend(moves)

    def restore(self, *args: Any, **kwargs: Any) -> str:
        raise RuntimeError("a dry run never restores a mail")

    def original(self, mail_id: str, folder: str | None, *, size: int,
                 matches: Callable[[bytes], bool]) -> bytes:
        return self._source.original(mail_id, folder, size=size, matches=matches)

    def close(self) -> None:
        """Nothing: the real source belongs to whoever opened it."""


@dataclass
class CapturingSink:
    """The sink a dry run's App holds: what would be sent is kept here, never delivered (the
    dry run does not even deliver from its snapshot's outbox: replies are read from it)."""

    sent: list[tuple[str, tuple[str, ...], bytes, str]] = field(default_factory=list)

    def send(self, envelope_from: str, recipients: Sequence[str], message: bytes,
             message_id: str) -> None:
        self.sent.append((envelope_from, tuple(recipients), message, message_id))

    def close(self) -> None:
        pass


# --- the mails to decide ---------------------------------------------------------------------

def stored_mails(app: App, *, references: Sequence[str] = (),
                 since: dt.timedelta | None = None, limit: int | None = None) -> list[DryMail]:
    """The stored mails named by `references` and those received within `since` (the newest
    `limit` of them, when given), oldest first, each with its bytes read from its mailbox
    (`Source.original`, left where it is). A reference not stored raises DryRunError; a mail
    its mailbox no longer holds comes back with a `problem` instead of bytes."""
    with app.store.transaction() as conn:
        rows: dict[int, Any] = {}
        for reference in references:
            row = by_reference(conn, reference)
            if row is None:
                raise DryRunError(f"{reference}: no stored mail has this reference (or more "
                                  "than one has it); `mailbot log` lists the references")
            rows[row.id] = row
        if since is not None:
            rows.update((r.id, r) for r in snapshot.stored_since(conn, app.now() - since,
                                                                 limit=limit))
    return [_stored_mail(app, rows[mail]) for mail in sorted(rows)]


def _stored_mail(app: App, row: Any) -> DryMail:
    label = row.reference or f"mail {row.id}"
    mail = DryMail(label, b"", stored=row.id, source=row.source, mail_id=row.mail_id)
    if row.fingerprint.startswith("oversized:") or row.size is None:
        return dataclasses.replace(mail, oversized=True)
    if row.status == "duplicate":  # decided as a duplicate without reading it
        return mail
    if row.source != app.source.name:
        return dataclasses.replace(mail, problem=(
            f"it came from {row.source}, not from the configured mailbox {app.source.name}: "
            "run the dry run with that mailbox's config (--config)"))
    folder = row.folder if row.filed else None
    expected = row.fingerprint
    try:
        data = app.source.original(row.mail_id, folder, size=row.size,
                                   matches=lambda data: fingerprint(data) == expected)
    except MailNotFound as exc:
        return dataclasses.replace(mail, problem=(
            f"its mailbox no longer holds it ({exc}); give its .eml file instead"))
    return dataclasses.replace(mail, data=data)


# --- the run ---------------------------------------------------------------------------------

def dry_app(app: App, *, rules: Ruleset | None = None, renderer: Renderer | None = None,
            now: dt.datetime | None = None) -> App:
    """`app` with other rules or templates (for a dry run), a frozen clock, a source that never
    files and a sink that never sends. Its store is still the real one: `dry_run` swaps in
    the snapshot."""
    moment = now or app.clock()
    return dataclasses.replace(
        app, rules=rules or app.rules, renderer=renderer or app.renderer,
        source=NeverFiles(app.source), sink=CapturingSink(), clock=lambda: moment,
        hook=lambda point: None, after_send=None, after_send_many=None,
        run_id=f"dry-run-{claims.new_run_id()}", _calendar=None)


def dry_run(app: App, mails: Sequence[DryMail],
            progress: Callable[[DryResult], None] | None = None,
            reads: dict[int, Any] | None = None) -> list[DryResult]:
    """Decide `mails` in order on a snapshot of `app.store` (see the module's docstring) with
    `app`'s rules and renderer (make it with `dry_app`); nothing of it stays in the store.

    `reads` (position -> what reading the mail gave), when given, is used and filled: a second
    run over the same mails with rules that read mail the same way (`reads_alike`) skips the
    reading, the larger part of the cost of a mail."""
    results: list[DryResult] = []
    raws = [mail.raw(position) for position, mail in enumerate(mails)]
    known = reads if reads is not None else {}
    with snapshot.snapshot(app.store) as snap, ReadAhead(
            app.rules, app.config.limits, app.own_addresses,
            reference_prefix=app.config.bot.reference_prefix,
            workers=app.read_workers) as readahead:
        # Worker processes read the mails ahead while this one decides, as in a pass.
        readahead.submit([raw for position, (raw, mail) in enumerate(zip(raws, mails,
                                                                         strict=True))
                          if mail.problem is None and raw.data and position not in known])
        dry = dataclasses.replace(app, store=snap)
        stored = [m.stored for m in mails if m.stored is not None and m.problem is None]
        if stored:
            with snap.transaction() as conn:
                snapshot.forget_decisions(conn, stored, run_id=dry.run_id,
                                          claim_expires_at=claims.lease_end(dry))
        for position, (raw, mail) in enumerate(zip(raws, mails, strict=True)):
            read = None
            if raw.data and mail.problem is None:
                read = known.get(position) or readahead.take(raw)
                if read is None and reads is not None and not raw.oversized:
                    read = read_raw(dry, raw)
                if reads is not None and read is not None:
                    reads[position] = read
            result = _decide(dry, raw, mail, read)
            results.append(result)
            if progress is not None:
                progress(result)
    return results


def compare(before: App, after: App, mails: Sequence[DryMail]) -> list[Change]:
    """The mails whose outcome or replies differ between `before` and `after` (two `dry_app`s
    with the same frozen moment), each run on its own snapshot."""
    reads: dict[int, Any] | None = {} if reads_alike(before.rules, after.rules) else None
    left = dry_run(before, mails, reads=reads)
    right = dry_run(after, mails, reads=reads)
    return [Change(a, b) for a, b in zip(left, right, strict=True)
            if a.signature() != b.signature()]


def reads_alike(one: Ruleset, other: Ruleset) -> bool:
    """Whether two rule sets read every mail the same way: reading (mailbot.read) uses only the
    request kinds, the field labels and their typos, the catalogue and the reading rules; a
    change of prices, dates, hours or the unlock policy leaves what was read as it was."""
    return all(getattr(one, part) == getattr(other, part)
               for part in ("kinds", "labels", "label_matching", "catalogue", "reading"))


def _decide(app: App, raw: RawMail, mail: DryMail, read: Any = None) -> DryResult:
    if mail.problem is not None:
        return DryResult(mail.label, mail.stored is not None, None, problem=mail.problem)
    store = app.store
    try:
        if mail.stored is None:
            fps = {mail_key(raw): mail_fingerprint(raw)}
            with store.transaction() as conn:
                originals = store.originals_by_fingerprint(conn, list(fps.values()))
            rec = record_mail(app, raw, RunReport(), None, fps, originals)
            if rec is None:  # cannot be: nobody else sees the snapshot
                raise RuntimeError("the snapshot's mail was claimed by another run")
        else:
            with store.transaction() as conn:  # its decision was forgotten by dry_run
                rec = store.get_mail(conn, mail.stored)
                if rec.status == "duplicate":
                    return _result(conn, mail, rec.id)
        if rec.status == "received":
            rec = decide_mail(app, rec, raw, read)
        with store.transaction() as conn:
            return _result(conn, mail, rec.id)
    except MailbotError as exc:
        if isinstance(exc, DryRunError):
            raise
        error = str(exc)
    except Exception as exc:  # what a pass would record on the mail and retry
        log.debug("dry run of %s failed", mail.label, exc_info=True)
        error = f"{type(exc).__name__}: {exc}"
    return DryResult(mail.label, mail.stored is not None, None,
                     error=f"{error} (a pass would record this error and try the mail again)")


def _result(conn: Connection, mail: DryMail, mail_row_id: int) -> DryResult:
    row = snapshot.mail_row(conn, mail_row_id)
    extraction = json.loads(row.extraction) if row.extraction else {}
    decisions = tuple(
        DryDecision(r.serial, r.system, r.outcome, r.recipient,
                    tuple((h["rule"], h["reason"]) for h in hits), tuple(hits))
        for r in snapshot.requests_of(conn, row.id)
        for hits in [json.loads(r.hits or "[]")])
    replies = tuple(_reply(m) for m in snapshot.messages_of(conn, row.id))
    return DryResult(
        mail.label, mail.stored is not None, row.reference, kind=row.kind, ignored=row.ignored,
        sender=row.sender, subject=row.subject or "", outcome=row.outcome, folder=row.folder,
        requests=tuple(extraction.get("requests") or ()),
        problems=tuple(extraction.get("problems") or ()), decisions=decisions,
        replies=replies, notes=tuple(json.loads(row.notes or "[]")))


def _reply(message: Any) -> DryReply:
    """The reply as it would go out, read back from the outbox's bytes (compat32: the modern
    header registry costs more than deciding the mail)."""
    parsed = email.message_from_bytes(bytes(message.data), policy=email.policy.compat32)
    bodies: dict[str, str] = {}
    for part in parsed.walk():
        kind = part.get_content_type()
        if kind in ("text/plain", "text/html") and kind not in bodies \
                and part.get_content_disposition() != "attachment":
            payload = part.get_payload(decode=True) or b""
            bodies[kind] = payload.decode(part.get_content_charset() or "utf-8", "replace")
    subject = str(email.header.make_header(email.header.decode_header(
        parsed.get("Subject", ""))))
    return DryReply(template=message.template, purpose=message.purpose,
                    to=tuple(json.loads(message.recipients)), subject=subject,
                    text=bodies.get("text/plain", ""), html=bodies.get("text/html"))
