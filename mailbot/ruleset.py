"""The admin-editable rules in `rules/*.toml`, loaded and validated.

A mistake in a rules file is reported with the file, the key and what is wrong, so an admin can
fix it without reading code (`mailbot rules check`).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

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


@dataclass(frozen=True)
class FreeUpdate:
    target_version: str
    eligible_from: dt.date
    installation: Installation


@dataclass(frozen=True)
class Ruleset:
    directory: Path
    kinds: tuple[Kind, ...]
    labels: Mapping[str, tuple[str, ...]]
    catalogue: Catalogue
    free_update: FreeUpdate

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

    def table(self, key: str) -> "_Table":
        return _Table(self.get(key, dict), self.file, f"{self.prefix}{key}.")

    def tables(self, key: str) -> list["_Table"]:
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
    t.reject_unknown({"labels"})
    labels = t.table("labels")
    labels.reject_unknown(set(FIELDS))
    out = {}
    for name in FIELDS:
        out[name] = labels.texts(name)
        if not out[name]:
            raise labels.fail(name, "needs at least one label")
    return out


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


def load_rules(directory: str | Path) -> Ruleset:
    directory = Path(directory)
    if not directory.is_dir():
        raise RulesError(f"{directory}: rules directory not found")
    kinds = _kinds(_read(directory, "kinds.toml"))
    if not any(k.id == "free_update" for k in kinds):
        raise RulesError(f"{directory / 'kinds.toml'}: kind: no kind with id \"free_update\"")
    return Ruleset(
        directory=directory,
        kinds=kinds,
        labels=_labels(_read(directory, "fields.toml")),
        catalogue=_catalogue(_read(directory, "catalogue.toml")),
        free_update=_free_update(_read(directory, "free_update.toml")),
    )
