"""The console's dry run (`/admin/ensayo`, "ensayo"): what the rules and templates in use would
do to some mails, uploaded as .eml files or named by their references or by "the last N days",
and, given a stored version of the rules or templates, only the mails whose answers that
version would change (the CLI's `--against`). One engine: mailbot.run.dryrun, as for
`mailbot dry-run`, the rules page's preview and the templates page's preview on a stored mail,
which share `console_app` and `recent` with this module.

Every input is checked on its own: an upload that is not a mail, a reference that is not
stored, a stored mail its mailbox no longer holds: each is named, with the fix, as a `Problem`
(English template and values, mailbot.wording: the console says it in Spanish), and the
other inputs are still decided.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.parser
import email.policy
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailbot.ops import folder_edits
from mailbot.ops.dryrun import REFERENCE
from mailbot.ops.rule_edits import MAX_PREVIEW_DAYS, MAX_PREVIEW_MAILS
from mailbot.ruleset import Ruleset
from mailbot.run.app import App
from mailbot.run.dryrun import (
    Change,
    DryMail,
    DryResult,
    DryRunError,
    compare,
    dry_app,
    dry_run,
    stored_mails,
)
from mailbot.store import Store
from mailbot.wording import N_, Words

MAX_UPLOADS = 100  # .eml files in one run: as many as the last-days preview decides
MAX_REFERENCES = MAX_PREVIEW_MAILS
KINDS = ("rules", "templates")
SEPARATORS = re.compile(r"[\s,;]+")
MAIL_HEADERS = ("from", "subject", "message-id", "date", "to")


@dataclass(frozen=True)
class Upload:
    name: str  # the file name as uploaded (already cleaned of any folder)
    data: bytes


@dataclass(frozen=True)
class Problem:
    """An input that was not decided: its file name or reference, and why, with the fix."""

    label: str
    words: Words


@dataclass
class Rehearsal:
    at: dt.datetime  # the frozen moment every mail was decided at (naive UTC)
    total: int  # mails decided
    results: list[DryResult] = field(default_factory=list)  # without `against`
    changes: list[Change] | None = None  # with `against`: only the mails that change
    against: tuple[str, int] | None = None
    problems: list[Problem] = field(default_factory=list)
    skipped: int = 0  # stored mails of the last days over MAX_PREVIEW_MAILS, left out


@contextlib.contextmanager
def console_app(config: Any, store: Store, rules: Ruleset, templates: Path) -> Iterator[App]:
    """An App over the console's store and mailbox (read-only: the dry run never files) with
    `rules` and the templates of `templates`, for `dry_app`; the mailbox is closed after."""
    from mailbot.answer.render import Renderer
    from mailbot.run.dryrun import CapturingSink
    from mailbot.run.wiring import open_source

    source = open_source(config)
    try:
        yield App(config=config, rules=rules, store=store, renderer=Renderer(templates),
                  source=source, sink=CapturingSink(), read_workers=0)
    finally:
        source.close()


def recent(app: App, days: int, limit: int = MAX_PREVIEW_MAILS) -> tuple[list[DryMail], int]:
    """The stored mails of the last `days` days (at most MAX_PREVIEW_DAYS), the newest `limit`
    of them, oldest first; and how many older ones were left out over the limit."""
    days = max(1, min(days, MAX_PREVIEW_DAYS))
    found = stored_mails(app, since=dt.timedelta(days=days), limit=limit + 1)
    over = max(0, len(found) - limit)
    return found[over:], over


def references_in(text: str) -> tuple[list[str], list[Problem]]:
    """The references written in a text field (comma, space or line separated), each once, in
    order; a word not shaped like a reference is a problem."""
    out: list[str] = []
    problems: list[Problem] = []
    for word in SEPARATORS.split(text.strip()):
        if not word or word in out:
            continue
        if REFERENCE.match(word):
            out.append(word)
        else:
            problems.append(Problem(word[:60], Words.of(N_(
                "this is not a reference: write it as on the mail's page, e.g. CLV-000042"))))
    return out, problems


def is_mail(data: bytes) -> bool:
    """Whether `data` begins with mail headers (From:, Subject:...), as an .eml file does: a
    picture, a spreadsheet or a text without headers is not a mail."""
    head = data[:65536]
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    return any(parsed.get(name) for name in MAIL_HEADERS)


def rehearse(config: Any, store: Store, rules: Ruleset, templates: Path, *,
             uploads: Sequence[Upload] = (), references: Sequence[str] = (),
             days: int | None = None, against: tuple[str, int] | None = None) -> Rehearsal:
    """Decide the inputs with `rules` and the templates of `templates` (those in use) on a
    snapshot of the store, nothing stored, bound, sent or filed; with `against` (kind, number)
    decide them also with that stored version and keep only the mails that change.

    As the rules page's preview (rule_edits.preview), each run is one transaction: on
    PostgreSQL it holds row locks on the stored mails it decides again (and the keys it takes)
    until it ends, so a pass touching those rows waits; the bounds (MAX_PREVIEW_DAYS,
    MAX_PREVIEW_MAILS, MAX_UPLOADS) keep that to seconds.

    A stored version that does not exist raises folder_edits.EditRefused (code "unknown"); one
    that does not load, the rules loader's MailbotError."""
    with console_app(config, store, rules, templates) as app:
        mails, problems, skipped = _inputs(app, uploads, references, days)
        before = dry_app(app)
        out = Rehearsal(before.now(), len(mails), problems=problems, skipped=skipped,
                        against=against)
        if against is None:
            out.results = dry_run(before, mails)
            return out
        kind, number = against
        files = folder_edits.files_of(store, kind, number)
        with folder_edits.staged(files, kind) as root:
            out.changes = compare(before, _other(before, kind, root), mails)
        return out


def _other(before: App, kind: str, root: Path) -> App:
    """`before` with the rules (or the templates) of a stored version, staged in `root`."""
    if kind == "rules":
        from mailbot.ruleset import load_rules

        return dry_app(before, rules=load_rules(root))
    from mailbot.answer.render import Renderer

    return dry_app(before, renderer=Renderer(root))


def _inputs(app: App, uploads: Sequence[Upload], references: Sequence[str],
            days: int | None) -> tuple[list[DryMail], list[Problem], int]:
    """The mails to decide (the uploads in their order, then the stored mails oldest first),
    the inputs that cannot be decided, and the stored mails left out over the limit."""
    mails: list[DryMail] = []
    problems: list[Problem] = []
    for upload in uploads:
        if not upload.data.strip():
            problems.append(Problem(upload.name, Words.of(N_(
                "the file is empty: upload a mail saved as .eml from the mail client"))))
        elif not is_mail(upload.data):
            problems.append(Problem(upload.name, Words.of(N_(
                "this file is not a mail (.eml): it does not begin with headers such as From: "
                "and Subject:; save the mail as .eml from the mail client and upload that"))))
        else:
            mails.append(DryMail(upload.name, upload.data))
    stored: dict[int, DryMail] = {}
    for reference in references:
        try:
            found = stored_mails(app, references=[reference])
        except DryRunError:
            problems.append(Problem(reference, Words.of(N_(
                "no stored mail has this reference: look it up in the mails list"))))
            continue
        stored.update((m.stored, m) for m in found if m.stored is not None)
    skipped = 0
    if days is not None:
        found, skipped = recent(app, days)
        stored.update((m.stored, m) for m in found if m.stored is not None)
    for row in sorted(stored):
        mail = stored[row]
        if mail.problem is None:
            mails.append(mail)
        else:
            problems.append(Problem(mail.label, Words.of(N_(
                "its original cannot be read (%(reason)s): upload its .eml file instead"),
                reason=mail.problem)))
    return mails, problems, skipped
