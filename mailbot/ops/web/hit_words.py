"""A rule hit's reason in the console's language, for every page (and JSON twin) that shows one.

The store keeps each hit as {rule, reason} (the English the CLI prints) and, when the rule wrote
its reason as words (RuleHit.said, mailbot.wording), the template and its values too. The
console looks the template up in its catalogue and fills it with the stored values; a hit
stored before hits kept their template, or one whose reason is read/'s own note, is shown as
its stored reason, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

HitReason = Callable[[Mapping[str, Any]], str]


def hit_reason(gettext: Callable[[str], str]) -> HitReason:
    """The `hit_reason` filter: a stored hit -> its reason through the catalogue."""
    def reason(hit: Mapping[str, Any]) -> str:
        stored = str(hit.get("reason") or "")
        template = hit.get("template")
        if not template:
            return stored
        values = hit.get("values") or {}
        try:  # always filled, so a placeholder whose value is missing is caught, not shown
            return gettext(str(template)) % dict(values)
        except (KeyError, TypeError, ValueError, AttributeError):  # a row edited by hand
            return stored
    return reason


def shown_hits(hits: Iterable[Mapping[str, Any]], said: HitReason) -> list[dict[str, str]]:
    """Stored hits as the JSON twins give them: rule, `reason` (English) and `reason_es`."""
    return [{"rule": str(h.get("rule") or ""), "reason": str(h.get("reason") or ""),
             "reason_es": said(h)} for h in hits]


def task_reason(reason_text: str, snapshot: Mapping[str, Any], said: HitReason) -> str:
    """A review task's `reason_text` (the English reason of the hit that sent it to review) in
    the console's language: the hit of the task's snapshot that gave it, else the text."""
    hits = snapshot.get("hits") or snapshot.get("sender_checks") or []
    for hit in reversed(hits):
        if isinstance(hit, Mapping) and hit.get("reason") == reason_text:
            return said(hit)
    return reason_text
