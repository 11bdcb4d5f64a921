"""Outcomes and request kinds in the operator's words, for every page that shows one.

The store keeps codes (`issued`, `not_eligible`, `free_update`: mailbot.model and
mailbot.ops.choices), which the CLI prints and `log --outcome` takes; the console is Spanish
and shows each code as words (English msgids the catalogue translates). A mail's outcome is its
requests' outcomes joined by commas: each is put in words. A code with no entry here is shown
as it is, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable

from mailbot.model import (
    DOCUMENTS_NEEDED,
    ISSUED,
    NOT_ELIGIBLE,
    PENDING,
    REVIEW,
    REVIEW_DOCUMENTS,
    UNLOCKED,
)
from mailbot.ops.choices import CLOSED_UNANSWERED, REJECTED
from mailbot.wording import N_

OUTCOMES: dict[str, str] = {
    ISSUED: N_("key issued"),
    NOT_ELIGIBLE: N_("not eligible"),
    REVIEW: N_("for review"),
    PENDING: N_("waiting for keys"),
    UNLOCKED: N_("unlocked"),
    DOCUMENTS_NEEDED: N_("documents asked for"),
    REVIEW_DOCUMENTS: N_("documents to check"),
    REJECTED: N_("rejected by an operator"),
    CLOSED_UNANSWERED: N_("closed without an answer"),
    "incomplete": N_("data missing"),
    "ignored": N_("ignored"),
    "not_a_request": N_("not a request"),
    "sender_check": N_("sender to check"),
    "throttled": N_("too many requests"),
    "too_large": N_("too large"),
    "duplicate": N_("duplicate"),
    "quarantined": N_("quarantined"),
}

KINDS: dict[str, str] = {
    "free_update": N_("free update"),
    "unlock": N_("unlock"),
}


def outcome_words(gettext: Callable[[str], str]) -> Callable[[str | None], str]:
    """The `outcome` filter: "issued,review" -> "clave emitida, para revisión"."""
    def words(code: str | None) -> str:
        if not code:
            return ""
        return ", ".join(gettext(OUTCOMES[c]) if c in OUTCOMES else c
                         for c in (part.strip() for part in code.split(",")) if c)
    return words


def kind_words(gettext: Callable[[str], str]) -> Callable[[str | None], str]:
    """The `kind` filter: "free_update" -> "actualización sin costo"."""
    def words(code: str | None) -> str:
        if not code:
            return ""
        return gettext(KINDS[code]) if code in KINDS else code
    return words
