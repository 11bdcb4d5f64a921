"""The SMTP sink against a real SMTP server on loopback (tests/smtp_server.py)."""

from __future__ import annotations

import pickle
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from smtp_server import SmtpTestServer

from mailbot.errors import ConfigError
from mailbot.transport.seams import PermanentDeliveryError, TemporaryDeliveryError
from mailbot.transport.smtp import Abandoned, RecipientsRefused, SmtpSetupError, SmtpSink

MakeSink = Callable[..., SmtpSink]

# The headers name other people on purpose: the envelope, not the headers, decides delivery.
REPLY = (b"From: Claves <claves@example.com>\r\n"
         b"To: Header To <header-to@example.net>\r\n"
         b"Cc: header-cc@example.net\r\n"
         b"Subject: Sus claves\r\n"
         b"Message-ID: <r1.CLV-000042@example.com>\r\n"
         b"\r\n"
         b"Estimado cliente:\r\n"
         b".a line that starts with a dot\r\n")
MESSAGE_ID = "<r1.CLV-000042@example.com>"
CUSTOMER = "cliente@example.org"
USER = "claves@example.com"


def send(sink: SmtpSink, recipients: list[str] | None = None, message: bytes = REPLY,
         envelope_from: str = "claves@example.com") -> None:
    sink.send(envelope_from, recipients or [CUSTOMER], message, MESSAGE_ID)


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- delivery and the envelope -------------------------------------------------------------------

def test_envelope_sender_and_recipients_are_the_explicit_ones_not_the_headers(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    send(make_smtp_sink(), ["cliente@example.org", "archivo@example.com"],
         envelope_from="bounces@example.com")

    [received] = smtp_server.messages
    assert received.mail_from == "bounces@example.com"
    assert received.rcpt_tos == ("cliente@example.org", "archivo@example.com")
    assert received.data == REPLY  # byte for byte, dot-stuffing undone by the server


def test_a_bcc_recipient_gets_the_reply_without_appearing_in_it(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    send(make_smtp_sink(), [CUSTOMER, "auditoria@example.com"])

    [received] = smtp_server.messages
    assert "auditoria@example.com" in received.rcpt_tos
    assert b"auditoria" not in received.data


def test_envelope_from_setting_replaces_the_sender_given_by_the_outbox(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    send(make_smtp_sink(envelope_from="rebotes@example.com"), envelope_from="claves@example.com")

    assert smtp_server.messages[0].mail_from == "rebotes@example.com"


def test_an_empty_sender_from_the_outbox_falls_back_to_the_mailbot_address(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    send(make_smtp_sink(default_from="claves@example.com"), envelope_from="")

    assert smtp_server.messages[0].mail_from == "claves@example.com"


def test_bare_newlines_are_sent_as_crlf(smtp_server: SmtpTestServer,
                                        make_smtp_sink: MakeSink) -> None:
    send(make_smtp_sink(), message=b"Subject: x\n\nline one\nline two\n")

    assert smtp_server.messages[0].data == b"Subject: x\r\n\r\nline one\r\nline two\r\n"


def test_an_eight_bit_body_is_declared_8bitmime(smtp_server: SmtpTestServer,
                                                make_smtp_sink: MakeSink) -> None:
    body = "Subject: x\r\nContent-Transfer-Encoding: 8bit\r\n\r\nActualización\r\n".encode()
    send(make_smtp_sink(), message=body)

    [received] = smtp_server.messages
    assert received.data == body
    assert "BODY=8BITMIME" in received.mail_options


def test_one_connection_carries_many_replies(smtp_server: SmtpTestServer,
                                             make_smtp_sink: MakeSink) -> None:
    sink = make_smtp_sink()
    for _ in range(3):
        send(sink)

    assert len(smtp_server.messages) == 3
    assert smtp_server.connections == 1


# --- temporary and permanent failures ------------------------------------------------------------

@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
def test_a_451_is_temporary_and_the_retry_delivers_the_same_bytes(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink, stage: str) -> None:
    sink = make_smtp_sink()
    smtp_server.fail_next(451, "4.7.1 Greylisted, try again later", at=stage)

    with pytest.raises(TemporaryDeliveryError, match="451 4.7.1 Greylisted") as failure:
        send(sink)
    assert not isinstance(failure.value, SmtpSetupError)
    assert smtp_server.messages == []

    send(sink)
    [received] = smtp_server.messages
    assert received.data == REPLY and received.rcpt_tos == (CUSTOMER,)


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
def test_a_550_is_permanent(smtp_server: SmtpTestServer, make_smtp_sink: MakeSink,
                            stage: str) -> None:
    smtp_server.fail_next(550, "5.7.1 Message rejected as spam", times=None, at=stage)

    with pytest.raises(PermanentDeliveryError, match="550 5.7.1 Message rejected as spam"):
        send(make_smtp_sink())
    assert smtp_server.messages == []


def test_no_answer_after_data_is_temporary_within_the_configured_timeout(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    sink = make_smtp_sink(timeout_seconds=1)
    smtp_server.stall_after_data(5)

    started = time.monotonic()
    with pytest.raises(TemporaryDeliveryError, match="no answer within 1 s"):
        send(sink)
    elapsed = time.monotonic() - started

    assert 0.9 <= elapsed < 2.0
    send(sink)  # the stalled session is abandoned; a new one delivers
    assert [m.data for m in smtp_server.messages] == [REPLY]


def test_a_connection_the_server_closed_between_replies_is_reopened(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    sink = make_smtp_sink()
    send(sink)
    smtp_server.disconnect_clients()  # idle timeout, server restart

    send(sink)

    assert len(smtp_server.messages) == 2
    assert smtp_server.connections == 2


def test_a_connection_idle_for_a_while_is_checked_and_one_cut_at_the_check_is_reopened(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    sink = make_smtp_sink()
    send(sink)
    sink.recheck_after = 0  # as if the connection had been idle for a while
    smtp_server.drop_connection_next()  # whatever the sink says next is cut off

    send(sink)

    assert len(smtp_server.messages) == 2
    assert smtp_server.commands[3] == "RSET"  # the check met the cut, not the reply


def test_a_connection_used_moments_ago_is_reused_without_a_check(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    sink = make_smtp_sink()
    for _ in range(3):
        send(sink)

    assert "RSET" not in smtp_server.commands
    assert smtp_server.connections == 1 and len(smtp_server.messages) == 3


@pytest.mark.parametrize("cut", ["drop", "421"])
def test_a_connection_found_dead_at_mail_from_sends_the_reply_once_on_a_new_one(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink, cut: str) -> None:
    sink = make_smtp_sink()
    send(sink)
    if cut == "drop":
        smtp_server.drop_connection_next(at="MAIL")  # died between two replies, unnoticed
    else:
        smtp_server.fail_next(421, "4.4.2 Idle too long, closing", at="MAIL")

    send(sink)  # no error: nothing of it had reached the server

    assert [m.data for m in smtp_server.messages] == [REPLY, REPLY]
    assert smtp_server.connections == 2
    assert smtp_server.commands[3] == "MAIL"  # no RSET before it: used moments ago


def test_a_connection_cut_during_the_transaction_is_temporary_and_the_next_send_reconnects(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    sink = make_smtp_sink()
    smtp_server.drop_connection_next(at="DATA")

    with pytest.raises(TemporaryDeliveryError, match="connection lost"):
        send(sink)
    send(sink)

    assert [m.data for m in smtp_server.messages] == [REPLY]


def test_a_refused_connection_is_temporary(smtp_server: SmtpTestServer,
                                           make_smtp_sink: MakeSink) -> None:
    with pytest.raises(TemporaryDeliveryError, match="connection refused"):
        send(make_smtp_sink("none", port=closed_port()))


def test_some_recipients_refused_reports_them_and_is_never_resent(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    smtp_server.refuse_recipient("nadie@example.org", 550, "5.1.1 No such user")

    with pytest.raises(RecipientsRefused) as failure:
        send(make_smtp_sink(), [CUSTOMER, "nadie@example.org"])

    assert isinstance(failure.value, PermanentDeliveryError)
    assert failure.value.refused == {"nadie@example.org": (550, "5.1.1 No such user")}
    assert failure.value.accepted == (CUSTOMER,)
    assert [m.rcpt_tos for m in smtp_server.messages] == [(CUSTOMER,)]


def test_every_recipient_refused_with_5xx_is_permanent(smtp_server: SmtpTestServer,
                                                       make_smtp_sink: MakeSink) -> None:
    smtp_server.refuse_recipient(CUSTOMER, 550, "5.1.1 No such user")

    with pytest.raises(PermanentDeliveryError, match="every recipient refused"):
        send(make_smtp_sink())


def test_a_deferred_recipient_is_temporary(smtp_server: SmtpTestServer,
                                           make_smtp_sink: MakeSink) -> None:
    smtp_server.fail_next(452, "4.2.2 Mailbox full", at="RCPT")

    with pytest.raises(TemporaryDeliveryError, match="452 4.2.2 Mailbox full"):
        send(make_smtp_sink())


# --- TLS -----------------------------------------------------------------------------------------

def test_starttls_verifies_the_certificate_with_ca_file_and_delivers_encrypted(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    send(make_smtp_sink("starttls"))

    [received] = smtp_server.messages
    assert (received.listener, received.tls) == ("starttls", True)


def test_a_certificate_not_signed_by_a_trusted_ca_is_refused(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    with pytest.raises(SmtpSetupError, match="certificate not trusted.*ca_file"):
        send(make_smtp_sink("starttls", ca_file=""))
    assert smtp_server.messages == []


def test_verify_certificates_false_accepts_an_untrusted_certificate(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    send(make_smtp_sink("starttls", ca_file="", verify_certificates=False))

    assert smtp_server.messages[0].tls


def test_a_relative_ca_file_is_found_beside_the_config_file(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(smtp_server.tls_files.ca_file.read_bytes())

    send(make_smtp_sink("tls", ca_file="ca.pem", base_dir=tmp_path))

    assert len(smtp_server.messages) == 1


def test_a_missing_ca_file_is_a_config_error(smtp_server: SmtpTestServer,
                                             make_smtp_sink: MakeSink) -> None:
    with pytest.raises(ConfigError, match=r"\[smtp\] ca_file .* does not exist"):
        make_smtp_sink("starttls", ca_file="/nonexistent/ca.pem")


def test_starttls_configured_but_not_offered_fails_clearly_and_sends_nothing_in_plain(
        smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILBOT_SMTP_PASSWORD", "s3cret")
    smtp_server.require_auth(USER, "s3cret")
    config = smtp_server.config("starttls", port=smtp_server.port("plain"), username=USER)

    with SmtpSink(config, Path("."), USER) as sink:
        with pytest.raises(SmtpSetupError, match="does not offer STARTTLS.*nothing was sent"):
            send(sink)

    assert smtp_server.commands == []  # no MAIL, RCPT, DATA
    assert smtp_server.logins == []  # and the password never crossed in clear


def test_implicit_tls_delivers(smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    send(make_smtp_sink("tls"))

    [received] = smtp_server.messages
    assert (received.listener, received.tls) == ("tls", True)


def test_implicit_tls_against_a_plain_port_is_a_setup_error(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    with pytest.raises(SmtpSetupError, match="TLS handshake failed"):
        send(make_smtp_sink("tls", port=smtp_server.port("plain")))


def test_plaintext_is_refused_without_allow_plaintext(smtp_server: SmtpTestServer) -> None:
    config = smtp_server.config("none", allow_plaintext=False)

    with pytest.raises(ConfigError, match=r"\[smtp\] allow_plaintext"):
        SmtpSink(config, Path("."), USER)


def test_plaintext_with_allow_plaintext_delivers(smtp_server: SmtpTestServer,
                                                 make_smtp_sink: MakeSink) -> None:
    send(make_smtp_sink("none"))

    [received] = smtp_server.messages
    assert (received.listener, received.tls) == ("plain", False)


# --- authentication ------------------------------------------------------------------------------

def test_auth_with_the_password_from_the_environment(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    smtp_server.require_auth(USER, "s3cret")
    monkeypatch.setenv("MAILBOT_SMTP_PASSWORD", "s3cret")

    send(make_smtp_sink("starttls", username=USER))

    assert smtp_server.messages[0].auth_user == USER


def test_auth_with_the_password_from_a_file_beside_the_config(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    smtp_server.require_auth(USER, "s3cret")
    monkeypatch.delenv("MAILBOT_SMTP_PASSWORD", raising=False)
    secret = tmp_path / "smtp.password"
    secret.write_text("s3cret\n")
    secret.chmod(stat.S_IRUSR | stat.S_IWUSR)

    send(make_smtp_sink("tls", username=USER, password_file="smtp.password", base_dir=tmp_path))

    assert smtp_server.messages[0].auth_user == USER


def test_a_wrong_password_is_a_setup_error_that_fails_no_reply(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    smtp_server.require_auth(USER, "s3cret")
    monkeypatch.setenv("MAILBOT_SMTP_PASSWORD", "wrong-password")

    with pytest.raises(SmtpSetupError) as failure:
        send(make_smtp_sink("starttls", username=USER))

    text = str(failure.value)
    assert "535" in text and "[smtp] username" in text and "$MAILBOT_SMTP_PASSWORD" in text
    assert "wrong-password" not in text
    assert isinstance(failure.value, TemporaryDeliveryError)
    assert not isinstance(failure.value, PermanentDeliveryError)
    assert smtp_server.messages == []


def test_a_missing_password_is_a_setup_error(smtp_server: SmtpTestServer,
                                             make_smtp_sink: MakeSink,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILBOT_SMTP_PASSWORD", raising=False)

    with pytest.raises(SmtpSetupError, match="MAILBOT_SMTP_PASSWORD"):
        send(make_smtp_sink("starttls", username=USER))


def test_a_server_that_requires_auth_when_none_is_configured_is_a_setup_error(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    smtp_server.require_auth(USER, "s3cret")

    with pytest.raises(SmtpSetupError, match="530.*set \\[smtp\\] username"):
        send(make_smtp_sink("starttls"))


def test_xoauth2_authenticates_with_the_token_from_a_file(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink, tmp_path: Path) -> None:
    smtp_server.require_xoauth2(USER, {"ya29.token-one"})
    (tmp_path / "token").write_text("ya29.token-one\n")

    send(make_smtp_sink("tls", username=USER, auth="xoauth2", oauth2_token_file="token"))

    assert smtp_server.logins == [("XOAUTH2", USER, True)]
    assert smtp_server.messages[0].auth_user == USER


def _token_command(tmp_path: Path, *tokens: str) -> str:
    """A command printing the next of `tokens` on each run, as a refreshing helper would."""
    (tmp_path / "tokens").write_text("\n".join(tokens) + "\n")
    script = tmp_path / "next-token.sh"
    script.write_text(f"#!/bin/sh\nset -e\ncd {tmp_path}\n"
                      "head -n 1 tokens\ntail -n +2 tokens > tokens.rest\nmv tokens.rest tokens\n")
    script.chmod(0o700)
    return str(script)


def test_an_expired_xoauth2_token_is_refreshed_once(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink, tmp_path: Path) -> None:
    smtp_server.require_xoauth2(USER, {"fresh"})
    command = _token_command(tmp_path, "expired", "fresh")

    send(make_smtp_sink("starttls", username=USER, auth="xoauth2", oauth2_token_command=command))

    assert smtp_server.logins == [("XOAUTH2", USER, False), ("XOAUTH2", USER, True)]
    assert len(smtp_server.messages) == 1


def test_an_xoauth2_token_refused_twice_is_a_setup_error(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink, tmp_path: Path) -> None:
    smtp_server.require_xoauth2(USER, {"the-right-one"})
    command = _token_command(tmp_path, "bad-1", "bad-2", "bad-3")

    with pytest.raises(SmtpSetupError, match="535.*oauth2_token_command"):
        send(make_smtp_sink("starttls", username=USER, auth="xoauth2",
                            oauth2_token_command=command))
    assert [ok for _, _, ok in smtp_server.logins] == [False, False]


def test_xoauth2_without_username_is_a_config_error(smtp_server: SmtpTestServer) -> None:
    with pytest.raises(ConfigError, match=r"\[smtp\] username"):
        SmtpSink(smtp_server.config("tls", auth="xoauth2", oauth2_token_file="t"), Path("."), USER)


# --- doctor and lifecycle ------------------------------------------------------------------------

def test_check_finds_no_fault_on_a_working_server(smtp_server: SmtpTestServer,
                                                  make_smtp_sink: MakeSink,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    smtp_server.require_auth(USER, "s3cret")
    monkeypatch.setenv("MAILBOT_SMTP_PASSWORD", "s3cret")

    assert make_smtp_sink("starttls", username=USER).check() == []
    assert smtp_server.messages == []


@pytest.mark.parametrize("case, expected", [
    ("refused", "connection refused; fix: check [smtp] host and port"),
    ("no-starttls", "does not offer STARTTLS"),
    ("untrusted", "certificate not trusted"),
    ("wrong-password", "fix: check [smtp] username"),
    ("sender-refused", "refuses the envelope sender claves@example.com: 550"),
])
def test_check_names_each_fault_and_its_fix(smtp_server: SmtpTestServer,
                                            make_smtp_sink: MakeSink,
                                            monkeypatch: pytest.MonkeyPatch,
                                            case: str, expected: str) -> None:
    monkeypatch.setenv("MAILBOT_SMTP_PASSWORD", "wrong")
    overrides = {
        "refused": {"port": closed_port()},
        "no-starttls": {"port": smtp_server.port("plain")},
        "untrusted": {"ca_file": ""},
        "wrong-password": {"username": USER},
        "sender-refused": {},
    }[case]
    if case == "wrong-password":
        smtp_server.require_auth(USER, "s3cret")
    if case == "sender-refused":
        smtp_server.fail_next(550, "5.7.60 SendAsDenied", at="MAIL")

    [fault] = make_smtp_sink("starttls", **overrides).check()

    assert expected in fault


def test_close_ends_the_session_and_a_later_send_opens_a_new_one(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    sink = make_smtp_sink()
    send(sink)
    sink.close()
    sink.close()  # twice is harmless

    send(sink)

    assert smtp_server.connections == 2
    assert len(smtp_server.messages) == 2


def test_a_send_without_recipients_is_a_programming_error(make_smtp_sink: MakeSink) -> None:
    with pytest.raises(ValueError):
        make_smtp_sink().send(USER, [], REPLY, MESSAGE_ID)



# --- a final dot held (the courier, mailbot.run.courier) ----------------------------------------

def test_a_held_message_is_taken_only_once_hold_says_so(smtp_server: SmtpTestServer,
                                                         make_smtp_sink: MakeSink) -> None:
    seen_before_dot: list[int] = []

    def hold() -> bool:
        time.sleep(0.05)  # the server has all of it but the dot, and must not have taken it
        seen_before_dot.append(len(smtp_server.messages))
        return True

    make_smtp_sink().send(USER, [CUSTOMER], REPLY, MESSAGE_ID, hold=hold)

    assert seen_before_dot == [0]
    [received] = smtp_server.messages
    assert received.data == REPLY  # byte for byte, the dot-stuffed line too


def test_a_held_message_dropped_never_reaches_anyone_and_the_next_goes_on_a_new_connection(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    sink = make_smtp_sink()
    with pytest.raises(Abandoned):
        sink.send(USER, [CUSTOMER], REPLY, MESSAGE_ID, hold=lambda: False)
    time.sleep(0.2)  # the server has seen the connection close mid-DATA
    assert smtp_server.messages == []

    send(sink)

    assert [m.data for m in smtp_server.messages] == [REPLY]
    assert smtp_server.connections == 2


def test_a_failure_before_the_dot_is_the_send_s_own_and_hold_is_never_asked(
        smtp_server: SmtpTestServer, make_smtp_sink: MakeSink) -> None:
    smtp_server.refuse_recipient(CUSTOMER, 550, "5.1.1 No such user")
    asked: list[bool] = []

    with pytest.raises(PermanentDeliveryError, match="every recipient refused"):
        make_smtp_sink().send(USER, [CUSTOMER], REPLY, MESSAGE_ID,
                              hold=lambda: asked.append(True) or True)

    assert asked == []


def test_recipients_refused_survives_pickling_from_the_courier() -> None:
    refused = RecipientsRefused(MESSAGE_ID, {"nadie@example.org": (550, "no")}, [CUSTOMER])

    again = pickle.loads(pickle.dumps(refused))

    assert (type(again), str(again), again.refused, again.accepted) == (
        RecipientsRefused, str(refused), refused.refused, refused.accepted)


def test_the_connection_sends_each_write_at_once(smtp_server: SmtpTestServer,
                                                 make_smtp_sink: MakeSink) -> None:
    """A held message's final dot is a few bytes after the body: with Nagle's algorithm it would
    wait for the server's delayed ACK (40 ms here) before leaving."""
    sink = make_smtp_sink()
    send(sink)

    assert sink._connection.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
