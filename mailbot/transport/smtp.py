"""SMTP sink: hands replies to a real mail server (the only module that imports smtplib).

Why it is shaped like this:

- The envelope is explicit. `sendmail(from, to, bytes)` is used, never `send_message`, so the
  recipients are exactly the ones the outbox decided (a Bcc is in the envelope only) and the
  bytes on the wire are the bytes in the store, identical on every retry.
- TLS is never optional by accident: "tls" is implicit TLS, "starttls" requires the server to
  offer STARTTLS (no silent fall-back to plain text), "none" needs `allow_plaintext`.
  Certificates are verified against the system CAs plus `ca_file`.
- One connection is kept across sends. One that has been idle for more than a few seconds
  (RECHECK_AFTER_SECONDS) is checked with RSET before reuse, and replaced if the server
  dropped it meanwhile; one used moments ago is not (the RSET round trip would cost about as
  much as sending a reply). If such a connection turns out dead at MAIL FROM (no answer, or
  421), nothing of the message reached the server, so it is sent at once on a new
  connection. After any failed send the connection is discarded, so the next attempt starts
  from a clean session.

How failures map onto the Sink contract (the outbox retries temporary ones with the same bytes):

- 4xx replies, timeouts (including no answer after DATA), dropped or refused connections:
  TemporaryDeliveryError.
- 5xx replies to MAIL FROM, RCPT TO or DATA: PermanentDeliveryError.
- The server cannot be used as configured (TLS certificate or handshake, STARTTLS missing,
  AUTH refused or unsupported, 5xx to the greeting or EHLO, 530 "authentication required",
  the password or token cannot be read): SmtpSetupError. It is a TemporaryDeliveryError on
  purpose: no reply is at fault, so none is marked failed while an operator fixes the
  configuration; the sender should stop the batch and alert (the text says what to fix).
- Some recipients refused, others accepted: RecipientsRefused, a PermanentDeliveryError,
  because the message *was* delivered to the accepted ones and a retry would send it to them
  twice. It lists every refused recipient with the server's code and text. When every
  recipient is refused: PermanentDeliveryError if all refusals are 5xx, else temporary.
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mailbot.config import SmtpConfig, check_transport
from mailbot.errors import ConfigError, MailbotError
from mailbot.transport.oauth import TokenProvider
from mailbot.transport.seams import (
    DeliveryError,
    PartiallyDelivered,
    PermanentDeliveryError,
    SinkUnavailable,
    TemporaryDeliveryError,
)
from mailbot.transport.secrets import read_secret
from mailbot.transport.tls import client_context

log = logging.getLogger(__name__)

_LINE_ENDING = re.compile(rb"\r?\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")  # dot-stuffing (RFC 5321 §4.5.2), as smtplib does it
RECHECK_AFTER_SECONDS = 5.0  # a connection idle longer than this is checked with RSET


class Abandoned(Exception):
    """The message was dropped before its final dot (`SmtpSink.send` with `hold`): the
    connection was closed mid-DATA, so the server never took it (RFC 5321 §4.1.1.4)."""


class _Tracking:
    """Remembers whether the server answered MAIL FROM of the transaction under way, and holds
    a message's final dot while `hold` decides (SmtpSink.send)."""

    mail_answered = False
    hold: Callable[[], bool] | None = None

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        self.mail_answered = False
        reply = super().mail(sender, options)  # type: ignore[misc]
        self.mail_answered = True
        return reply

    def data(self, msg: bytes) -> tuple[int, bytes]:
        """smtplib's DATA, with the message sent whole but for its final dot, which waits for
        `hold()`: True sends it (the server takes the message), False abandons it."""
        if self.hold is None:
            return super().data(msg)  # type: ignore[misc]
        self.putcmd("data")  # type: ignore[attr-defined]
        code, reply = self.getreply()  # type: ignore[attr-defined]
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        body = _LEADING_DOT.sub(b"..", msg)
        self.send(body if body.endswith(b"\r\n") else body + b"\r\n")  # type: ignore[attr-defined]
        if not self.hold():
            raise Abandoned("dropped before its final dot")
        self.send(b".\r\n")  # type: ignore[attr-defined]
        return self.getreply()  # type: ignore[attr-defined]


class _SMTP(_Tracking, smtplib.SMTP):
    pass


class _SMTP_SSL(_Tracking, smtplib.SMTP_SSL):
    pass


class SmtpSetupError(SinkUnavailable):
    """The server cannot be used as configured; the text names the fault and its fix."""


class RecipientsRefused(PartiallyDelivered):
    """Delivered to some recipients, refused for others: never resend (it would duplicate)."""

    def __init__(self, message_id: str, refused: dict[str, tuple[int, str]],
                 accepted: Sequence[str]) -> None:
        self.message_id = message_id
        self.refused = dict(refused)
        self.accepted = tuple(accepted)
        listed = "; ".join(f"{address}: {code} {text}" for address, (code, text) in refused.items())
        super().__init__(f"message {message_id} delivered to {', '.join(self.accepted)} "
                         f"but refused for {listed}")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # from the courier (mailbot.run.courier)
        return (type(self), (self.message_id, self.refused, self.accepted))


def _dead_at_mail(connection: smtplib.SMTP, exc: BaseException) -> bool:
    """Whether a send failed because the connection was gone before MAIL FROM was taken: no
    answer to it at all, or 421 ("closing the connection"). Then nothing was transmitted."""
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return exc.smtp_code == 421
    return (isinstance(exc, smtplib.SMTPServerDisconnected)
            and not getattr(connection, "mail_answered", True))


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


class SmtpSink:
    """Sink that delivers replies over SMTP with an explicit envelope."""

    def __init__(self, config: SmtpConfig, base_dir: Path, default_envelope_from: str) -> None:
        self.config = config
        self.where = f"{config.host}:{config.port}"
        self.envelope_from = config.envelope_from or default_envelope_from
        self._default_envelope_from = default_envelope_from
        self._base_dir = Path(base_dir)
        self._validate()
        self._context = self._tls_context() if config.security != "none" else None
        self._tokens = (TokenProvider(config.oauth2_token_command,
                                      self._path_setting(config.oauth2_token_file),
                                      what="SMTP OAuth2 access token", cwd=self._base_dir)
                        if config.username and config.auth == "xoauth2" else None)
        self._connection: smtplib.SMTP | None = None
        self._lock = threading.Lock()
        self.recheck_after = RECHECK_AFTER_SECONDS
        self._clock = time.monotonic
        self._last_used = 0.0  # when the connection last completed a command

    courier_ready = True  # mailbot.run.courier may send through a copy of it (__reduce__)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """The same sink in another process (the courier, mailbot.run.courier): the settings
        travel; the connection, its lock and any token fetched stay here."""
        return (type(self), (self.config, self._base_dir, self._default_envelope_from))

    # --- configuration -------------------------------------------------------------------------

    def _validate(self) -> None:
        c = self.config
        if not c.host:
            raise ConfigError("[smtp] host is not set")
        check_transport("smtp", c)
        if c.auth == "xoauth2" and not c.username:
            raise ConfigError("[smtp] auth = \"xoauth2\" needs [smtp] username "
                              "(the mailbox address)")
        if c.auth == "xoauth2" and not (c.oauth2_token_command or c.oauth2_token_file):
            raise ConfigError("[smtp] auth = \"xoauth2\" needs [smtp] oauth2_token_command "
                              "or [smtp] oauth2_token_file")
        if c.timeout_seconds <= 0:
            raise ConfigError("[smtp] timeout_seconds must be greater than zero")
        if "@" not in self.envelope_from:
            raise ConfigError(f"[smtp] envelope_from must be an e-mail address, "
                              f"not {self.envelope_from!r}")

    def _path_setting(self, value: str) -> str:
        """A path setting resolved against the config file's folder ("" stays "")."""
        if not value:
            return ""
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else self._base_dir / path)

    def _tls_context(self) -> ssl.SSLContext:
        return client_context("smtp", verify=self.config.verify_certificates,
                              ca_file=self._path_setting(self.config.ca_file))

    # --- connection ----------------------------------------------------------------------------

    def _open(self) -> smtplib.SMTP:
        """Connect, EHLO, TLS and AUTH; raises DeliveryError subclasses with the fix in the text."""
        c = self.config
        try:
            if c.security == "tls":
                connection: smtplib.SMTP = _SMTP_SSL(
                    c.host, c.port, timeout=c.timeout_seconds, context=self._context)
            else:
                connection = _SMTP(c.host, c.port, timeout=c.timeout_seconds)
        except Exception as exc:
            raise self._setup_failure(exc) from exc
        try:
            # Each write goes at once: a held message's final dot (`send`'s hold), a few bytes
            # after the body, would otherwise wait for the server's delayed ACK (Nagle).
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.ehlo_or_helo_if_needed()
            if c.security == "starttls":
                if not connection.has_extn("starttls"):
                    raise SmtpSetupError(
                        f"SMTP {self.where} does not offer STARTTLS, which [smtp] security = "
                        f"\"starttls\" requires; nothing was sent. Fix: use the server's "
                        f"submission port (587) or security = \"tls\" (port 465)")
                connection.starttls(context=self._context)
                connection.ehlo()
            if c.username:
                self._authenticate(connection)
        except Exception as exc:
            connection.close()
            raise self._setup_failure(exc) from exc
        log.debug("smtp connected to %s (%s)", self.where, c.security)
        return connection

    def _authenticate(self, connection: smtplib.SMTP) -> None:
        c = self.config
        if self._tokens is None:
            password = read_secret(c.password_env, self._path_setting(c.password_file),
                                   "SMTP password")
            connection.login(c.username, password)
            return
        offered = connection.esmtp_features.get("auth", "").upper().split()
        if "XOAUTH2" not in offered:
            raise SmtpSetupError(
                f"SMTP {self.where} does not offer AUTH XOAUTH2 (it offers: "
                f"{' '.join(offered) or 'no AUTH'}); fix: use auth = \"password\", or the "
                f"provider's OAuth2 submission host")
        for attempt in (1, 2):
            sasl = f"user={c.username}\x01auth=Bearer {self._tokens.token()}\x01\x01"
            try:
                # The first call gives the initial response; a 334 error challenge gets "".
                # `sasl=sasl` binds this attempt's token (auth() calls it before the loop goes on).
                connection.auth(
                    "XOAUTH2", lambda challenge=None, sasl=sasl: sasl if challenge is None else "",
                    initial_response_ok=True)
                return
            except smtplib.SMTPAuthenticationError as exc:
                if exc.smtp_code != 535 or attempt == 2:
                    raise
                log.info("smtp XOAUTH2 token refused by %s; fetching a fresh one", self.where)
                self._tokens.invalidate()

    def _setup_failure(self, exc: BaseException) -> DeliveryError:
        """Map a failure while connecting, securing or authenticating."""
        where, c = self.where, self.config
        if isinstance(exc, DeliveryError):
            return exc
        if isinstance(exc, MailbotError):  # a password or token that cannot be read
            return SmtpSetupError(f"SMTP {where}: {exc}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return SmtpSetupError(
                f"SMTP {where}: TLS certificate not trusted ({exc.verify_message}); fix: set "
                f"[smtp] ca_file to the CA that signed it, or [smtp] host to a name the "
                f"certificate is issued for")
        if isinstance(exc, ssl.SSLError):
            return SmtpSetupError(
                f"SMTP {where}: TLS handshake failed ({exc.reason or exc}); fix: check [smtp] "
                f"security and port (\"tls\" is implicit TLS, port 465; \"starttls\" is port 587)")
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            if 400 <= exc.smtp_code < 500:
                return TemporaryDeliveryError(f"SMTP {where}: authentication failed temporarily: "
                                              f"{exc.smtp_code} {_text(exc.smtp_error)}")
            secret = ("the token from [smtp] oauth2_token_command/oauth2_token_file"
                      if self._tokens else
                      f"the password in ${c.password_env} or [smtp] password_file")
            return SmtpSetupError(
                f"SMTP {where}: authentication as {c.username!r} refused: {exc.smtp_code} "
                f"{_text(exc.smtp_error)}; fix: check [smtp] username and {secret}")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return SmtpSetupError(
                f"SMTP {where}: {exc}; fix: clear [smtp] username if the server needs no login, "
                f"or use security = \"starttls\"/\"tls\" (many servers offer AUTH only over TLS)")
        if isinstance(exc, smtplib.SMTPResponseException):
            reply = f"{exc.smtp_code} {_text(exc.smtp_error)}"
            if exc.smtp_code < 500:
                return TemporaryDeliveryError(f"SMTP {where} is not accepting mail now: {reply}")
            return SmtpSetupError(f"SMTP {where} refused the session: {reply}; fix: check that "
                                  f"[smtp] host and port name your provider's submission server")
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return TemporaryDeliveryError(f"SMTP {where}: connection lost while connecting: {exc}")
        if isinstance(exc, TimeoutError):
            return TemporaryDeliveryError(
                f"SMTP {where}: no answer within {c.timeout_seconds} s; fix: check [smtp] host "
                f"and port and that a firewall lets this machine reach them")
        if isinstance(exc, ConnectionRefusedError):
            return TemporaryDeliveryError(
                f"SMTP {where}: connection refused; fix: check [smtp] host and port and that "
                f"the server is running")
        if isinstance(exc, socket.gaierror):
            return TemporaryDeliveryError(f"SMTP {where}: cannot resolve host ({exc.strerror}); "
                                          f"fix: check [smtp] host and DNS")
        if isinstance(exc, OSError):
            return TemporaryDeliveryError(f"SMTP {where}: cannot connect: {exc}")
        if isinstance(exc, smtplib.SMTPException):  # e.g. no AUTH mechanism in common
            return SmtpSetupError(f"SMTP {where}: {exc}; fix: check [smtp] username and auth")
        raise exc

    def _reusable_connection(self) -> tuple[smtplib.SMTP, bool]:
        """The open connection, or a new one; and whether it was reused without a check.

        A connection used within the last `recheck_after` seconds is taken as it is; an older
        one must still answer RSET, else it is replaced.
        """
        if self._connection is not None:
            if self._clock() - self._last_used <= self.recheck_after:
                return self._connection, True
            try:
                code, _ = self._connection.rset()
                if code == 250:
                    return self._connection, False
            except (smtplib.SMTPException, OSError):
                pass
            log.debug("smtp connection to %s went away; reconnecting", self.where)
            self._discard()
        self._connection = self._open()
        return self._connection, False

    def _discard(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    # --- the Sink --------------------------------------------------------------------------------

    def send(self, envelope_from: str, recipients: Sequence[str], message: bytes,
             message_id: str, *, hold: Callable[[], bool] | None = None) -> None:
        """Deliver `message` to exactly `recipients`.

        The envelope sender is [smtp] envelope_from when set (a provider may require it to be
        the authenticated mailbox), else `envelope_from`, else the default given at
        construction. Bare LF line endings become CRLF, as SMTP requires.

        `hold`: called once the whole message but its final dot has gone; the dot goes when it
        returns True. False closes the connection instead and raises Abandoned: the server
        never took the message. (The courier prepares the next reply so while the pass marks
        the last one sent: mailbot.run.courier.)
        """
        if not recipients:
            raise ValueError("a reply needs at least one recipient")
        sender = self.config.envelope_from or envelope_from or self.envelope_from
        data = _LINE_ENDING.sub(b"\r\n", message)
        with self._lock:
            connection, unchecked = self._reusable_connection()
            try:
                refused = self._sendmail(connection, sender, recipients, data, message_id, hold)
            except Abandoned:  # dropped by `hold` on purpose: not a failure of the server
                self._discard()
                raise
            except Exception as exc:
                self._discard()
                if not (unchecked and _dead_at_mail(connection, exc)):
                    raise self._delivery_failure(exc, message_id) from exc
                # The connection died while idle: nothing of this message reached the server.
                log.debug("smtp connection to %s went away; sending %s on a new one",
                          self.where, message_id)
                connection, _ = self._reusable_connection()
                try:
                    refused = self._sendmail(connection, sender, recipients, data, message_id,
                                             hold)
                except Abandoned:
                    self._discard()
                    raise
                except Exception as exc2:
                    self._discard()
                    raise self._delivery_failure(exc2, message_id) from exc2
            self._last_used = self._clock()
        if refused:
            accepted = [r for r in recipients if r not in refused]
            raise RecipientsRefused(message_id, {r: (code, _text(text))
                                                 for r, (code, text) in refused.items()}, accepted)
        log.debug("smtp %s accepted %s", self.where, message_id)

    def _sendmail(self, connection: smtplib.SMTP, sender: str, recipients: Sequence[str],
                  data: bytes, message_id: str, hold: Callable[[], bool] | None = None) -> dict:
        options = self._mail_options(connection, sender, recipients, data, message_id)
        connection.hold = hold  # type: ignore[attr-defined]
        try:
            return connection.sendmail(sender, list(recipients), data, mail_options=options)
        finally:
            connection.hold = None  # type: ignore[attr-defined]

    def _mail_options(self, connection: smtplib.SMTP, sender: str, recipients: Sequence[str],
                      data: bytes, message_id: str) -> list[str]:
        options = []
        if not data.isascii() and connection.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if not all(address.isascii() for address in (sender, *recipients)):
            if not connection.has_extn("smtputf8"):
                raise PermanentDeliveryError(
                    f"message {message_id}: an address is not ASCII and SMTP {self.where} "
                    f"does not support SMTPUTF8")
            options.append("SMTPUTF8")
        return options

    def _delivery_failure(self, exc: BaseException, message_id: str) -> DeliveryError:
        """Map a failure during MAIL FROM / RCPT TO / DATA of one message."""
        where = f"SMTP {self.where}, message {message_id}"
        if isinstance(exc, DeliveryError):
            return exc
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            listed = "; ".join(f"{address}: {code} {_text(text)}"
                               for address, (code, text) in exc.recipients.items())
            if all(code >= 500 for code, _ in exc.recipients.values()):
                return PermanentDeliveryError(f"{where}: every recipient refused: {listed}")
            return TemporaryDeliveryError(f"{where}: recipients deferred: {listed}")
        if isinstance(exc, smtplib.SMTPResponseException):
            reply = f"{exc.smtp_code} {_text(exc.smtp_error)}"
            stage = {smtplib.SMTPSenderRefused: "MAIL FROM",
                     smtplib.SMTPDataError: "DATA"}.get(type(exc), "the server")
            if exc.smtp_code == 530:
                return SmtpSetupError(f"{where}: the server requires authentication ({reply}); "
                                      f"fix: set [smtp] username and its password")
            if exc.smtp_code < 500:
                return TemporaryDeliveryError(f"{where}: {stage} deferred: {reply}")
            return PermanentDeliveryError(f"{where}: {stage} refused: {reply}")
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            if "timed out" in str(exc):
                return TemporaryDeliveryError(
                    f"{where}: no answer within {self.config.timeout_seconds} s (the server may "
                    f"still have accepted it)")
            return TemporaryDeliveryError(f"{where}: connection lost: {exc}")
        if isinstance(exc, TimeoutError):
            return TemporaryDeliveryError(
                f"{where}: no answer within {self.config.timeout_seconds} s")
        if isinstance(exc, OSError):
            return TemporaryDeliveryError(f"{where}: connection failed: {exc}")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return PermanentDeliveryError(f"{where}: {exc}")
        if isinstance(exc, smtplib.SMTPException):
            return TemporaryDeliveryError(f"{where}: {exc}")
        raise exc

    def check(self) -> list[str]:
        """Faults for `mailbot doctor`, each with its fix; empty when a reply could be sent.

        Goes through connect, EHLO, TLS, AUTH and MAIL FROM on a connection of its own, then
        RSET and QUIT: nothing is sent.
        """
        try:
            connection = self._open()
        except DeliveryError as exc:
            return [str(exc)]
        faults = []
        try:
            code, text = connection.mail(self.envelope_from)
            if code == 530:
                faults.append(f"SMTP {self.where} requires authentication: {code} {_text(text)}; "
                              f"fix: set [smtp] username and its password")
            elif code != 250:
                faults.append(f"SMTP {self.where} refuses the envelope sender "
                              f"{self.envelope_from}: {code} {_text(text)}; fix: set [smtp] "
                              f"envelope_from to an address this account may send as")
            connection.rset()
            connection.quit()
        except (smtplib.SMTPException, OSError) as exc:
            faults.append(f"SMTP {self.where}: connection lost during the check: {exc}")
        finally:
            connection.close()
        return faults

    def close(self) -> None:
        """Say QUIT politely; a server that has gone away is not an error here."""
        with self._lock:
            if self._connection is None:
                return
            try:
                self._connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
            finally:
                self._discard()

    def __enter__(self) -> SmtpSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
