"""Who gets which answer: turns the decisions on one mail into planned messages.

Pure: no store, no templates. The pipeline renders and queues what this plans. Keys only ever
appear in a message addressed to the registered contact of their serial.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Sequence

from mailbot.model import ISSUED, NOT_ELIGIBLE, PENDING, REVIEW, Decision, Extraction
from mailbot.seams import IGNORED, PROCESSED, REVIEW as REVIEW_FOLDER

# Spanish names of the fields, for the customer's "this is missing" answer.
FIELD_LABELS = {
    "company": "Nombre de la empresa / Nombre de la persona física",
    "contact_name": "Nombre del contacto",
    "contact_email": "Correo electrónico del contacto",
    "system": "Tipo de sistema",
    "serial": "Número de serie",
}

SINGLE_OUTCOME_TEMPLATES = {
    NOT_ELIGIBLE: "not_eligible",
    REVIEW: "under_review",
    PENDING: "pending_keys",
}


@dataclass(frozen=True)
class Planned:
    purpose: str  # "reply" (to the sender) or "keys" (to a registered contact)
    template: str
    to: str
    rows: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Plan:
    outcome: str  # one word for the log
    folder: str
    messages: tuple[Planned, ...]
    notes: tuple[str, ...] = ()


def mask_email(address: str) -> str:
    """r*******@e**************.com.mx: enough to recognise, not enough to harvest."""
    local, _, domain = address.partition("@")
    head, dot, tail = domain.partition(".")
    masked_local = local[:2] + "*" * max(len(local) - 2, 1)
    masked_domain = head[:1] + "*" * max(len(head) - 1, 1)
    return f"{masked_local}@{masked_domain}{dot}{tail}"


def row(decision: Decision, *, show_key: bool, requester: str | None) -> dict[str, Any]:
    r = decision.request
    redirected = bool(decision.recipient and requester and decision.recipient != requester)
    return {
        "serial": r.serial,
        "system": r.system,
        "company": r.company,
        "contact_name": r.contact_name,
        "outcome": decision.outcome,
        "key": decision.key if show_key and decision.outcome == ISSUED else None,
        "recipient_masked": mask_email(decision.recipient) if decision.recipient else None,
        "redirected": redirected,
        "source": r.source,
        "reasons": [],  # rule reasons are for operators; they may name registered addresses
        "purchase_date": decision.facts.get("purchase_date"),
        "installation": decision.facts.get("installation"),
    }


def problem_rows(extraction: Extraction) -> list[dict[str, Any]]:
    return [{"code": p.code, "field": p.field, "field_label": FIELD_LABELS.get(p.field or ""),
             "source": p.source, "detail": p.detail} for p in extraction.problems]


def plan_answers(extraction: Extraction, decisions: Sequence[Decision]) -> Plan:
    requester = extraction.sender
    if extraction.ignored:
        return Plan("ignored", IGNORED, (), (f"not answered: {extraction.ignored}",))
    if extraction.kind is None:
        return Plan("not_a_request", REVIEW_FOLDER, (),
                    ("no recognised request subject: filed for operators, not answered",))
    assert requester is not None, "a mail without a usable sender is always ignored"
    if not decisions:
        return Plan("incomplete", PROCESSED,
                    (Planned("reply", "missing_data", requester, ()),),
                    ("no complete request: the sender is told what is missing",))

    messages: list[Planned] = []
    # Keys for serials whose registered contact is someone else go to that contact only.
    by_recipient: dict[str, list[Decision]] = {}
    for d in decisions:
        if d.outcome == ISSUED and d.recipient and d.recipient != requester:
            by_recipient.setdefault(d.recipient, []).append(d)
    for recipient, group in by_recipient.items():
        messages.append(Planned("keys", "keys_issued", recipient,
                                tuple(row(d, show_key=True, requester=requester) for d in group)))

    rows = tuple(row(d, show_key=d.recipient == requester, requester=requester)
                 for d in decisions)
    outcomes = {d.outcome for d in decisions}
    redirected = [r for r in rows if r["redirected"] and r["outcome"] == ISSUED]
    if extraction.problems:
        template = "results"
    elif outcomes == {ISSUED}:
        template = "keys_redirected" if len(redirected) == len(rows) else (
            "keys_issued" if not redirected else "results")
    elif len(outcomes) == 1:
        template = SINGLE_OUTCOME_TEMPLATES[outcomes.pop()]
    else:
        template = "results"
    messages.insert(0, Planned("reply", template, requester, rows))
    in_review = any(d.outcome == REVIEW for d in decisions)
    summary = ",".join(sorted({d.outcome for d in decisions}))
    return Plan(summary, REVIEW_FOLDER if in_review else PROCESSED, tuple(messages))


def base_context(*, reference: str, kind_title: str, original_subject: str,
                 requester: str | None, today: dt.date, target_version: str, phone: str,
                 eligible_from: dt.date, bot_name: str, extraction: Extraction,
                 rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The render context every customer template receives (see mailbot.render)."""
    return {
        "reference": reference,
        "kind_title": kind_title,
        "original_subject": original_subject,
        "requester": {"email": requester or "", "name": ""},
        "today": today,
        "target_version": target_version,
        "phone": phone,
        "eligible_from": eligible_from,
        "bot_name": bot_name,
        "rows": list(rows),
        "problems": problem_rows(extraction),
    }
