"""Who gets which answer: turns the decisions on one mail into planned messages.

Pure: no store, no templates. The pipeline renders and queues what this plans. Keys only ever
appear in a message addressed to the registered contact of their serial.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailbot.addresses import addresses_match
from mailbot.answer.filters import mask_email
from mailbot.model import (
    DOCUMENTS_NEEDED,
    IGNORED,
    ISSUED,
    NOT_ELIGIBLE,
    PENDING,
    PROCESSED,
    REVIEW,
    REVIEW_DOCUMENTS,
    REVIEW_FOLDER,
    UNLOCKED,
    Decision,
    Extraction,
)
from mailbot.ruleset import Answers

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
    extra: Mapping[str, Any] = field(default_factory=dict)  # more context, e.g. `unlock`
    results_sheet: bool = False  # attach the results spreadsheet of `rows`


@dataclass(frozen=True)
class Plan:
    outcome: str  # one word for the log
    folder: str
    messages: tuple[Planned, ...]
    notes: tuple[str, ...] = ()


def row(decision: Decision, *, show_key: bool, requester: str | None) -> dict[str, Any]:
    r = decision.request
    redirected = bool(decision.recipient and requester
                      and not addresses_match(decision.recipient, requester))
    return {
        "serial": r.serial,
        "system": r.system,
        "company": r.company,
        "contact_name": r.contact_name,
        "contact_email": r.contact_email,
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


def plan_answers(extraction: Extraction, decisions: Sequence[Decision], *,
                 answers: Answers | None = None) -> Plan:
    """The messages that answer one mail. With `answers` (the rules' [answers]), a message about
    more than one request carries the results spreadsheet, and one about more than
    `answers.rows_in_text` requests is the summary (`results_summary`) instead of one block
    per row, so no answer grows with the rows past what a reader (and the renderer's output
    cap) can take."""
    plan = _plan_answers(extraction, decisions)
    if answers is None:
        return plan
    return dataclasses.replace(plan, messages=tuple(
        with_results(m, answers) for m in plan.messages))


def with_results(planned: Planned, answers: Answers) -> Planned:
    """`planned` with the results spreadsheet when it has rows, as a summary when it has many."""
    if len(planned.rows) <= 1:
        return planned
    if len(planned.rows) <= answers.rows_in_text:
        return dataclasses.replace(planned, results_sheet=True)
    return dataclasses.replace(planned, template=SUMMARY_TEMPLATE, results_sheet=True,
                               extra={**planned.extra, "summary": summary(planned, answers)})


SUMMARY_TEMPLATE = "results_summary"
SUMMARY_ORDER = (ISSUED, NOT_ELIGIBLE, REVIEW, PENDING)


def summary(planned: Planned, answers: Answers) -> dict[str, Any]:
    """The `summary` of a many-row answer (see mailbot.answer.render): counts, not rows."""
    rows = planned.rows
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    order = [o for o in SUMMARY_ORDER if o in counts] + sorted(set(counts) - set(SUMMARY_ORDER))
    installing = [r for r in rows if r.get("installation") and not r["redirected"]]
    supported = sum(1 for r in installing if r["installation"].get("has_support"))
    return {
        "total": len(rows),
        "outcomes": [{"outcome": o, "label": answers.outcomes.get(o, o), "count": counts[o]}
                     for o in order],
        "counts": {o: counts.get(o, 0) for o in SUMMARY_ORDER},
        "keys": sum(1 for r in rows if r.get("key")),
        "redirected": sum(1 for r in rows if r["outcome"] == ISSUED and r["redirected"]
                          and not r.get("key")),
        "to_registered_contact": planned.purpose == "keys",
        "with_support": supported,
        "without_support": len(installing) - supported,
        "installation": installing[0]["installation"] if installing else None,
    }


def _plan_answers(extraction: Extraction, decisions: Sequence[Decision]) -> Plan:
    requester = extraction.sender
    if extraction.ignored:
        return Plan("ignored", IGNORED, (), (f"not answered: {extraction.ignored}",))
    if extraction.kind is None:
        return Plan("not_a_request", REVIEW_FOLDER, (),
                    ("no recognised request subject: filed for operators, not answered",))
    assert requester is not None, "a mail without a usable sender is always ignored"
    if extraction.kind == "unlock":
        return plan_unlock_answers(extraction, decisions)
    if not decisions:
        return Plan("incomplete", PROCESSED,
                    (Planned("reply", "missing_data", requester, ()),),
                    ("no complete request: the sender is told what is missing",))

    messages: list[Planned] = []
    # Keys for serials whose registered contact is someone else go to that contact only.
    by_recipient: dict[str, list[Decision]] = {}
    for d in decisions:
        if d.outcome == ISSUED and d.recipient and not addresses_match(d.recipient, requester):
            by_recipient.setdefault(d.recipient, []).append(d)
    for recipient, group in by_recipient.items():
        messages.append(Planned("keys", "keys_issued", recipient,
                                tuple(row(d, show_key=True, requester=requester) for d in group)))

    rows = tuple(row(d, show_key=bool(d.recipient and addresses_match(d.recipient, requester)),
                     requester=requester)
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


# --- unlocks (seed 000) ---------------------------------------------------------------------

# Every key an unlock template may read (`unlock.*`); absent facts are None, so templates can
# test them (templates run with StrictUndefined).
UNLOCK_FACTS = ("modality", "modality_label", "number", "number_text", "minutes_text",
                "hours_text", "window_text", "window_start_text", "window_end_text", "due_text",
                "documents_required", "document_types_text", "review_reason", "repeat",
                "approved_by")


def unlock_context(decision: Decision) -> dict[str, Any]:
    """The `unlock` dict of an unlock reply (see mailbot.answer.render for the contract)."""
    facts = decision.facts
    ctx: dict[str, Any] = {key: facts.get(key) for key in UNLOCK_FACTS}
    ctx.update(serial=decision.request.serial, system=decision.request.system,
               outcome=decision.outcome, repeat=bool(facts.get("repeat")),
               documents=list(facts.get("documents") or ()),
               ignored_documents=list(facts.get("ignored_documents") or ()))
    return ctx


def unlock_template(decision: Decision) -> str:
    if decision.outcome == UNLOCKED:
        return "unlocked"
    if decision.outcome == DOCUMENTS_NEEDED:
        return "documents_needed"
    if decision.facts.get("review_reason") == REVIEW_DOCUMENTS:
        return "documents_received"
    return "unlock_review"


def plan_unlock_answers(extraction: Extraction, decisions: Sequence[Decision]) -> Plan:
    """One reply per unlock request, to the requester.

    The rules approve or ask for documents only when the requester is the registered contact,
    so the sender is the right recipient; anyone else's request is in review, and that reply
    says only that it is being reviewed and when.
    """
    requester = extraction.sender
    assert requester is not None
    if not decisions:
        return Plan("incomplete", PROCESSED,
                    (Planned("reply", "unlock_missing_data", requester, ()),),
                    ("no complete request: the sender is told what is missing",))
    messages = []
    for d in decisions:
        extra: dict[str, Any] = {"unlock": unlock_context(d)}
        if d.facts.get("reference"):
            extra["reference"] = d.facts["reference"]  # the request this one continues
        messages.append(Planned("reply", unlock_template(d), requester,
                                (row(d, show_key=False, requester=requester),), extra))
    in_review = any(d.outcome == REVIEW for d in decisions)
    summary = ",".join(sorted({d.outcome for d in decisions}))
    return Plan(summary, REVIEW_FOLDER if in_review else PROCESSED, tuple(messages))


def base_context(*, reference: str, kind_title: str, original_subject: str,
                 requester: str | None, today: dt.date, target_version: str, phone: str,
                 eligible_from: dt.date, bot_name: str, extraction: Extraction,
                 rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The render context every customer template receives (see mailbot.answer.render)."""
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
