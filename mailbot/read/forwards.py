"""Which text of a mail carries the request: forwards told from replies, and the alternative
(plain or HTML) that holds the fields.

A secretary or a reseller forwards the customer's request: the forwarded mail is the request,
and the forwarder's own lines and signature ("Correo: ...", "Tel: ...") must neither swallow
its fields nor replace them, so each forwarded mail is read on its own (`SenderText.parts`).
A reply's quoted history is never read. The two look alike; a forward is told by its marker
line, whose spellings per client are data in rules/reading.toml, and the decision says which
one it was. Some mailers (ERPs, webmail, newsletters) send a text/plain alternative that is
only a stub ("Este mensaje requiere un cliente HTML") or a one-line summary while the HTML
part carries the fields: when the plain text yields no request and the HTML does, the HTML is
read instead, never both.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mailbot.model import ParsedMail
from mailbot.read.own_mail import OwnMarks, SenderText, sender_text
from mailbot.read.text import MarkerReader, html_to_text
from mailbot.reading_rules import ReadingRules, fold_marker

_MAX_MARKER_LINE = 120  # characters: a marker line is short; longer lines are prose


class Block(Protocol):
    """What this module needs of a body block (extract.py's `_BodyBlock`)."""

    @property
    def is_request(self) -> bool: ...

    @property
    def part(self) -> int: ...

    @property
    def complete(self) -> bool: ...


@dataclass(frozen=True)
class Body:
    """The text chosen to read requests from: `own` (what the sender wrote, cut in parts),
    its blocks, and the notes that say why (a forward, a reply, the HTML alternative)."""

    own: SenderText
    blocks: list
    notes: tuple[str, ...]


def marker_reader(rules: ReadingRules) -> MarkerReader:
    """The rules' forward markers as a function of one line: the client it names, or None."""
    return _marker_reader(rules)


@functools.lru_cache(maxsize=16)
def _marker_reader(rules: ReadingRules) -> MarkerReader:
    by_phrase: dict[str, list[tuple[int, str]]] = {}
    for marker in rules.forwards:
        by_phrase.setdefault(marker.phrase, []).append((marker.min_dashes, marker.client))

    def read(line: str) -> str | None:
        line = line.strip()
        if not line or len(line) > _MAX_MARKER_LINE:
            return None
        dashes = len(line) - len(line.lstrip("-"))
        if dashes < 2 and not line.endswith(":"):
            return None  # "Mensaje reenviado" alone is a sentence, not a marker
        for min_dashes, client in by_phrase.get(fold_marker(line), ()):
            if dashes >= min_dashes:
                return client
        return None

    return read


def choose_body(parsed: ParsedMail, marks: OwnMarks, rules: ReadingRules, *, forwarded: bool,
                is_request: bool, read_blocks: Callable[[SenderText], list]) -> Body:
    """Read the body as the sender meant it (see the module docstring).

    `read_blocks` turns a `SenderText` into blocks (extract.py's reader); `is_request` says
    the subject names a request, the only case where the HTML alternative is tried.
    """
    markers = marker_reader(rules)
    own = sender_text(parsed.text, marks, forwarded=forwarded, markers=markers)
    blocks = read_blocks(own)
    notes: list[str] = []
    if is_request and parsed.html.strip() and not _complete(blocks):
        alternative = sender_text(html_to_text(parsed.html), marks, forwarded=forwarded,
                                  markers=markers)
        alternative_blocks = read_blocks(alternative)
        if _requests(alternative_blocks) > _requests(blocks) and _complete(alternative_blocks):
            why = ("es un aviso para clientes HTML" if is_stub(parsed.text, rules)
                   else "es un resumen")
            notes.append(rules.html_note.format(why=why))
            own, blocks = alternative, alternative_blocks
    notes.extend(_how_read(own, blocks, rules))
    return Body(own, blocks, tuple(notes))


def is_stub(text: str, rules: ReadingRules) -> bool:
    """Whether a plain text is one of the rules' "needs an HTML client" stubs."""
    folded = _fold(text[:2000])
    return any(stub in folded for stub in rules.plain_stubs)


def _how_read(own: SenderText, blocks: Sequence[Block], rules: ReadingRules) -> list[str]:
    """The note that tells a forward from a reply, for the operator."""
    forwarded = {b.part for b in blocks if b.is_request and b.part > 0}
    notes = []
    for number in sorted(forwarded):
        part = own.parts[number] if number < len(own.parts) else None
        if part is None:
            continue
        client = part.client or (rules.header_block_client if part.how == "header_block"
                                 else "?")
        notes.append(rules.forward_note.format(client=client))
    if own.history:
        notes.append(rules.reply_note)
    return list(dict.fromkeys(notes))


def _requests(blocks: Sequence[Block]) -> int:
    return sum(1 for b in blocks if b.is_request)


def _complete(blocks: Sequence[Block]) -> bool:
    """Whether some block has both a system and a serial: the plain text surely holds the
    request, so the HTML alternative is not read (the common case costs nothing more)."""
    return any(b.complete for b in blocks)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).split())
