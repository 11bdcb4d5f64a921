"""The console's accounts in the store: users, API tokens, browser sessions, login attempts.

Rows only: hashing, roles and the rate limit's policy are `mailbot.ops.accounts`' business.
Tokens and session ids arrive here already hashed (SHA-256 hex), so no secret is ever stored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailbot.store.schema import api_tokens, login_attempts, users, web_sessions

# How a login attempt ended (login_attempts.outcome); the limit counts FAILED ones.
LOGIN_OK = "ok"
LOGIN_FAILED = "failed"
LOGIN_LIMITED = "limited"


class NameTaken(Exception):
    """An account of that name exists already."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    password_hash: str
    disabled: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: Any) -> User:
        return cls(row.id, row.name, row.role, row.password_hash, bool(row.disabled),
                   row.created_at, row.last_login_at)


@dataclass(frozen=True)
class Session:
    id: int
    user: User
    csrf_token: str
    expires_at: dt.datetime


# --- users -------------------------------------------------------------------------------------

def add_user(conn: Connection, *, name: str, role: str, password_hash: str,
             now: dt.datetime) -> User:
    """Insert an account; NameTaken when the name is in use (the unique constraint decides, so
    two `users add` at once cannot both succeed)."""
    try:
        result = conn.execute(users.insert().values(
            name=name, role=role, password_hash=password_hash, disabled=False, created_at=now))
    except sa.exc.IntegrityError:  # the transaction is spoilt: the caller's rolls back
        raise NameTaken(name) from None
    return User(result.inserted_primary_key[0], name, role, password_hash, False, now, None)


def user_by_name(conn: Connection, name: str) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.name == name)).first()
    return User.from_row(row) if row else None


def all_users(conn: Connection) -> list[User]:
    return [User.from_row(r) for r in conn.execute(sa.select(users).order_by(users.c.name))]


def count_enabled_users(conn: Connection) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(users)
                        .where(users.c.disabled.is_(False))).scalar_one()


def disable_user(conn: Connection, user_id: int, now: dt.datetime) -> None:
    """Disabled, and every session of the account ended (its tokens stop at the user check)."""
    conn.execute(users.update().where(users.c.id == user_id).values(disabled=True))
    conn.execute(web_sessions.update().where(web_sessions.c.user == user_id,
                                             web_sessions.c.revoked_at.is_(None))
                 .values(revoked_at=now))


def logged_in(conn: Connection, user_id: int, now: dt.datetime,
              new_password_hash: str | None = None) -> None:
    values: dict[str, Any] = {"last_login_at": now}
    if new_password_hash is not None:  # argon2's parameters were raised since it was hashed
        values["password_hash"] = new_password_hash
    conn.execute(users.update().where(users.c.id == user_id).values(**values))


# --- API tokens --------------------------------------------------------------------------------

def add_token(conn: Connection, user_id: int, token_hash: str, now: dt.datetime) -> int:
    return conn.execute(api_tokens.insert().values(
        user=user_id, token_hash=token_hash, created_at=now)).inserted_primary_key[0]


def user_by_token(conn: Connection, token_hash: str, now: dt.datetime) -> User | None:
    """The enabled account of an unrevoked token (and the token's last use noted)."""
    row = conn.execute(sa.select(users, api_tokens.c.id.label("token_id"))
                       .select_from(api_tokens.join(users, api_tokens.c.user == users.c.id))
                       .where(api_tokens.c.token_hash == token_hash,
                              api_tokens.c.revoked_at.is_(None),
                              users.c.disabled.is_(False))).first()
    if row is None:
        return None
    conn.execute(api_tokens.update().where(api_tokens.c.id == row.token_id)
                 .values(last_used_at=now))
    return User.from_row(row)


def revoke_tokens(conn: Connection, user_id: int, now: dt.datetime) -> int:
    """Revoke every live token of the account; how many were live."""
    return conn.execute(api_tokens.update().where(api_tokens.c.user == user_id,
                                                  api_tokens.c.revoked_at.is_(None))
                        .values(revoked_at=now)).rowcount


# --- browser sessions --------------------------------------------------------------------------

def add_session(conn: Connection, *, user_id: int, token_hash: str, csrf_token: str,
                now: dt.datetime, expires_at: dt.datetime) -> int:
    return conn.execute(web_sessions.insert().values(
        user=user_id, token_hash=token_hash, csrf_token=csrf_token, created_at=now,
        expires_at=expires_at)).inserted_primary_key[0]


def live_session(conn: Connection, token_hash: str, now: dt.datetime) -> Session | None:
    """The session of `token_hash` if it is neither revoked nor expired and its account is
    enabled."""
    row = conn.execute(sa.select(users, web_sessions.c.id.label("session_id"),
                                 web_sessions.c.csrf_token, web_sessions.c.expires_at)
                       .select_from(web_sessions.join(users, web_sessions.c.user == users.c.id))
                       .where(web_sessions.c.token_hash == token_hash,
                              web_sessions.c.revoked_at.is_(None),
                              web_sessions.c.expires_at > now,
                              users.c.disabled.is_(False))).first()
    if row is None:
        return None
    return Session(row.session_id, User.from_row(row), row.csrf_token, row.expires_at)


def end_session(conn: Connection, session_id: int, now: dt.datetime) -> None:
    conn.execute(web_sessions.update().where(web_sessions.c.id == session_id,
                                             web_sessions.c.revoked_at.is_(None))
                 .values(revoked_at=now))


# --- login attempts ----------------------------------------------------------------------------

def record_attempt(conn: Connection, *, name: str, client: str, outcome: str,
                   now: dt.datetime) -> None:
    conn.execute(login_attempts.insert().values(at=now, name=name[:200], client=client[:100],
                                                outcome=outcome))


def failures_since(conn: Connection, *, name: str, client: str,
                   since: dt.datetime) -> tuple[int, int]:
    """(failed attempts for `name`, failed attempts from `client`) since `since`."""
    failed = login_attempts.c.outcome == LOGIN_FAILED
    recent = login_attempts.c.at >= since
    by_name = conn.execute(sa.select(sa.func.count()).select_from(login_attempts).where(
        login_attempts.c.name == name[:200], recent, failed)).scalar_one()
    by_client = conn.execute(sa.select(sa.func.count()).select_from(login_attempts).where(
        login_attempts.c.client == client[:100], recent, failed)).scalar_one()
    return by_name, by_client
