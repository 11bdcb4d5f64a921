"""pytest fixtures for a real SMTP server on loopback (see smtp_server.py).

Loaded from tests/conftest.py with ``pytest_plugins = [..., "fixtures_smtp"]`` (or ``-p
fixtures_smtp`` with tests/ on sys.path). One server runs for the whole session; every test
that asks for `smtp_server` gets it with no messages, no scripted faults, no login required
and no client connection left over from the previous test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from smtp_server import SmtpTestServer, TlsFiles, make_tls_files

if TYPE_CHECKING:
    from mailbot.transport.smtp import SmtpSink


@pytest.fixture(scope="session")
def smtp_tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throw-away CA (ca_file) and a localhost certificate signed by it."""
    return make_tls_files(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture(scope="session")
def smtp_test_server(smtp_tls_files: TlsFiles) -> Iterator[SmtpTestServer]:
    """The session's server; tests should use `smtp_server`, which resets it."""
    server = SmtpTestServer(smtp_tls_files).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_server(smtp_test_server: SmtpTestServer) -> Iterator[SmtpTestServer]:
    """The SMTP server, clean for this test: listeners "plain", "starttls" and "tls"."""
    smtp_test_server.reset()
    yield smtp_test_server
    smtp_test_server.reset()


@pytest.fixture
def make_smtp_sink(smtp_server: SmtpTestServer,
                   tmp_path: Path) -> Iterator[Callable[..., SmtpSink]]:
    """Build SmtpSinks aimed at the test server: ``make_smtp_sink("tls", username=...)``.

    Keyword arguments override SmtpConfig fields; `base_dir` (default tmp_path) and
    `default_from` go to the sink. Every sink built is closed after the test.
    """
    # Imported here, so a broken sink fails its tests, not collection.
    from mailbot.transport.smtp import SmtpSink

    sinks: list[SmtpSink] = []

    def make(security: str = "starttls", *, base_dir: Path | None = None,
             default_from: str = "claves@example.com", **overrides: Any) -> SmtpSink:
        sink = SmtpSink(smtp_server.config(security, **overrides), base_dir or tmp_path,
                        default_from)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()
