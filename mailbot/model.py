"""The values that flow one way through mailbot.

raw mail -> ParsedMail -> Extraction (requests + problems) -> Decision per request -> reply.
Every value here is frozen: a step never changes what an earlier step produced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mailbot.wording import Words

# The fields of one request, in the order customers are asked to write them (seed 004).
FIELDS: tuple[str, ...] = ("company", "contact_name", "contact_email", "system", "serial")


@dataclass(frozen=True)
class RawMail:
    """Bytes of one mail and where they came from.

    `source` names the mailbox (``maildir:/path`` or ``imap:user@host/INBOX``); `mail_id` is
    the mail's id inside it (a Maildir key, or ``UIDVALIDITY:UID``).
    """

    source: str
    mail_id: str
    data: bytes
    size: int | None = None  # the size the mailbox reported, when known before fetching
    oversized: bool = False  # True: over the configured limit, `data` was not fetched


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    payload: bytes


@dataclass(frozen=True)
class ParsedMail:
    """What the MIME layer read from a mail; nothing here is interpreted yet.

    `headers` maps lower-case header names to every value of that header, decoded.
    `text` is the plain-text body (or the HTML part converted to text when there is no
    plain part); `html` is the raw HTML part, if any.
    """

    subject: str
    sender: str | None  # the single From addr-spec, lower case; None when absent/ambiguous
    from_addresses: tuple[str, ...]  # every addr-spec found in From, lower case
    message_id: str | None
    references: tuple[str, ...]
    headers: Mapping[str, tuple[str, ...]]
    text: str
    html: str
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...]
    size: int

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


@dataclass(frozen=True)
class Problem:
    """Something that kept a request out; `field` and `source` say where, `detail` says how."""

    code: str
    detail: str
    field: str | None = None
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code}
        if self.field is not None:
            out["field"] = self.field
        if self.source is not None:
            out["source"] = self.source
        out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class Request:
    """One complete, well-formed request: `system` is canonical, `serial` normalised."""

    company: str
    contact_name: str
    contact_email: str
    system: str
    serial: str
    source: str  # "body" or "attachment:<filename>:row <n>"
    notes: tuple[str, ...] = ()  # e.g. "contact_email taken from From"

    def to_json(self) -> dict[str, Any]:
        return {
            "company": self.company,
            "contact_name": self.contact_name,
            "contact_email": self.contact_email,
            "system": self.system,
            "serial": self.serial,
            "source": self.source,
        }


@dataclass(frozen=True)
class Extraction:
    """Everything read from one mail: the parse contract of `mailbot parse --json`."""

    kind: str | None
    ignored: str | None
    sender: str | None
    subject: str
    message_id: str | None
    requests: tuple[Request, ...] = ()
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()

    def to_json(self, file: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if file is not None:
            out["file"] = file
        out.update(
            kind=self.kind,
            ignored=self.ignored,
            sender=self.sender,
            subject=self.subject,
            message_id=self.message_id,
            requests=[r.to_json() for r in self.requests],
            problems=[p.to_json() for p in self.problems],
        )
        return out


@dataclass(frozen=True)
class RuleHit:
    """A rule that fired: its name and the reason a person can read.

    `reason` is the English text the CLI prints and the store has always kept. A rule that
    writes its reason with `RuleHit.said` also keeps `words` (the N_() template and its
    values, mailbot.wording), so the console can say the same reason in Spanish. Two hits with
    the same rule and reason are equal whether or not they carry words.
    """

    rule: str
    reason: str
    words: Words | None = field(default=None, compare=False)

    @classmethod
    def said(cls, rule: str, template: str, **values: str | int | float) -> RuleHit:
        """A hit whose reason is `template` % `values` (an N_() template; JSON-safe values)."""
        words = Words.of(template, **values)
        return cls(rule, words.say(), words)

    def to_json(self) -> dict[str, Any]:
        """What the store keeps: rule and English reason, plus template and values if any."""
        out: dict[str, Any] = {"rule": self.rule, "reason": self.reason}
        if self.words is not None:
            out["template"] = self.words.template
            out["values"] = dict(self.words.values)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RuleHit:
        """A stored hit back (rows written before hits kept their template have none)."""
        template = data.get("template")
        words = (Words(template, tuple((data.get("values") or {}).items()))
                 if template else None)
        return cls(str(data.get("rule", "")), str(data.get("reason", "")), words)


# Outcomes of a decision on one request.
ISSUED = "issued"  # key(s) sent (or re-sent) to the registered address
NOT_ELIGIBLE = "not_eligible"
REVIEW = "review"  # an operator must decide
PENDING = "pending"  # eligible, but the key pool for the system is empty
UNLOCKED = "unlocked"  # an unlock approved automatically: the serial is released
DOCUMENTS_NEEDED = "documents_needed"  # the reply asks for documents; their reply continues it
REVIEW_DOCUMENTS = "documents_to_check"  # an unlock's documents arrived: an operator checks them

# Folders a handled mail is filed into. Sources map them to their own folder names.
PROCESSED = "processed"
REVIEW_FOLDER = "review"
IGNORED = "ignored"
FAILED = "failed"
FOLDERS = (PROCESSED, REVIEW_FOLDER, IGNORED, FAILED)


@dataclass(frozen=True)
class Decision:
    request: Request
    outcome: str
    hits: tuple[RuleHit, ...]
    key: str | None = None
    recipient: str | None = None  # where the answer for this request goes (registered address)
    facts: Mapping[str, Any] = field(default_factory=dict)  # what templates may show

    def to_json(self) -> dict[str, Any]:
        return {
            "request": self.request.to_json(),
            "outcome": self.outcome,
            "hits": [{"rule": h.rule, "reason": h.reason} for h in self.hits],
            "key": self.key,
            "recipient": self.recipient,
        }
