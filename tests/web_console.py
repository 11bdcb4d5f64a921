"""A console under test: `create_app` over the shared `store` fixture (SQLite and PostgreSQL),
with a clock the test moves, driven over HTTP by Starlette's TestClient.

Loaded as a plugin by conftest.py: the `console` fixture (the app, its store and clock, and
`login()`/`client()` helpers) is there for every test.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from botconfig import write_config
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mailbot import config as config_module
from mailbot.ops.web.app import create_app
from mailbot.store import Store

ACCOUNT_TABLES = ("login_attempts", "web_sessions", "api_tokens", "users")
PASSWORD = "correcto-caballo-bateria"
# Argon2id at its cheapest: the cost of the hash is not what these tests are about.
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]*)"')


class Clock:
    """Aware UTC, starting at the real time (the store stamps events with it), moved by hand."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@dataclass
class Console:
    app: FastAPI
    store: Store
    clock: Clock
    config_path: Path

    def client(self, *, https: bool = False) -> TestClient:
        return TestClient(self.app, base_url="https://testserver" if https
                          else "http://testserver", follow_redirects=False)

    def add_user(self, name: str = "ana", role: str = "operator") -> None:
        self.app.state.web.accounts.add(name, role, PASSWORD, now=self.app.state.web.now())

    def token(self, name: str = "ana") -> str:
        return self.app.state.web.accounts.new_token(name, now=self.app.state.web.now())

    def login(self, client: TestClient, name: str = "ana", password: str = PASSWORD,
              next_path: str = "/"):
        form = client.get("/login")
        [csrf] = CSRF_INPUT.findall(form.text)
        return client.post("/login", data={"name": name, "password": password,
                                           "csrf_token": csrf, "next": next_path})

    def logged_in(self, name: str = "ana", role: str = "operator", *,
                  https: bool = False) -> TestClient:
        self.add_user(name, role)
        client = self.client(https=https)
        assert self.login(client, name).status_code == 303
        return client


def empty_accounts(store: Store) -> None:
    with store.transaction() as conn:
        for table in ACCOUNT_TABLES:
            conn.execute(sa.text(f"DELETE FROM {table}"))


def build_console(store: Store, directory: Path, sections: str = "",
                  rules: Path | None = None) -> Console:
    """A console over `store` with a config in `directory` (the project's rules, or `rules`)."""
    extra = {"rules": rules} if rules is not None else {}
    path = write_config(directory, f'[store]\nurl = "{store.url}"\n'
                                   f'[web]\nsecret_key_file = "{directory / "secret.key"}"\n'
                                   f"{sections}", **extra)
    clock = Clock()
    app = create_app(config_module.load(path), store=store, clock=clock, hasher=FAST)
    return Console(app, store, clock, path)


@pytest.fixture
def console(store, tmp_path) -> Console:
    """The console over the shared store, its account tables emptied before and after."""
    empty_accounts(store)
    yield build_console(store, tmp_path)
    empty_accounts(store)
