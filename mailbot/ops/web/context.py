"""The console's context: everything a request needs, built once per app and passed explicitly
(`request.app.state.web`), never kept in a module, so a test builds an app of its own with its
own store and clock."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from mailbot.config import Config
from mailbot.errors import ConfigError
from mailbot.ops.accounts import Accounts, LoginLimit
from mailbot.ruleset import Ruleset
from mailbot.store import Store

SECRET_FILE_NAME = "web-secret.key"
MIN_SECRET_LENGTH = 32


def utc_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class WebContext:
    config: Config
    store: Store
    rules: Ruleset
    accounts: Accounts
    zone: dt.tzinfo  # the business zone: every time shown is in it, marked
    secret_key: str  # signs the session cookie
    clock: Callable[[], dt.datetime] = utc_clock  # aware UTC; tests pass their own
    # The largest file upload (a multipart body) the console reads: a registry of 200,000
    # rows is about 30 MB as CSV; a bigger body is refused before it is read.
    max_upload_bytes: int = 40_000_000

    def now(self) -> dt.datetime:
        """Naive UTC, as the store keeps it."""
        return self.clock().astimezone(dt.UTC).replace(tzinfo=None)

    def today_start(self) -> dt.datetime:
        """The start of today in the business zone, as naive UTC (for the store)."""
        local = self.clock().astimezone(self.zone)
        midnight = dt.datetime.combine(local.date(), dt.time(), self.zone)
        return midnight.astimezone(dt.UTC).replace(tzinfo=None)

    def rules_now(self) -> Ruleset:
        """The rules as the folder holds them now (the next pass of the bot decides and checks
        templates with them), else those the console started with (a folder broken by hand)."""
        from mailbot.errors import MailbotError
        from mailbot.run.wiring import open_rules

        try:
            return open_rules(self.config)
        except MailbotError:
            return self.rules

    @property
    def login_limit(self) -> LoginLimit:
        return LoginLimit(self.config.web.login_attempts,
                          dt.timedelta(minutes=self.config.web.login_window_minutes))

    @property
    def session_lifetime(self) -> dt.timedelta:
        return dt.timedelta(hours=self.config.web.session_hours)

    @property
    def max_pass_age(self) -> dt.timedelta:
        seconds = (self.config.web.max_pass_age_seconds
                   or 3 * self.config.imap.poll_interval_seconds)
        return dt.timedelta(seconds=seconds)


def context(request: Request) -> WebContext:
    """The context of the app serving `request` (a FastAPI dependency too)."""
    return request.app.state.web


def secret_key_path(config: Config) -> Path:
    """[web] secret_key_file, else web-secret.key beside the SQLite database (else in var/)."""
    if config.web.secret_key_file:
        return config.resolve(config.web.secret_key_file)
    url = config.store_url
    prefix = "sqlite:///"
    if url.startswith(prefix) and url[len(prefix):] not in ("", ":memory:"):
        return Path(url[len(prefix):]).parent / SECRET_FILE_NAME
    return config.resolve("var") / SECRET_FILE_NAME


def load_secret_key(path: Path) -> str:
    """The key in `path`, made on first start (random, mode 0600). A key others may read is
    refused: with it anyone could forge a session cookie."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(32) + "\n")
    try:
        mode = path.stat().st_mode
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the console's secret key "
                          f"([web] secret_key_file): {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path}: the console's secret key is readable by other users; "
                          f"run `chmod 600 {path}`")
    if len(key) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{path}: the console's secret key must have at least "
                          f"{MIN_SECRET_LENGTH} characters")
    return key
