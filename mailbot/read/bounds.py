"""Cutting one mail down to the [limits] before the parsers and decoders see it.

Every step of reading costs time in proportion to what it is given, and some of them more: the
email package's header parser and mail-parser spent 4 s on a Subject of 100,000 encoded-words
and minutes on a From of 500,000 mailboxes; a 21 MB base64 body of junk took 1.4 GB in
regular-expression matches. So the header block and each header field are cut first, text parts
are cut before they are decoded, and base64 is decoded with `bytes.translate` (linear, no list of
matches). `Cuts` carries what is left of the limits through one mail and the problems that say
what was left unread.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import re
from dataclasses import dataclass, field

from mailbot.config import LimitsConfig
from mailbot.model import Problem

# A header line as the email package's feedparser sees one; any other line ends the header.
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_BLANK_LINE = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r(?!\n))")  # CRLF is one break
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_NOT_BASE64 = bytes(b for b in range(256) if b not in _BASE64_ALPHABET)
_WHITESPACE = b" \t\r\n\x0b\x0c"


@dataclass
class Cuts:
    """What is left of the body limits while one mail is walked, and the problems of each cut."""

    limits: LimitsConfig
    body_chars: int = 0
    html_bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    header_cut: set[str] = field(default_factory=set)  # header names cut or dropped
    header_dropped: bool = False  # whole fields left out: a second From may be among them
    body_start: int = 0  # where the body begins in the (bounded) bytes

    def __post_init__(self) -> None:
        self.body_chars = self.limits.max_body_chars
        self.html_bytes = self.limits.max_html_bytes

    def body_cut(self, what: str, limit: str) -> None:
        detail = (f"{what}, so only the first part was read ([limits] {limit}); write the "
                  f"request at the top of the mail, or send it in a shorter mail")
        if not any(p.detail == detail for p in self.problems):
            self.problems.append(Problem("body_too_large", detail, source="body"))


def bound_header(data: bytes, cuts: Cuts) -> bytes:
    """The bytes with their header block cut to the limits, before any parser reads them.

    The header ends where the email package ends it (a blank line, or a line that is no
    header line). A field over max_header_field_bytes keeps its beginning (so a cut
    Auto-Submitted still says what it is); fields past max_header_bytes are left out. Cheap
    when nothing is over: one pass over the header lines, and the bytes are returned as they are.
    """
    limits = cuts.limits
    fields: list[list[int]] = []  # [start, end] of each field, continuation lines included
    pos, body, size = 0, len(data), len(data)
    rest = size  # where header lines start that were not looked at one by one
    while pos < size:
        if pos > limits.max_header_bytes:
            # Far too long already: the rest, up to the first blank line, is left out unread.
            blank = _BLANK_LINE.search(data, pos - 1)
            body, rest = (blank.end() if blank else size), pos
            break
        if data.startswith((b"\r\n", b"\n", b"\r"), pos):
            body = _LINE_BREAK.match(data, pos).end()  # type: ignore[union-attr]
            break
        if not _HEADER_LINE.match(data, pos):
            body = pos
            break
        line_break = _LINE_BREAK.search(data, pos)
        end = line_break.end() if line_break else size
        if data[pos] in b" \t" and fields:
            fields[-1][1] = end
        else:
            fields.append([pos, end])
        pos = end
    if body - (fields[0][0] if fields else 0) <= limits.max_header_bytes and all(
            end - start <= limits.max_header_field_bytes for start, end in fields):
        cuts.body_start = body
        return data
    kept: list[bytes] = []
    total = 0
    for start, end in fields:
        name = data[start:start + 80].split(b":", 1)[0].decode("ascii", "replace").strip()
        piece = data[start:end]
        if len(piece) > limits.max_header_field_bytes:
            piece = cut_field(piece, limits.max_header_field_bytes)
            cuts.header_cut.add(name.lower())
            cuts.problems.append(Problem(
                "header_too_large",
                f"the {name} header is longer than the {limits.max_header_field_bytes:,} "
                f"bytes allowed ([limits] max_header_field_bytes); only its beginning was read",
                source="message"))
        if total + len(piece) > limits.max_header_bytes:
            rest = start
            break
        kept.append(piece)
        total += len(piece)
    if rest < body:
        cuts.header_dropped = True
        cuts.problems.append(Problem(
            "header_too_large",
            f"the header block is {body - fields[0][0]:,} bytes, more than the "
            f"{limits.max_header_bytes:,} allowed ([limits] max_header_bytes); the header "
            f"fields after the first {total:,} bytes were not read", source="message"))
    head = b"".join(kept) + b"\r\n"
    cuts.body_start = len(head)
    return head + data[body:]


def bound_parts(data: bytes, cuts: Cuts) -> bytes:
    """The bytes cut before the boundary line that opens part max_mime_parts + 1.

    The email package and mail-parser spend about 0.2 ms on every MIME part, so 50,000 tiny
    parts took 10 s. Parts are counted as the lines that begin with "--" (every boundary line
    does), in C; a text with more such lines than that loses its end, and says so.
    """
    limit = cuts.limits.max_mime_parts
    if data.count(b"\n--") <= limit:
        return data
    pos = 0
    for _ in range(limit + 1):
        pos = data.find(b"\n--", pos) + 1
    cuts.problems.append(Problem(
        "too_many_parts",
        f"the mail has more than {limit:,} MIME parts ([limits] max_mime_parts); the parts "
        f"after them were not read", source="message"))
    return data[:pos]


def bound_single_part(data: bytes, cuts: Cuts) -> bytes:
    """A mail that is one text part, with its body cut to what the body limits can use.

    The email package reads a body line by line and mail-parser decodes it once more, which
    made a 25 MB text body cost 1-2 s and 290 MB before a single character was used. Only a
    text part that is the whole mail is cut (a multipart's parts cannot be cut without parsing
    them); the encoded length allows for base64 (4 characters for 3 bytes, plus line breaks)
    and quoted-printable (up to 3 characters a byte).
    """
    limits = cuts.limits
    body = len(data) - cuts.body_start
    if body <= min(4 * limits.max_body_chars, limits.max_html_bytes):
        return data  # nothing a text body could need to lose (the usual case: no parsing)
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        data[:cuts.body_start])
    ctype = head.get_content_type()
    if ctype not in ("text/plain", "text/html") or head.get_filename() \
            or head.get_content_disposition() == "attachment":
        return data
    limit = 4 * limits.max_body_chars if ctype == "text/plain" else limits.max_html_bytes
    encoding = str(head.get("content-transfer-encoding", "")).strip().lower()
    encoded = limit * {"base64": 2, "quoted-printable": 3}.get(encoding, 1)
    if body <= encoded:
        return data
    end = cuts.body_start + encoded
    line_end = data.rfind(b"\n", cuts.body_start, end)
    what = ("the text of the mail is longer than " f"{limits.max_body_chars:,} characters"
            if ctype == "text/plain" else
            f"the HTML of the mail is larger than {limits.max_html_bytes:,} bytes")
    cuts.body_cut(what, "max_body_chars" if ctype == "text/plain" else "max_html_bytes")
    return data[:line_end + 1 if line_end > cuts.body_start else end]


def cut_field(piece: bytes, limit: int) -> bytes:
    """The first `limit` bytes of a header field, at a fold when there is one near the end."""
    piece = piece[:limit]
    fold = max(piece.rfind(b"\n "), piece.rfind(b"\n\t"))
    if fold > limit // 2:
        piece = piece[:fold]
    return piece.rstrip(b"\r\n") + b"\r\n"


def cut_text(data: bytes, limit: int) -> bytes:
    """At most `limit` bytes of text: at a line break near the end, else never inside a UTF-8
    character (a broken last character would make the whole text look like another charset)."""
    if len(data) <= limit:
        return data
    data = data[:limit]
    line_end = data.rfind(b"\n", max(0, limit - 4096))
    if line_end >= 0:
        return data[:line_end + 1]
    end = len(data)
    while end > 0 and end > limit - 4 and data[end - 1] & 0xC0 == 0x80:
        end -= 1  # back over UTF-8 continuation bytes...
    if end > 0 and data[end - 1] >= 0xC0:
        end -= 1  # ...and the lead byte of the character they belong to
    return data[:end]


def lenient_base64(raw: bytes, notes: list[str] | None = None, where: str = "") -> bytes:
    """Decode base64 the way mail clients do: skip junk characters, repair the padding.

    Linear and without a list of matches (bytes.translate), however much junk there is.
    """
    compact = raw.translate(None, _WHITESPACE)
    data = compact.translate(None, _NOT_BASE64)
    if notes is not None and (len(data) != len(compact) or len(compact) % 4):
        notes.append(f"{where}: invalid base64 (stray characters or padding); decoded leniently")
    data = data.split(b"=", 1)[0]  # padding ends the data
    if len(data) % 4 == 1:
        data = data[:-1]  # a lone trailing character carries no whole byte
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return b""
