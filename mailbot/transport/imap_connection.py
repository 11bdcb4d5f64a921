"""IMAP connections for the IMAP source: open, secure, log in, and open again when dropped.

`Connector` owns everything about reaching the mailbox: implicit TLS or STARTTLS with one
client TLS context (mailbot.transport.tls), a password or an XOAUTH2 token (refreshed once when
the server rejects it), and `run()`, which runs an operation on a live connection and, when the
connection drops (network, `doveadm kick`, server restart, read timeout), reconnects with
exponential backoff and runs it again; a mailbox that stays unreachable raises
`MailboxUnreachable` once. What the operations do with a connection (list, fetch, file, IDLE)
is mailbot.transport.imap's.
"""

from __future__ import annotations

import imaplib
import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError, LoginError

from mailbot.config import ImapConfig
from mailbot.errors import MailbotError
from mailbot.transport.oauth import TokenProvider
from mailbot.transport.secrets import read_secret
from mailbot.transport.tls import client_context

log = logging.getLogger("mailbot.transport.imap")  # one log for the IMAP source

T = TypeVar("T")

# Anything that means "the connection is gone, a new one may work": socket errors and timeouts
# (OSError, which includes ssl.SSLError) and imaplib's abort (EOF, BYE, protocol desync).
TRANSIENT = (OSError, imaplib.IMAP4.abort)


class MailboxUnreachable(MailbotError):
    """The mailbox cannot be reached or logged in to; alert operators once, retry later.

    Raised after the reconnect attempts are exhausted, or at once when retrying cannot help
    (certificate not trusted, login rejected, STARTTLS missing). `detail` says what and the fix.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class MailboxError(MailbotError):
    """The server refused a command (NO/BAD); doing the same again will not help."""


class Session:
    """One IMAP connection and what is known about it; a reconnect forgets all of it."""

    def __init__(self, role: str) -> None:
        self.role = role  # "commands" or "idle", for the logs
        self.lock = threading.RLock()
        self.client: IMAPClient | None = None
        self.caps: frozenset[str] = frozenset()
        self.selected = False
        self.uidvalidity: int | None = None
        self.delimiter: str | None = None
        self.known_folders: set[str] = set()

    def forget(self) -> None:
        self.selected = False
        self.delimiter = None
        self.known_folders.clear()


class Connector:
    """Connects sessions to one mailbox and keeps them connected (see the module docstring)."""

    def __init__(self, config: ImapConfig, name: str, base_dir: Path, *,
                 sleep: Callable[[float], None], token_provider: TokenProvider | None,
                 max_attempts: int, backoff_base: float, backoff_max: float,
                 ignore_capabilities: Iterable[str]) -> None:
        """`max_attempts` connection attempts per operation, the first retry at once, then
        after `backoff_base` seconds doubling up to `backoff_max`. Settings are checked by the
        caller first; building the TLS context may still raise ConfigError (a bad ca_file)."""
        self.config = config
        self.name = name
        self.base_dir = base_dir
        self._sleep = sleep
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._ignored_caps = frozenset(c.upper() for c in ignore_capabilities)
        self._ssl_context = self._make_ssl_context() if config.security != "none" else None
        self._tokens = token_provider
        if config.auth == "xoauth2" and self._tokens is None:
            self._tokens = TokenProvider(
                config.oauth2_token_command, self._path(config.oauth2_token_file),
                what="the IMAP OAuth2 token ([imap] oauth2_token_command / oauth2_token_file)",
                cwd=self.base_dir)

    def run(self, s: Session, what: str, op: Callable[[Session], T]) -> T:
        """Run `op` on a live connection; reconnect and run it again after a dropped one.

        Every op is written to be safe to repeat from the start (MOVE of a moved UID does
        nothing; a repeated COPY or APPEND whose first answer was lost at worst leaves a second
        copy, never a lost mail).
        """
        with s.lock:
            return self._run_locked(s, what, op)

    def _run_locked(self, s: Session, what: str, op: Callable[[Session], T]) -> T:
        attempt = 0
        while True:
            try:
                self.ensure_connected(s)
                return op(s)
            except TRANSIENT as exc:
                self.drop(s)
                attempt += 1
                if attempt >= self.max_attempts:
                    raise MailboxUnreachable(
                        f"{self.name}: could not {what} after {attempt} attempts: "
                        f"{describe(exc)}{self._hint(exc)}") from exc
                delay = 0.0 if attempt == 1 else min(
                    self.backoff_base * 2 ** (attempt - 2), self.backoff_max)
                log.warning("imap reconnect source=%s connection=%s attempt=%d delay=%.1fs "
                            "while=%r error=%s", self.name, s.role, attempt, delay, what,
                            describe(exc))
                if delay:
                    self._sleep(delay)
            except imaplib.IMAP4.error as exc:  # NO/BAD: the server means it
                raise MailboxError(f"{self.name}: could not {what}: {exc}") from exc

    def ensure_connected(self, s: Session) -> IMAPClient:
        if s.client is None:
            s.client, s.caps = self._connect()
            s.forget()
            log.info("imap connected source=%s connection=%s security=%s capabilities=%s",
                     self.name, s.role, self.config.security,
                     ",".join(sorted(c for c in s.caps if c in ("IDLE", "MOVE", "UIDPLUS"))))
        return s.client

    def drop(self, s: Session) -> None:
        """Forget a connection that is gone (or must go), closing its socket."""
        client, s.client = s.client, None
        s.forget()
        if client is not None:
            shutdown(client)

    def close(self, s: Session) -> None:
        """Log out politely; a connection already gone is just closed."""
        with s.lock:
            client, s.client = s.client, None
            s.forget()
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # already gone: nothing to say goodbye to
            shutdown(client)

    # -- connecting and logging in ----------------------------------------------------------

    def _connect(self) -> tuple[IMAPClient, frozenset[str]]:
        """A logged-in client and its capabilities (less the ignored ones)."""
        client = self._open()
        try:
            self._login(client)
        except LoginError as exc:
            shutdown(client)
            if self._tokens is None:
                raise MailboxUnreachable(
                    f"{self.name}: login rejected: {exc}; fix: check [imap] username and the "
                    f"password (environment variable {self.config.password_env} or [imap] "
                    "password_file)") from exc
            # An expired or revoked token: ask for a fresh one and try once more, on a new
            # connection (a failed SASL exchange leaves some servers in an odd state).
            self._tokens.invalidate()
            client = self._open()
            try:
                self._login(client)
            except LoginError as exc2:
                shutdown(client)
                raise MailboxUnreachable(
                    f"{self.name}: XOAUTH2 login rejected even with a fresh token: {exc2}; fix: "
                    "check [imap] username and that the token command/file yields a token for "
                    "this mailbox with the IMAP scope") from exc2
        except BaseException:
            shutdown(client)
            raise
        try:
            caps = {c.decode("ascii", "replace").upper() for c in client.capabilities()}
        except BaseException:
            shutdown(client)
            raise
        return client, frozenset(caps - self._ignored_caps)

    def _open(self) -> IMAPClient:
        """A connected, encrypted (unless allowed otherwise), not yet logged-in client."""
        cfg = self.config
        timeout = float(cfg.timeout_seconds)
        try:
            if cfg.security == "tls":
                return IMAPClient(cfg.host, cfg.port, ssl=True, ssl_context=self._ssl_context,
                                  timeout=timeout)
            client = IMAPClient(cfg.host, cfg.port, ssl=False, timeout=timeout)
        except ssl.SSLCertVerificationError as exc:
            raise self._untrusted(exc) from exc
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:  # e.g. a "* BYE too many connections" greeting
            raise ConnectionError(f"the server refused the connection: {exc}") from exc
        if cfg.security == "starttls":
            try:
                client.starttls(self._ssl_context)
            except ssl.SSLCertVerificationError as exc:
                shutdown(client)
                raise self._untrusted(exc) from exc
            except CapabilityError as exc:
                shutdown(client)
                raise MailboxUnreachable(
                    f"{self.name}: the server on port {cfg.port} does not offer STARTTLS; fix: "
                    "use [imap] security = \"tls\" with port 993") from exc
            except BaseException:
                shutdown(client)
                raise
        return client

    def _login(self, client: IMAPClient) -> None:
        cfg = self.config
        if self._tokens is not None:
            client.oauth2_login(cfg.username, self._tokens.token())
            return
        password = read_secret(cfg.password_env, self._path(cfg.password_file),
                               "the IMAP password ([imap] password_env / password_file)")
        client.login(cfg.username, password)

    # -- settings and what to tell people ---------------------------------------------------

    def _make_ssl_context(self) -> ssl.SSLContext:
        if not self.config.verify_certificates:
            log.warning("imap verify_certificates=false source=%s: the server's identity is "
                        "not checked", self.name)
        return client_context("imap", verify=self.config.verify_certificates,
                              ca_file=self._path(self.config.ca_file))

    def _path(self, value: str) -> str:
        if not value:
            return ""
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else self.base_dir / path)

    def _untrusted(self, exc: ssl.SSLCertVerificationError) -> MailboxUnreachable:
        reason = exc.verify_message or str(exc)
        return MailboxUnreachable(
            f"{self.name}: the server's TLS certificate is not trusted ({reason}); fix: if it "
            "is signed by a private CA, set [imap] ca_file to that CA's PEM file; check that "
            f"[imap] host {self.config.host!r} is the name on the certificate")

    def _hint(self, exc: BaseException) -> str:
        if isinstance(exc, ssl.SSLError):
            return (f"; fix: check that port {self.config.port} speaks "
                    f"{'implicit TLS' if self.config.security == 'tls' else 'IMAP with STARTTLS'}"
                    " ([imap] security)")
        if isinstance(exc, ConnectionRefusedError):
            return "; fix: check [imap] host and port, and that the server is running"
        if isinstance(exc, TimeoutError):
            return ("; fix: check [imap] host, port and security (a TLS port says nothing to a "
                    "plain connection), and timeout_seconds")
        return ""


def shutdown(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except Exception:
        pass


def describe(exc: BaseException) -> str:
    """A connection failure in a few words, for logs and operators."""
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
