"""The free-update chain: one named rule per step, every step leaves its reason."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailbot.decide.free_update import decide_free_update, installation_offer
from mailbot.model import ISSUED, NOT_ELIGIBLE, PENDING, REVIEW, Request
from mailbot.ruleset import load_rules

RULES = load_rules(Path(__file__).parent.parent / "rules")
TODAY = dt.date(2026, 11, 22)


@dataclass
class Licence:
    serial: str = "AAAA-BBBB-CCCC-DDDD"
    system: str = "CONTPAQ i Factura electrónica"
    company: str = "Empresa de muestra S.A. de C.V."
    contact_email: str | None = "rgonzalez@empresamuestra.com.mx"
    purchase_date: dt.date = dt.date(2011, 9, 1)
    modality: str = "electronico"
    support_until: dt.date | None = dt.date(2027, 1, 31)
    users: int | None = 2


DEFAULT_LICENCE = Licence()  # decide()'s registry entry; licence=None means none


class FakePool:
    """A unit-test pool: keys per system, bound to serials in a dict."""

    def __init__(self, free: dict[str, list[str]]) -> None:
        self.free = free
        self.bound: dict[str, str] = {}

    def existing(self, serial):
        return (self.bound[serial], None) if serial in self.bound else None

    def assign(self, system, serial):
        if not self.free.get(system):
            return None
        self.bound[serial] = self.free[system].pop(0)
        return self.bound[serial]


def request(**overrides) -> Request:
    values = dict(company="Empresa de muestra S.A. de C.V.", contact_name="Raul Gonzalez Rivera",
                  contact_email="rgonzalez@empresamuestra.com.mx",
                  system="CONTPAQ i Factura electrónica", serial="AAAA-BBBB-CCCC-DDDD",
                  source="body")
    values.update(overrides)
    return Request(**values)


def decide(req=None, *, licence=DEFAULT_LICENCE, pool=None, requester="rgonzalez@empresamuestra.com.mx",
           today=TODAY):
    pool = pool or FakePool({"CONTPAQ i Factura electrónica": ["KEY-1", "KEY-2"]})
    return decide_free_update(req or request(), requester=requester, licence=licence,
                              today=today, rules=RULES, pool=pool)


def rules_of(decision):
    return [h.rule for h in decision.hits]


def test_eligible_request_from_the_registered_contact_gets_a_new_key():
    d = decide()
    assert d.outcome == ISSUED
    assert d.key == "KEY-1"
    assert d.recipient == "rgonzalez@empresamuestra.com.mx"
    assert rules_of(d) == ["registry.known", "registry.system", "registry.address",
                           "free_update.eligible", "keys.assign", "installation.support"]


def test_repeated_request_resends_the_same_key_and_consumes_nothing():
    pool = FakePool({"CONTPAQ i Factura electrónica": ["KEY-1", "KEY-2"]})
    first = decide(pool=pool)
    second = decide(pool=pool)
    assert first.key == second.key == "KEY-1"
    assert pool.free["CONTPAQ i Factura electrónica"] == ["KEY-2"]
    assert "already has a key" in second.hits[4].reason


def test_purchase_before_july_2011_is_not_eligible_and_takes_no_key():
    pool = FakePool({"CONTPAQ i Factura electrónica": ["KEY-1"]})
    d = decide(licence=Licence(purchase_date=dt.date(2011, 6, 30)), pool=pool)
    assert d.outcome == NOT_ELIGIBLE
    assert d.key is None
    assert pool.free["CONTPAQ i Factura electrónica"] == ["KEY-1"]
    assert "before 2011-07-01" in d.hits[-1].reason


def test_purchase_on_the_eligibility_date_itself_is_eligible():
    assert decide(licence=Licence(purchase_date=dt.date(2011, 7, 1))).outcome == ISSUED


def test_serial_unknown_to_the_registry_goes_to_review():
    d = decide(licence=None)
    assert d.outcome == REVIEW
    assert rules_of(d) == ["registry.known"]
    assert "not in the licence registry" in d.hits[0].reason


def test_serial_registered_for_another_system_goes_to_review():
    d = decide(licence=Licence(system="CONTPAQ i Nóminas"))
    assert d.outcome == REVIEW
    assert "CONTPAQ i Nóminas" in d.hits[-1].reason


def test_licence_without_registered_address_goes_to_review():
    d = decide(licence=Licence(contact_email=None))
    assert d.outcome == REVIEW
    assert d.hits[-1].rule == "registry.address"


def test_keys_for_someone_elses_serial_go_to_the_registered_address():
    d = decide(requester="intruso@otro.com")
    assert d.outcome == ISSUED
    assert d.recipient == "rgonzalez@empresamuestra.com.mx"
    assert "not to the sender intruso@otro.com" in d.hits[2].reason


def test_empty_pool_leaves_the_request_pending():
    d = decide(pool=FakePool({}))
    assert d.outcome == PENDING
    assert d.key is None
    assert "no free key left" in d.hits[4].reason


def test_installation_is_included_while_the_support_policy_is_valid():
    offer = decide().facts["installation"]
    assert offer["has_support"] is True
    assert offer["phone"] == "5141-5110"


def test_without_support_the_answer_offers_prices_from_the_rules():
    offer = installation_offer(RULES.free_update.installation,
                               Licence(support_until=dt.date(2020, 1, 1), users=7), TODAY)
    assert offer["has_support"] is False
    assert [p["price"] for p in offer["policies"]] == [2500, 4000, 6500]
    assert all(p["discounted_price"] is None for p in offer["policies"])
    assert offer["suggested_per_event"] == "Sistema de 10 usuarios"


def test_january_discount_applies_to_half_year_and_yearly_policies_only():
    offer = installation_offer(RULES.free_update.installation,
                               Licence(support_until=None), dt.date(2027, 1, 15))
    assert offer["january"] is True
    assert [p["discounted_price"] for p in offer["policies"]] == [None, 3200, 5200]


@pytest.mark.parametrize("users, label", [(1, "Sistema de 1 y 2 usuarios"),
                                          (20, "Sistema de 20 usuarios"),
                                          (21, "Mayor a 20 usuarios")])
def test_per_event_price_is_suggested_by_number_of_users(users, label):
    offer = installation_offer(RULES.free_update.installation, Licence(users=users), TODAY)
    assert offer["suggested_per_event"] == label


def test_a_note_from_extraction_is_kept_among_the_reasons():
    d = decide(request(notes=("contact_email taken from From",)))
    assert d.hits[0].rule == "extract.note"
    assert d.hits[0].reason == "contact_email taken from From"
