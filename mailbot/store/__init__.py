"""The store: every table, the Store API and the Alembic migrations.

Only this package writes SQL or imports SQLAlchemy and Alembic; the layers above reach it
through `Store`, the ledger and review-queue functions, and `Connection` (one transaction).

Its names are imported when first asked for (PEP 562), not with the package: the courier's
helper process needs only `mailbot.store.wal`, and SQLAlchemy would be most of its start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from mailbot.store.database import MailRecord, Store

__all__ = ["Connection", "MailRecord", "Store"]


def __getattr__(name: str) -> Any:
    if name == "Connection":
        from sqlalchemy.engine import Connection

        return Connection
    if name in ("MailRecord", "Store"):
        from mailbot.store import database

        return getattr(database, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
