"""The benchmarks' SMTP server in a process of its own, as a real provider's is.

Why: `tests/smtp_server.py` runs aiosmtpd on threads of the caller's process. In the tests that
is what makes its faults scriptable; in a benchmark it makes the server's own work (about 1 ms
of CPU per reply here: aiosmtpd reads DATA line by line) queue for the caller's GIL, so a
client that goes on working while the server takes a reply is charged for the server's work
anyway. No deployment runs its SMTP server inside mailbot; Dovecot is already a process of its
own here. The floor's sending part costs the same either way (one smtplib connection waits for
each reply in turn); `imap_throughput.py --smtp-in-process` still measures the old way.

The child runs the same `SmtpTestServer` (its three listeners, recording handler and all) and
writes one line per accepted message on its stdout: the CLOCK_MONOTONIC time it accepted it
(`time.monotonic()` is that clock in every process on Linux) and its In-Reply-To, which is what
the benchmarks read back (`Arrivals`). Closing its stdin stops it.
"""

from __future__ import annotations

import email.parser
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from email import policy
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


class SmtpServerProcess:
    """`SmtpTestServer` in a child process: `config()` as the in-process server's, arrivals
    reported through `on_accept(monotonic_time, in_reply_to)`."""

    def __init__(self, tls_dir: Path) -> None:
        self.tls_dir = tls_dir
        self.host = "127.0.0.1"
        self._proc: subprocess.Popen[str] | None = None
        self._ports: dict[str, Any] = {}
        self._listeners: list[Callable[[float, str], None]] = []
        self._reader: threading.Thread | None = None

    def on_accept(self, listener: Callable[[float, str], None]) -> None:
        self._listeners.append(listener)

    def start(self) -> SmtpServerProcess:
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(self.tls_dir)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline()
        if not first:
            raise RuntimeError("the SMTP server process did not start (see its stderr)")
        self._ports = json.loads(first)
        self._reader = threading.Thread(target=self._read, name="smtp-process-reader",
                                        daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            at, in_reply_to = json.loads(line)
            for listener in self._listeners:
                listener(at, in_reply_to)

    def port(self, listener: str) -> int:
        return int(self._ports[listener])

    def config(self, security: str = "starttls", **overrides: Any):
        from smtp_server import listener_config

        return listener_config(self.host, self.port, self._ports["ca_file"], security,
                               **overrides)

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        self._proc = None


def on_accepted(server: Any, report: Callable[[float, str], None]) -> None:
    """Wrap the DATA hook of `server` (a `SmtpTestServer`) so that each message it accepts is
    reported as (CLOCK_MONOTONIC time, its In-Reply-To). aiosmtpd looks hooks up when a session
    opens, so this goes before the first connection."""
    handler = server.handler
    original = handler.handle_DATA
    parser = email.parser.BytesHeaderParser(policy=policy.compat32)

    async def handle_data(smtp, session, envelope):
        result = await original(smtp, session, envelope)
        now = time.monotonic()
        if isinstance(result, str) and result.startswith("250"):
            headers = parser.parsebytes(envelope.original_content or b"")
            report(now, (headers.get("In-Reply-To") or "").strip())
        return result

    handler.handle_DATA = handle_data  # type: ignore[method-assign]


def _serve(tls_dir: Path) -> None:
    """The child: start the server, report each accepted message, stop when stdin closes."""
    for path in (ROOT, ROOT / "tests"):
        sys.path.insert(0, str(path))
    from smtp_server import SmtpTestServer, make_tls_files

    server = SmtpTestServer(make_tls_files(tls_dir))
    out = threading.Lock()

    def report(at: float, in_reply_to: str) -> None:
        with server.handler.lock:  # the recording is not needed here: a long run keeps none
            server.handler.messages.clear()
        with out:
            sys.stdout.write(json.dumps([at, in_reply_to]) + "\n")
            sys.stdout.flush()

    on_accepted(server, report)
    server.start()
    try:
        sys.stdout.write(json.dumps({name: server.port(name) for name in
                                     ("plain", "starttls", "tls")}
                                    | {"ca_file": str(server.tls_files.ca_file)}) + "\n")
        sys.stdout.flush()
        sys.stdin.read()  # until the parent closes it (or dies)
    finally:
        server.stop()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]))
