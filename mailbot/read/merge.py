"""The reply that completes a request (issue 11 §6): what an earlier mail said, merged with the
customer's answer to our "this is missing" reply.

A customer who is told "falta el número de serie" answers with that one line. Read on its own,
the answer is as incomplete as the first mail was; read with the first mail it is a whole
request. This module is pure: the run step finds the earlier mail (store/threads.py) and passes
its open blocks here; nothing here knows about threads, senders or the registry.

- `open_blocks` says what a mail left open: the field values of each body block that did not
  become a request, and which fields kept it out. The run step stores them with the mail, so
  the answer can be merged later without the first mail's bytes.
- `complete` merges: the new text wins field by field; a block of the reply with a system or a
  serial completes the earlier block it names (same serial or system), else the next open one;
  a reply's lines without system or serial (a name, an address) only fill what was open. The
  merged values go through the same checks as any body block, so a merged request is exactly
  as well-formed as a typed one, and what is still missing is a problem again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mailbot.model import FIELDS, ParsedMail, Problem, Request
from mailbot.read.classify import is_forwarded
from mailbot.read.extract import BODY, _body_blocks, _clean_value, _readers, _to_requests
from mailbot.read.fields import find_serials, fold
from mailbot.read.own_mail import OwnMarks, sender_text
from mailbot.ruleset import Ruleset

# Problems about a field's value: the block was a request attempt the customer can finish.
FIELD_CODES = frozenset({"missing_field", "invalid_email", "unknown_system", "invalid_serial"})


@dataclass(frozen=True)
class OpenBlock:
    """A body block that did not become a request: its values and the fields that kept it out."""

    values: Mapping[str, str]
    open: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"values": dict(self.values), "open": list(self.open)}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> OpenBlock:
        values = data.get("values") or {}
        opened = data.get("open") or ()
        assert isinstance(values, Mapping) and isinstance(opened, (list, tuple))
        return cls({str(k): str(v) for k, v in values.items() if k in FIELDS},
                   tuple(str(f) for f in opened if f in FIELDS))


@dataclass(frozen=True)
class Completion:
    """The requests of an earlier mail and its reply read together."""

    requests: tuple[Request, ...]
    problems: tuple[Problem, ...]
    filled: tuple[str, ...]  # fields of the earlier mail in the requests made, in FIELDS order
    given: tuple[str, ...]  # fields the reply gave, in FIELDS order
    still_open: tuple[OpenBlock, ...] = field(default=())  # what a further reply may finish


def own_blocks(parsed: ParsedMail, rules: Ruleset, marks: OwnMarks) -> list[tuple[dict[str, str],
                                                                                  bool]]:
    """The labelled blocks of the sender's own text (quoted history and our mail left out, as
    `read_mail` leaves them out), each with whether it holds a system or a serial."""
    own = sender_text(parsed.text, marks, forwarded=is_forwarded(parsed.subject))
    return [({f: _clean_value(v) for f, v in b.values.items() if _clean_value(v)}, b.is_request)
            for b in _body_blocks(own.text, _readers(rules))]


def open_blocks(parsed: ParsedMail, rules: Ruleset, marks: OwnMarks) -> tuple[OpenBlock, ...]:
    """The body blocks of a mail that were request attempts and did not become requests.

    Chosen as `read_mail` chooses them (blocks with a system or serial, else the first block),
    checked as it checks them, with the sender's address standing in for a missing e-mail.
    """
    readers = _readers(rules)
    blocks = own_blocks(parsed, rules, marks)
    chosen = [values for values, is_request in blocks if is_request] or [
        values for values, _ in blocks[:1]]
    found: list[OpenBlock] = []
    for values in chosen:
        requests, problems = _to_requests(values, source=BODY, where=BODY, readers=readers,
                                          sender=parsed.sender)
        fields = tuple(f for f in FIELDS if any(p.field == f and p.code in FIELD_CODES
                                                for p in problems))
        if not requests and fields:
            found.append(OpenBlock(values, fields))
    return tuple(found)


def _same(field_name: str, a: str, b: str, rules: Ruleset) -> bool:
    """Whether two values name the same serial or system (as the catalogue reads them)."""
    if field_name == "serial":
        return bool(set(find_serials(a)) & set(find_serials(b)))
    systems = _readers(rules).systems
    first, second = systems.explain(a)[0], systems.explain(b)[0]
    return first == second if first and second else fold(a) == fold(b)


def _pair(earlier: Sequence[OpenBlock], replies: Sequence[Mapping[str, str]],
          rules: Ruleset) -> list[int | None]:
    """For each reply block, the index of the earlier block it completes (None: a block of its
    own). A block naming the serial or the system of an earlier block completes that one."""
    used: set[int] = set()
    pairs: list[int | None] = []
    for values in replies:
        named = next((i for i, block in enumerate(earlier) if i not in used and any(
            values.get(f) and block.values.get(f) and _same(f, values[f], block.values[f], rules)
            for f in ("serial", "system"))), None)
        if named is None:
            named = next((i for i in range(len(earlier)) if i not in used), None)
        if named is not None:
            used.add(named)
        pairs.append(named)
    return pairs


def complete(earlier: Sequence[OpenBlock], reply: Sequence[tuple[Mapping[str, str], bool]],
             rules: Ruleset, *, sender: str | None,
             note: Callable[[Sequence[str]], str]) -> Completion | None:
    """Merge the open blocks of an earlier mail with the blocks of its reply.

    `reply` is `own_blocks` of the reply. None when the reply gives none of the fields the
    earlier mail lacked (a "gracias", a question): then it is read on its own. Every request
    that took fields from the earlier mail gets the note `note(fields)`, so its decision says
    which.
    """
    if not earlier:
        return None
    readers = _readers(rules)
    asked = [values for values, is_request in reply if is_request]
    context: dict[str, str] = {}  # lines without system or serial: they only fill open fields
    for values, is_request in reply:
        if not is_request:
            for f, v in values.items():
                context.setdefault(f, v)
    pairs = _pair(earlier, asked, rules)
    merged: list[tuple[dict[str, str], set[str]]] = []  # values, fields from the earlier mail
    for values, index in zip(asked, pairs, strict=True):
        block = earlier[index] if index is not None else OpenBlock({}, FIELDS)
        mixed = {**block.values, **values}
        mixed.update({f: v for f, v in context.items() if f in block.open and f not in values})
        merged.append((mixed, {f for f in block.values if f not in values and not (
            f in block.open and f in context)}))
    for index, block in enumerate(earlier):
        if index not in pairs:
            mixed = {**block.values, **{f: v for f, v in context.items() if f in block.open}}
            merged.append((mixed, {f for f in block.values
                                   if not (f in block.open and f in context)}))
    given = {f for values in asked for f in values} | {
        f for f in context if any(f in b.open for b in earlier)}
    if not given & {f for b in earlier for f in b.open}:
        return None  # nothing that was missing: the reply is a mail of its own
    requests: list[Request] = []
    problems: list[Problem] = []
    still_open: list[OpenBlock] = []
    filled: set[str] = set()
    for number, (values, from_earlier) in enumerate(merged, start=1):
        where = BODY if len(merged) == 1 else f"{BODY}, block {number}"
        r, p = _to_requests(values, source=BODY, where=where, readers=readers, sender=sender)
        taken = tuple(f for f in FIELDS if f in from_earlier)
        if taken and r:
            filled.update(taken)
            r = [Request(x.company, x.contact_name, x.contact_email, x.system, x.serial,
                         x.source, (*x.notes, note(taken))) for x in r]
        requests += r
        problems += p
        fields = tuple(f for f in FIELDS if any(x.field == f and x.code in FIELD_CODES
                                                for x in p))
        if not r and fields:
            still_open.append(OpenBlock(values, fields))
    return Completion(tuple(requests), tuple(problems),
                      tuple(f for f in FIELDS if f in filled),
                      tuple(f for f in FIELDS if f in given), tuple(still_open))
