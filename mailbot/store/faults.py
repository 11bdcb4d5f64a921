"""What a broken store means for the operator: a damaged SQLite file or a full disk becomes one
StoreError naming the file and the fix, instead of a driver traceback.

Every write goes through one transaction, so a transaction that fails on a damaged or full
store saved nothing: the mails it was about are still in the inbox (they are filed only after
their answers are out), and the next run does the work again once the store is fixed.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from mailbot.errors import StoreError

NOTHING_LOST = "nothing was saved, and mails stay in the inbox until then"
# Below this much free space an SQLite I/O error is the disk filling up (it reports
# "disk I/O error" when it cannot even create its -wal or -shm file).
NEARLY_FULL_BYTES = 1024 * 1024
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_PG_DISK_FULL = "53100"  # SQLSTATE disk_full


def storage_fault(url: sa.engine.URL, exc: BaseException) -> StoreError | None:
    """The StoreError an operator must see for `exc`, or None for an ordinary error (a
    constraint, a bug) that the caller handles or reports as it is."""
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return StoreError(f"[store] {_where(url)}: the disk is full ({exc.strerror}); fix: free "
                          f"space on it and run mailbot again; {NOTHING_LOST}")
    orig = getattr(exc, "orig", None)
    if url.get_backend_name() == "postgresql":
        if getattr(orig, "sqlstate", None) == _PG_DISK_FULL:  # psycopg 3
            return StoreError(f"[store] the PostgreSQL server's disk is full ({orig}); fix: free "
                              f"space on the database server; {NOTHING_LOST}")
        return None
    if url.get_backend_name() != "sqlite":
        return None
    name = str(getattr(orig, "sqlite_errorname", ""))
    path = _where(url)
    if name in ("SQLITE_NOTADB",) or name.startswith("SQLITE_CORRUPT"):
        return StoreError(
            f"[store] {path} is damaged ({orig}); fix: restore it from a backup, or move it "
            "away (with any -wal and -shm file beside it) to start a new store; mails stay in "
            "the inbox")
    if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and _nearly_full(path)):
        return StoreError(f"[store] {path}: the disk is full ({orig}); fix: free space on "
                          f"the disk that holds it and run mailbot again; {NOTHING_LOST}")
    if name.startswith("SQLITE_IOERR"):
        return StoreError(f"[store] {path}: the disk reports an I/O error ({orig}); fix: check "
                          f"the disk and that this user may write {Path(path).parent}; "
                          f"{NOTHING_LOST}")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        return StoreError(f"[store] {path} cannot be written ({orig}); fix: let this user "
                          f"write it and its folder {Path(path).parent}; {NOTHING_LOST}")
    return None


def _where(url: sa.engine.URL) -> str:
    database = url.database
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        return str(Path(database).resolve())
    return url.render_as_string(hide_password=True)


def _nearly_full(path: str) -> bool:
    try:
        return shutil.disk_usage(Path(path).parent).free < NEARLY_FULL_BYTES
    except OSError:
        return False


@contextmanager
def store_faults(url: sa.engine.URL) -> Iterator[None]:
    """Inside it, a database error that is the store's own fault (damaged, full, read-only:
    `storage_fault`) comes out as that StoreError; any other error as it was."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        fault = storage_fault(url, exc)
        if fault is None:
            raise
        raise fault from exc
