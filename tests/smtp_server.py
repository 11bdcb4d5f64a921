"""A real SMTP server on loopback (aiosmtpd) that records what it accepts and fails on cue.

mailbot's SMTP sink is tested against this server rather than a mock of smtplib, so the tests
exercise real sockets, real TLS and real SMTP replies. One server object runs three listeners
sharing one handler, as a real provider does on 25/587/465:

- ``plain``: no TLS at all (STARTTLS not offered), AUTH allowed in clear (loopback only);
- ``starttls``: offers STARTTLS and requires it before mail (and before AUTH);
- ``tls``: implicit TLS from the first byte.

The certificate is signed by a throw-away CA generated with the ``openssl`` CLI
(`make_tls_files`), so clients can verify it with ``ca_file`` exactly as in production.
Faults are scripted per test (`fail_next`, `refuse_recipient`, `stall_after_data`,
`drop_connection_next`, `disconnect_clients`, `require_auth`, `require_xoauth2`) and cleared by
`reset`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import subprocess
import threading
import time
import weakref
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from mailbot.config import SmtpConfig

# aiosmtpd warns on every AUTH that Session.login_data is deprecated; it is its own doing.
logging.getLogger("mail.log").setLevel(logging.ERROR)

LISTENERS = ("plain", "starttls", "tls")
STAGES = ("RSET", "NOOP", "MAIL", "RCPT", "DATA")


@dataclass(frozen=True)
class TlsFiles:
    """A throw-away CA and a server certificate for localhost / 127.0.0.1 signed by it."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_tls_files(directory: Path) -> TlsFiles:
    """Generate the CA and server certificate with the openssl CLI (EC keys: milliseconds)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_pem = directory / "ca.key", directory / "ca.pem"
    key, csr, pem = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                   "basicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands = [
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_pem, "-days", "2",
         "-subj", "/CN=mailbot test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key,
         "-set_serial", "2", "-days", "2", "-extfile", ext, "-out", pem],
    ]
    for command in commands:
        subprocess.run([str(part) for part in command], check=True, capture_output=True)
    return TlsFiles(ca_file=ca_pem, cert_file=pem, key_file=key)


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the server accepted (250 after DATA), with its real envelope."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # exactly the bytes received, dot-unstuffed, CRLF line endings
    listener: str  # "plain", "starttls" or "tls"
    tls: bool  # whether the session was encrypted when DATA completed
    auth_user: str | None  # who authenticated, if anyone
    mail_options: tuple[str, ...] = ()


@dataclass
class _Fault:
    stage: str
    reply: str
    remaining: int | None  # None: forever


@dataclass
class _State:
    """Everything a test may script; replaced wholesale by `reset`."""

    generation: int = 0
    faults: list[_Fault] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # lower-cased address -> reply
    stall_seconds: float = 0.0
    stall_remaining: int = 0
    drop_at: str | None = None  # a stage, or "ANY"
    credentials: dict[str, str] = field(default_factory=dict)  # user -> password
    tokens: dict[str, set[str]] = field(default_factory=dict)  # user -> accepted bearer tokens


class RecordingHandler:
    """aiosmtpd handler: records accepted mail, answers scripted faults.

    Hooks run on the listeners' event-loop threads; the state is guarded by one lock.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state = _State()
        self.messages: list[ReceivedMessage] = []
        # Not `auth_...`: aiosmtpd would take a handler attribute named so for a SASL mechanism.
        self.logins: list[tuple[str, str, bool]] = []  # (mechanism, user, accepted)
        self.commands: list[str] = []  # stages seen, in order: "MAIL", "RCPT", "DATA", ...
        self.connections = 0  # sessions opened since the last reset

    # --- scripting helpers (called from the test thread) ---------------------------------

    def reset(self) -> None:
        with self.lock:
            self.state = _State(generation=self.state.generation + 1)
            self.messages.clear()
            self.logins.clear()
            self.commands.clear()
            self.connections = 0

    # --- internals -------------------------------------------------------------------------

    def _take_fault(self, stage: str) -> str | None:
        with self.lock:
            for fault in self.state.faults:
                if fault.stage == stage and fault.remaining != 0:
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault.reply
        return None

    def _take_drop(self, stage: str, server: SMTP) -> bool:
        with self.lock:
            self.commands.append(stage)
            if self.state.drop_at not in (stage, "ANY"):
                return False
            self.state.drop_at = None
        # Abort rather than close: no reply, no TLS close_notify, like a crashed server.
        transport = server.transport
        if transport is not None:
            transport.abort()
        return True

    # --- aiosmtpd hooks ----------------------------------------------------------------------

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._take_drop("RSET", server):
            return "421 4.4.2 connection dropped by test"
        return self._take_fault("RSET") or "250 OK"

    async def handle_NOOP(self, server: SMTP, session: Session, envelope: Envelope,
                          arg: str) -> str:
        if self._take_drop("NOOP", server):
            return "421 4.4.2 connection dropped by test"
        return self._take_fault("NOOP") or "250 OK"

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if self._take_drop("MAIL", server):
            return "421 4.4.2 connection dropped by test"
        with self.lock:
            needs_auth = bool(self.state.credentials or self.state.tokens)
        if needs_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        fault = self._take_fault("MAIL")
        if fault:
            return fault
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self._take_drop("RCPT", server):
            return "421 4.4.2 connection dropped by test"
        with self.lock:
            refused = self.state.refused.get(address.lower())
        fault = refused or self._take_fault("RCPT")
        if fault:
            return fault
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._take_drop("DATA", server):
            return "421 4.4.2 connection dropped by test"
        with self.lock:
            generation = self.state.generation
            stall = self.state.stall_seconds if self.state.stall_remaining else 0.0
            if stall:
                self.state.stall_remaining -= 1
        if stall:
            await asyncio.sleep(stall)
        fault = self._take_fault("DATA")
        if fault:
            return fault
        data = envelope.original_content or b""
        message = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=bytes(data),
            listener=getattr(server, "listener_name", "?"),
            tls=session.ssl is not None or getattr(server, "listener_name", "") == "tls",
            auth_user=session.auth_data if isinstance(session.auth_data, str) else None,
            mail_options=tuple(envelope.mail_options),
        )
        with self.lock:
            # A message that completes after a stall belongs to the test that scripted it.
            if generation == self.state.generation:
                self.messages.append(message)
        return "250 2.0.0 OK queued"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        """aiosmtpd `authenticator` for PLAIN and LOGIN."""
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        with self.lock:
            ok = user in self.state.credentials and self.state.credentials[user] == password
            self.logins.append((mechanism, user, ok))
        if ok:
            return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """XOAUTH2 as Gmail speaks it: on a bad token, a 334 JSON challenge, then 535."""
        if len(args) == 1:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        fields = dict(part.split("=", 1) for part in blob.decode("utf-8", "replace").split("\x01")
                      if "=" in part)
        user = fields.get("user", "")
        token = fields.get("auth", "").removeprefix("Bearer ")
        with self.lock:
            ok = token in self.state.tokens.get(user, set())
            self.logins.append(("XOAUTH2", user, ok))
        if ok:
            return AuthResult(success=True, auth_data=user)
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "https://mail.example/"})
        await server.challenge_auth(error)  # the client answers with an empty line
        return AuthResult(success=False, handled=False,
                          message="535 5.7.8 Username and Password not accepted")


class _Listener(Controller):
    """A Controller bound to an ephemeral loopback port that counts and names its sessions."""

    def __init__(self, handler: RecordingHandler, name: str, **kwargs: Any) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=0, server_hostname="mailbot-test",
                         **kwargs)
        self.name = name
        self.recording = handler
        self.sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        async def create() -> asyncio.AbstractServer:
            server = await self.loop.create_server(self._factory_invoker, host=self.hostname,
                                                   port=0, ssl=self.ssl_context)
            self.port = server.sockets[0].getsockname()[1]  # known before start() connects
            return server
        return create()

    def factory(self) -> SMTP:
        smtp = super().factory()
        smtp.listener_name = self.name  # type: ignore[attr-defined]
        self.sessions.add(smtp)
        with self.recording.lock:
            self.recording.connections += 1
        return smtp

    def disconnect_all(self) -> None:
        def close_all() -> None:
            for smtp in list(self.sessions):
                if smtp.transport is not None:
                    smtp.transport.abort()
        done = threading.Event()
        self.loop.call_soon_threadsafe(lambda: (close_all(), done.set()))
        done.wait(5)


def listener_config(host: str, port_of: Any, ca_file: str, security: str = "starttls", /,
                    **overrides: Any) -> SmtpConfig:
    """An SmtpConfig for the listener that speaks `security` ("none" -> plain), whose port
    `port_of(listener)` gives (a SmtpTestServer here, or one in a process of its own:
    benchmarks/smtp_process.py); `overrides` (any SmtpConfig field, ca_file too) win."""
    listener = {"none": "plain", "starttls": "starttls", "tls": "tls"}[security]
    base = SmtpConfig(host=host, port=port_of(listener), security=security,
                      allow_plaintext=security == "none", ca_file=ca_file, timeout_seconds=5)
    return replace(base, **overrides)


class SmtpTestServer:
    """Three loopback listeners (plain, starttls, tls) over one recording, scriptable handler."""

    def __init__(self, tls_files: TlsFiles) -> None:
        self.tls_files = tls_files
        self.handler = RecordingHandler()
        context = tls_files.server_context()
        common: dict[str, Any] = {"authenticator": self.handler.authenticate}
        self._listeners = {
            "plain": _Listener(self.handler, "plain", auth_require_tls=False, **common),
            "starttls": _Listener(self.handler, "starttls", tls_context=context,
                                  require_starttls=True, **common),
            # aiosmtpd only counts STARTTLS as TLS; implicit TLS is encrypted from the start.
            "tls": _Listener(self.handler, "tls", ssl_context=context, auth_require_tls=False,
                             **common),
        }
        self.host = "127.0.0.1"

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> SmtpTestServer:
        for listener in self._listeners.values():
            listener.start()
        self.reset()
        return self

    def stop(self) -> None:
        for listener in self._listeners.values():
            listener.stop(no_assert=True)

    def reset(self) -> None:
        """Forget messages and scripted faults, and drop connections left by the last test."""
        self.disconnect_clients()
        self.handler.reset()

    # --- where to connect ------------------------------------------------------------------------

    def port(self, listener: str) -> int:
        return self._listeners[listener].port

    def config(self, security: str = "starttls", **overrides: Any) -> SmtpConfig:
        """An SmtpConfig pointing at the listener that speaks `security` ("none" -> plain)."""
        return listener_config(self.host, self.port, str(self.tls_files.ca_file), security,
                               **overrides)

    # --- what it received ------------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self.handler.lock:
            return list(self.handler.messages)

    @property
    def logins(self) -> list[tuple[str, str, bool]]:
        """Every AUTH attempt: (mechanism, user, accepted)."""
        with self.handler.lock:
            return list(self.handler.logins)

    @property
    def commands(self) -> list[str]:
        with self.handler.lock:
            return list(self.handler.commands)

    @property
    def connections(self) -> int:
        """Sessions opened since the last reset: shows whether a client reuses its connection."""
        with self.handler.lock:
            return self.handler.connections

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= count:
                break
            time.sleep(0.01)
        return self.messages

    # --- faults ----------------------------------------------------------------------------------

    def fail_next(self, code: int, text: str, times: int | None = 1, at: str = "DATA") -> None:
        """Answer the next `times` commands of kind `at` with `code text` (None: every time)."""
        if at not in STAGES:
            raise ValueError(f"at must be one of {STAGES}")
        with self.handler.lock:
            self.handler.state.faults.append(_Fault(at, f"{code} {text}", times))

    def refuse_recipient(self, address: str, code: int = 550,
                         text: str = "5.1.1 No such user") -> None:
        """Refuse RCPT TO for this address, always."""
        with self.handler.lock:
            self.handler.state.refused[address.lower()] = f"{code} {text}"

    def stall_after_data(self, seconds: float, times: int = 1) -> None:
        """Receive the whole message, then wait `seconds` before answering (client times out)."""
        with self.handler.lock:
            self.handler.state.stall_seconds = seconds
            self.handler.state.stall_remaining = times

    def drop_connection_next(self, at: str | None = None) -> None:
        """Cut the connection, without a reply, at the next command (of kind `at`, if given)."""
        if at is not None and at not in STAGES:
            raise ValueError(f"at must be one of {STAGES}")
        with self.handler.lock:
            self.handler.state.drop_at = at or "ANY"

    def disconnect_clients(self) -> None:
        """Cut every open connection now, as an idle timeout or a server restart would."""
        for listener in self._listeners.values():
            if listener.loop.is_running():
                listener.disconnect_all()

    def require_auth(self, user: str, password: str) -> None:
        """Accept AUTH PLAIN/LOGIN for this user and refuse MAIL FROM without AUTH (530)."""
        with self.handler.lock:
            self.handler.state.credentials[user] = password

    def require_xoauth2(self, user: str, tokens: Iterable[str]) -> None:
        """Accept AUTH XOAUTH2 for this user with any of these bearer tokens."""
        with self.handler.lock:
            self.handler.state.tokens[user] = set(tokens)
