"""A config.toml for a test bot that uses the project's own rules and templates."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_config(directory: Path, sections: str = "", *,
                 operators: tuple[str, ...] = ("operadores@example.com",),
                 rules: Path = ROOT / "rules") -> Path:
    """Write `directory/config.toml`: our address, operators, rules (the project's, or a
    test's edited copy) and templates, plus `sections` (more TOML tables: source, sink,
    store, security...)."""
    path = directory / "config.toml"
    path.write_text(f"""
[mailbot]
address = "claves@example.com"
operators = {json.dumps(list(operators))}
rules_dir = {json.dumps(str(rules))}
templates_dir = {json.dumps(str(ROOT / "templates"))}
{sections}
""", encoding="utf-8")
    return path


def local_sections(store_url: str = "sqlite:///mailbot.db") -> str:
    """The embedded defaults' seams as TOML: Maildir `inbox` in, reply files `outbox` out, and
    the store at `store_url` (relative paths are the config file's folder)."""
    return f"""
[source]
type = "maildir"
path = "inbox"
[sink]
type = "files"
path = "outbox"
[store]
url = "{store_url}"
"""


def server_config(directory: Path, imap_server, smtp_server, *, poll_seconds: int = 60,
                  imap_timeout: int = 10, smtp_timeout: int = 5) -> Path:
    """A bot on the test Dovecot (plaintext on loopback) and the test SMTP server."""
    password = directory / "imap-password"
    password.write_text(imap_server.password + "\n")
    smtp = smtp_server.config("none")
    return write_config(directory, f"""
[source]
type = "imap"
[sink]
type = "smtp"
[store]
url = "sqlite:///mailbot.db"
[imap]
host = "{imap_server.host}"
port = {imap_server.port}
security = "none"
allow_plaintext = true
username = "{imap_server.user}"
password_file = "{password}"
timeout_seconds = {imap_timeout}
poll_interval_seconds = {poll_seconds}
[smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
allow_plaintext = true
timeout_seconds = {smtp_timeout}
retry_base_seconds = 1
""")
