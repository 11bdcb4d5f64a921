"""Unlock decisions (seed 000): a chain of small named rules, like the free-update chain.

The modality comes from the licence registry and the unlock number from the unlock ledger; the
policy for each (modality, number) pair is data in `rules/unlock.toml`. Every rule that ran leaves
a RuleHit, so the log and the review queue show exactly why a request got its answer.

This module decides only: it reads no store, sends nothing and never looks at the clock. The
caller passes the ledger counts, the attachments and the moment the mail was received.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Protocol

from mailbot.addresses import addresses_match
from mailbot.business_hours import BusinessCalendar, calendar_from_mapping
from mailbot.decide.free_update import registry_knows_serial, registry_system_matches
from mailbot.errors import RulesError
from mailbot.model import (
    DOCUMENTS_NEEDED,
    REVIEW,
    REVIEW_DOCUMENTS,
    UNLOCKED,
    Decision,
    Request,
    RuleHit,
)
from mailbot.ruleset import (
    UNLOCK_AUTO,
    UNLOCK_DOCUMENTS,
    UNLOCK_REVIEW,
    Ruleset,
    Unlock,
    UnlockModality,
    UnlockPolicy,
)
from mailbot.wording import N_

# Outcomes of an unlock decision, besides model.REVIEW (due time in the facts).
UNLOCK_OUTCOMES: tuple[str, ...] = (UNLOCKED, REVIEW, DOCUMENTS_NEEDED)

# Why a request went to review, for the queue and for templates (`facts["review_reason"]`).
REVIEW_NO_REGISTERED_ADDRESS = "no_registered_address"
REVIEW_OTHER_REQUESTER = "other_requester"
REVIEW_UNKNOWN_MODALITY = "unknown_modality"
REVIEW_BEYOND_CONFIGURED = "beyond_configured"
REVIEW_RATE_CAP = "rate_cap"
REVIEW_POLICY = "policy"  # the configured policy is a review (2nd subscription unlock)
REVIEW_NO_RULES = "no_unlock_rules"

_ORDINALS = {1: "primer", 2: "segundo", 3: "tercer", 4: "cuarto", 5: "quinto", 6: "sexto",
             7: "séptimo", 8: "octavo", 9: "noveno", 10: "décimo"}


class UnlockLicence(Protocol):
    """The registry row, as the unlock rules see it (a `LicenceRecord` fits)."""

    serial: str
    system: str
    contact_email: str | None
    modality: str


@dataclass
class UnlockFacts:
    """What the unlock rules of one request know; rules add to `hits` and `facts`."""

    request: Request
    requester: str | None
    licence: UnlockLicence | None
    previous_unlocks: int
    unlocks_in_period: int
    documents: tuple[str, ...]
    ignored_documents: tuple[str, ...]
    received_at: dt.datetime
    unlock: Unlock
    calendar: BusinessCalendar
    hits: list[RuleHit] = field(default_factory=list)
    recipient: str | None = None
    modality: UnlockModality | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def hit(self, rule: str, template: str, **values: str | int | float) -> None:
        """A rule fired: its reason as an N_() template and values (the console's Spanish)."""
        self.hits.append(RuleHit.said(rule, template, **values))

    def review(self, why: str) -> str:
        """End the chain in review, due `review_due_hours` business hours from receipt."""
        self.facts["review_reason"] = why
        if "due_at" not in self.facts:
            due = self.calendar.add_business_hours(self.received_at, self.unlock.review_due_hours)
            self.facts["due_at"] = due
            self.facts["due_text"] = self.calendar.describe(due)
        return REVIEW


# A rule returns an outcome to end the chain, or None to go on.
UnlockRule = Callable[[UnlockFacts], str | None]


def requester_is_registered_contact(f: UnlockFacts) -> str | None:
    """Only the registered contact may ask for an unlock; anyone else goes to review.

    A key can be "redirected": it is mailed to the registered address whoever asked, and is
    useless to a stranger who never sees it. An unlock cannot: releasing the serial frees an
    activation that whoever asked can then use with a new activation code on their own
    computer. So a request from any other address is not answered by the rules; an operator
    confirms it with the registered contact first. The answer, when there is one, still goes
    only to the registered contact (`Decision.recipient`).
    """
    assert f.licence is not None
    registered = (f.licence.contact_email or "").strip().lower()
    if not registered:
        f.hit("registry.address", N_("the registry has no contact address for %(serial)s; "
                                     "unlocks are granted only to a registered contact"),
              serial=f.request.serial)
        return f.review(REVIEW_NO_REGISTERED_ADDRESS)
    f.recipient = registered
    if not f.requester:
        f.hit("registry.address", N_("the sender (unknown) is not the registered contact "
                                     "%(registered)s; an unlock cannot be redirected to the "
                                     "registered address the way keys are, so an operator "
                                     "must confirm it"), registered=registered)
        return f.review(REVIEW_OTHER_REQUESTER)
    if not addresses_match(f.requester, registered):  # after IDNA normalisation
        f.hit("registry.address", N_("the sender %(sender)s is not the registered contact "
                                     "%(registered)s; an unlock cannot be redirected to the "
                                     "registered address the way keys are, so an operator "
                                     "must confirm it"),
              sender=f.requester, registered=registered)
        return f.review(REVIEW_OTHER_REQUESTER)
    f.hit("registry.address", N_("the sender %(sender)s is the registered contact"),
          sender=f.requester)
    return None


def modality_from_registry(f: UnlockFacts) -> str | None:
    assert f.licence is not None
    modality = f.unlock.modalities.get(f.licence.modality)
    f.facts["modality"] = f.licence.modality
    if modality is None:
        f.hit("unlock.modality", N_("the registry gives the modality %(modality)s, which has "
                                    "no unlock policy in the rules; an operator must decide"),
              modality=repr(f.licence.modality))
        return f.review(REVIEW_UNKNOWN_MODALITY)
    f.modality = modality
    f.facts["modality_label"] = modality.label
    f.hit("unlock.modality", N_("the registry gives the modality %(modality)s (%(label)s)"),
          modality=modality.id, label=modality.label)
    return None


def unlock_number(f: UnlockFacts) -> str | None:
    assert f.modality is not None
    number = f.previous_unlocks + 1
    f.facts["number"] = number
    f.facts["number_text"] = _ordinal(number)
    f.facts["previous_unlocks"] = f.previous_unlocks
    configured = len(f.modality.policies)
    if f.modality.policy(number) is None:
        f.hit("unlock.count", N_("this would be unlock %(number)s of %(serial)s (%(before)s "
                                 "before); the rules for %(modality)s go up to unlock "
                                 "%(configured)s, so an operator must decide"),
              number=number, serial=f.request.serial, before=f.previous_unlocks,
              modality=f.modality.id, configured=configured)
        return f.review(REVIEW_BEYOND_CONFIGURED)
    f.hit("unlock.count", N_("unlock %(number)s of %(serial)s (%(before)s before)"),
          number=number, serial=f.request.serial, before=f.previous_unlocks)
    return None


def unlock_rate(f: UnlockFacts) -> str | None:
    cap, days = f.unlock.max_unlocks_per_period, f.unlock.period_days
    f.facts["unlocks_in_period"] = f.unlocks_in_period
    f.facts["max_unlocks_per_period"] = cap
    f.facts["period_days"] = days
    if f.unlocks_in_period >= cap:
        f.hit("unlock.rate", N_("%(serial)s already had %(count)s unlock(s) in the last "
                                "%(days)s days, the cap is %(cap)s; an operator must decide"),
              serial=f.request.serial, count=f.unlocks_in_period, days=days, cap=cap)
        return f.review(REVIEW_RATE_CAP)
    f.hit("unlock.rate", N_("%(count)s unlock(s) in the last %(days)s days, under the cap of "
                            "%(cap)s"), count=f.unlocks_in_period, days=days, cap=cap)
    return None


def unlock_policy(f: UnlockFacts) -> str | None:
    assert f.modality is not None
    number = f.facts["number"]
    policy = f.modality.policy(number)
    assert policy is not None, "unlock.count ends the chain when no policy is configured"
    f.facts["policy"] = policy.action
    which = {"number": number, "modality": f.modality.id}  # "unlock 2 of this X licence"
    if policy.action == UNLOCK_AUTO:
        assert policy.min_minutes is not None and policy.max_minutes is not None
        f.facts["min_minutes"] = policy.min_minutes
        f.facts["max_minutes"] = policy.max_minutes
        f.facts["minutes_text"] = _minutes_text(policy)
        f.hit("unlock.policy", N_("unlock %(number)s of this %(modality)s licence is approved "
                                  "automatically: the serial is released and can be "
                                  "re-activated with a new activation code (CDA); the reply "
                                  "says \"%(minutes)s\""),
              **which, minutes=f.facts["minutes_text"])
        return UNLOCKED
    _hours_facts(f, policy)
    if policy.action == UNLOCK_REVIEW:
        start, end = _window(f, policy)
        f.hit("unlock.policy", N_("unlock %(number)s of this %(modality)s licence goes to "
                                  "review within %(hours)s business hours: due between "
                                  "%(start)s and %(end)s (%(zone)s)"),
              **which, hours=_span(policy, "-"), start=f"{start:%Y-%m-%d %H:%M}",
              end=f"{end:%Y-%m-%d %H:%M}", zone=f.calendar.tz_name)
        return f.review(REVIEW_POLICY)
    assert policy.action == UNLOCK_DOCUMENTS
    f.facts["documents_required"] = f.modality.documents_required
    f.facts["documents"] = f.documents
    ignored = {"ignored": ", ".join(f.ignored_documents),
               "accepted": ", ".join(f.unlock.document_types)} if f.ignored_documents else {}
    if not f.documents:
        f.hit("unlock.policy", N_("unlock %(number)s of this %(modality)s licence needs "
                                  "documentation and none is attached; the reply asks for it, "
                                  "and the customer's reply carrying it continues this request; "
                                  "not accepted as documentation: %(ignored)s (accepted: "
                                  "%(accepted)s)") if ignored else
              N_("unlock %(number)s of this %(modality)s licence needs documentation and none "
                 "is attached; the reply asks for it, and the customer's reply carrying it "
                 "continues this request"), **which, **ignored)
        return DOCUMENTS_NEEDED
    start, end = _window(f, policy)
    f.hit("unlock.policy", N_("unlock %(number)s of this %(modality)s licence needs "
                              "documentation; %(count)s document(s) attached (%(documents)s): an "
                              "operator checks them within %(hours)s business hours of "
                              "receipt, due between %(start)s and %(end)s (%(zone)s); not "
                              "accepted as documentation: %(ignored)s (accepted: %(accepted)s)")
          if ignored else
          N_("unlock %(number)s of this %(modality)s licence needs documentation; %(count)s "
             "document(s) attached (%(documents)s): an operator checks them within %(hours)s "
             "business hours of receipt, due between %(start)s and %(end)s (%(zone)s)"),
          **which, count=len(f.documents), documents=", ".join(f.documents),
          hours=_span(policy, "-"), start=f"{start:%Y-%m-%d %H:%M}",
          end=f"{end:%Y-%m-%d %H:%M}", zone=f.calendar.tz_name, **ignored)
    return f.review(REVIEW_DOCUMENTS)


UNLOCK_CHAIN: tuple[UnlockRule, ...] = (
    registry_knows_serial,
    registry_system_matches,
    requester_is_registered_contact,
    modality_from_registry,
    unlock_number,
    unlock_rate,
    unlock_policy,
)


def calendar_for(rules: Ruleset) -> BusinessCalendar:
    """The business calendar of `rules/unlock.toml`, which every unlock window runs on."""
    if rules.unlock is None:
        raise RulesError(f"{rules.directory / 'unlock.toml'}: missing rules file; unlocks need "
                         "its [business_hours] (copy it from the shipped rules/)")
    return calendar_from_mapping(rules.unlock.business_hours,
                                 f"{rules.directory / 'unlock.toml'}: business_hours")


def accepted_documents(filenames: Iterable[str], unlock: Unlock) -> tuple[str, ...]:
    """The filenames whose extension is one of the accepted document types, in order."""
    return tuple(name for name in filenames if _extension(name) in unlock.document_types)


def decide_unlock(request: Request, *, requester: str | None, licence: UnlockLicence | None,
                  previous_unlocks: int, unlocks_in_period: int, documents: Sequence[str],
                  received_at: dt.datetime, rules: Ruleset,
                  calendar: BusinessCalendar) -> Decision:
    """Decide one unlock request.

    `previous_unlocks`: approved or pending unlocks of this serial in the ledger, not counting
    this same request when it is repeated (or continued by a reply carrying documents), so a
    repetition never counts a second unlock. `unlocks_in_period`: the same, within the
    configured period. `documents`: attachment filenames; those not of an accepted type are
    named in the reasons and not counted. `received_at`: when the mail arrived (aware); every
    window and due time counts business hours from it.
    """
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError(f"received_at {received_at} has no time zone")
    if previous_unlocks < 0 or unlocks_in_period < 0:
        raise ValueError("unlock counts cannot be negative")
    hits = [RuleHit("extract.note", note) for note in request.notes]
    if rules.unlock is None:
        hits.append(RuleHit.said("unlock.rules", N_("no unlock rules are loaded "
                                                    "(rules/unlock.toml is missing); an "
                                                    "operator must decide")))
        return Decision(request=request, outcome=REVIEW, hits=tuple(hits),
                        facts={"review_reason": REVIEW_NO_RULES})
    unlock = rules.unlock
    accepted = accepted_documents(documents, unlock)
    f = UnlockFacts(request=request, requester=requester, licence=licence,
                    previous_unlocks=previous_unlocks, unlocks_in_period=unlocks_in_period,
                    documents=accepted,
                    ignored_documents=tuple(d for d in documents if d not in accepted),
                    received_at=received_at, unlock=unlock, calendar=calendar, hits=hits)
    f.facts.update(
        identify_help=unlock.identify_help,
        document_types=unlock.document_types,
        document_types_text=_either(t.upper() for t in unlock.document_types),
        received_at=received_at,
    )
    outcome = None
    for rule in UNLOCK_CHAIN:
        outcome = rule(f)
        if outcome is not None:
            break
    assert outcome is not None, "the last rule of a chain always decides"
    return Decision(request=request, outcome=outcome, hits=tuple(f.hits), key=None,
                    recipient=f.recipient, facts=dict(f.facts))


# --- helpers --------------------------------------------------------------------------------

def _window(f: UnlockFacts, policy: UnlockPolicy) -> tuple[dt.datetime, dt.datetime]:
    assert policy.min_hours is not None and policy.max_hours is not None
    start, end = f.calendar.window(f.received_at, policy.min_hours, policy.max_hours)
    first, last = f.calendar.describe(start), f.calendar.describe(end)
    if start == end:
        text = f"a más tardar el {last}"
    else:
        zone = last[last.rfind(" ("):] if last.endswith(")") else ""
        if zone and first.endswith(zone):
            first = first[: -len(zone)]  # name the time zone once, after the second moment
        text = f"entre el {first} y el {last}"
    f.facts.update(window_start=start, window_end=end, due_at=end,
                   window_start_text=f.calendar.describe(start), window_end_text=last,
                   due_text=last, window_text=text)
    return start, end


def _hours_facts(f: UnlockFacts, policy: UnlockPolicy) -> None:
    f.facts["min_hours"] = policy.min_hours
    f.facts["max_hours"] = policy.max_hours
    span = _span(policy)
    f.facts["hours_text"] = (f"de {span} horas hábiles" if policy.min_hours != policy.max_hours
                             else f"{span} horas hábiles")


def _span(policy: UnlockPolicy, joiner: str = " a ") -> str:
    """ "4 a 24" (the seed's way) or, with joiner "-", "4-24" for the operators' reasons."""
    low, high = _number(policy.min_hours), _number(policy.max_hours)
    return high if low == high else f"{low}{joiner}{high}"


def _minutes_text(policy: UnlockPolicy) -> str:
    low, high = policy.min_minutes, policy.max_minutes
    if not high:
        return "inmediato"
    if low == high:
        return f"inmediato o puede demorar hasta {high} minutos"
    return f"inmediato o puede demorar de {low} a {high} minutos"


def _number(value: float | None) -> str:
    assert value is not None
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _ordinal(number: int) -> str:
    return _ORDINALS.get(number, f"{number}.º")


def _either(items: Iterable[str]) -> str:
    """"PDF, JPG o PNG": a Spanish list joined with "o"."""
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} o {items[-1]}"


def _extension(filename: str) -> str:
    return PurePath(filename.strip()).suffix.lower().lstrip(".")
