"""The unlock ledger and the unlock decision in the store's context (seed 000, issue 4 §1).

`mailbot.decide.unlock` decides one request from counts it is given; this module supplies the counts
from the ledger, recognises a request that repeats or continues one already in the ledger, and
records what was decided. It never sends anything: the pipeline renders and queues the replies
in the same transaction.

A repetition never counts as another unlock. An unlock request is a *repetition* when it passes
the identity rules (known serial, same system, sent by the registered contact) and the serial
either
- has an unlock in progress (awaiting documents, or in review): the request continues it; a
  mail carrying documents moves an entry that awaits them to review; or
- had an unlock approved less than ``[security] unlock_repeat_hours`` ago: the confirmation is
  sent again.
A reply to one of our unlock mails (its In-Reply-To/References name our reply or the customer's
first mail, or it quotes the whole reference CLV-000123-K7M2QX) from the serial's registered
contact or from whoever asked continues that request even without the five fields. Only
approved unlocks count towards the 1st/2nd unlock and the cap per period; rejected ones never
count.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mailbot.addresses import addresses_match
from mailbot.business_hours import BusinessCalendar
from mailbot.decide.free_update import REVIEW_SYSTEM_MISMATCH, REVIEW_UNKNOWN_SERIAL
from mailbot.decide.unlock import (
    DOCUMENTS_NEEDED,
    REVIEW_NO_REGISTERED_ADDRESS,
    REVIEW_NO_RULES,
    REVIEW_OTHER_REQUESTER,
    UNLOCKED,
    accepted_documents,
    decide_unlock,
)
from mailbot.model import REVIEW, Decision, Request, RuleHit
from mailbot.ruleset import UNLOCK_AUTO, Ruleset
from mailbot.store import Connection, ledger
from mailbot.store.database import REFERENCE_ALPHABET, REFERENCE_CODE_LENGTH
from mailbot.store.ledger import APPROVED, AWAITING_DOCUMENTS, IN_REVIEW, OPEN
from mailbot.wording import N_

STATUS_OF = {UNLOCKED: APPROVED, DOCUMENTS_NEEDED: AWAITING_DOCUMENTS, REVIEW: IN_REVIEW}

# How a decision relates to the ledger.
NEW = "new"  # a new unlock request: a new entry
CONTINUED = "continued"  # continues an entry awaiting documents
REPEAT_OPEN = "repeat_open"  # repeats an entry in review: acknowledged again
REPEAT_APPROVED = "repeat_approved"  # repeats a recent approved unlock: confirmation again
REDECIDED = "redecided"  # an operator's edit decided the entry again

# A review for one of these reasons says who asks, not which unlock: never a repetition.
IDENTITY_REASONS = frozenset({REVIEW_UNKNOWN_SERIAL, REVIEW_SYSTEM_MISMATCH,
                              REVIEW_NO_REGISTERED_ADDRESS, REVIEW_OTHER_REQUESTER,
                              REVIEW_NO_RULES})


@dataclass(frozen=True)
class UnlockStep:
    """One unlock decision and what it does to the ledger."""

    decision: Decision
    mode: str  # NEW, CONTINUED, REPEAT_OPEN, REPEAT_APPROVED or REDECIDED
    entry: Any | None  # the ledger row continued, repeated or redecided
    documents: tuple[str, ...]  # accepted documents this mail brought


def find_continuation(conn: Connection, *, sender: str, references: Sequence[str],
                      texts: Iterable[str], prefix: str) -> Any | None:
    """The open ledger entry a customer's mail answers, or None.

    The mail answers an entry when it is in the entry's thread (its In-Reply-To/References name
    one of our replies or an earlier mail that touched the entry, or its subject or body quotes
    the whole reference, ``CLV-000123-K7M2QX``, of such a mail) and its sender is the
    registered contact of the entry's serial or whoever opened the entry. A continuation is
    answered with the entry's serial, system and names, and neither a reference nor a
    Message-ID proves who writes: anyone else's mail is a new mail.
    """
    refs = [r for r in dict.fromkeys(references) if r][:50]
    quoted = sorted(quoted_references(texts, prefix))[:50]
    for entry in ledger.open_entries_touched_by(conn, message_ids=refs, references=quoted):
        if any(contact and addresses_match(contact, sender)
               for contact in ledger.entry_contacts(conn, entry)):
            return entry
    return None


def quoted_references(texts: Iterable[str], prefix: str) -> set[str]:
    """Our whole references quoted in `texts`, as the store keeps them (the number alone, as
    in ``CLV-000123``, is no reference: numbers are sequential)."""
    pattern = re.compile(rf"\b{re.escape(prefix)}-(\d{{6,}})-([{REFERENCE_ALPHABET}]"
                         rf"{{{REFERENCE_CODE_LENGTH}}})\b", re.IGNORECASE)
    return {f"{prefix}-{number}-{code.upper()}"
            for text in texts for number, code in pattern.findall(text or "")}


# --- deciding ----------------------------------------------------------------------------------

def decide(conn: Connection, request: Request, *, requester: str | None, licence: Any | None,
           documents: Sequence[str], received_at: dt.datetime, now: dt.datetime, rules: Ruleset,
           calendar: BusinessCalendar, repeat_hours: int, continues: Any | None = None,
           own_entry: Any | None = None) -> UnlockStep:
    """Decide one unlock request against the ledger.

    `continues`: the entry this mail answers (`find_continuation`), preferred over any other
    open entry of the serial. `own_entry`: the entry an operator's edit decides again; it is
    not counted and the request is never a repetition of it.
    """
    exclude = own_entry.id if own_entry is not None else None
    period = rules.unlock.period_days if rules.unlock else 365
    previous, in_period = ledger.counts(conn, request.serial, now=now, period_days=period,
                                 exclude=exclude)
    decision = decide_unlock(request, requester=requester, licence=licence,
                             previous_unlocks=previous, unlocks_in_period=in_period,
                             documents=documents, received_at=received_at, rules=rules,
                             calendar=calendar)
    accepted = accepted_documents(documents, rules.unlock) if rules.unlock else ()
    ignored = [d for d in documents if d not in accepted]
    decision = replace(decision, facts={**decision.facts, "ignored_documents": ignored})
    if own_entry is not None:
        return UnlockStep(decision, REDECIDED, own_entry, accepted)
    if decision.outcome == REVIEW and decision.facts.get("review_reason") in IDENTITY_REASONS:
        return UnlockStep(decision, NEW, None, accepted)

    identity = tuple(h for h in decision.hits if not h.rule.startswith("unlock.")
                     or h.rule == "unlock.modality")
    current = None
    if continues is not None and continues.serial == request.serial \
            and continues.status in OPEN:
        current = continues
    current = current or ledger.open_entry(conn, request.serial)
    if current is not None:
        ref = ledger.reference_of(conn, current)
        if current.status == AWAITING_DOCUMENTS:
            hit = RuleHit.said("unlock.repeat", N_("continues the unlock request %(ref)s "
                                                   "(waiting for documents): the same unlock, "
                                                   "not counted again"), ref=ref)
            at = next((i for i, h in enumerate(decision.hits) if h.rule == "unlock.count"),
                      len(decision.hits))
            hits = (*decision.hits[:at], hit, *decision.hits[at:])
            return UnlockStep(replace(decision, hits=hits,
                                      facts={**decision.facts, "reference": ref}),
                              CONTINUED, current, accepted)
        facts = {**ledger.stored_facts(current), **_fresh_facts(decision.facts)}
        docs = [*ledger.stored_documents(current), *(d for d in accepted
                                              if d not in ledger.stored_documents(current))]
        facts.update(documents=docs, reference=ref, repeat=True)
        due = facts.get("due_text") or "(sin fecha)"
        if accepted:
            hit = RuleHit.said("unlock.repeat", N_(
                "the unlock request %(ref)s is already in review (due %(due)s); this mail "
                "repeats it; it brings %(documents)s: not counted again"),
                ref=ref, due=due, documents=", ".join(accepted))
        else:
            hit = RuleHit.said("unlock.repeat", N_(
                "the unlock request %(ref)s is already in review (due %(due)s); this mail "
                "repeats it: not counted again"), ref=ref, due=due)
        return UnlockStep(Decision(request, REVIEW, (*identity, hit), recipient=decision.recipient,
                                   facts=facts), REPEAT_OPEN, current, accepted)
    last = ledger.last_approved(conn, request.serial)
    if last is not None and last.decided_at is not None \
            and now - last.decided_at < dt.timedelta(hours=repeat_hours):
        ref = ledger.reference_of(conn, last)
        facts = {**ledger.stored_facts(last), **_fresh_facts(decision.facts), "repeat": True,
                 "reference": ref}
        hit = RuleHit.said("unlock.repeat", N_(
            "%(serial)s was released on %(released)s UTC (%(ref)s), less than %(hours)s h ago "
            "([security] unlock_repeat_hours): this repeats that unlock; the confirmation is "
            "sent again, no new unlock is counted"),
            serial=request.serial, released=f"{last.decided_at:%Y-%m-%d %H:%M}", ref=ref,
            hours=repeat_hours)
        return UnlockStep(Decision(request, UNLOCKED, (*identity, hit),
                                   recipient=decision.recipient, facts=facts),
                          REPEAT_APPROVED, last, accepted)
    return UnlockStep(decision, NEW, None, accepted)


def _fresh_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """Facts that describe the request, not the unlock, so a repetition shows today's."""
    return {k: facts[k] for k in ("identify_help", "document_types", "document_types_text",
                                  "modality", "modality_label", "ignored_documents")
            if k in facts}


# --- writing the ledger ------------------------------------------------------------------------

def record(conn: Connection, step: UnlockStep, *, request_id: int | None, mail_id: int,
           now: dt.datetime, approved_by: str = "rules") -> int:
    """Write what `step` decided; returns the id of the ledger entry it concerns."""
    d = step.decision
    status = STATUS_OF[d.outcome]
    reason = d.hits[-1].reason if d.hits else ""
    facts = _facts_json(d.facts)
    due = _naive_utc(d.facts.get("due_at")) if status == IN_REVIEW else None
    if step.mode == NEW:
        entry_id = ledger.insert(
            conn, serial=d.request.serial, request=request_id, mail=mail_id,
            number=d.facts.get("number"), modality=d.facts.get("modality"), status=status,
            reason=reason, approved_by=approved_by if status == APPROVED else None,
            documents=json.dumps(list(step.documents), ensure_ascii=False), facts=facts,
            due_at=due, created_at=now, decided_at=now if status == APPROVED else None,
            updated_at=now)
        ledger.link(conn, entry_id, mail_id, "asked")
        return entry_id
    assert step.entry is not None
    row = step.entry
    documents = [*ledger.stored_documents(row), *(x for x in step.documents
                                           if x not in ledger.stored_documents(row))]
    values: dict[str, Any] = dict(documents=json.dumps(documents, ensure_ascii=False),
                                  updated_at=now)
    if step.mode in (CONTINUED, REDECIDED):
        values.update(status=status, reason=reason, facts=facts, due_at=due,
                      number=d.facts.get("number", row.number),
                      modality=d.facts.get("modality", row.modality), serial=d.request.serial)
        if status == APPROVED:
            values.update(approved_by=approved_by, decided_at=now)
    elif step.mode == REPEAT_OPEN:
        values["facts"] = _facts_json({k: v for k, v in d.facts.items()
                                       if k not in ("repeat", "reference")})
    ledger.update(conn, row.id, **values)
    if step.mode != REDECIDED:
        ledger.link(conn, row.id, mail_id, "documents" if step.documents else "repeat")
    return row.id


def approve(conn: Connection, entry_id: int, *, operator: str, now: dt.datetime,
            rules: Ruleset, note: str | None = None) -> dict[str, Any]:
    """An operator approves an unlock: it is recorded as the serial's next unlock.

    Returns the facts a confirmation shows (the minutes a release may take come from the
    modality's automatic policy, when it has one).
    """
    row = ledger.entry(conn, entry_id)
    assert row is not None
    previous, _ = ledger.counts(conn, row.serial, now=now, period_days=1, exclude=row.id)
    facts = ledger.stored_facts(row)
    facts.update(number=previous + 1, minutes_text=release_minutes_text(rules, row.modality),
                 approved_by=operator)
    reason = f"approved by {operator}" + (f": {note}" if note else "")
    ledger.update(
        conn, row.id, status=APPROVED, number=previous + 1, approved_by=operator, reason=reason,
        facts=_facts_json(facts), due_at=None, decided_at=now, updated_at=now)
    return facts


def reject(conn: Connection, entry_id: int, *, operator: str, now: dt.datetime,
           note: str) -> None:
    ledger.update(conn, entry_id, status=ledger.REJECTED, reason=f"rejected by {operator}: {note}",
                  due_at=None, decided_at=now, updated_at=now)


def release_minutes_text(rules: Ruleset, modality: str | None) -> str:
    """How long a release takes, as the automatic policy of `modality` words it."""
    unlock = rules.unlock
    if unlock is not None:
        candidates = [unlock.modalities[modality]] if modality in unlock.modalities else []
        candidates += list(unlock.modalities.values())
        for m in candidates:
            for policy in m.policies:
                if policy.action == UNLOCK_AUTO and policy.max_minutes:
                    if policy.min_minutes == policy.max_minutes:
                        return f"inmediato o puede demorar hasta {policy.max_minutes} minutos"
                    return (f"inmediato o puede demorar de {policy.min_minutes} a "
                            f"{policy.max_minutes} minutos")
    return "inmediato o puede demorar unos minutos"


def _facts_json(facts: dict[str, Any]) -> str:
    return json.dumps(dict(facts), ensure_ascii=False, default=str)


def _naive_utc(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    if isinstance(value, str):
        try:
            return _naive_utc(dt.datetime.fromisoformat(value))
        except ValueError:
            return None
    return None
