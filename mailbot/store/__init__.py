"""The store: every table, the Store API and the Alembic migrations."""
