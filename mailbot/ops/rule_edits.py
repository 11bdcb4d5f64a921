"""Editing the rules folder from the console (`/admin/reglas`) and the CLI (`mailbot rules revert`):
what the forms show, how an edit is written into the TOML files, the check before any write,
the dry run of recent mail with the proposed rules, save and revert.

The values an admin edits are read from the files (`values`), changed by the form
(mailbot.ops.web.rules_form validates each field), and written back with tomlkit (`written`):
only the keys whose value changed are touched, so the admin's comments, order and layout in
the files survive a console edit, and a file the edit does not touch keeps its bytes.

Nothing is written unless the whole new folder passes what `mailbot rules check` runs (the
rules loader, every problem with file, line and fix) and what a running bot checks before it
takes new rules (the templates still render with them), on a temporary copy of the folder
(`check`); the write itself is mailbot.ops.folder_edits' (base hash, lock, atomic files,
versions recorded).
"""

from __future__ import annotations

import datetime as dt
import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Float, Trivia

from mailbot.ops import folder_edits
from mailbot.ops.folder_edits import EditRefused, Saved

__all__ = ["EditRefused", "Saved"]
from mailbot.ruleset import UNLOCK_AUTO, Ruleset, check_rules, spelling_key
from mailbot.store import Store

KIND = "rules"
CATALOGUE, FREE_UPDATE, UNLOCK = "catalogue.toml", "free_update.toml", "unlock.toml"
DAY_KEYS = ("lunes", "martes", "miercoles", "jueves", "viernes", "sabado", "domingo")
MAX_PREVIEW_DAYS = 31  # the preview decides again at most this many days of mail...
MAX_PREVIEW_MAILS = 100  # ...and at most this many mails, the newest (see `preview`)

Money = int | Decimal


@dataclass
class SystemRow:
    name: str
    aliases: list[str]
    entry: int | None = None  # its [[system]] position in the file; None: a new system


@dataclass
class Policy:
    name: str
    price: Money
    january_discount_percent: int


@dataclass
class PerEvent:
    label: str
    max_users: int
    price: Money


@dataclass
class UnlockRow:
    """One unlock of a modality: its policy and its window (minutes for `auto`, business
    hours for `review` and `documents`)."""

    number: str  # the key as written ("1")
    policy: str
    low: float
    high: float


@dataclass
class Modality:
    id: str
    label: str
    documents_required: str | None
    unlocks: list[UnlockRow]


@dataclass
class UnlockValues:
    timezone: str
    days: dict[str, str]  # day key as written (or DAY_KEYS) -> "HH:MM-HH:MM" or ""
    extra_holidays: list[dt.date]
    max_unlocks_per_period: int
    period_days: int
    review_due_hours: float
    document_types: list[str]
    modalities: list[Modality]


@dataclass
class RulesValues:
    """What the rules page edits, as plain values (dates as dates, money as int or Decimal)."""

    min_score: int
    systems: list[SystemRow]
    eligible_from: dt.date
    policies: list[Policy]
    per_event: list[PerEvent]
    unlock: UnlockValues | None  # None: the folder has no unlock.toml
    notes: list[str] = field(default_factory=list)


def _money(value: Any) -> Money:
    if isinstance(value, int):
        return value
    amount = Decimal(repr(value))
    return int(amount) if amount == amount.to_integral_value() else amount


def _load(files: Mapping[str, bytes], name: str) -> dict[str, Any]:
    return tomllib.loads(files[name].decode("utf-8"))


def values(files: Mapping[str, bytes]) -> RulesValues:
    """The edited values as the files hold them (the folder passed its check: they load)."""
    catalogue, free = _load(files, CATALOGUE), _load(files, FREE_UPDATE)
    inst = free["installation"]
    return RulesValues(
        min_score=catalogue.get("min_score", 88),
        systems=[SystemRow(s["name"], list(s.get("aliases", [])), i)
                 for i, s in enumerate(catalogue["system"])],
        eligible_from=free["eligible_from"],
        policies=[Policy(p["name"], _money(p["price"]), p.get("january_discount_percent", 0))
                  for p in inst["policies"]],
        per_event=[PerEvent(e["label"], e["max_users"], _money(e["price"]))
                   for e in inst["per_event"]],
        unlock=_unlock_values(_load(files, UNLOCK)) if UNLOCK in files else None)


def _default_days() -> dict[str, str]:
    return {day: "09:00-18:00" if day in DAY_KEYS[:5] else "" for day in DAY_KEYS}


def _unlock_values(data: dict[str, Any]) -> UnlockValues:
    hours = data.get("business_hours", {})
    # Without [business_hours.days] the bot works Monday to Friday, 09:00-18:00: shown so.
    days = dict(hours["days"]) if "days" in hours else _default_days()
    written = {spelling_key(day) for day in days}  # "miércoles" as the file may spell it
    for key in DAY_KEYS:
        if key not in written:
            days[key] = ""
    modalities = []
    for key, m in data.get("modalities", {}).items():
        rows = []
        for number, u in m.get("unlocks", {}).items():
            unit = "minutes" if u.get("policy") == UNLOCK_AUTO else "hours"
            rows.append(UnlockRow(str(number), u.get("policy", ""), u.get(f"min_{unit}", 0),
                                  u.get(f"max_{unit}", 0)))
        modalities.append(Modality(key, m.get("label", key), m.get("documents_required"), rows))
    return UnlockValues(
        timezone=hours.get("timezone", "America/Mexico_City"), days=days,
        extra_holidays=list(hours.get("extra_holidays", [])),
        max_unlocks_per_period=data.get("max_unlocks_per_period", 0),
        period_days=data.get("period_days", 0),
        review_due_hours=data.get("review_due_hours", 0),
        document_types=list(data.get("document_types", [])), modalities=modalities)


# --- writing the values into the files, keeping everything else -------------------------------

def _toml_value(value: Any) -> Any:
    """A value as tomlkit writes it: money with cents keeps its two decimals (2500.50)."""
    if isinstance(value, Decimal):
        return Float(float(value), Trivia(), f"{value:.2f}")
    if isinstance(value, float) and value == int(value):
        return int(value)
    return value


def _plain(value: Any) -> Any:
    """A tomlkit item as the plain value it holds, to compare with the form's."""
    return value.unwrap() if hasattr(value, "unwrap") else value


def _set(table: Any, key: str, value: Any) -> None:
    """Set `key` only when its value changes (so an untouched key keeps its text exactly)."""
    if key in table and _same(_plain(table[key]), value):
        return
    table[key] = _toml_value(value)


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, float) or isinstance(new, (float, Decimal)):
        try:
            return Decimal(repr(old) if isinstance(old, float) else str(old)) == Decimal(
                repr(new) if isinstance(new, float) else str(new))
        except ArithmeticError:
            return False
    return type(old) is type(new) and old == new or (
        isinstance(old, list) and isinstance(new, list) and old == new)


def _dump(files: dict[str, bytes], name: str, doc: Any) -> None:
    text = tomlkit.dumps(doc).encode("utf-8")
    if text != files[name]:
        files[name] = text


def written(files: Mapping[str, bytes], new: RulesValues) -> dict[str, bytes]:
    """The folder's files with `new` written in; the other keys, comments and layout kept."""
    out = dict(files)
    _write_catalogue(out, new)
    _write_free_update(out, new)
    if new.unlock is not None and UNLOCK in out:
        _write_unlock(out, new.unlock)
    return out


def _write_catalogue(files: dict[str, bytes], new: RulesValues) -> None:
    doc = tomlkit.parse(files[CATALOGUE].decode("utf-8"))
    _set(doc, "min_score", new.min_score)
    entries = doc["system"]
    kept = {row.entry for row in new.systems if row.entry is not None}
    for row in new.systems:
        if row.entry is not None:
            _set(entries[row.entry], "name", row.name)
            _set(entries[row.entry], "aliases", row.aliases)
    for index in sorted(set(range(len(entries))) - kept, reverse=True):
        del entries[index]
    for row in new.systems:
        if row.entry is None:
            table = tomlkit.table()
            table["name"] = row.name
            table["aliases"] = row.aliases
            table.trivia.indent = "\n"
            entries.append(table)
    _dump(files, CATALOGUE, doc)


def _write_free_update(files: dict[str, bytes], new: RulesValues) -> None:
    doc = tomlkit.parse(files[FREE_UPDATE].decode("utf-8"))
    _set(doc, "eligible_from", new.eligible_from)
    inst = doc["installation"]
    for table, policy in zip(inst["policies"], new.policies, strict=True):
        _set(table, "price", policy.price)
        _set(table, "january_discount_percent", policy.january_discount_percent)
    for table, row in zip(inst["per_event"], new.per_event, strict=True):
        _set(table, "max_users", row.max_users)
        _set(table, "price", row.price)
    _dump(files, FREE_UPDATE, doc)


def _write_unlock(files: dict[str, bytes], new: UnlockValues) -> None:
    doc = tomlkit.parse(files[UNLOCK].decode("utf-8"))
    for key in ("max_unlocks_per_period", "period_days", "review_due_hours", "document_types"):
        _set(doc, key, getattr(new, key))
    if "business_hours" not in doc:
        doc["business_hours"] = tomlkit.table()
    hours = doc["business_hours"]
    _set(hours, "extra_holidays", new.extra_holidays)
    if "days" in hours or new.days != _default_days():
        if "days" not in hours:
            hours["days"] = tomlkit.table()
        for day, text in new.days.items():
            _set(hours["days"], day, text)
    modalities = doc["modalities"]
    for modality in new.modalities:
        table = modalities[modality.id]
        if modality.documents_required is not None:
            _set(table, "documents_required", modality.documents_required)
        for row in modality.unlocks:
            _write_unlock_row(table["unlocks"], row)
    _dump(files, UNLOCK, doc)


def _write_unlock_row(unlocks: Any, row: UnlockRow) -> None:
    unit = "minutes" if row.policy == UNLOCK_AUTO else "hours"
    wanted = {"policy": row.policy, f"min_{unit}": row.low, f"max_{unit}": row.high}
    if unit == "minutes":
        wanted = {k: int(v) if k != "policy" else v for k, v in wanted.items()}
    entry = unlocks[row.number]
    if set(entry) == set(wanted):
        for key, value in wanted.items():
            _set(entry, key, value)
        return
    # Another policy takes other keys: the entry is written anew, in the file's own style.
    text = ", ".join(f"{k} = {tomlkit.item(_toml_value(v)).as_string()}"
                     for k, v in wanted.items())
    unlocks[row.number] = tomlkit.parse(f"x = {{ {text} }}")["x"]


# --- the check, the preview, the save ---------------------------------------------------------

def check(files: Mapping[str, bytes], directory: Path, templates: Path | None) -> list[str]:
    """What `mailbot rules check` would say of `files` as the folder's content (every problem,
    with file, key, line and fix), and, when they load, whether the templates of `templates`
    still render with them (a running bot refuses new rules otherwise); lines name the real
    folder's files, not the temporary copy's."""
    from mailbot.answer.render import Renderer

    with folder_edits.staged(files, KIND) as root:
        ruleset, problems = check_rules(root)
        lines = [str(p) for p in problems]
        if ruleset is not None and templates is not None:
            lines = [f"with these rules the templates fail: {e}"
                     for e in Renderer(templates).check(ruleset)]
        return [line.replace(str(root), str(directory)) for line in lines]


def save(store: Store, directory: Path, templates: Path | None, files: Mapping[str, bytes], *,
         base: str | None, now: Any = None) -> Saved:
    """Check `files`, then write them and record the version (mailbot.ops.folder_edits.save)."""
    return folder_edits.save(store, KIND, directory, files,
                             check=lambda f: check(f, directory, templates), base=base, now=now)


def current(store: Store, directory: Path) -> folder_edits.Current:
    return folder_edits.current(store, KIND, directory)


def versions(store: Store) -> list[dict[str, Any]]:
    return folder_edits.versions(store, KIND)


def files_of(store: Store, number: int) -> dict[str, bytes]:
    return folder_edits.files_of(store, KIND, number)


@dataclass(frozen=True)
class ReplyShown:
    template: str
    to: tuple[str, ...]
    subject: str


@dataclass(frozen=True)
class Changed:
    """One stored mail whose answer the proposed rules change: before and after."""

    reference: str
    subject: str
    before_outcome: str | None
    after_outcome: str | None
    before: tuple[ReplyShown, ...]
    after: tuple[ReplyShown, ...]
    text_diff: str  # the replies' text, before -> after, as unified diff lines


@dataclass(frozen=True)
class Preview:
    days: int
    mails: int  # how many were decided again
    skipped: int  # stored mails left out: over MAX_PREVIEW_MAILS, or not readable
    changes: list[Changed]
    errors: list[str]
    # Systems the change takes out of the catalogue (removed or renamed) while the key pool
    # still holds keys under their name: (name, free, assigned). The registry and the pool
    # name a system by its catalogue name, so those keys would no longer be found.
    orphans: list[tuple[str, int, int]] = field(default_factory=list)


def preview(config: Any, store: Store, rules: Ruleset, templates: Path,
            files: Mapping[str, bytes], days: int,
            limit: int = MAX_PREVIEW_MAILS) -> Preview:
    """The stored mails of the last `days` days decided again with `rules` (those in use) and
    with `files` (the proposed folder, checked first), on snapshots of the store: nothing is
    stored, bound, sent or filed (mailbot.run.dryrun). The newest `limit` mails at most.

    Each run is one transaction on the store. On SQLite it runs on a copy of the database and
    blocks nobody; on PostgreSQL it holds row locks on the mails it decides again (and the
    keys it takes) until it ends, so a running pass that touches one of those rows waits for
    it: the bounds (MAX_PREVIEW_DAYS, MAX_PREVIEW_MAILS) keep that to seconds."""
    from mailbot.ops.rehearsal import console_app, recent
    from mailbot.ruleset import load_rules
    from mailbot.run.dryrun import compare, dry_app

    with console_app(config, store, rules, templates) as app, \
            folder_edits.staged(files, KIND) as root:
        proposed = load_rules(root)
        found, over = recent(app, days, limit)
        mails = [m for m in found if m.problem is None]
        before = dry_app(app)
        changes = compare(before, dry_app(before, rules=proposed), mails)
    gone = set(rules.catalogue.names) - set(proposed.catalogue.names)
    with store.transaction() as conn:
        pool = store.pool_counts(conn)
    return Preview(max(1, min(days, MAX_PREVIEW_DAYS)), len(mails), over + len(found) - len(mails),
                   [changed(c) for c in changes],
                   [f"{m.label}: {m.problem}" for m in found if m.problem],
                   [(name, *pool[name]) for name in sorted(gone) if name in pool])


def changed(change: Any) -> Changed:
    """A change as the rules page and the dry-run page show it: outcomes, replies, text diff."""
    a, b = change.before, change.after

    def shown(result: Any) -> tuple[ReplyShown, ...]:
        return tuple(ReplyShown(r.template, r.to, r.subject) for r in result.replies)

    def text(result: Any) -> list[str]:
        return [line for r in result.replies for line in
                [f"[{r.template}] {r.subject}", *r.text.splitlines()]]

    lines = difflib.unified_diff(text(a), text(b), "antes", "después", lineterm="", n=1)
    return Changed(a.label, a.subject or b.subject, a.outcome or a.error, b.outcome or b.error,
                   shown(a), shown(b), "\n".join(lines))
