"""Reply and alert mails as bytes, ready for the outbox.

Headers are built only from our own values (configuration, reference, generated ids) and from
customer values that passed a strict check: the subject is cleaned of control characters
(no header injection) and message ids are copied only when they are syntactically valid. The
Auto-Submitted and X-Auto-Response-Suppress headers keep other robots from answering us
(RFC 3834), so two bots never ping-pong.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import uuid
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # reply.py needs only the stdlib at run time
    from mailbot.render import Rendered

# Our own folding of In-Reply-To/References (set_raw) is kept as is: the stdlib would otherwise
# RFC 2047-encode a long message id in those unstructured headers, which breaks threading.
POLICY = email_policy.SMTP.clone(refold_source="none")

MAX_SUBJECT = 200  # characters of the original subject kept in "RE: ..."
MAX_REFERENCES = 20  # the newest ids of a long thread are enough for threading
MAX_MSG_ID = 250

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_MSG_ID = re.compile(rf"<{_DOT_ATOM}@(?:{_DOT_ATOM}|\[[!-Z^-~]*\])>\Z")
_LOCAL_PART = re.compile(rf"{_DOT_ATOM}\Z")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+\Z")
_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_REPLY_PREFIX = re.compile(r"\s*re\s*(?:\[\d+\]|\(\d+\))?\s*:\s*", re.IGNORECASE)
# Line and paragraph separators and bidi controls: invisible, or able to disguise a subject.
_INVISIBLE = {"\u2028", "\u2029", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)),
              *map(chr, range(0x2066, 0x206A))}


def make_message_id(domain: str) -> str:
    """A fresh "<uuid@domain>": generated before rendering so a resend reuses the same id."""
    return f"<{uuid.uuid4().hex}@{_ascii_domain(domain)}>"


def is_msg_id(value: object) -> bool:
    """True for one RFC 5322 msg-id ("<left@right>"), the only customer text we put in headers."""
    return (isinstance(value, str) and len(value.strip()) <= MAX_MSG_ID
            and _MSG_ID.match(value.strip()) is not None)


def clean_header_text(value: object, limit: int | None = None) -> str:
    """One line of printable text: controls and separators become spaces, runs collapse."""
    text = str(value or "").encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> "?"
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _INVISIBLE
                   else ch for ch in text)
    text = " ".join(text.split())
    if limit is not None and len(text) > limit:
        cut = text[:limit]
        space = cut.rfind(" ")
        text = (cut[:space] if space > limit // 2 else cut).rstrip() + "…"
    return text


def reply_subject(original: str, reference: str) -> str:
    """ "RE: <original>" without "RE: RE:"; a fixed Spanish subject when there is nothing left."""
    text = clean_header_text(original)
    while match := _REPLY_PREFIX.match(text):
        text = text[match.end():]
    text = clean_header_text(text, MAX_SUBJECT)
    if not text:
        return (f"Respuesta a tu solicitud (referencia {reference})" if reference
                else "Respuesta a tu solicitud")
    return f"RE: {text}"


def build_reply(*, from_address: str, from_name: str, to: Sequence[str], original_subject: str,
                in_reply_to: str | None, references: Sequence[str], rendered: Rendered,
                reference: str, message_id: str, date: dt.datetime | None = None,
                auto_submitted: bool = True) -> bytes:
    """The answer to one customer mail.

    `references` are the original mail's References; the new References header is those
    (valid ones only, newest MAX_REFERENCES) followed by `in_reply_to`, as RFC 5322 asks.
    Raises ValueError for our own bad values (addresses, message id, reference).
    """
    if reference and not _REFERENCE.match(reference):
        raise ValueError(f"invalid request reference {reference!r}")
    msg = _new_message(from_address=from_address, from_name=from_name, to=to,
                       subject=reply_subject(original_subject, reference),
                       message_id=message_id, date=date)
    parent = in_reply_to.strip() if is_msg_id(in_reply_to) else None  # type: ignore[union-attr]
    chain = [r.strip() for r in references if is_msg_id(r)]
    if parent:
        chain = [r for r in chain if r != parent] + [parent]
        msg.set_raw("In-Reply-To", parent)
    chain = list(dict.fromkeys(chain))[-MAX_REFERENCES:]
    if chain:
        msg.set_raw("References", "\n ".join(chain))
    if auto_submitted:
        msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    if reference:
        msg["X-Mailbot-Reference"] = reference
    _set_body(msg, rendered)
    return msg.as_bytes()


def build_alert(*, from_address: str, to: Sequence[str], subject: str, rendered: Rendered,
                message_id: str, from_name: str = "mailbot",
                date: dt.datetime | None = None) -> bytes:
    """A mail to the operators; auto-generated, so their auto-replies do not come back to us."""
    msg = _new_message(from_address=from_address, from_name=from_name, to=to,
                       subject=clean_header_text(subject, MAX_SUBJECT) or "Avisos para operadores",
                       message_id=message_id, date=date)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    _set_body(msg, rendered)
    return msg.as_bytes()


# --------------------------------------------------------------------------------------------


def _new_message(*, from_address: str, from_name: str, to: Sequence[str], subject: str,
                 message_id: str, date: dt.datetime | None) -> EmailMessage:
    if isinstance(to, str):
        raise ValueError("to must be a sequence of addresses, not one string")
    if not to:
        raise ValueError("a message needs at least one recipient")
    if not is_msg_id(message_id):
        raise ValueError(f"invalid Message-ID {message_id!r}")
    when = date or dt.datetime.now(dt.timezone.utc)
    if when.tzinfo is None:
        when = when.astimezone()  # a naive time is local time
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _address(from_address, from_name)
    msg["To"] = [_address(a) for a in to]
    msg["Subject"] = subject
    msg["Date"] = when
    msg["Message-ID"] = message_id.strip()
    return msg


def _set_body(msg: EmailMessage, rendered: Rendered) -> None:
    # quoted-printable: 7-bit safe on any relay, and still readable in the raw file
    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if rendered.html is not None:
        msg.add_alternative(rendered.html, subtype="html", charset="utf-8",
                            cte="quoted-printable")
    msg["Content-Language"] = "es-MX"  # after set_content, which clears Content-* headers


def _ascii_domain(domain: str) -> str:
    text = str(domain).strip().rstrip(".")
    try:
        ascii_domain = text.encode("idna").decode("ascii") if not text.isascii() else text
    except UnicodeError:
        raise ValueError(f"invalid domain {domain!r}") from None
    if not _DOMAIN.match(ascii_domain):
        raise ValueError(f"invalid domain {domain!r}")
    return ascii_domain.lower()


def _address(addr_spec: str, display_name: str = "") -> Address:
    """An Address from an addr-spec we checked: ASCII dot-atom local part, IDNA domain."""
    local, at, domain = str(addr_spec).strip().rpartition("@")
    if not at or not _LOCAL_PART.match(local):
        raise ValueError(f"invalid e-mail address {addr_spec!r}")
    return Address(display_name=clean_header_text(display_name, 100), username=local,
                   domain=_ascii_domain(domain))
