"""Reply and alert mails as bytes, ready for the outbox.

Headers are built only from our own values (configuration, reference, generated ids) and from
customer values that passed a strict check: the subject is cleaned of control characters
(no header injection) and message ids are copied only when they are syntactically valid. The
Auto-Submitted and X-Auto-Response-Suppress headers keep other robots from answering us
(RFC 3834), so two bots never ping-pong.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import functools
import random
import re
import sys
import unicodedata
import uuid
from collections.abc import Sequence
from email import policy as email_policy
from email import quoprimime
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TYPE_CHECKING

from mailbot.addresses import deliverable_parts, normalise_domain

if TYPE_CHECKING:  # reply.py needs only the stdlib at run time
    from mailbot.answer.render import Rendered

# Our own folding of In-Reply-To/References (set_raw) is kept as is: the stdlib would otherwise
# RFC 2047-encode a long message id in those unstructured headers, which breaks threading.
POLICY = email_policy.SMTP.clone(refold_source="none")

Attachment = tuple[str, bytes, tuple[str, str]]  # file name, bytes, (maintype, subtype)
MAX_SUBJECT = 200  # characters of the original subject kept in "RE: ..."
MAX_REFERENCES = 20  # the newest ids of a long thread are enough for threading
MAX_MSG_ID = 250

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_MSG_ID = re.compile(rf"<{_DOT_ATOM}@(?:{_DOT_ATOM}|\[[!-Z^-~]*\])>\Z")
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
    if not text.isprintable():  # printable text has no control, separator or bidi mark
        text = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _INVISIBLE
                       else ch for ch in text)
    text = " ".join(text.split())
    if limit is not None and len(text) > limit:
        cut = text[:limit]
        space = cut.rfind(" ")
        text = (cut[:space] if space > limit // 2 else cut).rstrip() + "…"
    return text


def reply_subject(original: str, reference: str) -> str:
    """ "RE: <original>" without "RE: RE:"; a fixed Spanish subject when there is nothing left.

    The prefixes are skipped by position, not by slicing once per "RE:": 250,000 of them took
    seconds that way, and the subject is the customer's."""
    text = clean_header_text(original)
    start = 0
    while match := _REPLY_PREFIX.match(text, start):
        start = match.end()
    text = clean_header_text(text[start:], MAX_SUBJECT)
    if not text:
        return (f"Respuesta a tu solicitud (referencia {reference})" if reference
                else "Respuesta a tu solicitud")
    return f"RE: {text}"


def build_reply(*, from_address: str, from_name: str, to: Sequence[str], original_subject: str,
                in_reply_to: str | None, references: Sequence[str], rendered: Rendered,
                reference: str, message_id: str, date: dt.datetime | None = None,
                auto_submitted: bool = True,
                attachments: Sequence[Attachment] = ()) -> bytes:
    """The answer to one customer mail.

    `references` are the original mail's References; the new References header is those
    (valid ones only, newest MAX_REFERENCES) followed by `in_reply_to`, as RFC 5322 asks.
    Raises ValueError for our own bad values (addresses, message id, reference).

    The bytes are exactly those the standard library's EmailMessage (policy POLICY) makes of
    the same values, written out directly: each header is folded by the standard library
    itself (once per distinct value, cached) unless it is short plain ASCII, where folding
    is the identity; bodies are quoted-printable by the standard library's own encoder.
    `_build_reply_stdlib` is the reference it is tested against.

    With `attachments` (file name, bytes, (maintype, subtype)): the results spreadsheet of a
    many-request answer, one reply in five in a busy mailbox, where the standard library
    took 3 ms of the 3.2 a reply costs: written directly too (multipart/mixed, base64 as the
    standard library cuts it), when the body has an HTML part and every file name is short
    plain ASCII; anything else goes through the standard library (`_build_reply_stdlib`).
    """
    if attachments and (rendered.html is None
                        or any(_disposition(name) is None for name, _d, _t in attachments)):
        return _build_reply_stdlib(
            from_address=from_address, from_name=from_name, to=to,
            original_subject=original_subject, in_reply_to=in_reply_to, references=references,
            rendered=rendered, reference=reference, message_id=message_id, date=date,
            auto_submitted=auto_submitted, attachments=attachments)
    if reference and not _REFERENCE.match(reference):
        raise ValueError(f"invalid request reference {reference!r}")
    out = _head(from_address=from_address, from_name=from_name, to=to,
                subject=reply_subject(original_subject, reference), message_id=message_id,
                date=date)
    parent = in_reply_to.strip() if is_msg_id(in_reply_to) else None  # type: ignore[union-attr]
    chain = [r.strip() for r in references if is_msg_id(r)]
    if parent:
        chain = [r for r in chain if r != parent] + [parent]
        out.append(f"In-Reply-To: {parent}\r\n")  # set_raw: written as given
    chain = list(dict.fromkeys(chain))[-MAX_REFERENCES:]
    if chain:
        out.append("References: " + "\r\n ".join(chain) + "\r\n")
    if auto_submitted:
        out.append("Auto-Submitted: auto-replied\r\n")
    out.append("X-Auto-Response-Suppress: All\r\n")
    if reference:
        out.append(_fold("X-Mailbot-Reference", reference))
    if attachments:
        _mixed_body(out, rendered, attachments)
    else:
        _body(out, rendered)
    return "".join(out).encode("ascii", "surrogateescape")


def _build_reply_stdlib(*, from_address: str, from_name: str, to: Sequence[str],
                        original_subject: str, in_reply_to: str | None,
                        references: Sequence[str], rendered: Rendered, reference: str,
                        message_id: str, date: dt.datetime | None = None,
                        auto_submitted: bool = True,
                        attachments: Sequence[Attachment] = ()) -> bytes:
    """build_reply through EmailMessage: the reference implementation (tests compare), and
    the writer of replies with attachments."""
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
    for filename, data, (maintype, subtype) in attachments:
        msg.add_attachment(data, maintype=maintype, subtype=subtype,
                           filename=clean_header_text(filename, 200))
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
# The direct writer. Every string here is what BytesGenerator writes for the same message; the
# header folding and the quoted-printable encoding are the standard library's own functions.

_CRLF = "\r\n"
_MAX_LINE = POLICY.max_line_length  # 78
_NLCRE = re.compile(r"\r\n|\r|\n")  # how the generator splits a payload into lines
_PART_TEXT = ('Content-Type: text/plain; charset="utf-8"\r\n'
              "Content-Transfer-Encoding: quoted-printable\r\n")
# add_alternative() gives the HTML part a MIME-Version header of its own; so does the stdlib
_PART_HTML = ('Content-Type: text/html; charset="utf-8"\r\n'
              "Content-Transfer-Encoding: quoted-printable\r\n"
              "MIME-Version: 1.0\r\n")
_TAIL_SINGLE = _PART_TEXT + "MIME-Version: 1.0\r\nContent-Language: es-MX\r\n\r\n"
_BOUNDARY_WIDTH = len(repr(sys.maxsize - 1))  # as email.generator._make_boundary


def _plain(name: str, value: str) -> str | None:
    """`name: value` when the standard library would write the value unchanged: printable
    ASCII, no encoded-word look-alike, single spaces, and short enough not to be folded."""
    if (value.isascii() and value.isprintable() and "=?" not in value and "  " not in value
            and value == value.strip() and len(name) + 2 + len(value) <= _MAX_LINE):
        return f"{name}: {value}{_CRLF}"
    return None


@functools.lru_cache(maxsize=4096)
def _fold_stdlib(name: str, value: str) -> str:
    return POLICY.fold_binary(name, POLICY.header_store_parse(name, value)[1]).decode(
        "ascii", "surrogateescape")


def _fold(name: str, value: str) -> str:
    """One header line as EmailMessage[name] = value writes it."""
    return _plain(name, value) or _fold_stdlib(name, value)


@functools.lru_cache(maxsize=256)
def _fold_from(from_address: str, from_name: str) -> str:
    header = POLICY.header_store_parse("From", _address(from_address, from_name))[1]
    return POLICY.fold_binary("From", header).decode("ascii", "surrogateescape")


def _fold_to(to: Sequence[str]) -> str:
    addresses = [_address(a) for a in to]  # validates every one, as _new_message does
    plain = _plain("To", ", ".join(a.addr_spec for a in addresses))
    if plain is not None and all(not a.display_name for a in addresses):
        return plain
    header = POLICY.header_store_parse("To", addresses)[1]
    return POLICY.fold_binary("To", header).decode("ascii", "surrogateescape")


def _checked_head(to: Sequence[str], message_id: str, date: dt.datetime | None) -> dt.datetime:
    """Refuse what would make a broken message; returns the Date to write."""
    if isinstance(to, str):
        raise ValueError("to must be a sequence of addresses, not one string")
    if not to:
        raise ValueError("a message needs at least one recipient")
    if not is_msg_id(message_id):
        raise ValueError(f"invalid Message-ID {message_id!r}")
    when = date or dt.datetime.now(dt.UTC)
    return when if when.tzinfo is not None else when.astimezone()  # naive means local time


def _head(*, from_address: str, from_name: str, to: Sequence[str], subject: str,
          message_id: str, date: dt.datetime | None) -> list[str]:
    """From, To, Subject, Date and Message-ID lines, checked as _new_message checks them."""
    when = _checked_head(to, message_id, date)
    return [_fold_from(from_address, from_name), _fold_to(to), _fold("Subject", subject),
            _fold("Date", email.utils.format_datetime(when)),
            _fold("Message-ID", message_id.strip())]


def _qp_lines(text: str) -> str:
    """A text part's body as set_content(cte="quoted-printable") stores it and the generator
    writes it (CRLF line ends)."""
    lines = text.encode("utf-8").splitlines()
    payload = _body_encode((b"\n".join(lines) + b"\n").decode("latin-1"), _MAX_LINE)
    if not payload:
        return ""
    if "\r" not in payload:  # one kind of line end: the generator's split and join, in C
        return payload.replace("\n", _CRLF)
    parts = _NLCRE.split(payload)
    return _CRLF.join(parts[:-1]) + _CRLF + parts[-1]


# What quoprimime.body_encode quotes: every character but printable ASCII (not "="), space,
# tab, CR and LF; as it quotes them (its own table, "=%02X").
_QP_QUOTED = re.compile(r"[^\t\n\r -<>-~]")
_QP_TABLE = quoprimime._QUOPRI_BODY_ENCODE_MAP


def _qp_quote(match: re.Match[str]) -> str:
    return _QP_TABLE[ord(match.group())]


def _body_encode(body: str, maxlinelen: int) -> str:
    """quoprimime.body_encode(body, maxlinelen) (Python 3.11's), with the quoting done by one
    regular expression over the few characters that need it instead of str.translate over
    every character (that translate was nearly all of its time: 130 us for a 4 KB reply part,
    against 50), and only the lines that need it cut or given a quoted end (longer than
    `maxlinelen`, or ending in a space or a tab) going through quoprimime's loop; the others,
    most of a reply, are kept as they are. tests/test_reply_equivalence.py
    checks the bytes against the standard library's own message writer."""
    if not body:
        return body
    body = _QP_QUOTED.sub(_qp_quote, body)
    if "\r" in body:  # splitlines would cut there too: line by line, as quoprimime does
        return "\n".join(_wrapped_lines(body.splitlines(), maxlinelen)
                         + ([""] if body[-1] in "\r\n" else []))
    lines = body.split("\n")
    for number, line in enumerate(lines):
        if len(line) > maxlinelen or line.endswith((" ", "\t")):
            lines[number] = "\n".join(_wrapped_lines((line,), maxlinelen))
    return "\n".join(lines)


def _wrapped_lines(lines: Sequence[str], maxlinelen: int) -> list[str]:
    """quoprimime.body_encode's loop over the quoted lines: each cut into pieces of at most
    maxlinelen - 1 characters and a soft break, never splitting "=XX", and whitespace at its
    end quoted."""
    soft_break = "=\n"
    maxlinelen1 = maxlinelen - 1
    encoded: list[str] = []
    append = encoded.append
    for line in lines:
        start = 0
        laststart = len(line) - 1 - maxlinelen
        while start <= laststart:  # pieces of at most maxlinelen - 1, never splitting "=XX"
            stop = start + maxlinelen1
            if line[stop - 2] == "=":
                append(line[start:stop - 1])
                start = stop - 2
            elif line[stop - 1] == "=":
                append(line[start:stop])
                start = stop - 1
            else:
                append(line[start:stop] + "=")
                start = stop
        if line and line[-1] in " \t":  # whitespace at the end of a line is quoted
            room = start - laststart
            if room >= 3:
                q = quoprimime.quote(line[-1])
            elif room == 2:
                q = line[-1] + soft_break
            else:
                q = soft_break + quoprimime.quote(line[-1])
            append(line[start:-1] + q)
        else:
            append(line[start:])
    return encoded


def _body(out: list[str], rendered: Rendered) -> None:
    """The MIME headers and body of _set_body, appended to the header lines in `out`."""
    text = _qp_lines(rendered.text)
    if rendered.html is None:
        out.append(_TAIL_SINGLE)
        out.append(text)
        return
    html = _qp_lines(rendered.html)
    parts = (_PART_TEXT + _CRLF + text, _PART_HTML + _CRLF + html)
    boundary = _make_boundary(parts)
    out.append("MIME-Version: 1.0\r\n")
    out.append(_multipart_type(len(boundary)).replace(_PLACEHOLDER * len(boundary), boundary))
    out.append("Content-Language: es-MX\r\n\r\n")
    out.append(f"--{boundary}{_CRLF}{parts[0]}{_CRLF}--{boundary}{_CRLF}{parts[1]}"
               f"{_CRLF}--{boundary}--{_CRLF}")


def _mixed_body(out: list[str], rendered: Rendered, attachments: Sequence[Attachment]) -> None:
    """The MIME headers and body `_build_reply_stdlib` writes with attachments: a
    multipart/mixed of the multipart/alternative of `_body` and one base64 part per file. The
    generator draws the inner boundary first, then the outer one (checked against both)."""
    text, html = _qp_lines(rendered.text), _qp_lines(rendered.html or "")
    parts = (_PART_TEXT + _CRLF + text, _PART_HTML + _CRLF + html)
    inner = _make_boundary(parts)
    alternative = (_multipart_type(len(inner)).replace(_PLACEHOLDER * len(inner), inner)
                   + "Content-Language: es-MX\r\n\r\n"
                   + f"--{inner}{_CRLF}{parts[0]}{_CRLF}--{inner}{_CRLF}{parts[1]}"
                     f"{_CRLF}--{inner}--{_CRLF}")
    files = [_content_type(maintype, subtype) + "Content-Transfer-Encoding: base64\r\n"
             + (_disposition(name) or "") + "MIME-Version: 1.0\r\n\r\n"
             + base64.encodebytes(data).decode("ascii").replace("\n", _CRLF)
             for name, data, (maintype, subtype) in attachments]
    outer = _make_boundary((alternative, *files))
    out.append("MIME-Version: 1.0\r\n")
    out.append(_multipart_type(len(outer), "mixed").replace(_PLACEHOLDER * len(outer), outer))
    out.append(_CRLF)
    for part in (alternative, *files):
        out.append(f"--{outer}{_CRLF}{part}{_CRLF}")
    out.append(f"--{outer}--{_CRLF}")


_PLAIN_FILENAME = re.compile(r"[ -~]{1,200}\Z")


def _disposition(filename: str) -> str | None:
    """The Content-Disposition line add_attachment writes for a plain ASCII file name that
    needs no folding; None for any other (the standard library writes those)."""
    name = clean_header_text(filename, 200)
    if not _PLAIN_FILENAME.match(name) or name != name.strip():
        return None
    return _plain("Content-Disposition", f'attachment; filename="{email.utils.quote(name)}"')


@functools.lru_cache(maxsize=16)
def _content_type(maintype: str, subtype: str) -> str:
    return _fold_stdlib("Content-Type", f"{maintype}/{subtype}")


_PLACEHOLDER = "0"  # boundaries are "=" and digits: folding depends on their length only


@functools.lru_cache(maxsize=16)
def _multipart_type(length: int, subtype: str = "alternative") -> str:
    """The folded Content-Type of the multipart, for a boundary of `length` characters."""
    return _fold_stdlib("Content-Type",
                        f'multipart/{subtype}; boundary="{_PLACEHOLDER * length}"')


def _make_boundary(parts: Sequence[str]) -> str:
    """email.generator.Generator._make_boundary: random, and on no line of the parts."""
    token = random.randrange(sys.maxsize)
    boundary = "=" * 15 + f"{token:0{_BOUNDARY_WIDTH}d}" + "=="
    text = _CRLF.join(parts)
    candidate, counter = boundary, 0
    while ("--" + candidate) in text and re.search(
            "^--" + re.escape(candidate) + "(--)?$", text, re.MULTILINE):
        candidate = f"{boundary}.{counter}"
        counter += 1
    return candidate




def _new_message(*, from_address: str, from_name: str, to: Sequence[str], subject: str,
                 message_id: str, date: dt.datetime | None) -> EmailMessage:
    when = _checked_head(to, message_id, date)
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
    """The ASCII form by UTS 46 (`normalise_domain`), the one the address checks and the
    envelope use: Python's "idna" codec is IDNA 2003, which makes "straße.de" strasse.de."""
    ascii_domain = normalise_domain(str(domain))
    if ascii_domain is None or not _DOMAIN.match(ascii_domain):
        raise ValueError(f"invalid domain {domain!r}")
    return ascii_domain


def _address(addr_spec: str, display_name: str = "") -> Address:
    """An Address from an addr-spec that passes `deliverable_parts`, the rule the sender
    checks apply up front (UndeliverableAddress, a ValueError, says why not)."""
    local, domain = deliverable_parts(addr_spec)
    return Address(display_name=clean_header_text(display_name, 100), username=local,
                   domain=domain)
