"""A pass's replies go out on the courier while the next batch is decided (mailbot.run.courier).

Real parts: a Maildir inbox of 250 realistic request mails (the benchmark's generator; three
batches), the test aiosmtpd server, a SQLite store, `run_once` in this process or `mailbot run
--once` in a process of its own. What must hold is what holds without the courier: every mail
answered once (a reply the server took just as its sender died may go once more, with the
same bytes and Message-ID), its reply marked sent, the mail filed; a delivery failure treated
exactly as when the pass sends itself; and no courier left behind, whatever dies.
"""

from __future__ import annotations

import collections
import email
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from botconfig import ROOT, write_config
from test_batching import readahead_workers_in
from test_concurrency import bench, import_registry

from mailbot import config as config_module
from mailbot.run import courier, courier_lines, pipeline
from mailbot.run.app import BATCH_SIZE
from mailbot.run.pipeline import run_once
from mailbot.run.sending import Send
from mailbot.run.wiring import open_app
from mailbot.store.schema import mails, outbox

MAILS = 250  # three batches: the first two go out on the courier
COURIER = b"mailbot.run.courier_lines"


@pytest.fixture(scope="module")
def dataset() -> bench.Dataset:
    return bench.make_dataset(MAILS)


def smtp_bot(directory: Path, dataset: bench.Dataset, smtp_server) -> Path:
    """A Maildir inbox holding the dataset, replies over SMTP to the test server."""
    inbox = directory / "inbox"
    for sub in ("cur", "new", "tmp"):
        (inbox / sub).mkdir(parents=True)
    for number, mail in enumerate(dataset.mails):
        (inbox / "new" / f"{1_000_000 + number}.M{number}.test").write_bytes(mail.data)
    store_url = f"sqlite:///{directory / 'mailbot.db'}"
    import_registry(store_url, directory, dataset)
    smtp = smtp_server.config("none")
    return write_config(directory, f"""
[source]
type = "maildir"
path = "inbox"
[sink]
type = "smtp"
[store]
url = "{store_url}"
[smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
allow_plaintext = true
timeout_seconds = 10
retry_base_seconds = 1
""")


def one_pass(config: Path):
    """`run_once` on a freshly opened app, as `mailbot run --once` does; its report."""
    app = open_app(config_module.load(config))
    try:
        return run_once(app)
    finally:
        app.store.close()


def stored(config: Path) -> tuple[list, list]:
    app = open_app(config_module.load(config))
    try:
        with app.store.transaction() as conn:
            return (conn.execute(sa.select(mails)).all(),
                    conn.execute(sa.select(outbox).where(outbox.c.purpose != "alert")).all())
    finally:
        app.store.close()


def replies_of(smtp_server) -> list[email.message.Message]:
    return [email.message_from_bytes(m.data) for m in smtp_server.messages
            if m.rcpt_tos != ("operadores@example.com",)]


def replies_to(config: Path, sent: list) -> set[str]:
    """The Message-IDs of the replies queued for these mails."""
    records, queued = stored(config)
    ids = {r.id for r in records if r.message_id in {m.message_id for m in sent}}
    return {m.message_id for m in queued if m.mail in ids}


def assert_each_answered_once(config: Path, dataset: bench.Dataset, smtp_server, *,
                              resends: int = 0) -> None:
    """Every mail done and filed with one reply, marked sent, at the server; at most `resends`
    replies there twice (the same bytes, the same Message-ID)."""
    records, queued = stored(config)
    assert collections.Counter((r.status, r.filed) for r in records) == {("done", True): MAILS}
    assert all(r.claimed_by is None for r in records)
    assert collections.Counter(m.status for m in queued) == {"sent": MAILS}
    got = replies_of(smtp_server)
    ids = collections.Counter(m["Message-ID"] for m in got)
    assert sorted(ids) == sorted(m.message_id for m in queued)
    assert sum(n - 1 for n in ids.values()) <= resends
    answered = {m["In-Reply-To"] for m in got}
    assert answered == {mail.message_id for mail in dataset.mails}
    assert list((config.parent / "inbox" / "new").iterdir()) == []


def test_a_pass_of_several_batches_sends_through_the_courier_and_answers_each_once(
        tmp_path, dataset, smtp_server, monkeypatch):
    config = smtp_bot(tmp_path, dataset, smtp_server)
    monkeypatch.chdir(tmp_path)  # where the courier runs: the check below finds it
    handed: list[str] = []
    real = courier.Courier._hand_out

    def hand_out(self):  # count what the courier process is given, not how it sends it
        handed.append(self._next.message_id)
        return real(self)

    monkeypatch.setattr(courier.Courier, "_hand_out", hand_out)
    app = open_app(config_module.load(config))
    try:
        assert courier.can_overlap(app)
        report = run_once(app)
    finally:
        app.store.close()
    assert report.errors == [] and report.decided == MAILS
    assert_each_answered_once(config, dataset, smtp_server)
    # Every reply by the courier, while the next mails were decided (the last few as the pass
    # ended).
    assert sorted(handed) == sorted(replies_to(config, dataset.mails))
    # The courier's (the next reply prepared on one while the last goes on the other); the
    # pass never needed one of its own.
    assert smtp_server.connections == courier_lines.CONNECTIONS
    assert readahead_workers_in(tmp_path, COURIER) == []


def test_replies_go_out_while_their_own_batch_is_still_being_decided(
        tmp_path, dataset, smtp_server, monkeypatch):
    """A batch's replies go in groups of Batch.GROUP as its mails are decided, not once all
    of it is: the first reply is handed to the courier long before the first batch is
    decided, and the batch is still filed whole, each mail answered once."""
    config = smtp_bot(tmp_path, dataset, smtp_server)
    monkeypatch.chdir(tmp_path)
    decided_at_hand_out: list[int] = []
    decisions = 0
    real_decide, real_hand_out = pipeline.decide_mail, courier.Courier._hand_out

    def decide_mail(*args, **kwargs):
        nonlocal decisions
        rec = real_decide(*args, **kwargs)
        decisions += 1
        return rec

    def hand_out(self):
        decided_at_hand_out.append(decisions)
        return real_hand_out(self)

    monkeypatch.setattr(pipeline, "decide_mail", decide_mail)
    monkeypatch.setattr(courier.Courier, "_hand_out", hand_out)
    report = one_pass(config)
    assert report.errors == [] and report.decided == MAILS
    assert_each_answered_once(config, dataset, smtp_server)
    # The first group's replies start as soon as its mails are decided (the check runs
    # between two mails, so by then one more may be).
    assert decided_at_hand_out[0] <= courier.Batch.GROUP + 1 < BATCH_SIZE
    assert sum(n < BATCH_SIZE for n in decided_at_hand_out) >= courier.Batch.GROUP


def test_a_sink_the_courier_cannot_rebuild_or_a_replaced_send_keeps_sending_in_process(
        tmp_path, dataset, smtp_server):
    config = smtp_bot(tmp_path, dataset, smtp_server)
    app = open_app(config_module.load(config))
    try:
        assert courier.can_overlap(app)
        app.sink.send = app.sink.send  # a wrapper only this process would run
        assert not courier.can_overlap(app)
    finally:
        app.store.close()
    (tmp_path / "files").mkdir()
    files = write_config(tmp_path / "files", """
[source]
type = "maildir"
path = "../inbox"
[sink]
type = "files"
path = "outbox"
""")
    app = open_app(config_module.load(files))
    try:
        assert not courier.can_overlap(app)  # reply files: nothing to wait for
    finally:
        app.store.close()


def test_a_courier_that_dies_mid_pass_leaves_the_rest_to_the_pass(tmp_path, dataset,
                                                                     smtp_server, monkeypatch):
    """Killed with a reply out: that reply is sent again by the pass (the server may have
    taken it: then it arrives twice, same bytes and Message-ID), the rest in-process."""
    config = smtp_bot(tmp_path, dataset, smtp_server)
    monkeypatch.chdir(tmp_path)  # where the courier runs: the check below finds it
    real = courier.Courier._hand_out
    handed = [0]

    def hand_out(self):
        handed[0] += 1
        real(self)
        if handed[0] == 20 and self._proc is not None:
            self._proc.kill()

    monkeypatch.setattr(courier.Courier, "_hand_out", hand_out)
    report = one_pass(config)
    assert report.errors == []
    assert_each_answered_once(config, dataset, smtp_server, resends=1)
    assert handed[0] >= 20
    assert readahead_workers_in(tmp_path, COURIER) == []


def test_delivery_failures_through_the_courier_are_recorded_as_in_process(
        tmp_path, dataset, smtp_server, monkeypatch):
    """A recipient refused for good and one deferred, both in the first batch (sent by the
    courier): failed and sent to review, and queued to retry, as send_due records them."""
    config = smtp_bot(tmp_path, dataset, smtp_server)
    monkeypatch.chdir(tmp_path)  # where the courier runs: the check below finds it
    handed: list[str] = []
    real = courier.Courier._hand_out

    def hand_out(self):
        handed.append(self._next.message_id)
        return real(self)

    monkeypatch.setattr(courier.Courier, "_hand_out", hand_out)
    refused, deferred = dataset.mails[10], dataset.mails[11]
    refused_to = email.message_from_bytes(refused.data)["From"]
    deferred_to = email.message_from_bytes(deferred.data)["From"]
    smtp_server.refuse_recipient(email.utils.parseaddr(refused_to)[1], 550, "5.1.1 no such user")
    smtp_server.refuse_recipient(email.utils.parseaddr(deferred_to)[1], 451, "4.3.0 try later")
    app = open_app(config_module.load(config))
    try:
        run_once(app)
    finally:
        app.store.close()
    records, queued = stored(config)
    by_mail = {m.message_id: m for m in records}
    statuses = collections.Counter(m.status for m in queued)
    assert statuses == {"sent": MAILS - 2, "failed": 1, "queued": 1}
    assert by_mail[refused.message_id].folder == "review"
    assert by_mail[deferred.message_id].filed is False  # its answer is not out yet
    assert replies_to(config, [refused, deferred]) <= set(handed)  # the courier sent both


def test_a_pass_killed_while_the_courier_sends_leaves_no_courier_and_the_next_finishes(
        tmp_path, dataset, smtp_server):
    """`mailbot run --once` SIGKILLs itself once the server has taken the 150th reply (one of
    the second batch, with the courier at work); its courier dies with it; a clean run then
    answers every mail, once each but for at most one reply taken just before the kill."""
    config = smtp_bot(tmp_path, dataset, smtp_server)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MAILBOT_CRASH_AT": "after_smtp_accept:150"}
    crashed = subprocess.run([sys.executable, "-m", "mailbot", "--config", str(config), "run",
                              "--once"], cwd=tmp_path, env=env, capture_output=True,
                             timeout=240)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    deadline = time.monotonic() + 10  # the kernel kills the dead pass's helpers
    while readahead_workers_in(tmp_path, COURIER) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert readahead_workers_in(tmp_path, COURIER) == []
    env.pop("MAILBOT_CRASH_AT")
    clean = subprocess.run([sys.executable, "-m", "mailbot", "--config", str(config), "run",
                            "--once"], cwd=tmp_path, env=env, capture_output=True, timeout=240)
    assert clean.returncode == 0, clean.stderr.decode()[-2000:]
    assert_each_answered_once(config, dataset, smtp_server, resends=1)


def test_a_prepared_reply_the_steps_do_not_take_next_never_reaches_anyone(
        tmp_path, dataset, smtp_server, monkeypatch):
    """The courier prepares the message after the one it sends (all of it but the final dot);
    when the steps go on with another (a claim taken over, the SMTP setup broken), that one
    is dropped mid-DATA and the server never takes it; the steps' own messages arrive, each
    once, and every outcome reaches the steps."""
    config = smtp_bot(tmp_path, dataset, smtp_server)
    monkeypatch.chdir(tmp_path)  # where the courier runs: the check below finds it

    def reply(number: int, then: Send | None = None) -> Send:
        data = (f"From: claves@example.com\r\nTo: c{number}@example.org\r\n"
                f"Message-ID: <r{number}@example.com>\r\nSubject: Sus claves\r\n\r\n"
                f"texto {number}\r\n").encode()
        return Send("claves@example.com", [f"c{number}@example.org"], data,
                    f"<r{number}@example.com>", then=then)

    outcomes: list[object] = []

    def steps():  # sends 1 (naming 2 as next), then 3 instead, then 4 (naming 5), then stops
        outcomes.append((yield reply(1, then=reply(2))))
        outcomes.append((yield reply(3, then=reply(4))))
        outcomes.append((yield reply(4, then=reply(5))))

    app = open_app(config_module.load(config))
    courier_ = courier.Courier(app)
    try:
        courier_.warm_up()
        courier_.start(steps())
        courier_.finish()
    finally:
        courier_.close()
        app.store.close()
    time.sleep(0.2)  # the server has seen the dropped transactions' connections close
    assert outcomes == [None, None, None]
    assert sorted(m.rcpt_tos for m in smtp_server.messages) == [
        ("c1@example.org",), ("c3@example.org",), ("c4@example.org",)]
    assert readahead_workers_in(tmp_path, COURIER) == []


def test_a_pass_of_one_batch_starts_no_courier(tmp_path, dataset, smtp_server, monkeypatch):
    """Nothing to overlap its sends with: the pass sends them itself, on its own connection,
    without waiting for a helper to start (the IDLE path: a mail or two per pass)."""
    config = smtp_bot(tmp_path, bench.Dataset(dataset.mails[:20], dataset.registry,
                                              dataset.keys), smtp_server)
    started: list[str] = []
    real = courier.start_child
    monkeypatch.setattr(courier, "start_child",
                        lambda module, **kw: started.append(module) or real(module, **kw))
    report = one_pass(config)
    assert report.errors == [] and report.sent == 20
    assert started == [] and smtp_server.connections == 1
    assert len(replies_of(smtp_server)) == 20


def test_the_courier_process_imports_no_sqlalchemy_rules_or_templates():
    """Its start is on the core the reader and the server share, before the first replies:
    importing the store's SQLAlchemy made it 0.57 s instead of 0.13 s (mailbot.run.sending
    and the lazy names of mailbot.store are what keep it out)."""
    probe = ("import sys, pickle\n"
             "import mailbot.run.courier_lines\n"
             "from mailbot.run.sending import Send\n"
             "pickle.loads(pickle.dumps(Send('a@x', ['b@x'], b'x', '<m@x>')))\n"
             "print(sorted(m for m in ('sqlalchemy', 'jinja2', 'mailbot.ruleset',"
             " 'mailbot.store.database') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]", done.stderr
