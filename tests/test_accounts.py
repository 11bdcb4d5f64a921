"""`mailbot users` and the account logic under the console: argon2 hashes, tokens shown once and
stored hashed, disabling, the failed-login limit. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from botconfig import write_config

from mailbot.ops.accounts import Accounts, LoginLimit
from mailbot.ops.cli import main
from mailbot.store.schema import api_tokens, login_attempts, users

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_TABLES = ("login_attempts", "web_sessions", "api_tokens", "users")
PASSWORD = "correcto-caballo-bateria"
NOON_UTC = dt.datetime(2026, 12, 3, 22, 0)  # 16:00 in Mexico City (CST)
# Where the hash's cost is not what a test is about: argon2id all the same, at its cheapest.
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def empty_accounts(store) -> None:
    with store.transaction() as conn:
        for table in ACCOUNT_TABLES:
            conn.execute(sa.text(f"DELETE FROM {table}"))


@pytest.fixture
def accounts_store(store):
    """The shared store, with the account tables empty before and after (the shared fixture
    empties the tables of the mail flow only)."""
    empty_accounts(store)
    yield store
    empty_accounts(store)


@pytest.fixture
def config(tmp_path, accounts_store) -> Path:
    return write_config(tmp_path, f'[store]\nurl = "{accounts_store.url}"\n')


def users_cli(config: Path, monkeypatch, capsys, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["--config", str(config), "users", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def stored_users(store) -> list:
    with store.transaction() as conn:
        return conn.execute(sa.select(users).order_by(users.c.name)).all()


# -- users add --------------------------------------------------------------------------------

def test_users_add_stores_an_argon2_hash_never_the_password(config, accounts_store, monkeypatch,
                                                            capsys):
    code, out, err = users_cli(config, monkeypatch, capsys, "add", "ana", "--role", "operator",
                               "--password-stdin", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert (code, err) == (0, "") and "ana" in out
    [row] = stored_users(accounts_store)
    assert (row.name, row.role, bool(row.disabled), row.last_login_at) == ("ana", "operator",
                                                                           False, None)
    assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash
    assert PasswordHasher().verify(row.password_hash, PASSWORD)


def test_users_add_reads_two_lines_from_a_real_processes_stdin(config, accounts_store):
    proc = subprocess.run([sys.executable, "-m", "mailbot", "--config", str(config), "users",
                           "add", "root", "--role", "admin", "--password-stdin"],
                          input=f"{PASSWORD}\r\n{PASSWORD}\r\n", capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    [row] = stored_users(accounts_store)
    assert row.role == "admin" and PasswordHasher().verify(row.password_hash, PASSWORD)


@pytest.mark.parametrize(("stdin", "fragment"), [
    (f"{PASSWORD}\n{PASSWORD}x\n", "the two passwords differ"),
    ("corta\ncorta\n", "at least 10 characters"),
    ("", "at least 10 characters"),
])
def test_users_add_refuses_mismatched_or_short_passwords_and_stores_nothing(
        config, accounts_store, monkeypatch, capsys, stdin, fragment):
    code, out, err = users_cli(config, monkeypatch, capsys, "add", "ana", "--role", "operator",
                               "--password-stdin", stdin=stdin)
    assert code == 2 and out == ""
    assert err.startswith("mailbot: error: ") and fragment in err and len(err.splitlines()) == 1
    assert stored_users(accounts_store) == []


def test_users_add_refuses_a_taken_name_and_a_bad_name(config, accounts_store, monkeypatch,
                                                       capsys):
    twice = f"{PASSWORD}\n{PASSWORD}\n"
    assert users_cli(config, monkeypatch, capsys, "add", "ana", "--role", "operator",
                     "--password-stdin", stdin=twice)[0] == 0
    code, _, err = users_cli(config, monkeypatch, capsys, "add", "ana", "--role", "admin",
                             "--password-stdin", stdin=twice)
    assert code == 2 and "an account named 'ana' exists already" in err
    code, _, err = users_cli(config, monkeypatch, capsys, "add", "Ana López", "--role",
                             "operator", "--password-stdin", stdin=twice)
    assert code == 2 and err.startswith("mailbot: error: 'Ana López' is not a usable")
    [row] = stored_users(accounts_store)
    assert row.role == "operator"


def test_users_add_refuses_an_unknown_role(config, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        users_cli(config, monkeypatch, capsys, "add", "ana", "--role", "root",
                  "--password-stdin", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert exit_.value.code == 2 and "invalid choice: 'root'" in capsys.readouterr().err


# -- users list / disable / token -----------------------------------------------------------

def test_users_list_shows_role_disabled_and_the_last_login_in_the_business_zone(
        config, accounts_store, monkeypatch, capsys):
    accounts = Accounts(accounts_store, hasher=FAST)
    accounts.add("ana", "operator", PASSWORD, now=NOON_UTC)
    accounts.add("beto", "admin", PASSWORD, now=NOON_UTC)
    assert accounts.login("ana", PASSWORD, client="127.0.0.1", now=NOON_UTC,
                          limit=LoginLimit()).ok
    accounts.disable("beto", now=NOON_UTC)
    code, out, _ = users_cli(config, monkeypatch, capsys, "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["NAME", "ROLE", "DISABLED", "LAST", "LOGIN"]
    assert lines[1].split() == ["ana", "operator", "no", "2026-12-03", "16:00", "CST"]
    assert lines[2].split() == ["beto", "admin", "yes", "never"]


def test_users_list_without_accounts_says_how_to_add_one(config, monkeypatch, capsys):
    assert "mailbot users add" in users_cli(config, monkeypatch, capsys, "list")[1]


def test_users_token_prints_the_token_last_stores_only_its_hash_and_revoke_ends_it(
        config, accounts_store, monkeypatch, capsys):
    accounts = Accounts(accounts_store, hasher=FAST)
    accounts.add("ana", "operator", PASSWORD, now=NOON_UTC)
    code, out, _ = users_cli(config, monkeypatch, capsys, "token", "ana")
    token = out.splitlines()[-1]
    assert code == 0 and token.startswith("mbt_") and len(token) > 40
    with accounts_store.transaction() as conn:
        [row] = conn.execute(sa.select(api_tokens)).all()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in row.token_hash
    assert accounts.token_user(token, now=NOON_UTC).name == "ana"
    assert accounts.token_user(token + "x", now=NOON_UTC) is None

    code, out, _ = users_cli(config, monkeypatch, capsys, "revoke", "ana")
    assert code == 0 and "1 API token(s)" in out
    assert accounts.token_user(token, now=NOON_UTC) is None


def test_users_disable_refuses_the_password_and_the_tokens_of_the_account(
        config, accounts_store, monkeypatch, capsys):
    accounts = Accounts(accounts_store, hasher=FAST)
    accounts.add("ana", "operator", PASSWORD, now=NOON_UTC)
    token = accounts.new_token("ana", now=NOON_UTC)
    code, out, _ = users_cli(config, monkeypatch, capsys, "disable", "ana")
    assert code == 0 and "disabled" in out
    assert accounts.token_user(token, now=NOON_UTC) is None
    assert not accounts.login("ana", PASSWORD, client="127.0.0.1", now=NOON_UTC,
                              limit=LoginLimit()).ok
    code, _, err = users_cli(config, monkeypatch, capsys, "token", "ana")
    assert code == 2 and "disabled" in err
    code, _, err = users_cli(config, monkeypatch, capsys, "disable", "nadie")
    assert code == 2 and err.startswith("mailbot: error: no account named 'nadie'")


# -- the login limit ------------------------------------------------------------------------

def test_five_failed_logins_lock_the_name_for_the_window_even_with_the_right_password(
        accounts_store):
    accounts = Accounts(accounts_store, hasher=FAST)
    accounts.add("ana", "operator", PASSWORD, now=NOON_UTC)
    limit = LoginLimit(attempts=5, window=dt.timedelta(minutes=15))
    for minute in range(5):
        result = accounts.login("ana", "adivinanza", client=f"10.0.0.{minute}",
                                now=NOON_UTC + dt.timedelta(minutes=minute), limit=limit)
        assert result.outcome == "failed"
    locked = accounts.login("ANA", PASSWORD, client="10.0.0.99",
                            now=NOON_UTC + dt.timedelta(minutes=5), limit=limit)
    assert locked.outcome == "limited" and not locked.ok
    later = accounts.login("ana", PASSWORD, client="10.0.0.99",
                           now=NOON_UTC + dt.timedelta(minutes=15, seconds=1), limit=limit)
    assert later.ok and later.user.name == "ana"
    with accounts_store.transaction() as conn:
        outcomes = conn.execute(sa.select(login_attempts.c.outcome)
                                .order_by(login_attempts.c.id)).scalars().all()
    assert outcomes == ["failed"] * 5 + ["limited", "ok"]


def test_five_failed_logins_from_one_address_lock_that_address_for_every_name(accounts_store):
    accounts = Accounts(accounts_store, hasher=FAST)
    accounts.add("ana", "operator", PASSWORD, now=NOON_UTC)
    limit = LoginLimit(attempts=5)
    for n in range(5):
        assert accounts.login(f"nombre{n}", "x" * 12, client="192.0.2.7", now=NOON_UTC,
                              limit=limit).outcome == "failed"
    assert accounts.login("ana", PASSWORD, client="192.0.2.7", now=NOON_UTC,
                          limit=limit).outcome == "limited"
    assert accounts.login("ana", PASSWORD, client="192.0.2.8", now=NOON_UTC, limit=limit).ok


# -- the migration ----------------------------------------------------------------------------

def test_migration_0005_creates_the_account_tables_as_the_code_defines_them(accounts_store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from mailbot.store.schema import metadata

    with accounts_store.transaction() as conn:
        assert set(ACCOUNT_TABLES) <= set(sa.inspect(conn).get_table_names())
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    accounts_store.downgrade("0004")
    with accounts_store.transaction() as conn:
        assert not set(ACCOUNT_TABLES) & set(sa.inspect(conn).get_table_names())
    accounts_store.migrate()
    with accounts_store.transaction() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
