"""The "read" step: one mail's bytes in, the requests it makes and the problems that kept any
out (the parse contract of `mailbot parse --json`).

Requests come from labelled fields in the body and from spreadsheet rows. Only complete,
well-formed requests pass; everything else becomes a `Problem` whose `field` and `source` say
where and whose `detail` tells an operator what the customer has to fix (the customer's own
answer is rendered from codes and fields). Nothing here raises for any input: an unexpected
error becomes an ``internal_error`` problem naming the step, and is logged.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from mailbot.config import LimitsConfig
from mailbot.model import FIELDS, Extraction, ParsedMail, Problem, Request
from mailbot.read.classify import ignored_reason, is_forwarded, match_kind
from mailbot.read.fields import LabelMatcher, SystemMatcher, find_serials, fold, parse_email
from mailbot.read.forwards import Body, choose_body
from mailbot.read.mime import read_message
from mailbot.read.own_mail import (
    DEFAULT_REFERENCE_PREFIX,
    OwnMarks,
    SenderText,
    own_mail_reason,
    sender_text,
)
from mailbot.read.problem_cap import cap_problems
from mailbot.read.sheet_rows import (
    CORE_FIELDS,
    HEADER_SEARCH_ROWS,
    MIN_HEADER_FIELDS,
    ListRows,
    header_columns,
)
from mailbot.read.sheets import (
    SPREADSHEET_EXTENSIONS,
    UNSUPPORTED_EXTENSIONS,
    EncryptedSheet,
    OverBudget,
    SheetBudget,
    SheetError,
    SheetTooLarge,
    TooManyRows,
    UnsupportedSheet,
    iter_rows,
    sheet_budget,
)
from mailbot.read.steps import Step, empty_parsed, header_bytes
from mailbot.ruleset import Ruleset

log = logging.getLogger(__name__)

BODY = "body"
NOTE_EMAIL_FROM_SENDER = "contact_email taken from From"
# An .xlsx is zipped XML; a real list expands a few times. More than this is a zip bomb.
XLSX_EXPANSION = 10
# A request is a few lines; the rest of a huge body is not read (and the operator is told).
MAX_BODY_CHARS = 256 * 1024

# How problem details name the fields (operators read them), and the seed's own labels.
FIELD_NAMES = {
    "company": "company name",
    "contact_name": "contact name",
    "contact_email": "contact e-mail",
    "system": "system",
    "serial": "serial number",
}
SEED_LABELS = {
    "company": "Nombre de la empresa",
    "contact_name": "Nombre del contacto",
    "contact_email": "Correo electrónico del contacto",
    "system": "Tipo de sistema",
    "serial": "Número de serie",
}
# Fields a later block may inherit from the block before it (one company, several systems).
SHARED_FIELDS = ("company", "contact_name", "contact_email")
# A line like these after an empty label is the end of the mail, not the label's value.
_CLOSINGS = ("saludo", "gracias", "atentamente", "atte", "att", "cordialmente", "quedo",
             "buen dia", "buenos dias", "buenas tardes", "buenas noches", "un saludo", "slds",
             "enviado desde", "sent from")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_SPACES = re.compile(r"\s+")
_VALUE_EDGES = " \t*_\"'«»“”`"


@dataclass(frozen=True)
class _Readers:
    """The matchers of one ruleset, built once: folding every label and alias is not free."""

    labels: LabelMatcher
    systems: SystemMatcher
    rules: Ruleset


_readers_cache: dict[int, _Readers] = {}


def _readers(rules: Ruleset) -> _Readers:
    cached = _readers_cache.get(id(rules))
    if cached is not None and cached.rules is rules:
        return cached
    if len(_readers_cache) > 16:
        _readers_cache.clear()
    systems = SystemMatcher(rules.catalogue)
    readers = _Readers(LabelMatcher(rules.labels, rules.label_matching, systems), systems, rules)
    _readers_cache[id(rules)] = readers
    return readers


def _shown(value: str, limit: int = 80) -> str:
    """A customer's value made safe to quote in a one-line detail."""
    value = _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip()
    return value if len(value) <= limit else value[:limit - 1] + "…"


def _clean_value(value: str) -> str:
    if value.isprintable() and "  " not in value:
        # Nothing for the expressions below to replace (every control, format and non-ASCII
        # space character is unprintable): the common cell, 50,000 times in a big list.
        return value.strip(_VALUE_EDGES).strip()
    return _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip(_VALUE_EDGES).strip()


# --- one set of values -> requests or problems ------------------------------------------------

def _to_requests(values: Mapping[str, str], *, source: str, where: str, readers: _Readers,
                 sender: str | None) -> tuple[list[Request], list[Problem]]:
    """Check one block's (or row's) values; a request only when every field is usable."""
    problems: list[Problem] = []
    notes: list[str] = []

    def problem(code: str, field_name: str, detail: str) -> None:
        problems.append(Problem(code, f"{where}: {detail}", field=field_name, source=source))

    clean = {f: _clean_value(values.get(f, "")) for f in FIELDS}
    for field_name in FIELDS:
        if clean[field_name] or (field_name == "contact_email" and sender):
            continue
        problem("missing_field", field_name,
                f"no {FIELD_NAMES[field_name]} found; write it as "
                f"\"{SEED_LABELS[field_name]}: ...\"")

    email = None
    if clean["contact_email"]:
        email = parse_email(clean["contact_email"])
        if email is None:
            problem("invalid_email", "contact_email",
                    f"\"{_shown(clean['contact_email'])}\" is not one valid e-mail address; "
                    f"write a single address such as nombre@empresa.com.mx")
    elif sender:
        email = parse_email(sender)
        if email is None:
            problem("missing_field", "contact_email",
                    f"no {FIELD_NAMES['contact_email']} found and the sender's address is not "
                    f"usable; write it as \"{SEED_LABELS['contact_email']}: ...\"")
        else:
            notes.append(NOTE_EMAIL_FROM_SENDER)

    system = None
    if clean["system"]:
        system, why = readers.systems.explain(clean["system"])
        if system is None:
            names = "; ".join(readers.rules.catalogue.names)
            problem("unknown_system", "system",
                    f"\"{_shown(clean['system'])}\" is not a system in the catalogue ({why}); "
                    f"write one of: {names}")

    serials: list[str] = []
    if clean["serial"]:
        serials = find_serials(clean["serial"])
        if not serials:
            problem("invalid_serial", "serial",
                    f"\"{_shown(clean['serial'])}\" is not a serial number; a serial is four "
                    f"groups of four letters or digits, like AAAA-BBBB-CCCC-DDDD")

    if problems or system is None or email is None or not serials:
        return [], problems
    requests = [Request(company=clean["company"], contact_name=clean["contact_name"],
                        contact_email=email, system=system, serial=serial, source=source,
                        notes=tuple(notes))
                for serial in serials]
    return requests, []


# --- the body ---------------------------------------------------------------------------------

def _is_closing(line: str) -> bool:
    if line.lstrip().startswith("--"):
        return True
    folded = fold(line)
    return folded.startswith("saludo") or any(
        folded == c or folded.startswith(c + " ") for c in _CLOSINGS)


def _read_blocks(text: str, labels: LabelMatcher) -> list[dict[str, str]]:
    """Labelled values, grouped into blocks: a block ends where a field it already has repeats.

    A label alone on its line takes the next non-empty line as its value, unless that line is
    another label or the mail's closing ("Saludos", "Gracias"). Lines without a label
    (greetings, prose, signatures) are skipped; "Sistema: X, Serie: Y" on one line is two
    fields. A spreadsheet pasted into the body (a line of
    tab-separated column names, then tab-separated rows) gives one block per row.
    """
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    waiting: str | None = None  # a label seen alone on its line
    table: dict[str, int] | None = None  # columns of a spreadsheet pasted into the body
    for line in text.splitlines():
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split("\t")] if "\t" in line else []
        header = header_columns(cells, labels) if len(cells) >= MIN_HEADER_FIELDS else {}
        if len(header) >= MIN_HEADER_FIELDS:
            table, waiting = header, None
            continue
        if table is not None and len(cells) > 1:
            if current:
                blocks.append(current)
                current = {}
            blocks.append({f: cells[i] if i < len(cells) else "" for f, i in table.items()})
            continue
        table = None
        found = labels.match(line)
        if found is None:
            if waiting is not None and not _is_closing(line):
                current[waiting] = line.strip()
            waiting = None
            continue
        for field_name, rest in _inline_fields(*found, labels):
            if current.get(field_name):
                blocks.append(current)
                current = {}
            current[field_name] = rest
            waiting = None if rest else field_name
    if current:
        blocks.append(current)
    return blocks


_INLINE_BREAK = re.compile(r"[,;|]\s*|\s{2,}|\s[-–—]\s")
_LABEL_WINDOW = 1000


def _inline_fields(field_name: str, rest: str, labels: LabelMatcher) -> list[tuple[str, str]]:
    """Split "Sistema: Bancos, Serie: AAAA-..." (several fields on one line, as phones write
    them) into one (field, value) pair each. Only "label:" counts inside a line."""
    pairs = [(field_name, rest)]
    while True:
        name, value = pairs[-1]
        for match in _INLINE_BREAK.finditer(value):
            # A label starts within a few characters of the break: look there first, so that a
            # line of 100,000 commas costs 100,000 short looks, not 100,000 copies of the line.
            if labels.match(value[match.end():match.end() + _LABEL_WINDOW]) is None:
                continue
            segment = value[match.end():]
            found = labels.match(segment)
            if found is not None and ":" in segment[:80].split(found[1] or "\n", 1)[0]:
                pairs[-1] = (name, value[:match.start()].strip())
                pairs.append(found)
                break
        else:
            return pairs


@dataclass(frozen=True)
class _BodyBlock:
    number: int
    values: Mapping[str, str]
    is_request: bool  # has a system or a serial: a request attempt, not a signature
    part: int = 0  # 0: the sender's own text; n: the n-th mail forwarded in it

    @property
    def complete(self) -> bool:
        """Both a system and a serial: surely the request, whatever else it lacks."""
        return all(_clean_value(self.values.get(f, "")) for f in CORE_FIELDS)


def _body_blocks(text: str | Sequence[str], readers: _Readers) -> list[_BodyBlock]:
    """The blocks of a text, or of each part of one: a forwarded mail is read on its own, so
    no block spans two parts (a forwarder's "Correo:" signature never splits or completes the
    forwarded request); only a company or contact name written above carries over."""
    blocks: list[_BodyBlock] = []
    for part, piece in enumerate([text] if isinstance(text, str) else text):
        # What the forwarder wrote above may complete a forwarded request's company and
        # contact ("Empresa: ..." typed above it), never its e-mail nor any field it has.
        above = {f: v for b in reversed(blocks) for f, v in b.values.items()
                 if f in _ABOVE_FIELDS and _clean_value(v)}
        blocks += _part_blocks(piece, readers, part, len(blocks), above)
    return blocks


_ABOVE_FIELDS = ("company", "contact_name")


def _part_blocks(text: str, readers: _Readers, part: int, before: int,
                 previous: Mapping[str, str]) -> list[_BodyBlock]:
    raw = _read_blocks(text[:MAX_BODY_CHARS], readers.labels)
    blocks: list[_BodyBlock] = []
    for values in raw:
        is_request = any(_clean_value(values.get(f, "")) for f in CORE_FIELDS)
        if is_request and previous:
            # "Empresa/Contacto/Correo" once, then several "Sistema/Serie" pairs.
            merged = dict(values)
            for f in SHARED_FIELDS:
                if not _clean_value(merged.get(f, "")) and previous.get(f):
                    merged[f] = previous[f]
            values = merged
        if is_request:
            previous = values
        blocks.append(_BodyBlock(before + len(blocks) + 1, values, is_request, part))
    return blocks


def _requests_from_blocks(blocks: Sequence[_BodyBlock], readers: _Readers, sender: str | None,
                          source: str = BODY) -> tuple[list[Request], list[Problem]]:
    # Blocks without system or serial are signatures ("E-mail: ..." under the request) or
    # context; they count only when the body has nothing else, to say what is missing.
    chosen = [b for b in blocks if b.is_request] or list(blocks[:1])
    requests: list[Request] = []
    problems: list[Problem] = []
    for block in chosen:
        where = source if len(chosen) == 1 else f"{source}, block {block.number}"
        r, p = _to_requests(block.values, source=source, where=where, readers=readers,
                            sender=sender)
        requests += r
        problems += p
    return requests, problems


def extract_body(text: str, rules: Ruleset, *, sender: str | None,
                 ) -> tuple[list[Request], list[Problem]]:
    """Requests written as labelled fields in a body (already stripped of quoted history).

    Fields in any order, the value after the label or on the next line, several blocks (a new
    one starts where a field repeats; later blocks inherit company and contact from the one
    before). A missing contact e-mail is taken from `sender`, with a note on the request. No
    labelled data at all gives ``([], [])``: deciding whether that is a problem is read_mail's.
    """
    readers = _readers(rules)
    return _requests_from_blocks(_body_blocks(text, readers), readers, sender)


# --- spreadsheets -----------------------------------------------------------------------------

def display_name(filename: str | None, fallback: str = "attachment") -> str:
    """An attachment's name made safe for `source` strings and details (one line, bounded)."""
    name = _shown(filename or "", 120).replace(":", "_") if filename else ""
    return name or fallback


def extract_sheet(filename: str, payload: bytes, rules: Ruleset, limits: LimitsConfig, *,
                  sender: str | None = None, defaults: Mapping[str, str] | None = None,
                  budget: SheetBudget | None = None) -> tuple[list[Request], list[Problem]]:
    """One request per data row of a spreadsheet attachment (.xlsx/.xlsm/.xls/.ods/.csv).

    Every sheet is searched for a list (`mailbot.read.sheet_rows`: a header row naming at
    least three fields in the first 30 rows, title and blank rows skipped, notes under the list
    left out); each data row is one request or its problems. Missing company/contact cells are
    filled from `defaults` (what the body said), a missing e-mail from `sender` (with a note).
    No header
    anywhere is a ``no_request_data`` problem for the attachment: it may be a spreadsheet about
    something else, and the customer is told how to lay out the list. `budget` is what the
    mail's spreadsheets may still cost together ([limits] max_sheet_*); past it, the file is a
    ``sheet_too_large`` problem and is not opened.
    """
    readers = _readers(rules)
    name = display_name(filename)
    where_file = f"attachment:{name}"
    if len(payload) > limits.max_attachment_bytes:
        return [], [Problem("attachment_too_large",
                            f"{name}: {len(payload):,} bytes, more than the "
                            f"{limits.max_attachment_bytes:,} allowed; send a smaller file with "
                            f"only the rows needed", source=where_file)]
    requests: list[Request] = []
    problems: list[Problem] = []
    rows = ListRows(iter_rows(name, payload, max_rows=limits.max_rows,
                              max_uncompressed_bytes=limits.max_attachment_bytes * XLSX_EXPANSION,
                              budget=budget or sheet_budget(limits)), readers.labels)
    try:
        for row, values in rows:
            for f in SHARED_FIELDS:
                if not values.get(f, "").strip() and defaults and defaults.get(f):
                    values[f] = defaults[f]
            source = f"{where_file}:row {row.row_number}"
            r, p = _to_requests(values, source=source,
                                where=f"{name}, sheet {row.sheet!r}, row {row.row_number}",
                                readers=readers, sender=sender)
            requests += r
            problems += p
    except OverBudget as exc:
        problems.append(Problem("sheet_too_large", exc.detail, source=where_file))
    except TooManyRows as exc:
        problems.append(Problem("too_many_rows", f"{exc.detail}; send the rest in another mail "
                                f"or in several files", source=where_file))
    except SheetTooLarge as exc:
        problems.append(Problem("attachment_too_large", exc.detail, source=where_file))
    except UnsupportedSheet as exc:
        problems.append(Problem("unsupported_attachment", exc.detail, source=where_file))
    except EncryptedSheet as exc:
        problems.append(Problem("unreadable_attachment", exc.detail, source=where_file))
    except SheetError as exc:
        problems.append(Problem("unreadable_attachment", exc.detail, source=where_file))
    if not rows.headers_found and not problems:
        wanted = ", ".join(f"\"{SEED_LABELS[f]}\"" for f in FIELDS)
        problems.append(Problem(
            "no_request_data",
            f"{name}: no header row found (at least {MIN_HEADER_FIELDS} column names in the "
            f"first {HEADER_SEARCH_ROWS} rows of a sheet); put one row with the columns "
            f"{wanted} above the data", source=where_file))
    elif rows.headers_found and not rows.data_rows and not problems:
        problems.append(Problem("no_request_data",
                                f"{name}: the header row was found but no rows with data "
                                f"below it; write one row per system", source=where_file))
    return requests, problems


# --- the whole mail ---------------------------------------------------------------------------

def _has_own_words(text: str) -> bool:
    """Whether the sender wrote anything beside what was ours (a sign-off is nothing)."""
    return any(line.strip() and not _is_closing(line) for line in text.splitlines())


@dataclass
class _TextLeft:
    """Characters of text a mail may still have read ([limits] max_body_chars): the mails
    attached to it share what its body left, so twenty forwarded mails cost no more than one."""

    chars: int


def _attached_mail(name: str, payload: bytes, readers: _Readers, marks: OwnMarks,
                   limits: LimitsConfig, left: _TextLeft,
                   ) -> tuple[list[Request], list[Problem], str | None]:
    """Requests in the body of a mail forwarded as an attachment ("Reenviar como datos
    adjuntos"), and why it is one of ours when it is. Only blocks with a system or serial
    count, one level deep; our own answers attached back to us are never read (they show the
    example request)."""
    inner, cut = read_message(payload, dataclasses.replace(limits,
                                                           max_body_chars=max(left.chars, 1)))
    left.chars -= len(inner.text)
    cut_problems = [dataclasses.replace(p, source=f"attachment:{name}") for p in cut]
    reason = own_mail_reason(inner, marks)
    if reason:
        return [], [], reason
    if ignored_reason(inner, marks.addresses) in ("bounce", "auto_reply"):
        return [], [], None
    own = sender_text(inner.text, marks, forwarded=False)
    if own.had_ours and not _has_own_words(own.text):
        return [], [], "its text is a reply of ours"
    blocks = [b for b in _body_blocks(own.text, readers) if b.is_request]
    if not blocks:
        return [], cut_problems, None
    requests, problems = _requests_from_blocks(blocks, readers, inner.sender,
                                               source=f"attachment:{name}")
    return requests, problems + cut_problems, None


def _extension(filename: str, content_type: str) -> str:
    ext = PurePath(filename.strip().lower()).suffix
    if ext:
        return ext
    guessed = {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
        "application/vnd.ms-excel.sheet.macroenabled.12": ".xlsm",
        "text/csv": ".csv",
        "application/vnd.ms-excel": ".xls",
        "application/vnd.oasis.opendocument.spreadsheet": ".ods",
    }
    return guessed.get(content_type.lower().split(";")[0].strip(), "")


def read_mail(data: bytes, rules: Ruleset, limits: LimitsConfig, own_addresses: Sequence[str],
              *, size: int | None = None, reference_prefix: str = DEFAULT_REFERENCE_PREFIX,
              ) -> tuple[ParsedMail, Extraction]:
    """Read one raw mail: classify it, then extract requests from its body, its spreadsheets
    (.xlsx/.xlsm/.xls/.ods/.csv; .xlsb/.numbers are reported as unsupported) and the body of a
    mail attached to it (a forward as attachment). PDFs, images and documents are left alone.

    `size` is the size the mailbox reported, when the bytes were not all fetched. Ignored mails
    (auto-replies, bounces, our own) are classified only: nothing in them is a request. Mail of
    ours inside the mail (forwarded, pasted or attached; see own_mail.py) is never read, and a
    mail that holds nothing else is ``own_mail`` too. `reference_prefix` is [mailbot]
    reference_prefix: a forwarded mail carrying one of our references is ours. Which text holds
    the request (a forward, a reply's history, the HTML alternative) is read/forwards.py's.
    """
    steps = Step()
    try:
        marks = OwnMarks.of(own_addresses, reference_prefix)
        return _read_mail(data, rules, limits, marks, size, steps)
    except Exception:  # belt and braces: _read_mail guards each step already
        log.exception("read_mail failed")
        steps.problems.append(Problem("internal_error", "mailbot failed while reading the "
                                      "mail (read_mail); an operator must look at it",
                                      source="read_mail"))
        return empty_parsed(data or b""), Extraction(
            kind=None, ignored=None, sender=None, subject="", message_id=None,
            problems=tuple(steps.problems))


def _read_mail(data: bytes, rules: Ruleset, limits: LimitsConfig, marks: OwnMarks,
               size: int | None, steps: Step) -> tuple[ParsedMail, Extraction]:
    data = bytes(data or b"")
    total = max(len(data), size or 0)
    too_large = total > limits.max_message_bytes
    source = header_bytes(data) if too_large else data
    parsed, cut = steps.run("parse", (None, ()), lambda: read_message(source, limits))
    steps.problems += cut  # what went past a [limits] size, named for the operator
    if parsed is None:
        parsed = empty_parsed(data)
    if too_large:
        parsed = dataclasses.replace(parsed, size=total)
    kind = steps.run("classify", None, lambda: match_kind(parsed.subject, rules.kinds))
    ignored = steps.run("classify", None, lambda: ignored_reason(parsed, marks.addresses))

    def extraction(requests: Sequence[Request] = (), notes: Sequence[str] = ()) -> Extraction:
        return Extraction(kind=kind, ignored=ignored, sender=parsed.sender,
                          subject=parsed.subject, message_id=parsed.message_id,
                          requests=tuple(requests), problems=tuple(steps.problems),
                          notes=tuple(notes))

    if ignored:
        why = own_mail_reason(parsed, marks) if ignored == "own_mail" else None
        return parsed, extraction(notes=[f"a mail of ours: {why}"] if why else ())
    if too_large:
        steps.problems.append(Problem(
            "message_too_large",
            f"the message is {total:,} bytes, more than the {limits.max_message_bytes:,} "
            f"allowed, so it was not read; send the request without large attachments",
            source="message"))
        return parsed, extraction()

    notes: list[str] = []
    readers = steps.run("rules", None, lambda: _readers(rules))
    if readers is None:
        return parsed, extraction()
    chosen = steps.run("strip_quoted", Body(SenderText(parsed.text), [], ()), lambda: choose_body(
        parsed, marks, rules.reading, forwarded=is_forwarded(parsed.subject),
        is_request=kind is not None, read_blocks=lambda own: _body_blocks(
            [p.text for p in own.parts] or own.text, readers)))
    own, blocks = chosen.own, chosen.blocks
    notes += own.notes + chosen.notes
    if len(own.text) > MAX_BODY_CHARS:
        notes.append(f"only the first {MAX_BODY_CHARS:,} characters of the body were read")
    context = next((b.values for b in blocks if not b.is_request), None)

    problems: list[Problem] = []
    sheet_requests: list[Request] = []
    budget = sheet_budget(limits)  # all the spreadsheets of the mail share one
    text_left = _TextLeft(limits.max_body_chars - len(parsed.text))  # and its attached mails
    has_sheet = False
    other_files: list[str] = []
    own_files: list[str] = []
    attached: list[str] = []  # the notes of attached mails that held requests
    attachments = parsed.attachments
    if len(attachments) > limits.max_attachments:
        problems.append(Problem(
            "too_many_attachments",
            f"the mail has {len(attachments)} attachments; only the first "
            f"{limits.max_attachments} were read; send the rest in another mail",
            source="message"))
        attachments = attachments[:limits.max_attachments]
    for number, attachment in enumerate(attachments, start=1):
        ext = _extension(attachment.filename or "", attachment.content_type or "")
        name = display_name(attachment.filename, fallback=f"attachment-{number}{ext}")
        if ext in SPREADSHEET_EXTENSIONS or ext in UNSUPPORTED_EXTENSIONS:
            # Unsupported formats go through the reader too: it tells an .xls from a
            # misnamed .xlsx by content, and words the hint for each format.
            has_sheet = True
            r, p = steps.run(f"extract_sheet {name}", ([], []), lambda a=attachment, n=name:
                             extract_sheet(n, a.payload, rules, limits, sender=parsed.sender,
                                           defaults=context, budget=budget))
            sheet_requests += r
            problems += p
        elif ext == ".eml" or (attachment.content_type or "").lower() == "message/rfc822":
            r, p, ours = steps.run(f"extract_attached_mail {name}", ([], [], None),
                                   lambda a=attachment, n=name:
                                   _attached_mail(n, a.payload, readers, marks, limits,
                                                  text_left))
            sheet_requests += r
            problems += p
            if r:
                attached.append(rules.reading.attached_note.format(name=name))
                notes.append(attached[-1])
            if ours:
                own_files.append(name)
                notes.append(f"attachment {name} is a mail of ours ({ours}): not read")
            elif not r and not p:
                other_files.append(name)
        else:
            other_files.append(name)

    if ((own.had_ours or own_files) and not _has_own_words(own.text)
            and len(own_files) == len(attachments)):
        # Nothing but ours: our reply come back (headers stripped, From rewritten) or sent
        # back without a word; answering it would answer ourselves.
        ignored = "own_mail"
        return parsed, extraction(notes=notes)
    # Body blocks without system/serial next to a spreadsheet or a forwarded mail that holds
    # the request are its context (who is asking, the forwarder's signature), and in a mail
    # that is not a request they are just a signature.
    context_only = has_sheet or kind is None or bool(attached)
    body_blocks = [b for b in blocks if b.is_request] if context_only else blocks
    r, p = steps.run("extract_body", ([], []),
                     lambda: _requests_from_blocks(body_blocks, readers, parsed.sender)
                     if body_blocks else ([], []))
    requests = r + sheet_requests
    problems = p + problems

    unique: list[Request] = []
    seen: dict[str, Request] = {}
    for request in requests:
        first = seen.get(request.serial)
        if first is not None:
            notes.append(f"{request.serial} asked again in {request.source}; kept the request "
                         f"from {first.source}")
            continue
        seen[request.serial] = request
        unique.append(request)
    if len(unique) > limits.max_requests:
        problems.append(Problem(
            "too_many_requests",
            f"the mail asks for {len(unique)} serials; only the first {limits.max_requests} "
            f"are handled; send the rest in another mail", source="message"))
        unique = unique[:limits.max_requests]

    steps.problems[:0] = problems
    if kind is not None and not unique and not steps.problems:
        ignored_files = (f" (attached files not read: {', '.join(other_files)})"
                         if other_files else "")
        steps.problems.append(Problem(
            "no_request_data",
            f"no request data found{ignored_files}; write the five fields in the body ("
            + ", ".join(f"\"{SEED_LABELS[f]}: ...\"" for f in FIELDS)
            + ") or attach an .xlsx list with one row per system", source=BODY))
    if kind == "free_update" and not unique:
        # The request may well be inside the file (a Word list, a scan): say why it was not read.
        steps.problems += [
            Problem("unsupported_attachment",
                    f"{name}: request lists are read from .xlsx or .csv files and from the "
                    "mail's text only; write the fields in the body or attach an .xlsx list",
                    source=f"attachment:{name}")
            for name in other_files if not name.lower().endswith(".eml")]
    for name in other_files:
        notes.append(f"attachment {name} not read (not a spreadsheet)")
    steps.problems[:] = cap_problems(steps.problems)  # as requests are capped
    return parsed, extraction(unique, notes)
