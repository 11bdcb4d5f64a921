"""The admin-editable rules in `rules/*.toml`, loaded and validated.

A mistake in a rules file is reported with the file, the key and what is wrong, so an admin can
fix it without reading code (`mailbot rules check`).
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailbot.business_hours import calendar_from_mapping
from mailbot.errors import RulesError
from mailbot.model import FIELDS


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
    price: int
    january_discount_percent: int


@dataclass(frozen=True)
class PerEventPrice:
    label: str
    max_users: int
    price: int


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
                "discounted_price": round(p.price * (100 - pct) / 100) if pct else None,
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


@dataclass(frozen=True)
class FreeUpdate:
    target_version: str
    eligible_from: dt.date
    installation: Installation


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
    label_matching: LabelMatching = LabelMatching()

    def kind(self, kind_id: str) -> Kind:
        for k in self.kinds:
            if k.id == kind_id:
                return k
        raise KeyError(kind_id)


class _Table:
    """A TOML table that knows where it came from, so every error names file and key."""

    def __init__(self, data: Mapping[str, Any], file: str, prefix: str = "") -> None:
        self.data = data
        self.file = file
        self.prefix = prefix

    def where(self, key: str) -> str:
        return f"{self.file}: {self.prefix}{key}"

    def fail(self, key: str, problem: str) -> RulesError:
        return RulesError(f"{self.where(key)}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], *, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "missing")
            return default
        value = self.data[key]
        if isinstance(value, bool) and kind is int:
            raise self.fail(key, f"must be a whole number, not {value!r}")
        if not isinstance(value, kind):
            names = {str: "text", int: "a whole number", list: "a list", dict: "a table",
                     dt.date: "a date (YYYY-MM-DD)"}
            wanted = names.get(kind, getattr(kind, "__name__", str(kind)))  # type: ignore[arg-type]
            raise self.fail(key, f"must be {wanted}, not {value!r}")
        return value

    def text(self, key: str, default: Any = ...) -> str:
        value = self.get(key, str, default=default)
        if isinstance(value, str) and not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def number(self, key: str, default: Any = ..., minimum: int = 0) -> int:
        value = self.get(key, int, default=default)
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum}, not {value}")
        return value

    def texts(self, key: str, default: Any = ...) -> tuple[str, ...]:
        values = self.get(key, list, default=default)
        for i, v in enumerate(values):
            if not isinstance(v, str) or not v.strip():
                raise self.fail(f"{key}[{i}]", f"must be non-empty text, not {v!r}")
        return tuple(values)

    def table(self, key: str) -> _Table:
        return _Table(self.get(key, dict), self.file, f"{self.prefix}{key}.")

    def tables(self, key: str) -> list[_Table]:
        items = self.get(key, list)
        if not items:
            raise self.fail(key, "needs at least one entry")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.fail(f"{key}[{i}]", "must be a table ([[...]])")
            out.append(_Table(item, self.file, f"{self.prefix}{key}[{i}]."))
        return out

    def reject_unknown(self, allowed: set[str]) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.fail(key, f"unknown key; expected one of: {', '.join(sorted(allowed))}")


def _read(directory: Path, name: str) -> _Table:
    path = directory / name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesError(f"{path}: missing rules file") from None
    except UnicodeDecodeError:
        raise RulesError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: invalid TOML: {exc}") from None
    return _Table(data, str(path))


def _kinds(t: _Table) -> tuple[Kind, ...]:
    t.reject_unknown({"kind"})
    kinds = []
    for k in t.tables("kind"):
        k.reject_unknown({"id", "title", "subjects"})
        kind = Kind(id=k.text("id"), title=k.text("title", default=k.data.get("id", "")),
                    subjects=k.texts("subjects"))
        if not kind.subjects:
            raise k.fail("subjects", "needs at least one subject")
        if any(kind.id == other.id for other in kinds):
            raise k.fail("id", f"duplicate kind id {kind.id!r}")
        kinds.append(kind)
    return tuple(kinds)


def _labels(t: _Table) -> dict[str, tuple[str, ...]]:
    t.reject_unknown({"labels", "label_typos"})
    labels = t.table("labels")
    labels.reject_unknown(set(FIELDS))
    out: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for name in FIELDS:
        out[name] = labels.texts(name)
        if not out[name]:
            raise labels.fail(name, "needs at least one label")
        for spelling in out[name]:
            # The same spelling under two fields would be read as whichever came first.
            key = "".join(c for c in unicodedata.normalize("NFKD", spelling.casefold())
                          if c.isalnum())
            if seen.get(key, name) != name:
                raise labels.fail(name, f"{spelling!r} is already a label of {seen[key]}")
            seen[key] = name
    return out


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
    seen: dict[str, str] = {}
    for s in t.tables("system"):
        s.reject_unknown({"name", "aliases"})
        system = System(name=s.text("name"), aliases=s.texts("aliases", default=[]))
        for spelling in (system.name, *system.aliases):
            key = spelling.casefold()
            if key in seen and seen[key] != system.name:
                raise s.fail("aliases", f"{spelling!r} already names {seen[key]!r}")
            seen[key] = system.name
        systems.append(system)
    score = t.number("min_score", default=88)
    if score > 100:
        raise t.fail("min_score", "must be between 0 and 100")
    return Catalogue(systems=tuple(systems), min_score=score)


def _free_update(t: _Table) -> FreeUpdate:
    t.reject_unknown({"target_version", "eligible_from", "installation"})
    eligible = t.get("eligible_from", dt.date)
    if isinstance(eligible, dt.datetime):
        raise t.fail("eligible_from", "must be a date without a time (YYYY-MM-DD)")
    inst = t.table("installation")
    inst.reject_unknown({"phone", "currency", "tax_note", "multi_system_note", "policies",
                         "per_event", "above_max"})
    policies = []
    for p in inst.tables("policies"):
        p.reject_unknown({"name", "price", "january_discount_percent"})
        pct = p.number("january_discount_percent", default=0)
        if pct > 100:
            raise p.fail("january_discount_percent", "must be between 0 and 100")
        policies.append(PolicyPrice(p.text("name"), p.number("price"), pct))
    per_event = []
    for e in inst.tables("per_event"):
        e.reject_unknown({"label", "max_users", "price"})
        row = PerEventPrice(e.text("label"), e.number("max_users", minimum=1), e.number("price"))
        if per_event and row.max_users <= per_event[-1].max_users:
            raise e.fail("max_users", "rows must be in increasing order of max_users")
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
    )


_POLICY_KEYS = {
    UNLOCK_AUTO: {"policy", "min_minutes", "max_minutes"},
    UNLOCK_REVIEW: {"policy", "min_hours", "max_hours"},
    UNLOCK_DOCUMENTS: {"policy", "min_hours", "max_hours"},
}


def _hours(t: _Table, key: str) -> float:
    """Business hours: a whole or decimal number, zero or more."""
    if key not in t.data:
        raise t.fail(key, "missing; write a number of business hours, e.g. 24")
    value = t.data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise t.fail(key, f"must be a number of business hours, e.g. 24, not {value!r}")
    if value < 0:
        raise t.fail(key, f"must not be negative ({value}); write 0 or more business hours")
    return value


def _unlock_policy(t: _Table, number: int) -> UnlockPolicy:
    action = t.text("policy")
    if action not in UNLOCK_ACTIONS:
        raise t.fail("policy", f"unknown policy {action!r}; write one of "
                               f"{', '.join(repr(a) for a in UNLOCK_ACTIONS)}")
    allowed = _POLICY_KEYS[action]
    for key in t.data:
        if key not in allowed:
            raise t.fail(key, f"not used by policy {action!r}; it takes "
                              f"{', '.join(sorted(allowed))}")
    if action == UNLOCK_AUTO:
        low, high = t.number("min_minutes"), t.number("max_minutes")
        if low > high:
            raise t.fail("min_minutes", f"is more than max_minutes ({low} > {high}); "
                                        "swap them or correct one")
        return UnlockPolicy(number, action, min_minutes=low, max_minutes=high)
    min_hours, max_hours = _hours(t, "min_hours"), _hours(t, "max_hours")
    if min_hours > max_hours:
        raise t.fail("min_hours", f"is more than max_hours ({min_hours} > {max_hours}); "
                                  "swap them or correct one")
    return UnlockPolicy(number, action, min_hours=min_hours, max_hours=max_hours)


def _unlock_modality(t: _Table, modality: str) -> UnlockModality:
    t.reject_unknown({"label", "documents_required", "unlocks"})
    unlocks = t.table("unlocks")
    if not unlocks.data:
        raise t.fail("unlocks", 'needs at least the 1st unlock, e.g. 1 = { policy = "review", '
                                "min_hours = 4, max_hours = 24 }")
    numbers: dict[int, str] = {}
    for key in unlocks.data:
        if not str(key).isdigit() or int(key) < 1:
            raise unlocks.fail(str(key), "not an unlock number; write 1 for the 1st unlock, "
                                         "2 for the 2nd, ...")
        numbers[int(key)] = str(key)
    for expected, number in enumerate(sorted(numbers), start=1):
        if number != expected:
            raise unlocks.fail(numbers[number], f"unlock numbers must run 1, 2, 3... without "
                                                f"gaps; add unlock {expected} or renumber")
    policies = tuple(_unlock_policy(unlocks.table(numbers[n]), n) for n in sorted(numbers))
    documents = t.text("documents_required", default=None)
    needing = [p.number for p in policies if p.action == UNLOCK_DOCUMENTS]
    if needing and documents is None:
        raise t.fail("documents_required", f"missing: unlock {needing[0]} asks for documents; "
                                            "write what the customer must send, in Spanish")
    return UnlockModality(id=modality, label=t.text("label"), policies=policies,
                          documents_required=documents)


def _unlock(t: _Table) -> Unlock:
    t.reject_unknown({"business_hours", "document_types", "identify_help",
                      "max_unlocks_per_period", "period_days", "review_due_hours",
                      "modalities"})
    business_hours = t.get("business_hours", dict)
    calendar_from_mapping(business_hours, t.where("business_hours"))  # validates; errors name keys
    modalities_table = t.table("modalities")
    for key in modalities_table.data:
        if key not in UNLOCK_MODALITIES:
            raise modalities_table.fail(str(key), f"unknown modality; the registry knows "
                                                  f"{', '.join(UNLOCK_MODALITIES)}")
    modalities = {}
    for modality in UNLOCK_MODALITIES:
        if modality not in modalities_table.data:
            raise modalities_table.fail(modality, "missing: every modality of the registry needs "
                                                  f"its unlock policy ([modalities.{modality}])")
        modalities[modality] = _unlock_modality(modalities_table.table(modality), modality)
    types = []
    for i, raw in enumerate(t.texts("document_types")):
        ext = raw.strip().lower().lstrip(".")
        if not ext.isalnum():
            raise t.fail(f"document_types[{i}]", f"{raw!r} is not a file extension; write "
                                                 'extensions like "pdf" or "jpg"')
        if ext not in types:
            types.append(ext)
    if not types:
        raise t.fail("document_types", 'needs at least one file extension, e.g. ["pdf"]')
    review_due = _hours(t, "review_due_hours")
    if review_due <= 0:
        raise t.fail("review_due_hours", "must be more than 0 business hours")
    return Unlock(
        business_hours=business_hours,
        modalities=modalities,
        document_types=tuple(types),
        identify_help=t.text("identify_help").strip(),
        max_unlocks_per_period=t.number("max_unlocks_per_period", minimum=1),
        period_days=t.number("period_days", minimum=1),
        review_due_hours=review_due,
    )


def load_rules(directory: str | Path) -> Ruleset:
    directory = Path(directory)
    if not directory.is_dir():
        raise RulesError(f"{directory}: rules directory not found")
    kinds = _kinds(_read(directory, "kinds.toml"))
    if not any(k.id == "free_update" for k in kinds):
        raise RulesError(f"{directory / 'kinds.toml'}: kind: no kind with id \"free_update\"")
    fields = _read(directory, "fields.toml")
    return Ruleset(
        directory=directory,
        kinds=kinds,
        labels=_labels(fields),
        catalogue=_catalogue(_read(directory, "catalogue.toml")),
        free_update=_free_update(_read(directory, "free_update.toml")),
        unlock=(_unlock(_read(directory, "unlock.toml"))
                if (directory / "unlock.toml").exists() else None),
        label_matching=_label_matching(fields),
    )
