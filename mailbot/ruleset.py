"""The admin-editable rules in `rules/*.toml`, loaded and validated.

A mistake in a rules file is reported with the file, the key, its line and the fix, so an admin
can fix it without reading code; `mailbot rules check` reports every mistake of the folder in one
run (`check_rules`; how a table records problems and goes on: `mailbot.rules_table`).

A loader takes a `_Table` and may `raise t.fail(key, why)` where it cannot go on, or call
`t.report(key, why)` and go on with a stand-in value; `t.get`, `t.text`, `t.number`, `t.price`...
record their own problems. A new rules file is one line in `_FILES` and one in `_LOADERS`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import tomllib
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from mailbot.business_hours import calendar_from_mapping
from mailbot.errors import RulesError
from mailbot.model import FIELDS
from mailbot.reading_rules import ReadingRules, reading_from_table
from mailbot.rules_table import Problems, RulesProblem
from mailbot.rules_table import Table as _Table
from mailbot.shipped import shipped
from mailbot.toml_lines import key_lines, line_of

Money = int | Decimal  # whole pesos, or pesos and cents exactly as the admin wrote them
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Kind:
    id: str
    title: str
    subjects: tuple[str, ...]


@dataclass(frozen=True)
class System:
    name: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Catalogue:
    systems: tuple[System, ...]
    min_score: int

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.systems)


@dataclass(frozen=True)
class PolicyPrice:
    name: str
    price: Money
    january_discount_percent: int


@dataclass(frozen=True)
class PerEventPrice:
    label: str
    max_users: int
    price: Money


@dataclass(frozen=True)
class Installation:
    phone: str
    currency: str
    tax_note: str
    multi_system_note: str
    policies: tuple[PolicyPrice, ...]
    per_event: tuple[PerEventPrice, ...]
    above_max_label: str
    above_max_text: str

    def offer(self, *, support_until: dt.date | None, users: int | None,
              today: dt.date) -> dict[str, Any]:
        """The seed's installation section for one licence: included while its support policy
        lasts, else the renewal prices (with the January discount) and the per-event price
        for its number of users. The decision and the template previews both build it here,
        so a preview shows exactly what a customer would read."""
        january = today.month == 1
        policies = []
        for p in self.policies:
            pct = p.january_discount_percent if january else 0
            policies.append({
                "name": p.name, "price": p.price, "discount_percent": pct,
                "discounted_price": _discounted(p.price, pct) if pct else None,
            })
        suggested = None
        if users is not None:
            suggested = next((e.label for e in self.per_event if users <= e.max_users),
                             self.above_max_label)
        return {
            "has_support": bool(support_until and support_until >= today),
            "support_until": support_until,
            "phone": self.phone,
            "currency": self.currency,
            "tax_note": self.tax_note,
            "multi_system_note": self.multi_system_note,
            "january": january,
            "policies": policies,
            "per_event": [{"label": e.label, "price": e.price} for e in self.per_event],
            "above_max_label": self.above_max_label,
            "above_max_text": self.above_max_text,
            "users": users,
            "suggested_per_event": suggested,
        }


def _discounted(price: Money, percent: int) -> Money:
    """The price less `percent`, to the cent (half a cent rounds up), exact: no float between
    the admin's price and the customer's reply. Whole pesos stay an int."""
    amount = (Decimal(price) * (100 - percent) / 100).quantize(_CENT, rounding=ROUND_HALF_UP)
    return int(amount) if amount == amount.to_integral_value() else amount


# The words of a results spreadsheet (rules/free_update.toml [answers]); a rules folder from
# before the section keeps these (`mailbot init` adds files, it never rewrites one).
SHEET_COLUMNS = {"company": "Nombre de la empresa", "contact_name": "Nombre del contacto",
                 "contact_email": "Correo electrónico", "system": "Tipo de sistema",
                 "serial": "Número de serie", "source": "Origen", "outcome": "Resultado",
                 "key": "Clave nueva", "reason": "Observaciones"}
SHEET_OUTCOMES = {"issued": "Clave emitida", "not_eligible": "No aplica",
                  "review": "En revisión", "pending": "Clave en preparación",
                  "unreadable": "No se pudo leer"}
SHEET_REASONS = {
    "issued": "Guarda esta clave en un lugar seguro: la necesitarás para instalar la versión "
              "{target_version}.",
    "redirected": "Por seguridad, la clave se envió a la dirección registrada para esta "
                  "licencia: {recipient}.",
    "not_eligible": "La actualización sin costo es para sistemas adquiridos a partir del "
                    "{eligible_from}.",
    "not_eligible_dated": "La actualización sin costo es para sistemas adquiridos a partir del "
                          "{eligible_from}; según nuestros registros, este se adquirió el "
                          "{purchase_date}.",
    "review": "Un integrante de nuestro equipo revisará esta solicitud y te escribiremos.",
    "pending": "Te enviaremos la clave por correo en cuanto esté lista.",
    "unreadable": "{field}: revisa este dato y envíalo de nuevo en un nuevo correo.",
}


REASON_FIELDS = dict.fromkeys(("target_version", "eligible_from", "purchase_date", "recipient",
                               "field"), "")


@dataclass(frozen=True)
class Answers:
    """How a mail with many requests is answered: above `rows_in_text` rows the reply's text is
    a summary; with more than one request the results go in an attached spreadsheet named
    `sheet_name` ({reference}), with these column headings, outcome words and reasons."""

    rows_in_text: int = 20
    sheet_name: str = "resultados-{reference}.xlsx"
    columns: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(SHEET_COLUMNS))
    outcomes: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(SHEET_OUTCOMES))
    reasons: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(SHEET_REASONS))


@dataclass(frozen=True)
class FreeUpdate:
    target_version: str
    eligible_from: dt.date
    installation: Installation
    answers: Answers = Answers()


# The licence modalities of the registry (mirrors `mailbot.ops.imports.MODALITIES`, which imports
# this module, so the tuple cannot be shared without a cycle; a test keeps the two equal).
UNLOCK_MODALITIES: tuple[str, ...] = ("suscripcion", "electronico", "fisico")

# What an unlock policy does with the request (seed 000's table, one cell each).
UNLOCK_AUTO = "auto"  # released at once; the reply gives the minutes it may take
UNLOCK_REVIEW = "review"  # an operator decides within a window of business hours
UNLOCK_DOCUMENTS = "documents"  # documentation first, then review within a window
UNLOCK_ACTIONS: tuple[str, ...] = (UNLOCK_AUTO, UNLOCK_REVIEW, UNLOCK_DOCUMENTS)


@dataclass(frozen=True)
class UnlockPolicy:
    """What happens to the `number`-th unlock of a serial of one modality.

    `auto` uses the minutes (the reply's "inmediato o puede demorar de 10 a 15 minutos");
    `review` and `documents` use the business hours of their window.
    """

    number: int
    action: str
    min_minutes: int | None = None
    max_minutes: int | None = None
    min_hours: float | None = None
    max_hours: float | None = None


@dataclass(frozen=True)
class UnlockModality:
    id: str  # one of UNLOCK_MODALITIES
    label: str  # how a reply names it, in Spanish
    policies: tuple[UnlockPolicy, ...]  # the 1st, 2nd, ... unlock; beyond the last: review
    documents_required: str | None  # what to send, in Spanish; set when a policy needs it

    def policy(self, number: int) -> UnlockPolicy | None:
        """The policy of the `number`-th unlock; None when not configured (review)."""
        return self.policies[number - 1] if 1 <= number <= len(self.policies) else None


@dataclass(frozen=True)
class Unlock:
    """Seed 000's unlock procedure: timing and policy per modality and unlock number."""

    business_hours: Mapping[str, Any]  # validated; `mailbot.decide.unlock.calendar_for` builds it
    modalities: Mapping[str, UnlockModality]
    document_types: tuple[str, ...]  # file extensions, lower case, without the dot
    identify_help: str
    max_unlocks_per_period: int
    period_days: int
    review_due_hours: float


@dataclass(frozen=True)
class LabelMatching:
    """How far a typed label may be from a known one ("contaco", "sitema", "seire") and still
    name its field (rules/fields.toml [label_typos]). Every word of the label is compared with
    the same word of a known label; words shorter than `min_word_length` must be exact, so
    "de", "la" or "Mail" never drift. A typo is read only when its field scores `min_margin`
    points above any other field: a near-label of two fields is no label at all."""

    min_similarity: int = 80  # per word, 0-100 (optimal string alignment: a swap is one edit)
    min_margin: int = 10
    min_word_length: int = 5


@dataclass(frozen=True)
class Ruleset:
    directory: Path
    kinds: tuple[Kind, ...]
    labels: Mapping[str, tuple[str, ...]]
    catalogue: Catalogue
    free_update: FreeUpdate
    unlock: Unlock | None = None  # None: no rules/unlock.toml, unlocks go to operators
    reading: ReadingRules = ReadingRules()  # rules/reading.toml, or the shipped one
    label_matching: LabelMatching = LabelMatching()

    def kind(self, kind_id: str) -> Kind:
        for k in self.kinds:
            if k.id == kind_id:
                return k
        raise KeyError(kind_id)


def _read(directory: Path, name: str, problems: Problems | None = None) -> _Table:
    """One rules file as a table; with `problems`, its key lines are kept for the messages."""
    path = directory / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError(f"{path}: missing rules file") from None
    except UnicodeDecodeError:
        raise RulesError(f"{path}: not UTF-8 text; save the file as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: invalid TOML: {exc}; fix the syntax there (a quote, bracket "
                         "or comma missing?); the other keys of this file are checked once "
                         "it parses") from None
    if problems is not None:
        problems.lines[str(path)] = key_lines(text)
    return _Table(data, str(path), problems=problems)


def _kinds(t: _Table) -> tuple[Kind, ...]:
    t.reject_unknown({"kind"})
    kinds: list[Kind] = []
    for k in t.tables("kind"):
        k.reject_unknown({"id", "title", "subjects"})
        kind = Kind(id=k.text("id"), title=k.text("title", default=k.data.get("id", "")),
                    subjects=k.texts("subjects"))
        if not kind.subjects and "subjects" in k.data:
            k.report("subjects", "needs at least one subject")
        if any(kind.id == other.id for other in kinds):
            k.report("id", f"duplicate kind id {kind.id!r}; give each kind its own id")
        kinds.append(kind)
    if kinds and not any(k.id == "free_update" for k in kinds):
        t.report("kind", 'no kind with id "free_update"; the free update answer needs it')
    return tuple(kinds)


def _labels(t: _Table) -> dict[str, tuple[str, ...]]:
    t.reject_unknown({"labels", "label_typos"})
    labels = t.table("labels")
    labels.reject_unknown(set(FIELDS))
    out: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for name in FIELDS:
        out[name] = labels.texts(name)
        if not out[name] and isinstance(labels.data.get(name), list):
            labels.report(name, "needs at least one label")
        for spelling in out[name]:
            # The same spelling under two fields would be read as whichever came first.
            key = spelling_key(spelling)
            if seen.get(key, name) != name:
                labels.report(name, f"{spelling!r} is already a label of {seen[key]}")
            seen[key] = name
    return out


def spelling_key(text: str) -> str:
    """How the catalogue compares spellings: letters and digits only, without accents or case
    ("CONTPAQ i – Nóminas" = "contpaqinominas"), as matching a customer's text ignores them."""
    decomposed = unicodedata.normalize("NFKD", text).casefold()
    return "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c))


def _label_matching(t: _Table) -> LabelMatching:
    if "label_typos" not in t.data:
        return LabelMatching()
    typos = t.table("label_typos")
    typos.reject_unknown({"min_similarity", "min_margin", "min_word_length"})
    default = LabelMatching()
    similarity = typos.number("min_similarity", default=default.min_similarity, minimum=50)
    if similarity > 100:
        raise typos.fail("min_similarity", f"must be at most 100 (100 = exact labels only), "
                                           f"not {similarity}")
    return LabelMatching(
        min_similarity=similarity,
        min_margin=typos.number("min_margin", default=default.min_margin, minimum=1),
        min_word_length=typos.number("min_word_length", default=default.min_word_length,
                                     minimum=3),
    )


def _catalogue(t: _Table) -> Catalogue:
    t.reject_unknown({"min_score", "system"})
    systems: list[System] = []
    # spelling key -> (entry, its name, the spelling as written there)
    seen: dict[str, tuple[str, str, str]] = {}
    for s in t.tables("system"):
        s.reject_unknown({"name", "aliases"})
        system = System(name=s.text("name"), aliases=s.texts("aliases", default=[]))
        entry = s.prefix.rstrip(".")
        for field, spelling in [("name", system.name), *(("aliases", a) for a in system.aliases)]:
            key = spelling_key(spelling)
            if key not in seen:
                seen[key] = (entry, system.name, spelling)
            elif key and seen[key][0] != entry:
                other, name, written = seen[key]
                alias = "" if written == name else f" (its alias {written!r})"
                s.report(field, f"{spelling!r} already names {name!r}{alias}, {other}; "
                                "spellings are compared without accents, case, spaces or "
                                "dashes: remove one of the two or make them differ")
        systems.append(system)
    score = t.number("min_score", default=88)
    if score > 100:
        t.report("min_score", f"must be between 0 and 100, not {score}")
    return Catalogue(systems=tuple(systems), min_score=score)


def _answers(t: _Table) -> Answers:
    if "answers" not in t.data:
        return Answers()
    a = t.table("answers")
    a.reject_unknown({"rows_in_text", "sheet_name", "columns", "outcomes", "reasons"})
    name = a.text("sheet_name", default=Answers.sheet_name)
    if not name.endswith(".xlsx") or any(c in name for c in '/\\"'):
        raise a.fail("sheet_name", "must be a file name ending in .xlsx, without / \\ or \"")
    try:
        name.format(reference="CLV-000001")
    except (KeyError, IndexError, ValueError) as exc:
        raise a.fail("sheet_name", f"only {{reference}} may be named in it ({exc})") from None
    words = {}
    for key, defaults in (("columns", SHEET_COLUMNS), ("outcomes", SHEET_OUTCOMES),
                          ("reasons", SHEET_REASONS)):
        table = a.table(key) if key in a.data else _Table({}, a.file, f"{a.prefix}{key}.")
        table.reject_unknown(set(defaults))
        words[key] = {k: table.text(k, default=v) for k, v in defaults.items()}
    for key, text in words["reasons"].items():
        try:
            text.format(**REASON_FIELDS)
        except (KeyError, IndexError, ValueError) as exc:
            raise a.fail(f"reasons.{key}", f"may name only {{{'}, {'.join(REASON_FIELDS)}}} "
                                           f"({exc})") from None
    return Answers(rows_in_text=a.number("rows_in_text", default=Answers.rows_in_text,
                                         minimum=1),
                   sheet_name=name, **words)


def _free_update(t: _Table) -> FreeUpdate:
    t.reject_unknown({"target_version", "eligible_from", "installation", "answers"})
    eligible = t.get("eligible_from", dt.date)
    if isinstance(eligible, dt.datetime):
        t.report("eligible_from", f"must be a date without a time; write "
                                  f"{eligible.date().isoformat()}")
    inst = t.table("installation")
    inst.reject_unknown({"phone", "currency", "tax_note", "multi_system_note", "policies",
                         "per_event", "above_max"})
    policies = []
    for p in inst.tables("policies"):
        p.reject_unknown({"name", "price", "january_discount_percent"})
        pct = p.number("january_discount_percent", default=0)
        if pct > 100:
            p.report("january_discount_percent", f"must be between 0 and 100, not {pct}")
        policies.append(PolicyPrice(p.text("name"), p.price("price"), pct))
    per_event: list[PerEventPrice] = []
    for e in inst.tables("per_event"):
        e.reject_unknown({"label", "max_users", "price"})
        row = PerEventPrice(e.text("label"), e.number("max_users", minimum=1), e.price("price"))
        if per_event and row.max_users <= per_event[-1].max_users:
            e.report("max_users", f"rows must be in increasing order of max_users ({row.max_users}"
                                  f" after {per_event[-1].max_users}); reorder or correct them")
        per_event.append(row)
    above = inst.table("above_max")
    above.reject_unknown({"label", "text"})
    return FreeUpdate(
        target_version=t.text("target_version"),
        eligible_from=eligible,
        installation=Installation(
            phone=inst.text("phone"),
            currency=inst.text("currency", default="MXN"),
            tax_note=inst.text("tax_note", default="más IVA"),
            multi_system_note=inst.text("multi_system_note", default=""),
            policies=tuple(policies),
            per_event=tuple(per_event),
            above_max_label=above.text("label"),
            above_max_text=above.text("text"),
        ),
        answers=_answers(t),
    )


_POLICY_KEYS = {
    UNLOCK_AUTO: {"policy", "min_minutes", "max_minutes"},
    UNLOCK_REVIEW: {"policy", "min_hours", "max_hours"},
    UNLOCK_DOCUMENTS: {"policy", "min_hours", "max_hours"},
}


def _hours(t: _Table, key: str) -> float:
    """Business hours: a whole or decimal number, zero or more (a stand-in 0 after a problem)."""
    if key not in t.data:
        t.report(key, "missing; write a number of business hours, e.g. 24")
        return 0
    value = t.data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        hint = f"remove the quotes: write {value.strip()}" \
            if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit() else \
            "write a number of business hours, e.g. 24"
        t.report(key, f"must be a number of business hours, e.g. 24, not {value!r}; {hint}")
        return 0
    if value < 0:
        t.report(key, f"must not be negative ({value}); write 0 or more business hours")
    return value


def _unlock_policy(t: _Table, number: int) -> UnlockPolicy:
    action = t.text("policy")
    if action not in UNLOCK_ACTIONS:
        raise t.fail("policy", f"unknown policy {action!r}; write one of "
                               f"{', '.join(repr(a) for a in UNLOCK_ACTIONS)}")
    allowed = _POLICY_KEYS[action]
    for key in t.data:
        if key not in allowed:
            t.report(key, f"not used by policy {action!r}; it takes {', '.join(sorted(allowed))}")
    if action == UNLOCK_AUTO:
        low, high = t.number("min_minutes"), t.number("max_minutes")
        if low > high:
            t.report("min_minutes", f"is more than max_minutes ({low} > {high}); "
                                    "swap them or correct one")
        return UnlockPolicy(number, action, min_minutes=low, max_minutes=high)
    min_hours, max_hours = _hours(t, "min_hours"), _hours(t, "max_hours")
    if min_hours > max_hours:
        t.report("min_hours", f"is more than max_hours ({min_hours} > {max_hours}); "
                              "swap them or correct one")
    return UnlockPolicy(number, action, min_hours=min_hours, max_hours=max_hours)


def _unlock_modality(t: _Table, modality: str) -> UnlockModality:
    t.reject_unknown({"label", "documents_required", "unlocks"})
    unlocks = t.table("unlocks")
    if not unlocks.data and "unlocks" in t.data:
        t.report("unlocks", 'needs at least the 1st unlock, e.g. 1 = { policy = "review", '
                            "min_hours = 4, max_hours = 24 }")
    numbers: dict[int, str] = {}
    for key in unlocks.data:
        if not str(key).isdigit() or int(key) < 1:
            unlocks.report(str(key), "not an unlock number; write 1 for the 1st unlock, "
                                     "2 for the 2nd, ...")
            continue
        numbers[int(key)] = str(key)
    for expected, number in enumerate(sorted(numbers), start=1):
        if number != expected:
            unlocks.report(numbers[number], f"unlock numbers must run 1, 2, 3... without "
                                            f"gaps; add unlock {expected} or renumber")
            break
    policies = tuple(p for n in sorted(numbers)
                     if (p := t.attempt(lambda n=n: _unlock_policy(
                         unlocks.table(numbers[n]), n))) is not None)
    documents = t.text("documents_required", default=None)
    needing = [p.number for p in policies if p.action == UNLOCK_DOCUMENTS]
    if needing and documents is None:
        t.report("documents_required", f"missing: unlock {needing[0]} asks for documents; "
                                       "write what the customer must send, in Spanish")
    return UnlockModality(id=modality, label=t.text("label"), policies=policies,
                          documents_required=documents)


def _unlock(t: _Table) -> Unlock:
    t.reject_unknown({"business_hours", "document_types", "identify_help",
                      "max_unlocks_per_period", "period_days", "review_due_hours",
                      "modalities"})
    business_hours = t.get("business_hours", dict)
    if "business_hours" in t.data:
        try:  # validates; errors name keys (one, the first: business_hours.py stops there)
            calendar_from_mapping(business_hours, t.where("business_hours"))
        except RulesError as exc:
            _business_hours_problem(t, exc)
    modalities_table = t.table("modalities")
    for key in modalities_table.data:
        if key not in UNLOCK_MODALITIES:
            modalities_table.report(str(key), f"unknown modality; the registry knows "
                                              f"{', '.join(UNLOCK_MODALITIES)}")
    modalities = {}
    for modality in UNLOCK_MODALITIES:
        if modality not in modalities_table.data:
            modalities_table.report(modality, "missing: every modality of the registry needs "
                                              f"its unlock policy ([modalities.{modality}])")
            continue
        found = t.attempt(
            lambda m=modality: _unlock_modality(modalities_table.table(m), m))
        if found is not None:
            modalities[modality] = found
    types = []
    for i, raw in enumerate(t.texts("document_types")):
        ext = raw.strip().lower().lstrip(".")
        if not ext.isalnum():
            t.report(f"document_types[{i}]", f"{raw!r} is not a file extension; write "
                                             'extensions like "pdf" or "jpg"')
        elif ext not in types:
            types.append(ext)
    if not types and isinstance(t.data.get("document_types"), list) \
            and not t.data["document_types"]:
        t.report("document_types", 'needs at least one file extension, e.g. ["pdf"]')
    review_due = _hours(t, "review_due_hours")
    if review_due <= 0 and isinstance(t.data.get("review_due_hours"), (int, float)) \
            and not t.data["review_due_hours"] < 0:
        t.report("review_due_hours", "must be more than 0 business hours")
    return Unlock(
        business_hours=business_hours,
        modalities=modalities,
        document_types=tuple(types),
        identify_help=t.text("identify_help").strip(),
        max_unlocks_per_period=t.number("max_unlocks_per_period", minimum=1),
        period_days=t.number("period_days", minimum=1),
        review_due_hours=review_due,
    )


def _reading_rules(directory: Path, problems: Problems | None = None) -> ReadingRules:
    """rules/reading.toml of `directory`; a rules directory made before the file existed reads
    the shipped one, so upgrading never leaves forwards unread."""
    if (directory / "reading.toml").exists():
        return reading_from_table(_read(directory, "reading.toml", problems))
    fallback = shipped("rules")
    if (fallback / "reading.toml").exists():
        return reading_from_table(_read(fallback, "reading.toml"))
    return ReadingRules()


def _business_hours_problem(t: _Table, exc: RulesError) -> None:
    """The business-hours parser's error, recorded with the line of the key it names."""
    where = t.where("business_hours") + ": "
    message = str(exc)
    if t.problems is None:
        raise exc
    if not message.startswith(where):
        t.problems.add_error(exc)
        return
    rest = message[len(where):]
    key, _, problem = rest.partition(": ")
    if not problem:
        key, problem = "", rest
    path = f"{t.prefix}business_hours" + (f".{key}" if key else "")
    t.problems.add(RulesProblem(t.file, f"{t.prefix}business_hours", rest,
                                line_of(t.problems.lines.get(t.file, {}), path)))


# The rules files, in the order they are checked; an optional one may be absent.
_FILES: tuple[tuple[str, str, bool], ...] = (
    ("kinds", "kinds.toml", False),
    ("labels", "fields.toml", False),
    ("catalogue", "catalogue.toml", False),
    ("free_update", "free_update.toml", False),
    ("unlock", "unlock.toml", True),
)
_LOADERS: dict[str, Callable[[_Table], Any]] = {
    "kinds": _kinds, "labels": _labels, "catalogue": _catalogue, "free_update": _free_update,
    "unlock": _unlock,
}


def check_rules(directory: str | Path) -> tuple[Ruleset | None, tuple[RulesProblem, ...]]:
    """Every problem of the rules folder (every file, every section, every key that can still be
    checked), and the Ruleset when there is none (`mailbot rules check` prints them all)."""
    directory = Path(directory)
    if not directory.is_dir():
        return None, (RulesProblem(str(directory), "", "rules directory not found; set "
                                                       "[mailbot] rules_dir or create it"),)
    problems = Problems()
    parts: dict[str, Any] = {}
    tables: dict[str, _Table] = {}

    def load(field: str, name: str) -> Any:
        tables[name] = _read(directory, name, problems)
        return _LOADERS[field](tables[name])

    for field, name, optional in _FILES:
        if optional and not (directory / name).exists():
            parts[field] = None
            continue
        parts[field] = problems.attempt(lambda name=name, field=field: load(field, name))
    parts["reading"] = problems.attempt(lambda: _reading_rules(directory, problems))
    fields = tables.get("fields.toml")  # [label_typos] sits beside [labels]
    parts["label_matching"] = (problems.attempt(lambda: _label_matching(fields))
                               if fields is not None else LabelMatching())
    if problems.items:
        return None, tuple(problems.items)
    return Ruleset(directory=directory, **parts), ()


def load_rules(directory: str | Path) -> Ruleset:
    """The rules `run` decides with; an invalid folder is refused with all its problems."""
    ruleset, problems = check_rules(directory)
    if ruleset is None:
        raise RulesError(problems=problems)
    return ruleset
