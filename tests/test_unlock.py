"""The unlock chain (seed 000): modality from the registry, the count from the ledger, the policy
and its business-hours window from rules/unlock.toml; every step leaves its reason."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailbot.business_hours import DEFAULT_WEEK, BusinessCalendar
from mailbot.decide.unlock import (
    DOCUMENTS_NEEDED,
    UNLOCK_OUTCOMES,
    UNLOCKED,
    accepted_documents,
    calendar_for,
    decide_unlock,
)
from mailbot.errors import RulesError
from mailbot.model import REVIEW, Request
from mailbot.ops.imports import MODALITIES
from mailbot.ruleset import UNLOCK_MODALITIES, Ruleset, load_rules

ROOT = Path(__file__).resolve().parent.parent
RULES = load_rules(ROOT / "rules")
CALENDAR = calendar_for(RULES)
MX = ZoneInfo("America/Mexico_City")
CONTACT = "rgonzalez@empresamuestra.com.mx"
SERIAL = "R8TZ-5N1Q-6WHK-2JCE"

FULL_CHAIN = ["registry.known", "registry.system", "registry.address", "unlock.modality",
              "unlock.count", "unlock.rate", "unlock.policy"]


def mx(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=MX)


TUESDAY_MORNING = mx(2026, 12, 1, 10, 0)
FRIDAY_EVENING = mx(2026, 12, 4, 17, 30)
INDEPENDENCE_DAY = mx(2026, 9, 16, 10, 0)  # Wednesday, a federal holiday


@dataclass
class Licence:
    serial: str = SERIAL
    system: str = "Aspel FACTURE"
    company: str = "Empresa de muestra S.A. de C.V."
    contact_email: str | None = CONTACT
    purchase_date: date = date(2024, 3, 1)
    modality: str = "suscripcion"
    support_until: date | None = None
    users: int | None = 1


def request(**overrides) -> Request:
    values = dict(company="Empresa de muestra S.A. de C.V.", contact_name="Raul Gonzalez Rivera",
                  contact_email=CONTACT, system="Aspel FACTURE", serial=SERIAL, source="body")
    values.update(overrides)
    return Request(**values)


def decide(modality: str = "suscripcion", *, previous: int = 0, in_period: int | None = None,
           documents: tuple[str, ...] = (), received_at: datetime = TUESDAY_MORNING,
           licence: Licence | None | str = "default", requester: str | None = CONTACT,
           req: Request | None = None, rules: Ruleset = RULES,
           calendar: BusinessCalendar = CALENDAR):
    if licence == "default":
        licence = Licence(modality=modality)
    return decide_unlock(req or request(), requester=requester, licence=licence,
                         previous_unlocks=previous,
                         unlocks_in_period=previous if in_period is None else in_period,
                         documents=documents, received_at=received_at, rules=rules,
                         calendar=calendar)


def rules_of(decision) -> list[str]:
    return [h.rule for h in decision.hits]


def reason_of(decision, rule: str) -> str:
    return next(h.reason for h in decision.hits if h.rule == rule)


# --- the rules file -------------------------------------------------------------------------

def test_unlock_rules_file_loads_with_the_seed_table():
    unlock = RULES.unlock
    assert unlock is not None
    table = {m: [(p.action, p.min_minutes, p.max_minutes, p.min_hours, p.max_hours)
                 for p in unlock.modalities[m].policies] for m in UNLOCK_MODALITIES}
    assert table == {
        "suscripcion": [("auto", 10, 15, None, None), ("review", None, None, 4, 24)],
        "electronico": [("auto", 10, 15, None, None), ("documents", None, None, 24, 48)],
        "fisico": [("documents", None, None, 24, 48), ("documents", None, None, 24, 48)],
    }
    assert "Certificado de Autenticidad" in unlock.modalities["fisico"].documents_required
    assert unlock.modalities["suscripcion"].documents_required is None
    assert unlock.document_types == ("pdf", "jpg", "jpeg", "png")
    assert unlock.max_unlocks_per_period >= 1 and unlock.period_days >= 1
    for words in ("Mi cuenta Aspel", "Mis Servicios", "Suscripciones", "Licenciamiento",
                  "Certificado de Autenticidad"):
        assert words in unlock.identify_help


def test_unlock_modalities_are_the_registry_modalities():
    assert UNLOCK_MODALITIES == MODALITIES


def test_calendar_for_the_shipped_rules_is_weekdays_9_to_18_in_mexico_city():
    assert CALENDAR.tz_name == "America/Mexico_City"
    assert CALENDAR.week == DEFAULT_WEEK
    assert CALENDAR.extra_holidays == frozenset()


def test_outcomes_are_distinct_names():
    assert UNLOCK_OUTCOMES == (UNLOCKED, REVIEW, DOCUMENTS_NEEDED)
    assert len(set(UNLOCK_OUTCOMES)) == 3


# --- the 1st unlock: automatic --------------------------------------------------------------

@pytest.mark.parametrize("modality, label", [("suscripcion", "Suscripción"),
                                             ("electronico", "Licenciamiento electrónico")])
def test_first_unlock_of_subscription_or_electronic_is_approved_automatically(modality, label):
    d = decide(modality)
    assert d.outcome == UNLOCKED
    assert d.recipient == CONTACT
    assert d.key is None
    assert rules_of(d) == FULL_CHAIN
    assert d.facts["number"] == 1
    assert d.facts["number_text"] == "primer"
    assert d.facts["modality"] == modality
    assert d.facts["modality_label"] == label
    assert d.facts["policy"] == "auto"
    assert (d.facts["min_minutes"], d.facts["max_minutes"]) == (10, 15)
    assert d.facts["minutes_text"] == "inmediato o puede demorar de 10 a 15 minutos"
    assert d.facts["identify_help"] == RULES.unlock.identify_help
    assert "window_start" not in d.facts and "due_at" not in d.facts
    assert "new activation code (CDA)" in reason_of(d, "unlock.policy")


def test_minutes_come_from_the_rules(tmp_path):
    rules = variant(tmp_path, SUB_1, SUB_1.replace("min_minutes = 10, max_minutes = 15",
                                                   "min_minutes = 5, max_minutes = 30"))
    d = decide(rules=rules)
    assert d.facts["minutes_text"] == "inmediato o puede demorar de 5 a 30 minutos"


# --- the 2nd subscription unlock: review within 4-24 business hours -------------------------

def test_friday_evening_second_subscription_unlock_is_due_in_the_next_week():
    # 4 h: Fri 0.5 + Mon 3.5 -> Mon 12:30; 24 h: Fri 0.5 + Mon 9 + Tue 9 + Wed 5.5 -> 14:30.
    d = decide("suscripcion", previous=1, received_at=FRIDAY_EVENING)
    assert d.outcome == REVIEW
    assert d.recipient == CONTACT
    assert rules_of(d) == FULL_CHAIN
    assert d.facts["number"] == 2
    assert d.facts["number_text"] == "segundo"
    assert d.facts["policy"] == "review"
    assert d.facts["review_reason"] == "policy"
    assert d.facts["window_start"] == mx(2026, 12, 7, 12, 30)
    assert d.facts["window_end"] == mx(2026, 12, 9, 14, 30)
    assert d.facts["due_at"] == mx(2026, 12, 9, 14, 30)
    assert d.facts["hours_text"] == "de 4 a 24 horas hábiles"
    assert d.facts["window_text"] == (
        "entre el lunes 7 de diciembre de 2026 a las 12:30 h y el miércoles 9 de diciembre de "
        "2026 a las 14:30 h (hora del centro de México)")
    assert d.facts["window_start_text"] == (
        "lunes 7 de diciembre de 2026 a las 12:30 h (hora del centro de México)")
    assert d.facts["due_text"] == d.facts["window_end_text"]
    assert "4-24 business hours" in reason_of(d, "unlock.policy")
    assert "2026-12-09 14:30" in reason_of(d, "unlock.policy")


def test_saturday_request_counts_from_monday_opening():
    d = decide("suscripcion", previous=1, received_at=mx(2026, 12, 5, 11, 0))
    assert (d.facts["window_start"], d.facts["window_end"]) == (mx(2026, 12, 7, 13, 0),
                                                                mx(2026, 12, 9, 15, 0))


def test_received_at_in_utc_gives_a_window_in_mexico_city_time():
    friday_evening_utc = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)  # 17:30 CDMX
    d = decide("suscripcion", previous=1, received_at=friday_evening_utc)
    assert d.facts["window_start"] == mx(2026, 12, 7, 12, 30)
    assert d.facts["window_start"].tzinfo == MX


def test_company_holidays_in_the_rules_file_move_the_window(tmp_path):
    rules = variant(tmp_path, "extra_holidays = []", "extra_holidays = [2026-12-07]")
    d = decide("suscripcion", previous=1, received_at=FRIDAY_EVENING, rules=rules,
               calendar=calendar_for(rules))
    assert d.facts["window_start"] == mx(2026, 12, 8, 12, 30)  # Monday closed as well


# --- documents: the 2nd electronic unlock and any physical unlock ---------------------------

def test_second_electronic_unlock_without_documents_asks_for_them():
    d = decide("electronico", previous=1)
    assert d.outcome == DOCUMENTS_NEEDED
    assert d.recipient == CONTACT
    assert rules_of(d) == FULL_CHAIN
    assert d.facts["policy"] == "documents"
    assert d.facts["documents"] == ()
    electronic = RULES.unlock.modalities["electronico"]
    assert d.facts["documents_required"] == electronic.documents_required
    assert d.facts["hours_text"] == "de 24 a 48 horas hábiles"
    assert d.facts["document_types_text"] == "PDF, JPG, JPEG o PNG"
    assert "window_start" not in d.facts and "due_at" not in d.facts
    assert "continues this request" in reason_of(d, "unlock.policy")


def test_second_electronic_unlock_with_a_pdf_goes_to_review_within_24_to_48_hours():
    # Tue 1 Dec 10:00: Tue 8 + Wed 9 + Thu 7 -> Thu 16:00; + Thu 2 + Fri 9 + Mon 9 + Tue 4 -> 13:00.
    d = decide("electronico", previous=1, documents=("factura.pdf",))
    assert d.outcome == REVIEW
    assert d.facts["review_reason"] == "documents_to_check"
    assert d.facts["documents"] == ("factura.pdf",)
    assert d.facts["window_start"] == mx(2026, 12, 3, 16, 0)
    assert d.facts["window_end"] == d.facts["due_at"] == mx(2026, 12, 8, 13, 0)


def test_physical_unlock_on_a_holiday_with_documents_counts_from_the_next_opening():
    # Wed 16 Sep is closed; from Thu 09:00: Thu 9 + Fri 9 + Mon 6 -> Mon 21 15:00 (24 h);
    # + Mon 3 + Tue 9 + Wed 9 + Thu 3 -> Thu 24 12:00 (48 h).
    d = decide("fisico", documents=("certificado.PDF", "foto.jpeg"), received_at=INDEPENDENCE_DAY)
    assert d.outcome == REVIEW
    assert d.facts["number"] == 1
    assert d.facts["modality_label"] == "Licenciamiento físico"
    assert "Certificado de Autenticidad" in d.facts["documents_required"]
    assert d.facts["documents"] == ("certificado.PDF", "foto.jpeg")
    assert d.facts["window_start"] == mx(2026, 9, 21, 15, 0)
    assert d.facts["window_end"] == mx(2026, 9, 24, 12, 0)
    assert d.facts["window_text"].startswith("entre el lunes 21 de septiembre de 2026 a las 15:00 h"
                                             " y el jueves 24 de septiembre")


@pytest.mark.parametrize("previous", [0, 1])
def test_any_physical_unlock_without_documents_asks_for_the_certificate(previous):
    d = decide("fisico", previous=previous)
    assert d.outcome == DOCUMENTS_NEEDED
    assert "Certificado de Autenticidad" in d.facts["documents_required"]


def test_attachments_of_other_types_are_not_documents():
    d = decide("fisico", documents=("carta.docx", "certificado"))
    assert d.outcome == DOCUMENTS_NEEDED
    assert d.facts["documents"] == ()
    reason = reason_of(d, "unlock.policy")
    assert "carta.docx" in reason and "pdf, jpg, jpeg, png" in reason


def test_accepted_documents_by_extension_ignoring_case():
    assert accepted_documents(["a.PDF", "b.Jpg", "c.docx", "d.png", "e", "f.pdf.exe"],
                              RULES.unlock) == ("a.PDF", "b.Jpg", "d.png")


def test_customer_reply_with_the_documents_continues_the_same_unlock():
    # The pending unlock is this same request, so the ledger count excludes it: still the 2nd.
    first = decide("electronico", previous=1, received_at=mx(2026, 12, 1, 10, 0))
    reply = decide("electronico", previous=1, documents=("carta.pdf",),
                   received_at=mx(2026, 12, 2, 10, 0))
    assert first.outcome == DOCUMENTS_NEEDED
    assert reply.outcome == REVIEW
    assert reply.facts["number"] == first.facts["number"] == 2
    assert reply.facts["window_start"] == mx(2026, 12, 4, 16, 0)  # from the reply's receipt


# --- beyond the configured unlocks, and the rate cap ----------------------------------------

@pytest.mark.parametrize("modality", UNLOCK_MODALITIES)
def test_third_unlock_always_goes_to_review(modality):
    d = decide(modality, previous=2, in_period=0, documents=("certificado.pdf",))
    assert d.outcome == REVIEW
    assert rules_of(d) == FULL_CHAIN[:5]
    assert d.facts["number"] == 3
    assert d.facts["number_text"] == "tercer"
    assert d.facts["review_reason"] == "beyond_configured"
    assert "up to unlock 2" in reason_of(d, "unlock.count")
    # No window of its own: due after the configured review time from receipt.
    assert d.facts["due_at"] == CALENDAR.add_business_hours(TUESDAY_MORNING,
                                                            RULES.unlock.review_due_hours)
    assert "window_start" not in d.facts


def test_rate_cap_sends_an_otherwise_automatic_unlock_to_review():
    unlock = dataclasses.replace(RULES.unlock, max_unlocks_per_period=1, period_days=30)
    rules = dataclasses.replace(RULES, unlock=unlock)
    d = decide("electronico", previous=0, in_period=1, rules=rules)
    assert d.outcome == REVIEW
    assert rules_of(d) == FULL_CHAIN[:6]
    assert d.facts["review_reason"] == "rate_cap"
    assert (d.facts["unlocks_in_period"], d.facts["max_unlocks_per_period"],
            d.facts["period_days"]) == (1, 1, 30)
    assert "the cap is 1" in reason_of(d, "unlock.rate")
    under = decide("electronico", previous=0, in_period=0, rules=rules)
    assert under.outcome == UNLOCKED


def test_shipped_rate_cap_reached():
    cap = RULES.unlock.max_unlocks_per_period
    d = decide("suscripcion", previous=0, in_period=cap)
    assert d.outcome == REVIEW
    assert d.facts["review_reason"] == "rate_cap"


# --- registry and requester -----------------------------------------------------------------

def test_unknown_serial_goes_to_review_with_the_identify_help():
    d = decide(licence=None)
    assert d.outcome == REVIEW
    assert rules_of(d) == ["registry.known"]
    assert d.recipient is None
    assert d.facts["review_reason"] == "unknown_serial"
    assert "Mi cuenta Aspel" in d.facts["identify_help"]
    assert SERIAL in reason_of(d, "registry.known")
    assert "due_at" in d.facts


def test_registry_holding_another_system_goes_to_review():
    d = decide(licence=Licence(system="CONTPAQ i Nóminas"))
    assert d.outcome == REVIEW
    assert rules_of(d) == ["registry.known", "registry.system"]
    assert d.facts["review_reason"] == "system_mismatch"


def test_unlock_asked_by_another_address_goes_to_review_not_redirected():
    d = decide(requester="someone@otherdomain.com")
    assert d.outcome == REVIEW
    assert rules_of(d) == ["registry.known", "registry.system", "registry.address"]
    assert d.facts["review_reason"] == "other_requester"
    assert d.recipient == CONTACT  # any answer goes only to the registered contact
    assert "cannot be redirected" in reason_of(d, "registry.address")


def test_unknown_requester_goes_to_review():
    d = decide(requester=None)
    assert d.outcome == REVIEW
    assert d.facts["review_reason"] == "other_requester"


def test_requester_address_compared_without_case():
    assert decide(requester="RGonzalez@EmpresaMuestra.com.mx").outcome == UNLOCKED


def test_registry_without_a_contact_address_goes_to_review():
    d = decide(licence=Licence(contact_email=None))
    assert d.outcome == REVIEW
    assert d.recipient is None
    assert d.facts["review_reason"] == "no_registered_address"


def test_registry_modality_without_a_policy_goes_to_review():
    d = decide(licence=Licence(modality="comodato"))
    assert d.outcome == REVIEW
    assert rules_of(d) == FULL_CHAIN[:4]
    assert d.facts["review_reason"] == "unknown_modality"
    assert "'comodato'" in reason_of(d, "unlock.modality")


def test_extraction_notes_are_kept_first():
    d = decide(req=request(notes=("contact_email taken from From",)))
    assert d.hits[0].rule == "extract.note"
    assert d.outcome == UNLOCKED


def test_same_inputs_give_the_same_decision():
    assert decide("suscripcion", previous=1) == decide("suscripcion", previous=1)


def test_naive_received_at_is_refused():
    with pytest.raises(ValueError, match="time zone"):
        decide(received_at=datetime(2026, 12, 4, 17, 30))


def test_negative_counts_are_refused():
    with pytest.raises(ValueError):
        decide(previous=-1)


def test_without_unlock_rules_everything_goes_to_review(tmp_path):
    rules_dir = copy_rules(tmp_path)
    (rules_dir / "unlock.toml").unlink()
    rules = load_rules(rules_dir)
    assert rules.unlock is None
    d = decide(rules=rules)
    assert d.outcome == REVIEW
    assert rules_of(d) == ["unlock.rules"]
    with pytest.raises(RulesError, match="unlock.toml: missing rules file"):
        calendar_for(rules)


# --- mistakes in rules/unlock.toml ----------------------------------------------------------

def copy_rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", target)
    return target


def variant(tmp_path: Path, old: str, new: str) -> Ruleset:
    rules_dir = copy_rules(tmp_path)
    path = rules_dir / "unlock.toml"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not in rules/unlock.toml exactly once"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return load_rules(rules_dir)


SUB_2 = '2 = { policy = "review", min_hours = 4, max_hours = 24 }'
FISICO_1 = '1 = { policy = "documents", min_hours = 24, max_hours = 48 }'
SUB_1 = '1 = { policy = "auto", min_minutes = 10, max_minutes = 15 }\n2 = { policy = "review"'
ELEC_DOCS = 'documents_required = "la factura'
FISICO = "[modalities.fisico]"


@pytest.mark.parametrize("old, new, key, fix", [
    # an unknown modality
    ("[modalities.suscripcion]\n",
     '[modalities.comodato]\nlabel = "x"\n[modalities.comodato.unlocks]\n'
     '1 = { policy = "review", min_hours = 4, max_hours = 24 }\n\n[modalities.suscripcion]\n',
     "modalities.comodato", "suscripcion, electronico, fisico"),
    # a window whose minimum is above its maximum
    (SUB_2, '2 = { policy = "review", min_hours = 30, max_hours = 24 }',
     "modalities.suscripcion.unlocks.2.min_hours", "swap them"),
    # negative hours
    (FISICO_1, '1 = { policy = "documents", min_hours = -24, max_hours = 48 }',
     "modalities.fisico.unlocks.1.min_hours", "must not be negative"),
    (SUB_2, '2 = { policy = "review", min_hours = 4, max_hours = "24" }',
     "modalities.suscripcion.unlocks.2.max_hours", "must be a number of business hours"),
    (SUB_2, '2 = { policy = "review", min_hours = 4 }',
     "modalities.suscripcion.unlocks.2.max_hours", "missing"),
    (SUB_2, '2 = { policy = "manual", min_hours = 4, max_hours = 24 }',
     "modalities.suscripcion.unlocks.2.policy", "'auto', 'review', 'documents'"),
    (SUB_2, '2 = { policy = "review", min_minutes = 4, max_hours = 24 }',
     "modalities.suscripcion.unlocks.2.min_minutes", "not used by policy 'review'"),
    (SUB_2, '3 = { policy = "review", min_hours = 4, max_hours = 24 }',
     "modalities.suscripcion.unlocks.3", "without gaps"),
    (SUB_2, 'segundo = { policy = "review", min_hours = 4, max_hours = 24 }',
     "modalities.suscripcion.unlocks.segundo", "write 1 for the 1st unlock"),
    (SUB_2, '2 = "review"', "modalities.suscripcion.unlocks.2", "must be a table"),
    (SUB_1, '1 = { policy = "auto", min_minutes = 20, max_minutes = 15 }\n2 = { policy = "review"',
     "modalities.suscripcion.unlocks.1.min_minutes", "swap them"),
    (SUB_1, '1 = { policy = "auto", min_minutes = -1, max_minutes = 15 }\n2 = { policy = "review"',
     "modalities.suscripcion.unlocks.1.min_minutes", "at least 0"),
    (ELEC_DOCS, 'documents = "la factura', "modalities.electronico.documents",
     "unknown key; expected one of: documents_required, label, unlocks"),
    (ELEC_DOCS, '# documents_required = "la factura',
     "modalities.electronico.documents_required", "write what the customer must send"),
    (FISICO, "[modalities.fisico_]", "modalities.fisico_", "unknown modality"),
    ('label = "Suscripción"', 'label = ""', "modalities.suscripcion.label", "must not be empty"),
    ('document_types = ["pdf", "jpg", "jpeg", "png"]', "document_types = []",
     "document_types", "at least one file extension"),
    ('document_types = ["pdf", "jpg", "jpeg", "png"]', 'document_types = ["pdf", "image/png"]',
     "document_types[1]", 'extensions like "pdf"'),
    ("max_unlocks_per_period = 2", "max_unlocks_per_period = 0", "max_unlocks_per_period",
     "at least 1"),
    ("period_days = 365", 'period_days = "365"', "period_days", "must be a whole number"),
    ("review_due_hours = 24", "review_due_hours = 0", "review_due_hours", "more than 0"),
    ("max_unlocks_per_period = 2", "max_unlocks = 2", "max_unlocks", "unknown key"),
    ('identify_help = """', 'identify_hepl = """', "identify_hepl", "unknown key"),
])
def test_bad_unlock_rules_name_file_key_and_fix(tmp_path, old, new, key, fix):
    with pytest.raises(RulesError) as error:
        variant(tmp_path, old, new)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'rules' / 'unlock.toml'}: {key}: "), message
    assert fix in message, message


def test_missing_modality_is_reported(tmp_path):
    rules_dir = copy_rules(tmp_path)
    path = rules_dir / "unlock.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text[:text.index(FISICO)], encoding="utf-8")
    with pytest.raises(RulesError) as error:
        load_rules(rules_dir)
    assert str(error.value).startswith(f"{path}: modalities.fisico: missing")


@pytest.mark.parametrize("old, new, key, fix", [
    ('lunes = "09:00-18:00"', 'lunes = "9-18"', "days.lunes", '"09:00-18:00"'),
    ('timezone = "America/Mexico_City"', 'timezone = "Mexico City"', "timezone", "IANA"),
    ("extra_holidays = []", 'extra_holidays = ["24/12/2026"]', "extra_holidays[0]", "2026-12-24"),
])
def test_bad_business_hours_name_file_key_and_fix(tmp_path, old, new, key, fix):
    with pytest.raises(RulesError) as error:
        variant(tmp_path, old, new)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'rules' / 'unlock.toml'}: business_hours: {key}: ")
    assert fix in message


def test_document_types_are_normalised(tmp_path):
    rules = variant(tmp_path, 'document_types = ["pdf", "jpg", "jpeg", "png"]',
                    'document_types = [".PDF", "pdf", "Png"]')
    assert rules.unlock.document_types == ("pdf", "png")


def test_decimal_hours_are_accepted(tmp_path):
    rules = variant(tmp_path, SUB_2, '2 = { policy = "review", min_hours = 0.5, max_hours = 4 }')
    d = decide("suscripcion", previous=1, received_at=FRIDAY_EVENING, rules=rules)
    assert d.facts["window_start"] == mx(2026, 12, 4, 18, 0)
    assert d.facts["hours_text"] == "de 0.5 a 4 horas hábiles"
    assert time(18) == d.facts["window_start"].timetz().replace(tzinfo=None)
