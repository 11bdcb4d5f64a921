"""The licence registry and the key pool as an admin imports and exports them: what a file's
keys already are in the store (for the import preview), the writes of a previewed import, and
the rows of the exports (mailbot.ops.registry_files)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot.store.schema import keys, licences, mails, requests

_IN_CHUNK = 500  # values per IN (...) list: far below every back-end's parameter limit
LICENCE_FIELDS = ("system", "company", "contact_email", "purchase_date", "modality",
                  "support_until", "users")


def stored_keys(conn: Connection, wanted: Sequence[str]) -> dict[str, Any]:
    """Those of `wanted` already in the pool, by key: rows with system and serial (None while
    the key is free)."""
    wanted = list(dict.fromkeys(wanted))
    found: dict[str, Any] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        found.update((r.key, r) for r in conn.execute(
            sa.select(keys.c.key, keys.c.system, keys.c.serial)
            .where(keys.c.key.in_(wanted[start:start + _IN_CHUNK]))))
    return found


def add_licences(conn: Connection, records: Sequence[Any], now: dt.datetime) -> None:
    """Insert the licences of `records` (serials not registered yet), in one executemany."""
    if records:
        conn.execute(licences.insert(), [
            {"serial": r.serial, **{f: getattr(r, f) for f in LICENCE_FIELDS},
             "updated_at": now} for r in records])


def update_licences(conn: Connection, records: Sequence[Any], now: dt.datetime) -> None:
    """Write every field of `records` over the registered licences of their serials."""
    if records:
        conn.execute(
            licences.update().where(licences.c.serial == sa.bindparam("_serial"))
            .values(**{f: sa.bindparam(f"_{f}") for f in LICENCE_FIELDS},
                    updated_at=sa.bindparam("_now")),
            [{"_serial": r.serial, **{f"_{f}": getattr(r, f) for f in LICENCE_FIELDS},
              "_now": now} for r in records])


def add_free_keys(conn: Connection, records: Sequence[Any], now: dt.datetime) -> None:
    """Insert `records` (keys not in the pool yet) as free keys."""
    if records:
        conn.execute(keys.insert(), [{"system": r.system, "key": r.key, "imported_at": now}
                                     for r in records])


def every_licence(conn: Connection) -> list[Any]:
    """The whole registry, by serial (the export)."""
    return conn.execute(sa.select(licences).order_by(licences.c.serial)).all()


def issued_keys(conn: Connection) -> list[Any]:
    """Every key bound to a serial, in the order they were issued: system, key, serial,
    assigned_at, and the recipient and mail reference of the request it went out for (None
    for a key bound without a request on record)."""
    return conn.execute(
        sa.select(keys.c.system, keys.c.key, keys.c.serial, keys.c.assigned_at,
                  requests.c.recipient, mails.c.reference)
        .select_from(keys.outerjoin(requests, requests.c.id == keys.c.request)
                     .outerjoin(mails, mails.c.id == requests.c.mail))
        .where(keys.c.serial.is_not(None))
        .order_by(keys.c.assigned_at, keys.c.id)).all()
