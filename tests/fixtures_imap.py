"""Pytest fixtures for a real Dovecot on loopback (see tests/dovecot.py and DOVECOT.md).

Load from tests/conftest.py with `pytest_plugins = ["fixtures_imap"]` (tests/ must be on
sys.path, as it is for test modules under pytest's default import mode).

- `dovecot` (session): one server for the whole run, plaintext + STARTTLS + implicit TLS with a
  private CA (`dovecot.ca_file`), XOAUTH2 via `dovecot.valid_tokens`; stopped by PID at the end,
  whatever happened.
- `imap_server` (function): the same server with an empty mailbox (INBOX only), running again if
  a test stopped it.
- `imap_config` (function): a factory of `ImapConfig` for that server (plaintext on loopback,
  password in a file); keyword arguments override any setting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dovecot import INSTALL_HINT, DovecotServer, dovecot_available

from mailbot.config import ImapConfig


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    if not dovecot_available():
        pytest.fail(f"dovecot is not installed ({INSTALL_HINT}); `make test` installs it")
    server = DovecotServer(tls=True, oauth2=True)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.remove()


@pytest.fixture
def imap_server(dovecot: DovecotServer) -> DovecotServer:
    if dovecot.pid is None:  # an earlier test stopped it to see an unreachable mailbox
        dovecot.start()
    dovecot.kick()  # sessions a failed test left open must not see this test's mailbox
    dovecot.empty()
    dovecot.valid_tokens.clear()
    dovecot.token_checks.clear()
    return dovecot


@pytest.fixture
def imap_config(imap_server: DovecotServer, tmp_path: Path) -> Callable[..., ImapConfig]:
    password_file = tmp_path / "imap-password"
    password_file.write_text(imap_server.password + "\n")

    def make(**overrides: Any) -> ImapConfig:
        settings: dict[str, Any] = dict(
            host=imap_server.host, port=imap_server.port, security="none",
            allow_plaintext=True, username=imap_server.user, password_file=str(password_file),
            timeout_seconds=10)
        settings.update(overrides)
        return ImapConfig(**settings)

    return make
