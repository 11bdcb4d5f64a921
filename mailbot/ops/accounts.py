"""Who may use the console: accounts, passwords, API tokens, browser sessions, the login limit.

Passwords are hashed with argon2id (argon2-cffi's PasswordHasher: slow on purpose, salted);
API tokens and session ids are 256-bit random strings, so a SHA-256 of each is enough to
store and lets a request be checked by one indexed look-up. Every secret is shown once (a token
to `users token`, a session id to the browser's cookie) and only its hash is kept. `now` is
naive UTC everywhere, as the store keeps it, so tests drive the clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailbot.errors import MailbotError
from mailbot.ops.choices import ADMIN, OPERATOR, ROLES
from mailbot.store import Store
from mailbot.store import accounts as rows
from mailbot.store.accounts import LOGIN_FAILED, LOGIN_LIMITED, LOGIN_OK, Session, User

MIN_PASSWORD_LENGTH = 10
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
TOKEN_PREFIX = "mbt_"  # tells a leaked token apart in logs and secret scanners

__all__ = ["ADMIN", "LOGIN_FAILED", "LOGIN_LIMITED", "LOGIN_OK", "OPERATOR", "ROLES",
           "AccountError", "Accounts", "LoginLimit",
           "LoginResult", "Session", "User", "check_new_password", "secret_hash"]


class AccountError(MailbotError):
    pass


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise AccountError(f"{name!r} is not a usable account name: 1 to 64 lower-case letters, "
                           "digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return role


def check_new_password(first: str, second: str) -> str:
    """A new password typed twice: the same both times, and long enough to resist guessing."""
    if first != second:
        raise AccountError("the two passwords differ; nothing was changed")
    if len(first) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return first


@dataclass(frozen=True)
class LoginLimit:
    """At most `attempts` failed logins per account name and per client address within
    `window`; beyond that, logins are refused without looking at the password."""

    attempts: int = 5
    window: dt.timedelta = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    outcome: str  # LOGIN_OK / LOGIN_FAILED / LOGIN_LIMITED

    @property
    def ok(self) -> bool:
        return self.user is not None


class Accounts:
    """The account operations over one store; holds the hasher so its cost is set once."""

    def __init__(self, store: Store, *, hasher: PasswordHasher | None = None) -> None:
        self.store = store
        self.hasher = hasher or PasswordHasher()
        self._decoy: str | None = None

    def decoy_hash(self) -> str:
        """Verified against when the name is unknown, so a wrong name takes as long as a wrong
        password and the response time does not tell which names exist."""
        if self._decoy is None:
            self._decoy = self.hasher.hash(secrets.token_urlsafe(16))
        return self._decoy

    # -- accounts ---------------------------------------------------------------------------

    def add(self, name: str, role: str, password: str, *, now: dt.datetime) -> User:
        check_name(name)
        check_role(role)
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} "
                               "characters")
        password_hash = self.hasher.hash(password)
        try:
            with self.store.transaction() as conn:
                return rows.add_user(conn, name=name, role=role, password_hash=password_hash,
                                     now=now)
        except rows.NameTaken:
            raise AccountError(f"an account named {name!r} exists already") from None

    def all(self) -> Sequence[User]:
        with self.store.transaction() as conn:
            return rows.all_users(conn)

    def get(self, name: str) -> User:
        with self.store.transaction() as conn:
            user = rows.user_by_name(conn, name)
        if user is None:
            raise AccountError(f"no account named {name!r}; see `mailbot users list`")
        return user

    def any_enabled(self) -> bool:
        with self.store.transaction() as conn:
            return rows.count_enabled_users(conn) > 0

    def disable(self, name: str, *, now: dt.datetime) -> User:
        user = self.get(name)
        with self.store.transaction() as conn:
            rows.disable_user(conn, user.id, now)
        return user

    # -- API tokens -------------------------------------------------------------------------

    def new_token(self, name: str, *, now: dt.datetime) -> str:
        """A new API token for the account: returned once, stored as its hash."""
        user = self.get(name)
        if user.disabled:
            raise AccountError(f"the account {name!r} is disabled")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.store.transaction() as conn:
            rows.add_token(conn, user.id, secret_hash(token), now)
        return token

    def revoke_tokens(self, name: str, *, now: dt.datetime) -> int:
        user = self.get(name)
        with self.store.transaction() as conn:
            return rows.revoke_tokens(conn, user.id, now)

    def token_user(self, token: str, *, now: dt.datetime) -> User | None:
        """The enabled account of a live token, else None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        with self.store.transaction() as conn:
            return rows.user_by_token(conn, secret_hash(token), now)

    # -- logging in -------------------------------------------------------------------------

    def login(self, name: str, password: str, *, client: str, now: dt.datetime,
              limit: LoginLimit) -> LoginResult:
        """Check a login, within the limit; every attempt is recorded (the limit counts the
        failed ones, in the store, so every console process on it agrees)."""
        name = name.strip().lower()[:200]
        with self.store.transaction() as conn:
            by_name, by_client = rows.failures_since(conn, name=name, client=client,
                                                     since=now - limit.window)
        if by_name >= limit.attempts or by_client >= limit.attempts:
            with self.store.transaction() as conn:
                rows.record_attempt(conn, name=name, client=client, outcome=LOGIN_LIMITED,
                                    now=now)
            return LoginResult(None, LOGIN_LIMITED)
        with self.store.transaction() as conn:
            user = rows.user_by_name(conn, name)
        stored = user.password_hash if user is not None else self.decoy_hash()
        try:
            self.hasher.verify(stored, password)
            verified = user is not None and not user.disabled
        except (VerificationError, InvalidHashError):
            verified = False
        with self.store.transaction() as conn:
            rows.record_attempt(conn, name=name, client=client,
                                outcome=LOGIN_OK if verified else LOGIN_FAILED, now=now)
            if verified and user is not None:
                rehashed = (self.hasher.hash(password)
                            if self.hasher.check_needs_rehash(user.password_hash) else None)
                rows.logged_in(conn, user.id, now, rehashed)
        return LoginResult(user if verified else None, LOGIN_OK if verified else LOGIN_FAILED)

    # -- browser sessions -------------------------------------------------------------------

    def start_session(self, user: User, *, now: dt.datetime,
                      lifetime: dt.timedelta) -> tuple[str, Session]:
        """A new session: its secret id (for the cookie, shown once) and the session."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        with self.store.transaction() as conn:
            session_id = rows.add_session(conn, user_id=user.id, token_hash=secret_hash(token),
                                          csrf_token=csrf, now=now, expires_at=now + lifetime)
        return token, Session(session_id, user, csrf, now + lifetime)

    def session(self, token: str, *, now: dt.datetime) -> Session | None:
        if len(token) > 200:
            return None
        with self.store.transaction() as conn:
            return rows.live_session(conn, secret_hash(token), now)

    def end_session(self, session: Session, *, now: dt.datetime) -> None:
        with self.store.transaction() as conn:
            rows.end_session(conn, session.id, now)


def same_secret(given: str | None, expected: str) -> bool:
    """Compare a submitted CSRF token in constant time."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
