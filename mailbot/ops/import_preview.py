"""What importing a registry or key file would do, before it does it; and the import itself,
which writes exactly what its preview showed.

One engine for `mailbot registry|keys import [--dry-run]` and the console's registry page
(/admin/registro): the file is checked row by row (mailbot.ops.imports), then compared with the
store:

- registry: a serial not registered yet is *added*; a registered one whose fields differ is
  *changed* (each field shown old -> new; the import writes every field of the row over the
  registered licence, as it always did); one that is the same is *unchanged* and not written
  at all (its `updated_at` stays: it tells when the licence last changed, not when a file last
  named it); a bad row is *refused* and blocks the whole file (all or nothing).
- keys: a key not in the pool is *added*, as a free key; a key already in the pool (free or
  issued to a serial) is *refused* and skipped, as the import always did: the rest of the file
  still goes in; a bad row (or a key written twice in the file) is *refused* and blocks the
  whole file.

The import recomputes the preview inside its own transaction and writes its adds and changes;
given the digest of a preview shown earlier (the console's confirm), it refuses when the plan
is no longer the same (the store changed in between), so what a person confirmed is what is
written, never more.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mailbot.errors import ImportError_
from mailbot.ops.imports import Checked, Worded, check_keys, check_registry
from mailbot.ruleset import Ruleset
from mailbot.store import Connection, Store
from mailbot.store import registry as stored
from mailbot.store.registry import LICENCE_FIELDS
from mailbot.wording import N_, Words

REGISTRY = "registry"
KEYS = "keys"
KINDS = (REGISTRY, KEYS)


@dataclass(frozen=True)
class Change:
    """One field of a registered licence the file would change."""

    field: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class Planned:
    """A good row of the file and what the import does with it (`changes`: for a change)."""

    line: int
    record: Any  # LicenceRecord or KeyRecord
    changes: tuple[Change, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line,
                               **{k: _text(v) for k, v in vars(self.record).items()}}
        if self.changes:
            out["changes"] = [vars(c) for c in self.changes]
        return out


@dataclass(frozen=True)
class Refusal(Worded):
    """A row the import will not take: with `blocking`, the file as a whole is refused.
    `reason` and `fix` are English (the CLI's); the console says the Words in Spanish."""

    line: int
    column: str  # canonical; Preview.heading() gives the file's own header
    reason_words: Words
    fix_words: Words
    blocking: bool

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "reason": self.reason,
                "fix": self.fix, "blocking": self.blocking}


@dataclass(frozen=True)
class Preview:
    kind: str  # REGISTRY or KEYS
    name: str  # the file, as named in messages
    sha256: str  # of the file's bytes
    add: tuple[Planned, ...]
    change: tuple[Planned, ...]
    unchanged: tuple[Planned, ...]
    refuse: tuple[Refusal, ...]
    headers: tuple[tuple[str, str], ...] = ()  # (canonical column, its header in the file)

    def heading(self, column: str) -> str:
        """`column` as the file's header wrote it ("Purchase date"), else its canonical name."""
        return dict(self.headers).get(column) or column

    @property
    def blocked(self) -> bool:
        """True when the file has bad rows: importing it would import nothing."""
        return any(r.blocking for r in self.refuse)

    @property
    def bad_rows(self) -> int:
        return len({r.line for r in self.refuse if r.blocking})

    @property
    def digest(self) -> str:
        """A hash of the plan (the file and every add, change and refusal): equal digests,
        equal writes."""
        plan = {"kind": self.kind, "file": self.sha256,
                "add": [p.to_json() for p in self.add],
                "change": [p.to_json() for p in self.change],
                "refuse": [r.to_json() for r in self.refuse]}
        return hashlib.sha256(json.dumps(plan, sort_keys=True, ensure_ascii=False)
                              .encode("utf-8")).hexdigest()

    def counts(self) -> dict[str, int]:
        return {"add": len(self.add), "change": len(self.change),
                "unchanged": len(self.unchanged), "refuse": len(self.refuse)}

    def to_json(self, *, limit: int | None = None) -> dict[str, Any]:
        """The preview as JSON; `limit` caps each list of rows (the counts stay whole)."""
        def cap(items: tuple) -> list:
            return list(items if limit is None else items[:limit])

        return {"kind": self.kind, "file": self.name, "sha256": self.sha256,
                "digest": self.digest, "blocked": self.blocked, "counts": self.counts(),
                "add": [p.to_json() for p in cap(self.add)],
                "change": [p.to_json() for p in cap(self.change)],
                "refuse": [r.to_json() for r in cap(self.refuse)]}


class PreviewOutdated(ImportError_):
    """The store changed since the preview a person confirmed: nothing was written."""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def check_file(kind: str, name: str, payload: bytes, rules: Ruleset) -> Checked:
    """`payload` (the file called `name`) checked row by row against the catalogue;
    ImportError_ when the file as a whole cannot be read."""
    if kind not in KINDS:
        raise ValueError(kind)
    reader = check_registry if kind == REGISTRY else check_keys
    return reader(name, payload, rules.catalogue,
                  catalogue_file=str(rules.directory / "catalogue.toml"))


def plan(conn: Connection, store: Store, kind: str, checked: Checked,
         sha256: str) -> Preview:
    """What importing `checked` would do to the store as `conn` sees it."""
    bad = [Refusal(p.line, p.column, p.reason_words, p.fix_words, True)
           for p in checked.problems]
    if kind == REGISTRY:
        registered = store.licences_for(conn, [r.serial for _, r in checked.rows])
        add, change, same = [], [], []
        for line, record in checked.rows:
            row = registered.get(record.serial)
            if row is None:
                add.append(Planned(line, record))
                continue
            changes = tuple(Change(f, _text(getattr(row, f)), _text(getattr(record, f)))
                            for f in LICENCE_FIELDS if getattr(row, f) != getattr(record, f))
            (change if changes else same).append(Planned(line, record, changes))
        return Preview(kind, checked.name, sha256, tuple(add), tuple(change), tuple(same),
                       tuple(bad), checked.headers)
    known = stored.stored_keys(conn, [r.key for _, r in checked.rows])
    add, skipped = [], []
    for line, record in checked.rows:
        row = known.get(record.key)
        if row is None:
            add.append(Planned(line, record))
        elif row.serial is not None:
            skipped.append(Refusal(
                line, "key", Words.of(N_("already issued to the serial %(serial)s"),
                                      serial=row.serial),
                Words(N_("a key goes to one serial only; this row is skipped")), False))
        else:
            reason = (Words(N_("already in the pool, free")) if row.system == record.system
                      else Words.of(N_("already in the pool, free for %(stored)s, not for "
                                       "%(system)s"), stored=row.system, system=record.system))
            skipped.append(Refusal(line, "key", reason, Words(N_("this row is skipped")),
                                   False))
    refuse = sorted([*bad, *skipped], key=lambda r: r.line)
    return Preview(kind, checked.name, sha256, tuple(add), (), (), tuple(refuse),
                   checked.headers)


def sha256_of(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def preview(store: Store, rules: Ruleset, kind: str, name: str, payload: bytes) -> Preview:
    """What importing the file would do; nothing is written."""
    checked = check_file(kind, name, payload, rules)
    with store.transaction() as conn:
        return plan(conn, store, kind, checked, sha256_of(payload))


def commit(store: Store, rules: Ruleset, kind: str, name: str, payload: bytes, *,
           expected: str | None = None, now: dt.datetime) -> Preview:
    """Import the file: in one transaction, plan again and write the plan's adds and changes.

    A file with bad rows is refused whole (BadRowsError, nothing written). `expected` is the
    digest of the preview a person confirmed: a different plan now is PreviewOutdated, nothing
    written. `now` is naive UTC (the store's time).
    """
    checked = check_file(kind, name, payload, rules)
    with store.transaction() as conn:
        result = plan(conn, store, kind, checked, sha256_of(payload))
        if result.blocked:
            checked.records()  # raises BadRowsError naming every bad row
        if expected is not None and result.digest != expected:
            raise PreviewOutdated(f"{name}: the registry or the key pool changed since this "
                                  "preview was made; nothing was imported; preview the file "
                                  "again and confirm what it shows")
        if kind == REGISTRY:
            stored.add_licences(conn, [p.record for p in result.add], now)
            stored.update_licences(conn, [p.record for p in result.change], now)
        else:
            stored.add_free_keys(conn, [p.record for p in result.add], now)
    return result


# -- the CLI's words ------------------------------------------------------------------------

def text_lines(result: Preview, *, dry_run: bool, limit: int | None = None) -> Iterable[str]:
    """The preview (or the import's report) as the CLI prints it: a count line, then one
    indented line per added (in a dry run only), changed and refused row."""
    counts = result.counts()
    what = "licence(s)" if result.kind == REGISTRY else "key(s)"
    verbs = (("to add", "to change", "unchanged", "refused") if dry_run
             else ("added", "changed", "unchanged", "refused"))
    parts = [f"{counts['add']} {verbs[0]}"]
    if result.kind == REGISTRY:
        parts += [f"{counts['change']} {verbs[1]}", f"{counts['unchanged']} {verbs[2]}"]
    parts.append(f"{counts['refuse']} {verbs[3]}")
    head = "dry run, nothing written: " if dry_run else ""
    yield f"{result.name}: {head}{what}: {', '.join(parts)}"
    if result.blocked:
        yield (f"  the file has {result.bad_rows} bad row(s): importing it would import "
               "nothing; fix them first")

    def capped(items: tuple) -> tuple:
        return items if limit is None else items[:limit]

    for p in capped(result.add) if dry_run else ():
        yield f"  add     line {p.line}: {_row_words(p.record)}"
    for p in capped(result.change):
        changes = "; ".join(f"{c.field}: {c.old or '-'} -> {c.new or '-'}" for c in p.changes)
        yield f"  change  line {p.line}: {p.record.serial}: {changes}"
    for r in capped(result.refuse):
        yield f"  refuse  {r.text}"
    if limit is not None and max(counts["add"] if dry_run else 0, counts["change"],
                                 counts["refuse"]) > limit:
        yield f"  (at most {limit} rows of each kind shown; --json shows all)"


def _row_words(record: Any) -> str:
    if hasattr(record, "serial"):
        return f"{record.serial}  {record.system}  {record.company}"
    return f"{record.system}  {record.key}"
