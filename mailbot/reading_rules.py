"""rules/reading.toml: how a forward is told from a reply (each client's marker line above a
forwarded mail), which plain-text parts are only stubs for HTML clients, and the wording of the
notes that say how a mail was read. Loaded by mailbot.ruleset like every rules file."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from mailbot.rules_table import Table


@dataclass(frozen=True)
class ForwardMarker:
    """One client's marker line above a forwarded mail (rules/reading.toml [[forwards]])."""

    phrase: str  # folded words of the line, dashes and a trailing colon aside
    client: str
    min_dashes: int = 0


@dataclass(frozen=True)
class ReadingRules:
    """rules/reading.toml: how forwards are told from replies, and the notes that say which."""

    forwards: tuple[ForwardMarker, ...] = ()
    header_block_client: str = "Outlook"
    forward_note: str = "forward ({client}): the forwarded request was read"
    reply_note: str = "reply: the quoted history below it was not read"
    attached_note: str = "forward as attachment ({name}): the attached mail's request was read"
    html_note: str = "the plain text holds no request ({why}); the HTML part was read"
    plain_stubs: tuple[str, ...] = ()


_NOTE_FIELDS = {"forward_note": "client", "attached_note": "name", "html_note": "why"}


def reading_from_table(t: Table) -> ReadingRules:
    t.reject_unknown({"forwards", "header_block_client", "plain_stubs", "reply_note",
                      *_NOTE_FIELDS})
    markers = []
    for entry in t.tables("forwards"):
        entry.reject_unknown({"phrase", "client", "min_dashes"})
        phrase = fold_marker(entry.text("phrase"))
        if not phrase:
            raise entry.fail("phrase", "has no words")
        markers.append(ForwardMarker(phrase, entry.text("client").strip(),
                                     entry.number("min_dashes", default=0)))
    notes = {}
    for key, placeholder in _NOTE_FIELDS.items():
        note = t.text(key)
        if "{" + placeholder + "}" not in note:
            raise t.fail(key, f"must contain {{{placeholder}}}")
        try:
            note.format(**{placeholder: "x"})
        except (KeyError, IndexError, ValueError):
            raise t.fail(key, f"may hold only the placeholder {{{placeholder}}}") from None
        notes[key] = note
    return ReadingRules(
        forwards=tuple(markers),
        header_block_client=t.text("header_block_client").strip(),
        reply_note=t.text("reply_note"),
        plain_stubs=tuple(fold_marker(s) for s in t.texts("plain_stubs", default=[])),
        **notes,
    )


def fold_marker(text: str) -> str:
    """A marker line or phrase as compared: no case, no accents, no dashes or colon around it,
    single spaces ("---------- Mensaje Reenviado ---------" -> "mensaje reenviado")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(plain.strip().strip("-:*_ \t").split())
