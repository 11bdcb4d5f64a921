"""Decisions: a chain of small named rules per request kind (after Mailman's chains).

Each rule looks at the facts of one request and either records why it passed and lets the next
rule run, or ends the chain with an outcome. Every rule that ran leaves a RuleHit, so the log
shows exactly why a request was answered the way it was.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mailbot.addresses import addresses_match
from mailbot.model import ISSUED, NOT_ELIGIBLE, PENDING, REVIEW, Decision, Request, RuleHit
from mailbot.ruleset import Installation, Ruleset
from mailbot.wording import N_


class Licence(Protocol):
    serial: str
    system: str
    company: str
    contact_email: str | None
    purchase_date: dt.date
    modality: str
    support_until: dt.date | None
    users: int | None


class KeyPool(Protocol):
    """Keys, as seen by the rules. The store's implementation assigns atomically."""

    def existing(self, serial: str) -> tuple[str, dt.datetime | None] | None:
        """The key already bound to `serial` and when, if any."""
        ...

    def assign(self, system: str, serial: str) -> str | None:
        """Bind a free key of `system` to `serial`; None when the pool is empty."""
        ...


@dataclass
class Facts:
    """What the rules of one request know; rules may add to `hits` and `facts`."""

    request: Request
    requester: str | None
    licence: Licence | None
    today: dt.date
    rules: Ruleset
    pool: KeyPool
    hits: list[RuleHit] = field(default_factory=list)
    recipient: str | None = None
    key: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def hit(self, rule: str, template: str, **values: str | int | float) -> None:
        """A rule fired: its reason as an N_() template and values (the console's Spanish)."""
        self.hits.append(RuleHit.said(rule, template, **values))

    def review(self, why: str) -> str:
        self.facts["review_reason"] = why
        return REVIEW


# A rule returns an outcome to end the chain, or None to go on.
Rule = Callable[[Facts], str | None]


class RegistryFacts(Protocol):
    """What the registry rules need; both the free-update and the unlock facts have it."""

    request: Request
    licence: Any

    def hit(self, rule: str, template: str, **values: str | int | float) -> None: ...

    def review(self, why: str) -> str: ...


# Reason codes of the registry rules, shown in the review queue.
REVIEW_UNKNOWN_SERIAL = "unknown_serial"
REVIEW_SYSTEM_MISMATCH = "system_mismatch"


def registry_knows_serial(f: RegistryFacts) -> str | None:
    if f.licence is None:
        f.hit("registry.known", N_("serial %(serial)s is not in the licence registry; an "
                                   "operator must check it (typo, or a registry not yet "
                                   "updated)"), serial=f.request.serial)
        return f.review(REVIEW_UNKNOWN_SERIAL)
    company = getattr(f.licence, "company", None)
    if company:
        f.hit("registry.known", N_("serial %(serial)s is registered to %(company)s"),
              serial=f.request.serial, company=company)
    else:
        f.hit("registry.known", N_("serial %(serial)s is registered"), serial=f.request.serial)
    return None


def registry_system_matches(f: RegistryFacts) -> str | None:
    assert f.licence is not None
    if f.licence.system != f.request.system:
        f.hit("registry.system", N_("serial %(serial)s is registered for %(registered)s, but "
                                    "the request names %(requested)s"),
              serial=f.request.serial, registered=repr(f.licence.system),
              requested=repr(f.request.system))
        return f.review(REVIEW_SYSTEM_MISMATCH)
    f.hit("registry.system", N_("the registry holds the same system, %(system)s"),
          system=f.licence.system)
    return None


def registered_address(f: Facts) -> str | None:
    assert f.licence is not None
    registered = (f.licence.contact_email or "").strip().lower()
    if not registered:
        f.hit("registry.address", N_("the registry has no contact address for %(serial)s; "
                                     "keys go only to a registered address"),
              serial=f.request.serial)
        return REVIEW
    f.recipient = registered
    if f.requester and addresses_match(f.requester, registered):  # after IDNA normalisation
        f.hit("registry.address", N_("the sender %(sender)s is the registered contact"),
              sender=f.requester)
    elif f.requester:
        f.hit("registry.address", N_("keys go to the registered contact %(registered)s, not to "
                                     "the sender %(sender)s; the sender is told where"),
              registered=registered, sender=f.requester)
    else:
        f.hit("registry.address", N_("keys go to the registered contact %(registered)s, not to "
                                     "the sender (unknown); the sender is told where"),
              registered=registered)
    return None


def purchased_after_eligibility_date(f: Facts) -> str | None:
    assert f.licence is not None
    start = f.rules.free_update.eligible_from
    bought = f.licence.purchase_date
    f.facts["purchase_date"] = bought
    if bought < start:
        f.hit("free_update.eligible", N_("bought on %(bought)s, before %(start)s: not "
                                         "eligible for the free update"),
              bought=bought.isoformat(), start=start.isoformat())
        return NOT_ELIGIBLE
    f.hit("free_update.eligible", N_("bought on %(bought)s, on or after %(start)s: eligible"),
          bought=bought.isoformat(), start=start.isoformat())
    return None


def key_from_pool(f: Facts) -> str | None:
    existing = f.pool.existing(f.request.serial)
    if existing is not None:
        f.key, when = existing
        if when:
            f.hit("keys.assign", N_("serial %(serial)s already has a key (issued on %(issued)s); "
                                    "the same key is sent again, nothing is consumed"),
                  serial=f.request.serial, issued=f"{when:%Y-%m-%d}")
        else:
            f.hit("keys.assign", N_("serial %(serial)s already has a key (issued); the same key "
                                    "is sent again, nothing is consumed"),
                  serial=f.request.serial)
        return ISSUED
    key = f.pool.assign(f.request.system, f.request.serial)
    if key is None:
        f.hit("keys.assign", N_("no free key left for %(system)s; the request waits and is "
                                "fulfilled when keys are imported"), system=f.request.system)
        return PENDING
    f.key = key
    f.hit("keys.assign", N_("a new key from the %(system)s pool is bound to %(serial)s"),
          system=f.request.system, serial=f.request.serial)
    return ISSUED


FREE_UPDATE_CHAIN: tuple[Rule, ...] = (
    registry_knows_serial,
    registry_system_matches,
    registered_address,
    purchased_after_eligibility_date,
    key_from_pool,
)


def installation_offer(inst: Installation, licence: Licence | None,
                       today: dt.date) -> dict[str, Any]:
    """The seed's installation section for this licence (see `Installation.offer`)."""
    return inst.offer(support_until=licence.support_until if licence else None,
                      users=licence.users if licence else None, today=today)


def decide_free_update(request: Request, *, requester: str | None, licence: Licence | None,
                       today: dt.date, rules: Ruleset, pool: KeyPool) -> Decision:
    f = Facts(request=request, requester=requester, licence=licence, today=today, rules=rules,
              pool=pool)
    for note in request.notes:
        f.hits.append(RuleHit("extract.note", note))  # read/'s note, English only
    outcome = None
    for rule in FREE_UPDATE_CHAIN:
        outcome = rule(f)
        if outcome is not None:
            break
    assert outcome is not None, "the last rule of a chain always decides"
    if outcome in (ISSUED, PENDING):
        offer = installation_offer(rules.free_update.installation, licence, today)
        f.facts["installation"] = offer
        if offer["has_support"]:
            f.hit("installation.support", N_("support policy valid until %(until)s: "
                                             "installation is included, the customer is asked "
                                             "to call"),
                  until=f"{offer['support_until']:%Y-%m-%d}")
        else:
            f.hit("installation.support", N_("no valid support policy: the answer offers "
                                             "renewal and per-event prices"))
    return Decision(request=request, outcome=outcome, hits=tuple(f.hits), key=f.key,
                    recipient=f.recipient, facts=dict(f.facts))
