"""The versions of the rules and templates folders: recorded once per content, kept with files.

A version is one distinct content of a folder (its hash, computed by mailbot.run.versions),
numbered per kind (`rules`, `templates`) in the order the bot first used it. Recording is
idempotent: the same hash is the same version, however often and by however many processes it
is recorded (the unique constraints settle a race; the loser reads the winner's row). The
files are kept so that `mailbot rules diff 2 5` can show what changed long after the folder did.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot.store.database import Store, utcnow
from mailbot.store.schema import config_version_files, config_versions, events

KINDS = ("rules", "templates")


def number_of(conn: Connection, kind: str, digest: str) -> int | None:
    """The number of the version with this content, or None when it was never recorded."""
    return conn.execute(sa.select(config_versions.c.number).where(
        config_versions.c.kind == kind, config_versions.c.hash == digest)).scalar()


def record_in(conn: Connection, kind: str, digest: str, files: Mapping[str, bytes],
              at: dt.datetime | None = None) -> int:
    """The number of the version with this content, recording it (and its files) if new, in the
    caller's transaction (a decision that meets a new version records it with itself)."""
    found = number_of(conn, kind, digest)
    if found is not None:
        return found
    number = (conn.execute(sa.select(sa.func.max(config_versions.c.number)).where(
        config_versions.c.kind == kind)).scalar() or 0) + 1
    inserted = conn.execute(config_versions.insert().values(
        kind=kind, number=number, hash=digest, first_used_at=at or utcnow()))
    version = inserted.inserted_primary_key[0]
    if files:
        conn.execute(config_version_files.insert(), [
            {"version": version, "path": path, "content": content}
            for path, content in sorted(files.items())])
    return number


def record(store: Store, kind: str, digest: str, files: Mapping[str, bytes],
           at: dt.datetime | None = None) -> int:
    """`record_in`, in its own transaction, committed before any decision uses the number.

    When another process records a new content at the same moment, one insert loses on a
    unique constraint; it is tried again, and then finds the row or takes the next number."""
    for attempt in range(3):
        try:
            with store.transaction() as conn:
                return record_in(conn, kind, digest, files, at)
        except sa.exc.IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def listing(conn: Connection, kind: str) -> list[dict[str, Any]]:
    """Every version of `kind`, oldest first: number, hash, first use and its files' paths."""
    rows = conn.execute(sa.select(config_versions).where(config_versions.c.kind == kind)
                        .order_by(config_versions.c.number)).all()
    paths: dict[int, list[str]] = {}
    for version, path in conn.execute(
            sa.select(config_version_files.c.version, config_version_files.c.path)
            .join(config_versions, config_versions.c.id == config_version_files.c.version)
            .where(config_versions.c.kind == kind)
            .order_by(config_version_files.c.path)):
        paths.setdefault(version, []).append(path)
    return [{"number": r.number, "hash": r.hash, "first_used_at": r.first_used_at,
             "files": paths.get(r.id, [])} for r in rows]


def files_of(conn: Connection, kind: str, number: int) -> dict[str, bytes] | None:
    """The files of version `number` of `kind` (relative path -> bytes); None if unknown."""
    version = conn.execute(sa.select(config_versions.c.id).where(
        config_versions.c.kind == kind, config_versions.c.number == number)).scalar()
    if version is None:
        return None
    return {path: bytes(content) for path, content in conn.execute(
        sa.select(config_version_files.c.path, config_version_files.c.content)
        .where(config_version_files.c.version == version))}


def hashes(conn: Connection) -> dict[tuple[str, int], str]:
    """(kind, number) -> hash of every version: the log and the console label numbers with it."""
    return {(r.kind, r.number): r.hash for r in conn.execute(
        sa.select(config_versions.c.kind, config_versions.c.number, config_versions.c.hash))}


def label(kind: str, number: int | None, digest: str | None) -> str:
    """`rules v3 (a1b2c3d4)`: how a version is named to people everywhere."""
    if number is None:
        return f"{kind}: not recorded"
    return f"{kind} v{number}" + (f" ({digest[:8]})" if digest else "")


REFUSED = "version_refused"


def refusal_recorded(conn: Connection, kind: str, digest: str) -> bool:
    """Whether operators were already alerted about this (invalid) content of `kind`: each bad
    content alerts once, also across restarts and between processes sharing the store."""
    rows = conn.execute(sa.select(events.c.detail).where(
        events.c.event == REFUSED, events.c.detail.like(f"%{digest}%"))).scalars()
    for detail in rows:
        found = json.loads(detail or "{}")
        if found.get("kind") == kind and found.get("hash") == digest:
            return True
    return False
