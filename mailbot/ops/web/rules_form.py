"""The rules page's form (`/admin/reglas`): the values of mailbot.ops.rule_edits as form fields,
and the fields back as values, each checked on its own and refused next to it in Spanish with
the fix ("Escriba la fecha como AAAA-MM-DD").

Only values are taken from the form; the shape (which price rows, which modalities and unlock
numbers) is the folder's, so a form cannot add keys the rules loader does not know. Systems are
the exception: they are rows the admin may rename, remove (a checkbox) or add (the blank row at
the end). Spellings are compared as the catalogue compares them (`spelling_key`: no accents,
case, spaces or dashes), so "Nómina" and "nomina" clash here before the loader would refuse them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from mailbot.ops.rule_edits import (
    Modality,
    PerEvent,
    Policy,
    RulesValues,
    SystemRow,
    UnlockRow,
    UnlockValues,
)
from mailbot.ruleset import UNLOCK_ACTIONS, UNLOCK_AUTO, spelling_key

_MONEY = re.compile(r"\$?\s*(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?\s*(?:MXN)?\Z", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:\.\d+)?\Z")
_HOURS = re.compile(r"(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})\Z")
_EXTENSION = re.compile(r"[A-Za-z0-9]+\Z")
MAX_SYSTEMS = 200  # rows of the catalogue a form may carry
MAX_FIELD = 2_000  # characters of one field: far above any rule, below a flood

Gettext = Callable[..., str]


def money_text(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, Decimal) else str(value)


def number_text(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value == int(value) else str(value)


def fields_of(v: RulesValues) -> dict[str, str]:
    """The form's fields filled with the folder's values (and one blank system row to add)."""
    out: dict[str, str] = {"min_score": str(v.min_score),
                           "eligible_from": v.eligible_from.isoformat(),
                           "system_rows": str(len(v.systems) + 1)}
    for i, s in enumerate([*v.systems, SystemRow("", [])]):
        out[f"system-{i}-entry"] = "" if s.entry is None else str(s.entry)
        out[f"system-{i}-name"] = s.name
        out[f"system-{i}-aliases"] = "\n".join(s.aliases)
    for i, p in enumerate(v.policies):
        out[f"policy-{i}-price"] = money_text(p.price)
        out[f"policy-{i}-discount"] = str(p.january_discount_percent)
    for i, e in enumerate(v.per_event):
        out[f"per_event-{i}-max_users"] = str(e.max_users)
        out[f"per_event-{i}-price"] = money_text(e.price)
    if v.unlock is not None:
        u = v.unlock
        out.update({"max_unlocks_per_period": str(u.max_unlocks_per_period),
                    "period_days": str(u.period_days),
                    "review_due_hours": number_text(u.review_due_hours),
                    "document_types": ", ".join(u.document_types),
                    "extra_holidays": "\n".join(d.isoformat() for d in u.extra_holidays)})
        out.update({f"day-{day}": text for day, text in u.days.items()})
        for m in u.modalities:
            if m.documents_required is not None:
                out[f"documents-{m.id}"] = m.documents_required
            for row in m.unlocks:
                out[f"unlock-{m.id}-{row.number}-policy"] = row.policy
                out[f"unlock-{m.id}-{row.number}-low"] = number_text(row.low)
                out[f"unlock-{m.id}-{row.number}-high"] = number_text(row.high)
    return out


def submitted(form: Mapping[str, Any]) -> dict[str, str]:
    """The form's text fields, trimmed to MAX_FIELD characters each (a checkbox is "on")."""
    return {k: str(v)[:MAX_FIELD] for k, v in form.items() if isinstance(v, str)}


class _Reader:
    """Reads the fields one by one, noting each bad one with its message and fix."""

    def __init__(self, fields: Mapping[str, str], _: Gettext) -> None:
        self.fields = fields
        self.errors: dict[str, str] = {}
        self._ = _

    def raw(self, name: str) -> str:
        return self.fields.get(name, "").strip()

    def whole(self, name: str, low: int, high: int | None = None) -> int:
        text = self.raw(name)
        if not text.isdigit():
            self.errors[name] = self._("Write a whole number, e.g. %(example)s.", example=low)
            return low
        value = int(text)
        if value < low or (high is not None and value > high):
            self.errors[name] = (self._("Write a number between %(low)s and %(high)s.",
                                        low=low, high=high) if high is not None
                                 else self._("Write %(low)s or more.", low=low))
        return value

    def hours(self, name: str, *, positive: bool = False) -> float:
        text = self.raw(name).replace(",", ".")
        if not _NUMBER.match(text) or (positive and float(text) <= 0):
            self.errors[name] = self._("Write a number of business hours, e.g. 24 or 4.5.")
            return 0
        return float(text)

    def money(self, name: str) -> int | Decimal:
        match = _MONEY.match(self.raw(name))
        if match is None or len(match.group(2) or "") > 2:
            self.errors[name] = self._("Write the price in pesos with at most two decimals, "
                                       "e.g. 2,500.50 or 2500.50.")
            return 0
        amount = Decimal(match.group(1).replace(",", "") + "." + (match.group(2) or "0"))
        return int(amount) if amount == amount.to_integral_value() else amount

    def date(self, name: str) -> dt.date:
        try:
            return dt.date.fromisoformat(self.raw(name))
        except ValueError:
            self.errors[name] = self._("Write the date as YYYY-MM-DD, e.g. 2011-07-01.")
            return dt.date(1970, 1, 1)

    def text(self, name: str) -> str:
        text = self.raw(name)
        if not text:
            self.errors[name] = self._("This field cannot be empty.")
        return text


def parse(fields: Mapping[str, str], now: RulesValues,
          _: Gettext) -> tuple[RulesValues, dict[str, str]]:
    """The form's values over the folder's (`now`), and the errors by field name."""
    r = _Reader(fields, _)
    systems = _systems(r, len(now.systems))
    new = RulesValues(
        min_score=r.whole("min_score", 0, 100),
        systems=systems,
        eligible_from=r.date("eligible_from"),
        policies=[Policy(p.name, r.money(f"policy-{i}-price"),
                         r.whole(f"policy-{i}-discount", 0, 100))
                  for i, p in enumerate(now.policies)],
        per_event=_per_event(r, now.per_event),
        unlock=_unlock(r, now.unlock) if now.unlock is not None else None)
    return new, r.errors


def _systems(r: _Reader, entries: int) -> list[SystemRow]:
    rows: list[SystemRow] = []
    seen: dict[str, tuple[int, str, str]] = {}  # spelling key -> (row, spelling, system)
    count = min(r.whole("system_rows", 0, MAX_SYSTEMS), MAX_SYSTEMS)
    for i in range(count):
        entry_text = r.raw(f"system-{i}-entry")
        entry = int(entry_text) if entry_text.isdigit() and int(entry_text) < entries else None
        name = r.raw(f"system-{i}-name")
        aliases = [a.strip() for a in r.raw(f"system-{i}-aliases").splitlines() if a.strip()]
        if r.raw(f"system-{i}-remove") or (entry is None and not name and not aliases):
            continue  # removed, or the blank row left blank
        if not name:
            r.errors[f"system-{i}-name"] = r._("Write the system's name, or tick Remove.")
        for field, spelling in [("name", name), *(("aliases", a) for a in aliases)]:
            key = spelling_key(spelling)
            if key and key in seen and seen[key][0] != i:
                r.errors.setdefault(f"system-{i}-{field}", r._(
                    "“%(spelling)s” clashes with “%(other)s” of %(system)s: spellings are "
                    "compared without accents, case, spaces or dashes. Remove one of the two "
                    "or make them differ.", spelling=spelling, other=seen[key][1],
                    system=seen[key][2]))
            elif key:
                seen.setdefault(key, (i, spelling, name))
        rows.append(SystemRow(name, aliases, entry))
    if not rows:
        r.errors["system-0-name"] = r._("The catalogue needs at least one system.")
    return rows


def _per_event(r: _Reader, now: list[PerEvent]) -> list[PerEvent]:
    rows: list[PerEvent] = []
    for i, e in enumerate(now):
        name = f"per_event-{i}-max_users"
        users = r.whole(name, 1)
        if rows and name not in r.errors and users <= rows[-1].max_users:
            r.errors[name] = r._("The rows go up in number of users: write more than "
                                 "%(previous)s, or correct the row above.",
                                 previous=rows[-1].max_users)
        rows.append(PerEvent(e.label, users, r.money(f"per_event-{i}-price")))
    return rows


def _day(r: _Reader, day: str) -> str:
    name = f"day-{day}"
    text = r.raw(name)
    if not text:
        return ""
    match = _HOURS.match(text)
    if match is None:
        r.errors[name] = r._("Write the hours as HH:MM-HH:MM, e.g. 09:00-18:00, or leave it "
                             "empty for a closed day.")
        return text
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2) or (h1, m1) >= (h2, m2):
        r.errors[name] = r._("The opening must be a time before the closing, between 00:00 "
                             "and 24:00, e.g. 09:00-18:00.")
    return f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}"


def _unlock(r: _Reader, now: UnlockValues) -> UnlockValues:
    holidays = []
    for line in r.raw("extra_holidays").splitlines():
        if not line.strip():
            continue
        try:
            holidays.append(dt.date.fromisoformat(line.strip()))
        except ValueError:
            r.errors.setdefault("extra_holidays", r._(
                "Write one date per line as YYYY-MM-DD: “%(value)s” is not one.",
                value=line.strip()))
    types = [t.strip().lower().lstrip(".") for t in r.raw("document_types").split(",")
             if t.strip()]
    if not types or not all(_EXTENSION.match(t) for t in types):
        r.errors["document_types"] = r._("Write file extensions separated by commas, e.g. "
                                         "pdf, jpg, png.")
    return UnlockValues(
        timezone=now.timezone, days={day: _day(r, day) for day in now.days},
        extra_holidays=sorted(set(holidays)),
        max_unlocks_per_period=r.whole("max_unlocks_per_period", 1),
        period_days=r.whole("period_days", 1),
        review_due_hours=r.hours("review_due_hours", positive=True),
        document_types=list(dict.fromkeys(types)),
        modalities=[_modality(r, m) for m in now.modalities])


def _modality(r: _Reader, now: Modality) -> Modality:
    rows = []
    for row in now.unlocks:
        prefix = f"unlock-{now.id}-{row.number}"
        policy = r.raw(f"{prefix}-policy")
        if policy not in UNLOCK_ACTIONS:
            r.errors[f"{prefix}-policy"] = r._("Choose one of the policies offered.")
            policy = row.policy
        if policy == UNLOCK_AUTO:
            low = float(r.whole(f"{prefix}-low", 0))
            high = float(r.whole(f"{prefix}-high", 0))
        else:
            low, high = r.hours(f"{prefix}-low"), r.hours(f"{prefix}-high")
        if low > high and f"{prefix}-low" not in r.errors and f"{prefix}-high" not in r.errors:
            r.errors[f"{prefix}-low"] = r._("The minimum is more than the maximum: swap them "
                                            "or correct one.")
        rows.append(UnlockRow(row.number, policy, low, high))
    documents = now.documents_required
    if documents is not None or any(row.policy == "documents" for row in rows):
        documents = r.text(f"documents-{now.id}")
    return Modality(now.id, now.label, documents, rows)
