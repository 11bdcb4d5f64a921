"""Bytes of a mail -> `ParsedMail`, for any bytes at all.

The email package builds the message and reports its defects; the body and the attachments are
then chosen here by walking the MIME tree. mail-parser reads the From mailboxes
(`mailparser.utils.get_addresses`), but its `MailParser` is not used: its message is the email
package's own, and what it adds to it does not fit a request mail (its ``text_plain`` holds
every text part, forwarded messages' included; it decodes a mis-declared charset with
replacement characters; it names attachments without a filename at random), so all of it was
thrown away, at a third of what reading a mail cost (benchmarks/reading_cpu.py). What a
customer sent must always reach the field parser, so nothing here raises: the email package
failing falls back to a raw reading of the headers.

Reading is bounded whatever the mail holds ([limits] in the config): the header block and each
header field are cut to size before any parser sees them (a Subject of 100,000 encoded-words
took mail-parser 4 s, a From of 500,000 mailboxes minutes), and text and HTML parts are cut
before they are decoded; `read_message` names every cut as a problem. Only this module imports
mailparser.
"""

from __future__ import annotations

import codecs
import dataclasses
import email
import email.message
import logging
import mimetypes
import re
import unicodedata
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from mailparser.utils import get_addresses

from mailbot.config import LimitsConfig
from mailbot.model import Attachment, ParsedMail, Problem
from mailbot.read.bounds import (
    Cuts,
    bound_header,
    bound_parts,
    bound_single_part,
    cut_text,
    lenient_base64,
)
from mailbot.read.text import html_to_text

# mail-parser's address parser logs what it recovers; our defects say what matters.
logging.getLogger("mailparser").setLevel(logging.CRITICAL)
log = logging.getLogger(__name__)

_MAX_DEPTH = 40  # MIME nesting we follow; deeper parts are reported, not walked

_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([QqBb])\?([^?\s]*)\?=")
_MSG_ID = re.compile(r"<[^<>\s]+>")
_ADDR_SPEC = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+$")
_FOLD = re.compile(r"\r?\n[ \t]*|\r[ \t]*")
_FOLD_OR_NUL = re.compile(r"[\r\n\x00]")
# Python codec names (codecs.lookup(...).name) of single-byte charsets, where valid UTF-8 is a
# sure sign of a wrong label; and of the charsets where ASCII bytes mean ASCII text.
_SINGLE_BYTE = ("ascii", "iso8859", "cp125", "latin", "mac-", "koi8", "cp437", "cp850", "tis-620")
_ASCII_COMPATIBLE = _SINGLE_BYTE + (
    "utf-8", "gb", "big5", "euc", "shift_jis", "cp932", "cp949", "cp950",
)
_REPORT_PARTS = frozenset({
    "message/delivery-status", "message/disposition-notification", "message/feedback-report",
    "text/rfc822-headers", "message/global-delivery-status", "message/global-headers",
})
def parse_mail(data: bytes, limits: LimitsConfig | None = None) -> ParsedMail:
    """Read one mail; never raises, whatever the bytes (see the module docstring)."""
    return read_message(data, limits)[0]


def read_message(data: bytes, limits: LimitsConfig | None = None,
                 ) -> tuple[ParsedMail, tuple[Problem, ...]]:
    """`parse_mail`, plus a ``header_too_large`` or ``body_too_large`` problem for each part
    of the mail left unread because it went past a limit. Never raises."""
    cuts = Cuts(limits or LimitsConfig())
    try:
        data = _as_bytes(data)
    except Exception:  # pragma: no cover - not bytes-like at all
        data = b""
    try:
        data = bound_single_part(bound_parts(bound_header(data, cuts), cuts), cuts)
    except Exception:  # pragma: no cover - belt and braces: never worse than the bytes as sent
        log.exception("bounding the mail failed")
    parsed = _parse(data, cuts)
    if parsed.sender is not None and ("from" in cuts.header_cut or cuts.header_dropped):
        # Part of From, or a field that may have been a second From, was not read: whoever
        # the mail is from, it is not known well enough to answer.
        parsed = dataclasses.replace(parsed, sender=None)
    return parsed, tuple(cuts.problems)


def _parse(data: bytes, cuts: Cuts) -> ParsedMail:
    defects: list[str] = []
    if not data or data.isspace():  # not data.strip(): a 25 MB copy to learn one thing
        defects.append("empty message")
    message: Message | None = None
    try:
        message = email.message_from_bytes(data)
        defects.extend(_stdlib_defects(message))
    except Exception as exc:  # a RecursionError on a crafted nesting, a bug of the parser
        defects.append(f"email package failed ({type(exc).__name__}); headers read raw")
    if message is not None:
        try:
            return _from_message(message, data, defects, cuts)
        except Exception as exc:
            defects.append(f"MIME structure unreadable ({type(exc).__name__}); headers read raw")
    return _salvage(data, defects, cuts)


# --- The message ------------------------------------------------------------------------------


def _from_message(message: Message, data: bytes, defects: list[str], cuts: Cuts,
                  ) -> ParsedMail:
    headers: dict[str, list[str]] = {}
    raw_from: list[str] = []
    for name, raw in message.raw_items():
        key = str(name).strip().lower()
        raw_text = _header_raw_text(raw)
        headers.setdefault(key, []).append(decode_header_text(raw_text))
        if key == "from":
            raw_from.append(raw_text)
    body = _Body(defects, cuts)
    body.walk(message, depth=0)
    text = "\n".join(t for t in body.plain if t.strip())
    html = "\n".join(body.html)
    if not text.strip() and not html and body.embedded:
        # Nothing of its own (a mail forwarded as an attachment): read the forwarded one.
        inner = _Body(defects, cuts)
        inner.walk(body.embedded[0], depth=1, files=False)
        text = "\n".join(t for t in inner.plain if t.strip())
        html = "\n".join(inner.html)
    if not text.strip() and html:
        text = html_to_text(html)
    if len(text) > cuts.limits.max_body_chars:
        text = text[:cuts.limits.max_body_chars]
        cuts.body_cut(f"the text of the mail is longer than "
                      f"{cuts.limits.max_body_chars:,} characters", "max_body_chars")
    return _parsed(headers, raw_from, text, html, tuple(body.attachments), defects, len(data))


def _parsed(
    headers: dict[str, list[str]],
    raw_from: list[str],
    text: str,
    html: str,
    attachments: tuple[Attachment, ...],
    defects: list[str],
    size: int,
) -> ParsedMail:
    from_addresses = _addresses(raw_from)

    def first(name: str) -> str:
        return headers.get(name, [""])[0]

    subject = " ".join(first("subject").split())
    ids = _MSG_ID.findall(first("message-id"))
    message_id = ids[0] if ids else (first("message-id").strip() or None)
    references: dict[str, None] = {}  # in order, once each
    for name in ("in-reply-to", "references"):
        for value in headers.get(name, []):
            references.update(dict.fromkeys(
                _MSG_ID.findall(value) or [t for t in value.split() if "@" in t]))
    return ParsedMail(
        subject=subject,
        sender=from_addresses[0] if len(from_addresses) == 1 else None,
        from_addresses=from_addresses,
        message_id=message_id,
        references=tuple(references),
        headers={k: tuple(v) for k, v in headers.items()},
        text=text,
        html=html,
        attachments=attachments,
        defects=tuple(dict.fromkeys(defects)),
        size=size,
    )


def _addresses(raw_from: list[str]) -> tuple[str, ...]:
    """Every addr-spec in the From headers, lower case, once each."""
    found: dict[str, None] = {}
    for raw in raw_from:
        try:
            pairs = get_addresses(_address_text(_FOLD.sub(" ", raw)), decode_names=True)
        except Exception:
            pairs = []
        for _, address in pairs:
            address = address.strip().lower()
            if _ADDR_SPEC.match(address):
                found[address] = None
    return tuple(found)


def _address_text(raw: str) -> str:
    """A From value as the address parser should see it.

    Python's compat32 ``email`` library and several ERP and webmail mailers encode the whole
    value, display name and address, as one RFC 2047 encoded-word (``=?utf-8?b?...?=`` of
    ``"Pérez, Juan" <juan@x.mx>``); read as written it holds no address at all. Only when the
    address is nowhere outside the encoded-words are they decoded first: an encoded display
    name beside a real address is left to the parser, so a name that merely looks like an
    address (``=?utf-8?q?jefe=40banco.mx?= <x@y.mx>``) never adds or replaces a mailbox.
    """
    if "=?" not in raw or "@" in _ENCODED_WORD.sub("", raw):
        return raw
    decoded = decode_header_text(raw)
    return decoded if "@" in decoded else raw


@dataclass
class _Body:
    """Walks a MIME tree once, collecting body text, HTML and attachments."""

    defects: list[str]
    cuts: Cuts
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    embedded: list[Message] = field(default_factory=list)

    def walk(self, part: Message, depth: int, files: bool = True) -> None:
        if depth > _MAX_DEPTH:
            self.defects.append(f"MIME nesting deeper than {_MAX_DEPTH}; inner parts skipped")
            return
        ctype = _content_type(part)
        maintype = ctype.split("/", 1)[0]
        if ctype in _REPORT_PARTS:
            return  # machine-readable parts of a bounce or receipt
        if self._is_attachment(part, ctype):
            if files:
                self.attachments.append(self._attachment(part, ctype))
            if not _named_inline_text(part, ctype):
                return
        if maintype == "message" and part.is_multipart():
            inner = part.get_payload()
            if isinstance(inner, list):
                for message in inner:
                    if isinstance(message, Message):
                        self.embedded.append(message)
                        if files:
                            # A forwarded mail's files are files; its text is not our body.
                            collector = _Body(self.defects, self.cuts)
                            collector.walk(message, depth + 1)
                            self.attachments.extend(collector.attachments)
            return
        if part.is_multipart():
            children = [p for p in part.get_payload() if isinstance(p, Message)]
            if ctype == "multipart/alternative":
                self._alternative(children, depth, files)
            elif ctype == "multipart/signed" and children:
                self.walk(children[0], depth + 1, files)  # the rest is the signature, not a file
            else:
                for child in children:
                    if ctype == "multipart/related" and _is_embedded_resource(child):
                        continue  # an image the HTML shows (a signature logo), not a file
                    self.walk(child, depth + 1, files)
            return
        if maintype == "multipart":
            self._broken_multipart(part, ctype, depth, files)
            return
        if ctype == "text/html":
            self.html.append(self._decode_html(part))
        elif ctype == "text/plain":
            text = self._decode_plain(part)
            self.plain.append(_unflow(text, part) if _is_flowed(part) else text)

    def _alternative(self, children: list[Message], depth: int, files: bool) -> None:
        # Alternatives come in increasing order of preference; the body is one of them.
        plain: list[str] = []
        html: list[str] = []
        for child in children:
            sub = _Body(self.defects, self.cuts)
            sub.walk(child, depth + 1, files)
            if any(t.strip() for t in sub.plain):
                plain = sub.plain
            if sub.html:
                html = sub.html
            self.attachments.extend(sub.attachments)
            self.embedded.extend(sub.embedded)
        self.plain.extend(plain)
        self.html.extend(html)

    def _broken_multipart(self, part: Message, ctype: str, depth: int, files: bool) -> None:
        """A multipart whose boundary is missing or wrong: find the real one in the body."""
        raw = _payload_bytes(part)
        boundary = _guess_boundary(raw)
        if boundary and depth < _MAX_DEPTH:
            self.defects.append(f"{ctype}: boundary missing or wrong; recovered {boundary!r}")
            rebuilt = (f'Content-Type: {ctype}; boundary="{boundary}"\r\n\r\n').encode() + raw
            try:
                self.walk(email.message_from_bytes(rebuilt), depth + 1, files)
                return
            except Exception:
                pass
        self.defects.append(f"{ctype}: no parts found; body read as text")
        self.plain.append(self._decode_plain(part, raw))

    def _is_attachment(self, part: Message, ctype: str) -> bool:
        disposition = _disposition(part)
        if disposition == "attachment":
            return True
        if ctype.startswith("multipart/"):
            return False
        return bool(_filename(part))

    def _attachment(self, part: Message, ctype: str) -> Attachment:
        name = _filename(part)
        if not name:
            extension = mimetypes.guess_extension(ctype) or ".bin"
            name = f"attachment-{len(self.attachments) + 1}{extension}"
        if part.is_multipart():
            payload = _flatten(part)
        else:
            payload = _payload_bytes(part, self.defects)
        return Attachment(filename=name, content_type=ctype, payload=payload)

    def _decode_plain(self, part: Message, raw: bytes | None = None) -> str:
        """A text part, cut to what is left of max_body_chars before it is decoded."""
        left = max(self.cuts.body_chars, 0)
        # At most four bytes make a character, so 4 * left bytes hold `left` characters.
        data, cut = _payload_bytes_cut(part, self.defects, 4 * left, raw)
        text = decode_text(data, _charset(part), self.defects)
        if len(text) > left:
            text, cut = text[:left], True
        self.cuts.body_chars -= len(text)
        if cut:
            self.cuts.body_cut(f"the text of the mail is longer than "
                               f"{self.cuts.limits.max_body_chars:,} characters",
                               "max_body_chars")
        return text

    def _decode_html(self, part: Message) -> str:
        """An HTML part, cut to what is left of max_html_bytes before it is decoded."""
        data, cut = _payload_bytes_cut(part, self.defects, max(self.cuts.html_bytes, 0))
        self.cuts.html_bytes -= len(data)
        if cut:
            self.cuts.body_cut(f"the HTML of the mail is larger than "
                               f"{self.cuts.limits.max_html_bytes:,} bytes", "max_html_bytes")
        return decode_text(data, _charset(part), self.defects)


def _guess_boundary(raw: bytes) -> str | None:
    """The first ``--token`` line that occurs at least twice: a real boundary opens and closes."""
    seen: dict[bytes, int] = {}
    for match in re.finditer(rb"^--(\S{1,200})[ \t]*\r?$", raw, re.MULTILINE):
        token = match.group(1)
        token = token[:-2] if token.endswith(b"--") and len(token) > 2 else token
        seen[token] = seen.get(token, 0) + 1
        if seen[token] >= 2:
            return token.decode("ascii", "replace")
    return None


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "text/plain"


def _disposition(part: Message) -> str | None:
    try:
        value = part.get_content_disposition()
    except Exception:
        return None
    return value.strip().lower() if isinstance(value, str) else None


def _charset(part: Message) -> str | None:
    try:
        value = part.get_param("charset")
    except Exception:
        return None
    if isinstance(value, tuple):  # RFC 2231 form
        value = value[2]
    return str(value).strip().strip("\"'") if value else None


def _named_inline_text(part: Message, ctype: str) -> bool:
    """A text part marked inline but named: the body of some clients, and a file too."""
    return ctype in ("text/plain", "text/html") and _disposition(part) == "inline"


def _is_embedded_resource(part: Message) -> bool:
    return (
        not part.is_multipart()
        and bool(part.get("content-id"))
        and _disposition(part) != "attachment"
        and _content_type(part).split("/")[0] in ("image", "audio", "video")
    )


def _is_flowed(part: Message) -> bool:
    try:
        return str(part.get_param("format") or "").lower() == "flowed"
    except Exception:
        return False


def _unflow(text: str, part: Message) -> str:
    """Join the soft line breaks of format=flowed (RFC 3676), so a wrapped value stays whole."""
    try:
        delsp = str(part.get_param("delsp") or "").lower() == "yes"
    except Exception:
        delsp = False
    out: list[str] = []
    pending: tuple[int, str] | None = None
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]
        soft = content.endswith(" ") and content != "-- "
        if soft and delsp:
            content = content[:-1]
        if pending is not None and pending[0] == depth:
            pending = (depth, pending[1] + content)
        else:
            if pending is not None:
                out.append(_quoted(*pending))
            pending = (depth, content)
        if not soft:
            out.append(_quoted(*pending))
            pending = None
    if pending is not None:
        out.append(_quoted(*pending))
    return "\n".join(out)


def _quoted(depth: int, content: str) -> str:
    return (">" * depth + " " + content) if depth else content


def _filename(part: Message) -> str:
    try:
        name = part.get_filename() if _may_name_a_file(part) else None
    except Exception:
        name = None
    if not name:
        return ""
    name = decode_header_text(_header_raw_text(name))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]  # never a path, only a name
    return "".join(ch for ch in name if ch >= " ").strip()


def _may_name_a_file(part: Message) -> bool:
    """False when `get_filename` surely finds nothing: neither a "filename" parameter of
    Content-Disposition nor a "name" of Content-Type can be in fields without those letters
    (the common text and container parts, asked on every part walked)."""
    fields = [part.get("content-disposition", ""), part.get("content-type", "")]
    if not all(isinstance(f, str) for f in fields):
        return True  # a field the parser kept as a Header: let get_filename read it
    return "name" in (fields[0] + fields[1]).lower()


def _payload_bytes(part: Message, notes: list[str] | None = None) -> bytes:
    """The part's content with its transfer encoding undone, tolerant of broken encodings.

    One copy of the content at a time: a 25 MB part is not also encoded or decoded for a
    fallback that is not needed.
    """
    if part.is_multipart():
        return _flatten(part)
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte != "base64":
        try:
            decoded = part.get_payload(decode=True)
        except Exception:
            decoded = None
        if isinstance(decoded, bytes):
            return decoded
    raw = part.get_payload()
    if isinstance(raw, str):
        raw_bytes = raw.encode("utf-8", "surrogateescape")  # the parser keeps 8-bit as surrogates
    else:
        raw_bytes = bytes(raw or b"")
    if cte == "base64":
        return lenient_base64(raw_bytes, notes, _content_type(part))
    return raw_bytes


def _payload_bytes_cut(part: Message, notes: list[str], limit: int, raw: bytes | None = None,
                       ) -> tuple[bytes, bool]:
    """At most `limit` bytes of a text part's content, and whether any was left out.

    Undoing the transfer encoding is linear and runs in C (base64 included, see
    `lenient_base64`), so the whole part is decoded and then cut, at a line break near the
    limit when there is one, never inside a UTF-8 character.
    """
    data = _payload_bytes(part, notes) if raw is None else raw
    return cut_text(data, limit), len(data) > limit


def _flatten(part: Message) -> bytes:
    """A container as bytes; for an attached mail, the mail itself without the part headers."""
    target = part
    inner = part.get_payload()
    if _content_type(part).startswith("message/") and isinstance(inner, list) and len(inner) == 1:
        target = inner[0]
    try:
        return target.as_bytes()
    except Exception:
        try:
            return str(target).encode("utf-8", "surrogateescape")
        except Exception:
            return b""


# --- Text and headers -----------------------------------------------------------------------


def decode_text(data: bytes, charset: str | None, defects: list[str] | None = None) -> str:
    """Bytes of a text part as text, whatever charset was declared (or wrongly declared).

    ISO-8859-1 and US-ASCII are read as Windows-1252 (Outlook labels cp1252 text as Latin-1);
    valid UTF-8 under a Latin-1 label is read as UTF-8; an unknown charset or bytes that do not
    fit the declared one fall back to UTF-8, then Windows-1252. Never raises.
    """
    if not data:
        return ""
    notes = defects if defects is not None else []
    declared = (charset or "").strip().strip("\"'").lower()
    codec: str | None = None
    if declared:
        try:
            info = codecs.lookup(declared)
            if getattr(info, "_is_text_encoding", True):
                codec = info.name
        except LookupError:
            pass
        if codec is None:
            notes.append(f"unknown charset {declared!r}; decoded by guessing")
    text: str | None = None
    if data.isascii() and (codec is None or codec.startswith(_ASCII_COMPATIBLE)):
        text = data.decode("ascii")
    elif codec is not None and codec.startswith(_SINGLE_BYTE):
        utf8 = _try(data, "utf-8")
        if utf8 is not None:
            notes.append(f"charset {declared!r} declared but the text is UTF-8")
            text = utf8
        elif codec in ("ascii", "iso8859-1", "cp1252"):
            text = _try(data, "cp1252") or data.decode("latin-1")
        else:
            text = _try(data, codec)
    elif codec is not None:
        text = _try(data, codec)
        if text is None:
            notes.append(f"text is not valid {declared!r}; decoded by guessing")
    if text is None:
        text = _try(data, "utf-8") or _try(data, "cp1252") or data.decode("latin-1")
    return _clean_text(text)


def _try(data: bytes, codec: str) -> str | None:
    try:
        text = data.decode(codec)
        text.encode("utf-8")  # some codecs yield lone surrogates
        return text
    except (UnicodeError, LookupError):
        return None


def _clean_text(text: str) -> str:
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return unicodedata.normalize("NFC", text)


def _header_raw_text(raw: Any) -> str:
    """A header value as text: 8-bit bytes (kept by the parser as surrogates) decoded too."""
    if isinstance(raw, email.header.Header):
        try:
            raw = raw.encode()
        except Exception:
            raw = str(raw)
    text = str(raw)
    if not text.isascii() and any("\udc80" <= ch <= "\udcff" for ch in text):
        data = text.encode("utf-8", "surrogateescape")
        text = _try(data, "utf-8") or _try(data, "cp1252") or data.decode("latin-1")
    return text


def decode_header_text(raw: str) -> str:
    """Unfold a header and decode its RFC 2047 encoded-words, tolerant of sloppy encoders.

    Adjacent encoded-words in one charset are joined before decoding, because some mailers
    split a UTF-8 character across two of them; an unknown charset falls back to UTF-8, then
    Windows-1252.
    """
    try:
        if raw.isascii() and "=?" not in raw and not _FOLD_OR_NUL.search(raw):
            return raw.strip()  # nothing to unfold, decode or normalise: most header fields
        text = _FOLD.sub(" ", raw)
        # (charset, [bytes of adjacent words]) or (None, [text]); a list each, so that 100,000
        # words in one charset are joined once, not copied 100,000 times.
        pieces: list[tuple[str | None, list[Any]]] = []
        pos = 0
        for match in _ENCODED_WORD.finditer(text):
            word = _decode_word(match.group(2), match.group(3))
            if word is None:
                continue  # left as it is written
            between = text[pos:match.start()]
            after_word = bool(pieces) and pieces[-1][0] is not None
            if between and not (after_word and not between.strip()):
                pieces.append((None, [between]))  # whitespace between two words is not text
            charset = match.group(1).lower()
            if pieces and pieces[-1][0] == charset:
                pieces[-1][1].append(word)
            else:
                pieces.append((charset, [word]))
            pos = match.end()
        pieces.append((None, [text[pos:]]))
        out = "".join(
            decode_text(b"".join(values), charset) if charset is not None else values[0]
            for charset, values in pieces
        )
        return unicodedata.normalize("NFC", out.replace("\x00", "")).strip()
    except Exception:
        return str(raw).strip()


def _decode_word(encoding: str, payload: str) -> bytes | None:
    try:
        if encoding in "Bb":
            if re.search(r"[^A-Za-z0-9+/=]", payload):
                return None  # not base64 at all: show the word as written
            return lenient_base64(payload.encode("ascii"))
        data = payload.replace("_", " ").encode("ascii", "replace")
        return re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), data)
    except Exception:
        return None


# --- Defects and the last resort ------------------------------------------------------------


def _stdlib_defects(message: Message) -> list[str]:
    out = []
    try:
        for part in message.walk():
            for defect in getattr(part, "defects", []):  # the class names what, its doc how
                out.append(f"{_content_type(part)}: {type(defect).__name__}: {defect.__doc__}")
    except Exception:
        pass
    return out


def _salvage(data: bytes, defects: list[str], cuts: Cuts | None = None) -> ParsedMail:
    """Headers and body read by hand when no MIME parser could make sense of the bytes."""
    try:
        text = decode_text(data, None)
        head, _, body = text.partition("\n\n")
        if not re.match(r"[!-9;-~]+:", head):
            head, body = "", text  # no header at the top: it is all body
        limit = (cuts or Cuts(LimitsConfig())).limits.max_body_chars
        if len(body) > limit:
            body = body[:limit]
            if cuts is not None:
                cuts.body_cut(f"the text of the mail is longer than {limit:,} characters",
                              "max_body_chars")
        fields: list[tuple[str, list[str]]] = []  # (name, value lines), continuations joined
        for line in head.split("\n"):
            if line[:1] in (" ", "\t") and fields:
                fields[-1][1].append(line.strip())
                continue
            name, sep, value = line.partition(":")
            if sep and name.strip() and " " not in name.strip():
                fields.append((name.strip().lower(), [value.strip()]))
        headers: dict[str, list[str]] = {}
        for name, lines in fields:
            headers.setdefault(name, []).append(" ".join(lines))
        raw_from = headers.get("from", [])
        decoded = {k: [decode_header_text(v) for v in vs] for k, vs in headers.items()}
        return _parsed(decoded, raw_from, body, "", (), defects, len(data))
    except Exception as exc:  # pragma: no cover - belt and braces
        defects.append(f"unreadable ({type(exc).__name__})")
        return ParsedMail("", None, (), None, (), {}, "", "", (), tuple(defects), len(data))


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8", "surrogateescape")
    return bytes(data)
