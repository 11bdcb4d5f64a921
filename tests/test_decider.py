"""Big passes with a decider process (mailbot.run.decider): the first batch decided here, the
next ones in a helper process while this one answers and files; the same answers, once each,
on SQLite and PostgreSQL, with the same crash safety, and the rest of the pass handled here
when the decider dies."""

from __future__ import annotations

import email
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from botconfig import server_config
from test_batching import readahead_workers_in
from test_servers import FOLDERS, run_bot

from mailbot import config as config_module
from mailbot.ops.imports import read_keys, read_registry
from mailbot.run import pipeline
from mailbot.run.pipeline import run_once
from mailbot.run.wiring import open_app
from mailbot.store.database import Store, keys, mails, outbox, requests
from mailbot.store.wal import Turns

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import imap_throughput as bench  # its realistic mail generator

# 24 mails: the first batch of 8 decided here (a batch smaller than a group of LOOK_AGAIN is
# decided whole before the decider is given work), then four parts of 4 for the decider.
SMALL_BATCH, SMALL_PART = 8, 4


@pytest.fixture(scope="module")
def dataset():
    return bench.make_dataset(24)


def open_bot(directory: Path, imap_server, smtp_server, dataset, store_url: str | None = None):
    path = server_config(directory, imap_server, smtp_server)
    if store_url is not None:
        path.write_text(path.read_text().replace('url = "sqlite:///mailbot.db"',
                                                 f'url = "{store_url}"'))
    registry_csv, keys_csv = bench.write_imports(directory, dataset)
    app = open_app(config_module.load(path))
    with app.store.transaction() as conn:
        app.store.upsert_licences(conn, read_registry(registry_csv, app.rules.catalogue))
        app.store.add_keys(conn, read_keys(keys_csv, app.rules.catalogue))
    return app


@pytest.fixture
def bot(tmp_path, imap_server, smtp_server, dataset):
    app = open_bot(tmp_path, imap_server, smtp_server, dataset)
    yield app
    app.source.close()
    app.sink.close()
    app.store.close()


def small_batches(monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "BATCH_SIZE", SMALL_BATCH)
    monkeypatch.setattr(pipeline, "DECIDER_PART", SMALL_PART)


def customer_replies(smtp_server) -> list[email.message.Message]:
    return [email.message_from_bytes(m.data) for m in smtp_server.messages
            if "operadores@example.com" not in m.rcpt_tos]


def assert_each_mail_answered_once(app, imap_server, smtp_server, dataset) -> None:
    replies = customer_replies(smtp_server)
    assert sorted(r["In-Reply-To"] for r in replies) == sorted(m.message_id for m in dataset.mails)
    assert imap_server.list_folder("INBOX") == []
    assert len(imap_server.list_folder(FOLDERS["processed"])) == len(dataset.mails)
    assert len(imap_server.list_folder("Sent")) == len(replies)
    with app.store.transaction() as conn:
        assert {r.status for r in conn.execute(sa.select(mails.c.status))} == {"done"}
        outcomes = [r.outcome for r in conn.execute(sa.select(requests.c.outcome))]
        issued = conn.execute(sa.select(sa.func.count()).select_from(keys).where(
            keys.c.request.is_not(None))).scalar_one()
    wanted = sum(len(m.licences) for m in dataset.mails)
    assert outcomes == ["issued"] * wanted and issued == wanted  # one key per request, no more


def test_a_pass_of_several_batches_is_decided_by_a_decider_and_answered_once(
        store, tmp_path, imap_server, smtp_server, dataset, monkeypatch, caplog):
    app = open_bot(tmp_path, imap_server, smtp_server, dataset, store.url)  # each back-end
    try:
        assert app.decider
        small_batches(monkeypatch)
        imap_server.append_many("INBOX", (m.data for m in dataset.mails))
        with caplog.at_level(logging.INFO, logger="mailbot"):
            report = run_once(app)

        assert report.errors == []
        assert report.seen == report.decided == len(dataset.mails)
        assert report.decided_elsewhere == len(dataset.mails) - SMALL_BATCH
        assert report.sent == report.filed == len(dataset.mails)
        assert_each_mail_answered_once(app, imap_server, smtp_server, dataset)
        # The decider's log lines are in this process's log, from the decider's pid.
        decided = [r for r in caplog.records if r.getMessage().startswith("event=mail_decided")]
        assert len(decided) == len(dataset.mails)
        assert sum(r.process != os.getpid() for r in decided) == report.decided_elsewhere
    finally:
        app.source.close()
        app.sink.close()
        app.store.close()


def test_a_hand_made_app_or_a_single_batch_stays_in_process(bot, imap_server, smtp_server,
                                                           dataset, monkeypatch):
    imap_server.append_many("INBOX", (m.data for m in dataset.mails))
    report = run_once(bot)  # 24 mails: one batch of BATCH_SIZE, no decider
    assert report.decided == len(dataset.mails) and report.decided_elsewhere == 0
    assert not Store("sqlite://").shareable and bot.store.shareable


def decider_pids() -> list[int]:
    """The decider processes whose parent is this test process."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if b"mailbot.run.decider" in cmdline and parent == os.getpid():
            found.append(int(proc.name))
    return found


def test_a_decider_killed_mid_pass_hands_its_batches_back(bot, imap_server, smtp_server,
                                                          dataset, monkeypatch, caplog):
    small_batches(monkeypatch)
    imap_server.append_many("INBOX", (m.data for m in dataset.mails))
    killed: list[int] = []

    def hook(point: str) -> None:  # while the first batch goes out, the decider has the next
        if point == "after_smtp_accept" and not killed:
            deadline = time.monotonic() + 10
            while not (pids := decider_pids()) and time.monotonic() < deadline:
                time.sleep(0.01)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed.extend(pids)

    bot.hook = hook
    with caplog.at_level(logging.WARNING, logger="mailbot"):
        report = run_once(bot)

    assert killed
    assert any("event=decider_gone" in r.getMessage() for r in caplog.records)
    assert report.errors == [] and report.seen == len(dataset.mails)
    assert_each_mail_answered_once(bot, imap_server, smtp_server, dataset)
    assert decider_pids() == []


def test_a_decider_that_cannot_start_leaves_the_pass_to_this_process(bot, imap_server,
                                                                     smtp_server, dataset,
                                                                     monkeypatch, caplog):
    from mailbot.run import child

    real = child.start
    small_batches(monkeypatch)
    monkeypatch.setattr(child, "start", lambda module: real(module) if "readahead" in module
                        else (_ for _ in ()).throw(OSError("no more processes")))
    imap_server.append_many("INBOX", (m.data for m in dataset.mails))
    with caplog.at_level(logging.WARNING, logger="mailbot"):
        report = run_once(bot)
    assert any("event=decider_off" in r.getMessage() for r in caplog.records)
    assert report.decided == len(dataset.mails) and report.decided_elsewhere == 0
    assert_each_mail_answered_once(bot, imap_server, smtp_server, dataset)


@pytest.fixture(scope="module")
def backlog():
    return bench.make_dataset(pipeline.BATCH_SIZE * 2 + 10)  # batches of 100, 100 and 10


def test_sigkill_inside_the_decider_then_restart_answers_each_mail_once(
        tmp_path, imap_server, smtp_server, backlog):
    """MAILBOT_CRASH_AT counts in each process: the parent decides at most the first batch,
    so the 101st decision happens in the decider (a mail after the 100th), which SIGKILLs the
    parent, then itself, as a power cut takes both."""
    app = open_bot(tmp_path, imap_server, smtp_server, backlog)
    try:
        imap_server.append_many("INBOX", (m.data for m in backlog.mails))
        config = tmp_path / "config.toml"
        killed = run_bot(config, "run", "--once", crash_at=f"after_decision:{101}", timeout=120)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        with app.store.transaction() as conn:
            decided = conn.execute(sa.select(sa.func.count()).select_from(mails).where(
                mails.c.status != "received")).scalar_one()
        assert pipeline.BATCH_SIZE < decided < len(backlog.mails)  # killed in the decider's part
        deadline = time.monotonic() + 10
        while readahead_workers_in(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert readahead_workers_in(tmp_path) == []  # no helper outlives the pass

        finished = run_bot(config, "run", "--once", timeout=120)
        assert finished.returncode == 0, finished.stderr
        replies = customer_replies(smtp_server)
        ids = [r["Message-ID"] for r in replies]
        assert len(set(ids)) == len(backlog.mails)  # one reply per mail
        assert len(ids) - len(set(ids)) <= 1  # at most the one SMTP window: an identical resend
        assert sorted({r["In-Reply-To"] for r in replies}) == \
            sorted(m.message_id for m in backlog.mails)
        assert imap_server.list_folder("INBOX") == []
        with app.store.transaction() as conn:
            assert {r.status for r in conn.execute(sa.select(mails.c.status))} == {"done"}
            assert conn.execute(sa.select(sa.func.count()).select_from(outbox).where(
                outbox.c.status != "sent")).scalar_one() == 0
    finally:
        app.source.close()
        app.sink.close()
        app.store.close()


def test_turns_let_one_transaction_in_at_a_time_and_wake_the_next_at_once(tmp_path):
    first, second = Turns(str(tmp_path / "t")), Turns(str(tmp_path / "t"))
    order: list[str] = []

    def wait_for_turn() -> None:
        with second.turn():
            order.append("2")

    with first.turn():
        waiter = threading.Thread(target=wait_for_turn)
        waiter.start()
        time.sleep(0.2)
        order.append("1")  # the second is still waiting: its turn comes after this one
    waiter.join(5)
    assert order == ["1", "2"]
    first.close()
    second.close()


def deciders_in(directory: Path) -> list[int]:
    """PIDs of decider processes whose working directory is `directory`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            cwd = (proc / "cwd").resolve()
        except OSError:
            continue
        if b"mailbot.run.decider" in cmdline and cwd == directory.resolve():
            found.append(int(proc.name))
    return found


def test_sigkill_of_the_main_process_while_the_decider_decides_kills_the_decider_too(
        tmp_path, imap_server, smtp_server, backlog):
    """The main process dies while it sends the second part (the decider deciding the third or
    fourth): the decider must not outlive it, and the next run finishes the pass."""
    app = open_bot(tmp_path, imap_server, smtp_server, backlog)
    try:
        imap_server.append_many("INBOX", (m.data for m in backlog.mails))
        config = tmp_path / "config.toml"
        killed = run_bot(config, "run", "--once", crash_at="after_smtp_accept:60", timeout=120)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        deadline = time.monotonic() + 10
        while (deciders_in(tmp_path) or readahead_workers_in(tmp_path)) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert deciders_in(tmp_path) == [] and readahead_workers_in(tmp_path) == []
        finished = run_bot(config, "run", "--once", timeout=120)
        assert finished.returncode == 0, finished.stderr
        ids = [r["Message-ID"] for r in customer_replies(smtp_server)]
        assert len(set(ids)) == len(backlog.mails) and len(ids) - len(set(ids)) <= 1
        assert imap_server.list_folder("INBOX") == []
    finally:
        app.source.close()
        app.sink.close()
        app.store.close()
