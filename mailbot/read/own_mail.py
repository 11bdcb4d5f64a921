"""Our own mail inside a customer's mail: recognised, and never read as a request.

A customer forwards our "missing data" answer back, or a forwarding rule returns our reply with
our headers stripped. Read as a request, the example in our template (the seed's example
request) would bind a real key to the example serial, the problems our answer lists would be
reported back as the customer's, and a reply that came back alone would be answered again (a
loop). What marks a text as ours is what a customer does not write: our address as the sender
of a forwarded mail, one of our Message-IDs, our reference inside a forwarded mail, the sign-off
every reply of ours ends with ("Tu número de referencia es ...", "Este correo se generó
automáticamente."), and our template's example request under its lead-in "Por ejemplo:".

The sentences and the example are those of the shipped templates (`_layout.*.j2`,
`_example.*.j2`); tests/test_own_mail.py renders every template and checks that each reply is
still recognised, so a template change that would hide our replies fails there. Pure: no store.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr

from mailbot.config import BotConfig
from mailbot.model import ParsedMail
from mailbot.read.fields import fold
from mailbot.read.text import MarkerReader, Part, scan_quoted, strip_quoted

DEFAULT_REFERENCE_PREFIX = BotConfig.reference_prefix

# templates/_example.txt.j2: the seed's example request, as our "how to write it" shows it.
EXAMPLE_REQUEST = (
    "Nombre de la empresa: Empresa de muestra S.A. de C.V.",
    "Nombre del contacto: Raul Gonzalez Rivera",
    "Correo electrónico del contacto: rgonzalez@empresamuestra.com.mx",
    "Tipo de sistema: CONTPAQ i – Factura electrónica",
    "Número de serie: Aaaa-Bbbb-Cccc-Dddd",
)
_EXAMPLE_LINES = frozenset(fold(line) for line in EXAMPLE_REQUEST)
_EXAMPLE_LEAD = "por ejemplo"  # the template's line above the example
MIN_EXAMPLE_LINES = 3  # of its five lines: what is left when a customer trims it

# The sign-off of templates/_layout.txt.j2 and _layout.html.j2, folded (any line wrapping).
_REFERENCE_SENTENCE = re.compile(r"\btu numero de referencia es(?:\s+\S+){1,6}?\s+mencionalo\b")
_GENERATED = re.compile(r"\beste correo se genero automaticamente\b")
_GREETING = re.compile(r"hola(?: [^\n]{0,80})?")  # "Hola:" / "Hola, Raúl González:", folded
_SIGN_OFF_LINES = 12  # from the reference sentence to "Este correo se generó..." at most

# make_message_id (mailbot/answer/message.py): "<uuid4 hex@domain of [mailbot] address>".
_MESSAGE_ID = r"<[0-9a-f]{32}@(?:{domains})>"


@dataclass(frozen=True)
class OwnMarks:
    """What marks a mail or a text as ours: our addresses, the domain of our Message-IDs and
    our reference ("CLV-000042", or with a random code "CLV-000042-K7M2QX")."""

    addresses: tuple[str, ...]
    reference_prefix: str = DEFAULT_REFERENCE_PREFIX
    _address: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _message_id: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _reference: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        addresses = [a for a in self.addresses if "@" in a]
        domains = sorted({d for a in addresses for d in _domain_forms(a.rpartition("@")[2])})
        address = "|".join(re.escape(a) for a in addresses)
        prefix = re.escape(self.reference_prefix.strip())
        set_ = object.__setattr__  # frozen: the patterns are derived once, here
        set_(self, "_address", re.compile(rf"(?<![\w.+-])(?:{address})(?![\w-]|\.\w)",
                                          re.IGNORECASE) if address else None)
        set_(self, "_message_id", re.compile(
            _MESSAGE_ID.replace("{domains}", "|".join(re.escape(d) for d in domains)),
            re.IGNORECASE) if domains else None)
        set_(self, "_reference", re.compile(
            rf"(?<![A-Za-z0-9-]){prefix}-\d{{6,}}(?:-[A-Za-z0-9]{{4,8}})?(?![A-Za-z0-9])",
            re.IGNORECASE) if prefix else None)

    @classmethod
    def of(cls, own_addresses: Sequence[str],
           reference_prefix: str = DEFAULT_REFERENCE_PREFIX) -> OwnMarks:
        return _marks(tuple(own_addresses), reference_prefix)

    def address_in(self, text: str) -> str | None:
        match = self._address.search(text) if self._address else None
        return match.group(0).casefold() if match else None

    def is_our_message_id(self, value: str | None) -> bool:
        return bool(value and self._message_id and self._message_id.search(value.strip()))

    def reference_in(self, text: str) -> str | None:
        match = self._reference.search(text) if self._reference else None
        return match.group(0).upper() if match else None


@functools.lru_cache(maxsize=32)
def _marks(own_addresses: tuple[str, ...], reference_prefix: str) -> OwnMarks:
    """Compiled once per configuration: every mail is checked against the same marks."""
    found = [(parseaddr(a)[1] or a).strip().casefold() for a in own_addresses if a and a.strip()]
    return OwnMarks(tuple(dict.fromkeys(found)), reference_prefix)


def _domain_forms(domain: str) -> set[str]:
    """The domain as written and as IDNA (make_message_id writes the ASCII form)."""
    forms = {domain.strip().casefold()}
    try:
        forms.add(domain.strip().encode("idna").decode("ascii").casefold())
    except UnicodeError:
        pass
    return {f for f in forms if f}


def own_mail_reason(mail: ParsedMail, marks: OwnMarks) -> str | None:
    """Why a whole mail is one of ours, or None. Besides our From, a forwarding rule that
    rewrote the From leaves our X-Mailbot-Reference header or our Message-ID, and no
    customer's mail carries either."""
    for address in mail.from_addresses:
        if address.casefold() in marks.addresses:
            return f"its sender is {address}"
    if "x-mailbot-reference" in mail.headers:
        return "it has our X-Mailbot-Reference header"
    if marks.is_our_message_id(mail.message_id):
        return f"its Message-ID {mail.message_id} is one of ours"
    return None


def own_part_reason(part: Part, marks: OwnMarks) -> str | None:
    """Why a mail forwarded inline is one of ours (for the operator's note), or None."""
    for line in part.from_lines:
        address = marks.address_in(line)
        if address:
            return f"its sender is {address}"
    for line in part.headers:
        if marks.is_our_message_id(line):
            return "its Message-ID is one of ours"
    reference = next(filter(None, (marks.reference_in(h) for h in part.headers)), None)
    reference = reference or marks.reference_in(part.text)
    if reference:
        return f"it carries our reference {reference}"
    folded = _folded_lines(part.text.split("\n"))
    if _sign_off(folded, 0) is not None:
        return "it ends with our replies' sign-off"
    if any(lead is not None for _, _, lead in _example_runs(folded, set())):
        return "it shows our template's example request"
    return None


@dataclass(frozen=True)
class OwnText:
    """A text with our own replies and our template's example taken out."""

    text: str
    replies: int = 0  # our replies found pasted into it (greeting to sign-off)
    examples: int = 0  # our template's example requests found in it


def remove_own_text(text: str, *, ours_nearby: bool = False) -> OwnText:
    """Take out of `text` every reply of ours pasted into it with no header to say so (a reply
    sent back with its headers stripped, an attached mail read as the body), from its greeting
    ("Hola...:") to its "Este correo se generó automáticamente.", and our template's example
    request: under its lead-in "Por ejemplo:", or anywhere when the mail holds something of
    ours (`ours_nearby`). The seed's example written by a customer alone is left to be read."""
    lines = text.split("\n")
    folded = _folded_lines(lines)
    drop: set[int] = set()
    replies = 0
    start = 0
    while (found := _sign_off(folded, start)) is not None:
        first_line, last_line = found
        greeting = next((n for n in range(first_line, start - 1, -1)
                         if _GREETING.fullmatch(folded[n])), start)
        drop.update(range(greeting, last_line + 1))
        replies += 1
        start = last_line + 1
    examples = 0
    for first_line, last_line, lead in _example_runs(folded, drop):
        if lead is not None or ours_nearby or replies:
            drop.update(range(first_line, last_line + 1))
            if lead is not None:
                drop.add(lead)
            examples += 1
    if not drop:
        return OwnText(text)
    kept = "\n".join(line for n, line in enumerate(lines) if n not in drop)
    return OwnText(kept.strip("\n"), replies, examples)


@dataclass(frozen=True)
class SenderText:
    """A body with the quoted history and everything of ours taken out; `notes` say what of
    ours was found (for the operator).

    `parts` is the same text cut where a forwarded mail begins (the sender's own words first,
    then each forwarded mail that is not ours), so that a forwarder's signature is never read
    as part of the forwarded request; `history` says quoted history (a reply's) was left out.
    """

    text: str
    notes: tuple[str, ...] = ()
    parts: tuple[Part, ...] = ()
    history: bool = False

    @property
    def had_ours(self) -> bool:
        return bool(self.notes)


def sender_text(text: str, marks: OwnMarks, *, forwarded: bool,
                markers: MarkerReader | None = None) -> SenderText:
    """What the sender wrote: no quoted history (`strip_quoted`), no mail of ours forwarded
    inline, no reply of ours pasted in and no example of our template. With nothing of ours
    the text is exactly `strip_quoted`'s. `markers` names the forward markers of the rules."""
    scan = scan_quoted(text, forwarded=forwarded, markers=markers)
    parts = scan.parts
    reasons = [own_part_reason(part, marks) if part.headers else None for part in parts]
    notes = [f"a mail of ours forwarded in the body was not read ({reason})"
             for reason in reasons if reason]
    if notes:
        kept = "\n".join(p.text for p, reason in zip(parts, reasons, strict=True) if not reason)
    else:
        kept = parts[0].text if len(parts) == 1 else strip_quoted(text, forwarded=forwarded,
                                                                   markers=markers)
    kept_nearby = bool(notes)
    own = remove_own_text(kept, ours_nearby=kept_nearby)
    if own.replies:
        notes.append("a reply of ours in the body (its greeting to its sign-off) was not read")
    if own.examples:
        notes.append("the example request of our answers' template was not read as a request")
    nearby = bool(notes)

    def part_text(part: Part) -> str:
        if part.text == kept and nearby == kept_nearby:
            return own.text  # the very call made above (a body of one part): its answer
        return remove_own_text(part.text, ours_nearby=nearby).text

    kept_parts = tuple(dataclasses.replace(p, text=part_text(p))
                       for p, reason in zip(parts, reasons, strict=True) if not reason)
    return SenderText(own.text, tuple(notes), kept_parts, scan.history)


def _folded_lines(lines: Sequence[str]) -> list[str]:
    return [fold(line[:500]) for line in lines]


def _sign_off(folded: Sequence[str], start: int) -> tuple[int, int] | None:
    """(first, last) line of the next sign-off of ours from line `start`: the reference
    sentence (wrapped anyhow) through "Este correo se generó automáticamente.", or either."""
    joined = "\n".join(folded[start:])
    sentence = _REFERENCE_SENTENCE.search(joined)
    generated = _GENERATED.search(joined)
    if sentence is None and generated is None:
        return None

    def line_of(offset: int) -> int:
        return start + joined.count("\n", 0, offset)

    if sentence is None:
        at = line_of(generated.start())  # type: ignore[union-attr]
        return at, at
    first_line, last_line = line_of(sentence.start()), line_of(sentence.end())
    if generated is not None and generated.start() > sentence.start():
        end = line_of(generated.start())
        if end - last_line <= _SIGN_OFF_LINES:
            return first_line, end
    return first_line, len(folded) - 1  # the rest of the text is our sign-off


def _example_runs(folded: Sequence[str], skip: set[int]) -> list[tuple[int, int, int | None]]:
    """Runs of consecutive (blank lines aside) lines that are lines of our example request:
    (first, last, the line of its lead-in "Por ejemplo:" or None)."""
    runs: list[tuple[int, int, int | None]] = []
    first = last = None
    count = 0
    for n, line in enumerate([*folded, "\0"]):
        if n < len(folded) and (not line or n in skip):
            continue
        if n < len(folded) and line in _EXAMPLE_LINES:
            first = n if first is None else first
            last, count = n, count + 1
            continue
        if first is not None and last is not None and count >= MIN_EXAMPLE_LINES:
            above = next((k for k in range(first - 1, -1, -1) if folded[k]), None)
            lead = above if above is not None and folded[above] == _EXAMPLE_LEAD else None
            runs.append((first, last, lead))
        first = last = None
        count = 0
    return runs
