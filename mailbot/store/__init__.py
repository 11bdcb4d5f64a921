"""The store: every table, the Store API and the Alembic migrations.

Only this package writes SQL or imports SQLAlchemy and Alembic; the layers above reach it
through `Store`, the ledger and review-queue functions, and `Connection` (one transaction).
"""

from sqlalchemy.engine import Connection

from mailbot.store.database import MailRecord, Store

__all__ = ["Connection", "MailRecord", "Store"]
