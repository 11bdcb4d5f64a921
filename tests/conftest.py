"""Shared fixtures. Server fixtures live in their own modules, loaded as plugins."""

from __future__ import annotations

import contextlib
import uuid

import postgres_server
import pytest
import sqlalchemy as sa

from mailbot.store.database import Store

pytest_plugins = ["fixtures_imap", "fixtures_smtp", "web_console"]


@pytest.fixture(scope="session")
def postgres_admin_url():
    """A superuser URL: $MAILBOT_TEST_POSTGRES, else a server on 127.0.0.1:5432, else a
    private server for this session (MAILBOT_TEST_POSTGRES=private forces that one); see
    tests/postgres_server.py."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_server.admin_url())
        except postgres_server.PostgresUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        yield url


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url):
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"mailbot_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {postgres_admin_url} "
                    f"(set MAILBOT_TEST_POSTGRES): {exc.orig}")
    url = postgres_admin_url.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """A migrated, empty store on each back-end."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'mailbot.db'}")
    else:
        s = Store(request.getfixturevalue("postgres_url"))
    s.migrate()
    with s.transaction() as conn:
        for table in ("review_actions", "reviews", "unlock_mails", "unlocks", "events",
                      "outbox", "requests", "keys", "licences", "mails",
                      "config_version_files", "config_versions"):
            conn.execute(sa.text(f"DELETE FROM {table}"))
    yield s
    s.close()
