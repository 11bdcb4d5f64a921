"""mailbot on real servers: Dovecot IMAP in, aiosmtpd SMTP out, and the faults it survives.

The bot runs in-process for most tests and as a real subprocess, killed with SIGKILL at each
crash point, for the crash tests.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from botconfig import server_config

from mailbot import config as config_module
from mailbot.ops.demo import write_demo
from mailbot.ops.imports import read_keys, read_registry
from mailbot.run.pipeline import run_once
from mailbot.run.wiring import open_app
from mailbot.store.database import keys, mails, outbox

FOLDERS = {"processed": "mailbot/procesados", "review": "mailbot/revision",
           "ignored": "mailbot/ignorados", "failed": "mailbot/fallidos"}


@pytest.fixture
def setup(tmp_path, imap_server, smtp_server):
    """A configured bot with the demo registry and key pool, and the demo mails at hand."""
    files = write_demo(tmp_path / "demo")
    path = server_config(tmp_path, imap_server, smtp_server)
    app = open_app(config_module.load(path))
    with app.store.transaction() as conn:
        app.store.upsert_licences(conn, read_registry(files.registry_csv, app.rules.catalogue))
        app.store.add_keys(conn, read_keys(files.keys_csv, app.rules.catalogue))
    demo_mails = [m.path.read_bytes() for m in files.mails]
    yield app, path, demo_mails
    app.source.close()
    app.sink.close()
    app.store.close()


def recipients(smtp_server) -> list[str]:
    return [r for m in smtp_server.messages for r in m.rcpt_tos]


def message_ids(smtp_server) -> list[str]:
    return [email.message_from_bytes(m.data)["Message-ID"] for m in smtp_server.messages]


def db(app, table):
    with app.store.transaction() as conn:
        return conn.execute(sa.select(table)).all()


def test_inbox_mails_come_back_as_replies_with_copies_in_sent_and_are_filed(setup, imap_server,
                                                                         smtp_server):
    app, _, demo = setup
    for data in demo:
        imap_server.append("INBOX", data)
    report = run_once(app)
    assert report.errors == [] and report.seen == 12
    got = smtp_server.messages
    customer = [m for m in got if "operadores@example.com" not in m.rcpt_tos]
    assert len(customer) == 11  # 9 answered mails, one of them also to the registered
    # contact, the unlock confirmation and the request for documents, the review
    # acknowledgement; the auto-reply and the invoice mail get nothing
    assert all(m.mail_from == "claves@example.com" for m in got)
    assert "mlopez@lomasdelnorte.com.mx" in recipients(smtp_server)
    assert imap_server.list_folder("INBOX") == []
    assert len(imap_server.list_folder("Sent")) == len(customer)
    # processed: seven free-update mails, the 1st unlock and the request for documents
    assert len(imap_server.list_folder(FOLDERS["processed"])) == 9
    # review: the invoice mail and the keys for a licence without a registered address
    assert len(imap_server.list_folder(FOLDERS["review"])) == 2
    assert len(imap_server.list_folder(FOLDERS["ignored"])) == 1
    # The request mails kept their bytes: nothing was rewritten on the way.
    filed = {bytes(m) for f in FOLDERS.values() for m in imap_server.list_folder(f)}
    assert {d.replace(b"\r\n", b"\n") for d in demo} == {m.replace(b"\r\n", b"\n") for m in filed}


def test_the_same_mail_delivered_twice_is_answered_once(setup, imap_server, smtp_server):
    app, _, demo = setup
    imap_server.append("INBOX", demo[0])
    imap_server.append("INBOX", demo[0])
    report = run_once(app)
    assert report.duplicates == 1
    assert len([m for m in smtp_server.messages if "operadores@example.com" not in m.rcpt_tos]) == 1
    assert imap_server.list_folder("INBOX") == []


def test_a_dropped_connection_and_a_restarted_server_do_not_stop_the_flow(setup, imap_server,
                                                                        smtp_server):
    app, _, demo = setup
    imap_server.append("INBOX", demo[0])
    run_once(app)
    imap_server.kick()
    imap_server.append("INBOX", demo[3])
    assert run_once(app).decided == 1
    imap_server.restart()
    imap_server.append("INBOX", demo[2])
    assert run_once(app).decided == 1
    assert imap_server.list_folder("INBOX") == []
    assert len([r for r in recipients(smtp_server) if r != "operadores@example.com"]) == 3


def test_a_uidvalidity_change_neither_answers_twice_nor_skips_a_mail(setup, imap_server,
                                                                     smtp_server):
    app, _, demo = setup
    imap_server.append("INBOX", demo[0])
    hook_calls = []

    def stop_before_filing(point: str) -> None:
        if point == "before_file":
            hook_calls.append(point)
            raise KeyboardInterrupt  # the process stops between the reply and the filing

    app.hook = stop_before_filing
    with pytest.raises(KeyboardInterrupt):
        run_once(app)
    app.hook = lambda point: None
    app.source.close()  # the next run starts with a fresh session, as after a restart
    answered = len(smtp_server.messages)
    old = imap_server.uidvalidity("INBOX")
    imap_server.set_uidvalidity("INBOX", old + 1000)
    imap_server.append("INBOX", demo[3])  # a new mail arrives meanwhile
    report = run_once(app)
    assert report.duplicates == 1  # the first mail, seen again under new UIDs
    assert report.decided == 1  # the new one
    customer = [m for m in smtp_server.messages if "operadores@example.com" not in m.rcpt_tos]
    assert len(customer) == 2 and answered >= 1
    assert imap_server.list_folder("INBOX") == []


def test_a_temporary_smtp_failure_is_retried_with_the_same_bytes(setup, imap_server,
                                                                smtp_server):
    app, _, demo = setup
    imap_server.append("INBOX", demo[3])
    smtp_server.fail_next(451, "4.3.0 try again later", at="DATA")
    run_once(app)
    assert smtp_server.messages == []
    assert len(imap_server.list_folder("INBOX")) == 1  # not filed before its reply is out
    queued = [m for m in db(app, outbox) if m.purpose == "reply"][0]
    assert queued.status == "queued" and "451" in queued.last_error
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    app.clock = lambda: later
    run_once(app)
    sent = [m for m in smtp_server.messages if "operadores@example.com" not in m.rcpt_tos]
    assert len(sent) == 1
    assert sent[0].data.replace(b"\r\n", b"\n") == queued.data.replace(b"\r\n", b"\n")
    assert imap_server.list_folder("INBOX") == []


def test_a_permanent_smtp_failure_keeps_the_key_bound_and_alerts_operators(setup, imap_server,
                                                                          smtp_server):
    app, _, demo = setup
    imap_server.append("INBOX", demo[0])
    smtp_server.fail_next(550, "5.1.1 mailbox unavailable", at="RCPT")
    run_once(app)
    reply = [m for m in db(app, outbox) if m.purpose == "reply"][0]
    assert reply.status == "failed" and "550" in reply.last_error
    with app.store.transaction() as conn:
        assert conn.execute(sa.select(keys.c.serial).where(keys.c.serial.is_not(None))).all()
    alert = smtp_server.wait_for_messages(1)
    assert any("operadores@example.com" in m.rcpt_tos and b"Entrega fallida" in
               email.message_from_bytes(m.data, policy=email.policy.default)
               .get_body(("plain",)).get_content().encode() for m in alert)
    assert len(imap_server.list_folder(FOLDERS["review"])) == 1


def test_a_timeout_after_data_is_retried_and_at_most_repeats_identical_bytes(setup, imap_server,
                                                                            smtp_server):
    app, path, demo = setup
    app.sink.close()
    from mailbot.run.wiring import open_sink

    cfg = config_module.load(path)
    import dataclasses

    cfg = dataclasses.replace(cfg, smtp=dataclasses.replace(cfg.smtp, timeout_seconds=1))
    app.sink = open_sink(cfg)
    imap_server.append("INBOX", demo[3])
    smtp_server.stall_after_data(3)
    run_once(app)
    assert len(imap_server.list_folder("INBOX")) == 1
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    app.clock = lambda: later
    time.sleep(2.5)  # let the stalled session finish on the server side
    run_once(app)
    customer = [m for m in smtp_server.messages if "operadores@example.com" not in m.rcpt_tos]
    ids = {email.message_from_bytes(m.data)["Message-ID"] for m in customer}
    assert len(ids) == 1 and 1 <= len(customer) <= 2
    assert imap_server.list_folder("INBOX") == []


def test_a_mail_that_keeps_failing_is_quarantined_and_the_next_mails_flow(setup, imap_server,
                                                                         smtp_server,
                                                                         monkeypatch):
    app, _, demo = setup
    import mailbot.run.reading as reading

    real = reading.read_mail

    def read_mail(data, *args, **kwargs):
        if b"poison-pill" in data:
            raise RecursionError("the parser gave up on this mail")
        return real(data, *args, **kwargs)

    monkeypatch.setattr(reading, "read_mail", read_mail)
    imap_server.append("INBOX", demo[0].replace(b"Subject:", b"X-Test: poison-pill\r\nSubject:", 1))
    imap_server.append("INBOX", demo[3])
    for _ in range(4):
        run_once(app)
    statuses = sorted(r.status for r in db(app, mails))
    assert statuses == ["done", "quarantined"]
    assert len(imap_server.list_folder(FOLDERS["failed"])) == 1
    assert imap_server.list_folder("INBOX") == []
    alerts = [m for m in smtp_server.messages if "operadores@example.com" in m.rcpt_tos]
    assert any(b"cuarentena" in email.message_from_bytes(m.data, policy=email.policy.default)
               .get_body(("plain",)).get_content().encode() for m in alerts)


# -- crashes: the bot as a subprocess, killed with SIGKILL at each step -------------------------

def run_bot(config: Path, *args: str, crash_at: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ}
    env.pop("MAILBOT_CRASH_AT", None)
    if crash_at:
        env["MAILBOT_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "mailbot", "--config", str(config), *args],
                          cwd=config.parent, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("point", ["after_fetch", "after_decision", "after_key_assigned",
                                   "after_smtp_accept", "before_file"])
def test_sigkill_at_every_step_then_restart_answers_each_mail_exactly_once(setup, imap_server,
                                                                          smtp_server, point):
    app, path, demo = setup
    for data in demo[:4]:  # seed request, spreadsheet, missing data, not eligible
        imap_server.append("INBOX", data)
    killed = run_bot(path, "run", "--once", crash_at=f"{point}:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    finished = run_bot(path, "run", "--once")
    assert finished.returncode == 0, finished.stderr
    assert imap_server.list_folder("INBOX") == []
    states = [r.status for r in db(app, mails)]
    assert states == ["done"] * 4
    customer = [m for m in smtp_server.messages if "operadores@example.com" not in m.rcpt_tos]
    ids = [email.message_from_bytes(m.data)["Message-ID"] for m in customer]
    queued = {m.message_id for m in db(app, outbox) if m.purpose != "alert"}
    assert set(ids) == queued and len(queued) == 4  # one answer per mail
    repeats = len(ids) - len(set(ids))
    assert repeats == (1 if point == "after_smtp_accept" else 0)  # the one window SMTP leaves
    with app.store.transaction() as conn:
        bound = conn.execute(sa.select(keys.c.serial, keys.c.request)
                             .where(keys.c.serial.is_not(None))).all()
    assert len(bound) == len({s for s, _ in bound}) == 4  # DDDD, EEEE, FFFF, GGGG: once each
    assert len({r for _, r in bound}) == 4


# -- the service: IDLE, schedule, signals --------------------------------------------------------

def test_the_service_answers_within_seconds_with_idle_and_stops_cleanly_on_sigterm(
        setup, imap_server, smtp_server):
    _, path, demo = setup
    proc = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(path), "run"],
                            cwd=path.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        time.sleep(2.0)  # the first pass finds the inbox empty; the bot is now in IDLE
        start = time.monotonic()
        imap_server.append("INBOX", demo[0])
        got = []
        while time.monotonic() - start < 15 and not got:
            got = [m for m in smtp_server.messages if "operadores@example.com" not in m.rcpt_tos]
            time.sleep(0.05)
        latency = time.monotonic() - start
        assert got, "no reply within 15 s"
        assert latency < 5, f"reply took {latency:.1f} s"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "event=stopped" in err


def test_an_unreachable_mailbox_is_alerted_once_not_in_a_loop(setup, imap_server, smtp_server):
    app, _, _ = setup
    from mailbot.run.service import Runner
    from mailbot.transport.imap import ImapSource

    app.source.close()
    app.source = ImapSource(app.config.imap, app.config.base_dir,
                            app.config.limits.max_message_bytes, sleep=lambda seconds: None)
    imap_server.stop()
    try:
        runner = Runner(app)
        for _ in range(3):
            runner.run_pass()
    finally:
        imap_server.start()
    alerts = [m for m in smtp_server.messages if "operadores@example.com" in m.rcpt_tos]
    assert len(alerts) == 1
    text = email.message_from_bytes(alerts[0].data, policy=email.policy.default)
    assert "inaccesible" in text.get_body(("plain",)).get_content()
