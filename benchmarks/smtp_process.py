"""The benchmarks' SMTP server in a process of its own, as a real provider's is.

Why: `tests/smtp_server.py` runs aiosmtpd on threads of the caller's process. In the tests that
is what makes its faults scriptable; in a benchmark it makes the server's own work (about 1 ms
of CPU per reply here: aiosmtpd reads DATA line by line) queue for the caller's GIL, so a
client that goes on working while the server takes a reply is charged for the server's work
anyway. No deployment runs its SMTP server inside mailbot; Dovecot is already a process of its
own here. The floor's sending part costs the same either way (one smtplib connection waits for
each reply in turn); `imap_throughput.py --smtp-in-process` still measures the old way.

The child runs the same `SmtpTestServer` (its three listeners, recording handler and all) and
appends one line per accepted message to a report file: the CLOCK_MONOTONIC time it accepted
it (`time.monotonic()` is that clock in every process on Linux) and its In-Reply-To, which is
what the benchmarks read back (`Arrivals`), when they ask (`catch_up`): a thread of the
benchmark's process reading each report as it came ran beside the pass it measures, for its
GIL, about 3% of that process's samples. Closing its stdin stops it.
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
        self._reports = tls_dir.parent / "smtp-accepted.jsonl"
        self._read_upto = 0  # bytes of the report file handed to the listeners
        self._lock = threading.Lock()

    def on_accept(self, listener: Callable[[float, str], None]) -> None:
        self._listeners.append(listener)

    def start(self) -> SmtpServerProcess:
        self.tls_dir.parent.mkdir(parents=True, exist_ok=True)
        self._reports.write_bytes(b"")
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(self.tls_dir), str(self._reports)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline()
        if not first:
            raise RuntimeError("the SMTP server process did not start (see its stderr)")
        self._ports = json.loads(first)
        return self

    def catch_up(self) -> None:
        """Hand the listeners every message accepted since the last call (whole lines only)."""
        with self._lock, self._reports.open("rb") as reports:
            reports.seek(self._read_upto)
            data = reports.read()
            whole = data[:data.rfind(b"\n") + 1]
            self._read_upto += len(whole)
        for line in whole.splitlines():
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
        self.catch_up()
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


def _serve(tls_dir: Path, reports_path: Path) -> None:
    """The child: start the server, report each accepted message (a line appended to
    `reports_path`), stop when stdin closes."""
    for path in (ROOT, ROOT / "tests"):
        sys.path.insert(0, str(path))
    from smtp_server import SmtpTestServer, make_tls_files

    server = SmtpTestServer(make_tls_files(tls_dir))
    out = threading.Lock()
    reports = reports_path.open("ab", buffering=0)  # one whole line per write

    def report(at: float, in_reply_to: str) -> None:
        with server.handler.lock:  # the recording is not needed here: a long run keeps none
            server.handler.messages.clear()
        with out:
            reports.write((json.dumps([at, in_reply_to]) + "\n").encode())

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
    _serve(Path(sys.argv[1]), Path(sys.argv[2]))
