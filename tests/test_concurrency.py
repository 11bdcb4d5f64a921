"""Several instances on one mailbox and one store never answer a mail twice (issue 8, §2).

Real `mailbot run --once` processes, started together on one inbox (a Maildir, and the test
Dovecot) and one store (SQLite, and the suite's PostgreSQL), with 500 realistic request mails
(the benchmark's generator) whose every request issues a key. After they end: every mail
answered exactly once (one reply per mail in the outbox, one reply file per Message-ID, one
reply per original Message-ID), filed once, none lost; also (over 200 of those mails, to keep
the file's time down) when instances are SIGKILLed at many points of their work and a clean
run finishes after them, and with two instances on the test Dovecot.
"""

from __future__ import annotations

import collections
import datetime as dt
import email
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from botconfig import ROOT, local_sections, server_config, write_config
from test_batching import readahead_workers_in
from test_servers import FOLDERS

from mailbot import config as config_module
from mailbot.model import RawMail
from mailbot.ops.imports import read_keys, read_registry
from mailbot.ruleset import load_rules
from mailbot.run.app import MAX_ATTEMPTS, App, RunReport
from mailbot.run.claims import CLAIM_LEASE, ClaimLost, let_go
from mailbot.run.deciding import decide_mail
from mailbot.run.deliver import deliver_due
from mailbot.run.record import record_mail
from mailbot.run.wiring import open_app
from mailbot.store import MailRecord
from mailbot.store.database import Store
from mailbot.store.schema import keys, mails, outbox
from mailbot.transport.files import FileSink

sys.path.insert(0, str(ROOT / "benchmarks"))
import imap_throughput as bench  # its realistic mail generator

MAILS = 500
FEWER = 200  # the crash and the IMAP variants
OPERATORS = "operadores@example.com"


@pytest.fixture(scope="module")
def dataset() -> bench.Dataset:
    return bench.make_dataset(MAILS)


def first(dataset: bench.Dataset, count: int) -> bench.Dataset:
    """The first `count` mails, with the whole registry and key pool."""
    return bench.Dataset(dataset.mails[:count], dataset.registry, dataset.keys)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> Iterator[str]:
    """An empty database of its own on each back-end (a fresh PostgreSQL database per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mailbot.db'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    name = f"mailbot_concurrency_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def import_registry(store_url: str, directory: Path, dataset: bench.Dataset) -> None:
    registry_csv, keys_csv = bench.write_imports(directory, dataset)
    catalogue = load_rules(ROOT / "rules").catalogue
    store = Store(store_url)
    try:
        store.migrate()
        with store.transaction() as conn:
            store.upsert_licences(conn, read_registry(registry_csv, catalogue))
            store.add_keys(conn, read_keys(keys_csv, catalogue))
    finally:
        store.close()


def maildir_bot(directory: Path, dataset: bench.Dataset, store_url: str) -> Path:
    """A Maildir inbox holding the dataset, a reply folder, the store; returns the config."""
    inbox = directory / "inbox"
    for sub in ("cur", "new", "tmp"):
        (inbox / sub).mkdir(parents=True)
    for number, mail in enumerate(dataset.mails):
        (inbox / "new" / f"{1_000_000 + number}.M{number}.test").write_bytes(mail.data)
    import_registry(store_url, directory, dataset)
    return write_config(directory, local_sections(store_url), operators=(OPERATORS,))


@dataclass
class Instance:
    process: subprocess.Popen
    log: Path

    def errors(self) -> list[str]:
        text = self.log.read_text(errors="replace")
        return [line for line in text.splitlines()
                if "Traceback" in line or " ERROR " in line or " WARNING " in line]


def start(config: Path, number: int, *, crash_at: str | None = None) -> Instance:
    """`mailbot run --once` on this tree's code, its log in a file of its own."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MAILBOT_CRASH_AT", None)
    if crash_at:
        env["MAILBOT_CRASH_AT"] = crash_at
    log = config.parent / f"instance-{number}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mailbot", "--config", str(config), "run", "--once"],
            cwd=config.parent, env=env, stdout=subprocess.DEVNULL, stderr=out)
    return Instance(process, log)


def run_together(config: Path, count: int) -> list[Instance]:
    instances = [start(config, n) for n in range(count)]
    for instance in instances:
        instance.process.wait(timeout=240)
    return instances


def assert_clean(instances: Sequence[Instance]) -> None:
    for instance in instances:
        assert instance.process.returncode == 0, instance.log.read_text()[-3000:]
        assert instance.errors() == []


def stored(store_url: str) -> tuple[list, list]:
    store = Store(store_url)
    try:
        with store.transaction() as conn:
            return (conn.execute(sa.select(mails)).all(),
                    conn.execute(sa.select(outbox).where(outbox.c.purpose != "alert")).all())
    finally:
        store.close()


def assert_each_mail_answered_once(store_url: str, dataset: bench.Dataset,
                                   replies: Sequence[bytes]) -> None:
    """The store holds every mail, done and filed, with one reply each; `replies` (what the
    sink got, resends included) are those replies, one per original mail."""
    count = len(dataset.mails)
    records, queued = stored(store_url)
    assert len(records) == count
    assert collections.Counter((r.status, r.filed) for r in records) == {("done", True): count}
    assert all(r.claimed_by is None for r in records)  # every claim let go
    per_mail = collections.Counter(m.mail for m in queued)
    assert set(per_mail.values()) == {1} and len(per_mail) == count
    got = [email.message_from_bytes(data) for data in replies]
    assert sorted({m["Message-ID"] for m in got}) == sorted(m.message_id for m in queued)
    answered = collections.Counter(m["In-Reply-To"] for m in {m["Message-ID"]: m
                                                              for m in got}.values())
    assert answered == {mail.message_id: 1 for mail in dataset.mails}


def sink_files(directory: Path) -> list[bytes]:
    """The replies the files sink wrote; it writes one file per Message-ID, so a second file
    for one id would be two runs writing the same reply at once."""
    replies = FileSink(directory / "outbox").sent()
    ids = collections.Counter(r.message_id for r in replies)
    assert [i for i, n in ids.items() if n > 1] == []
    return [r.message for r in replies]


def maildir_count(path: Path) -> int:
    return sum(1 for sub in ("new", "cur") if (path / sub).is_dir()
               for entry in (path / sub).iterdir() if entry.is_file())


def assert_inbox_filed(directory: Path, count: int) -> None:
    assert maildir_count(directory / "inbox") == 0
    assert maildir_count(directory / "inbox" / ".processed") == count


@pytest.mark.parametrize("count", [2, 4])
def test_instances_on_one_mailbox_answer_each_mail_exactly_once(tmp_path, dataset, store_url,
                                                                count):
    config = maildir_bot(tmp_path, dataset, store_url)
    instances = run_together(config, count)
    assert_clean(instances)
    assert_each_mail_answered_once(store_url, dataset, sink_files(tmp_path))
    assert_inbox_filed(tmp_path, MAILS)
    decided = [sum("event=mail_decided" in line for line in i.log.read_text().splitlines())
               for i in instances]
    assert sum(decided) == MAILS  # each mail decided once, by one of them


def test_instances_killed_at_many_points_then_a_clean_run_answer_each_mail_once(
        tmp_path, dataset, store_url):
    dataset = first(dataset, FEWER)
    """Three of five instances SIGKILL themselves at steps of their work (holding claims on
    mails they recorded, decided or were sending), one more is killed from outside as it
    decides; the survivor and a clean run after them finish every mail, at once (the dead
    runs' claims are taken over, not waited out), with one answer each."""
    config = maildir_bot(tmp_path, dataset, store_url)
    # Early points (the 3rd time each), so that they almost surely get there: how many mails
    # an instance wins is up to the machine.
    points = [None, "after_key_assigned:3", "after_smtp_accept:3", "before_file:3", None]
    instances = [start(config, n, crash_at=point) for n, point in enumerate(points)]
    deadline = time.monotonic() + 120
    while instances[0].log.read_text().count("event=mail_decided") < 3:  # mid-work
        assert time.monotonic() < deadline and instances[0].process.poll() is None
        time.sleep(0.01)
    instances[0].process.send_signal(signal.SIGKILL)
    for instance in instances:
        instance.process.wait(timeout=240)
    codes = [i.process.returncode for i in instances]
    # Killed from outside, and the survivor; an instance meant to crash at its point may, on a
    # fast machine, have won too few mails to get there and finished cleanly instead.
    assert codes[0] == -signal.SIGKILL and codes[-1] == 0
    assert all(code in (-signal.SIGKILL, 0) for code in codes[1:-1])
    assert codes[1:-1].count(-signal.SIGKILL) >= 1, codes
    assert instances[-1].errors() == []
    deadline = time.monotonic() + 10  # the kernel kills the dead runs' read-ahead workers
    while readahead_workers_in(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert readahead_workers_in(tmp_path) == []

    clean = run_together(config, 1)
    assert_clean(clean)
    assert_each_mail_answered_once(store_url, dataset, sink_files(tmp_path))
    assert_inbox_filed(tmp_path, FEWER)
    store = Store(store_url)
    try:
        with store.transaction() as conn:
            bound = conn.execute(sa.select(keys.c.serial, keys.c.request)
                                 .where(keys.c.serial.is_not(None))).all()
    finally:
        store.close()
    assert len(bound) == len({s for s, _ in bound}) == sum(len(m.licences) for m in dataset.mails)


def test_two_instances_on_one_imap_mailbox_answer_each_mail_once(tmp_path, imap_server,
                                                                smtp_server, dataset):
    """The same on the test Dovecot and SMTP server: one reply per mail reaches the server
    (an identical resend, same Message-ID, would be the one exception a crash allows: none
    crashes here), one copy of each in Sent, every mail moved once."""
    dataset = first(dataset, FEWER)
    config = server_config(tmp_path, imap_server, smtp_server)
    store_url = f"sqlite:///{tmp_path / 'mailbot.db'}"
    import_registry(store_url, tmp_path, dataset)
    imap_server.append_many("INBOX", (m.data for m in dataset.mails))
    instances = run_together(config, 2)
    assert_clean(instances)
    customer = [m.data for m in smtp_server.messages if OPERATORS not in m.rcpt_tos]
    assert len(customer) == FEWER  # no resend either
    assert_each_mail_answered_once(store_url, dataset, customer)
    assert imap_server.list_folder("INBOX") == []
    assert len(imap_server.list_folder(FOLDERS["processed"])) == FEWER
    assert len(imap_server.list_folder("Sent")) == FEWER


# -- the claims themselves: two runs in one process, on each back-end ---------------------------

@pytest.fixture
def two_runs(tmp_path, store, dataset) -> Iterator[tuple[App, App, RawMail]]:
    """Two runs (two Apps, as two instances would be) on one Maildir and one store, the
    store's registry and key pool filled, and one request mail at hand."""
    mail = dataset.mails[0]
    import_registry(store.url, tmp_path, bench.Dataset([mail], mail.licences, dataset.keys))
    config = config_module.load(write_config(tmp_path, local_sections(store.url)))
    runs = open_app(config), open_app(config)
    raw = RawMail(runs[0].source.name, "1000.M0.test", dataset.mails[0].data)
    yield runs[0], runs[1], raw
    for app in runs:
        app.store.close()


def later(app: App, delta: dt.timedelta) -> None:
    start = app.clock()
    app.clock = lambda: start + delta


def record(app: App, raw: RawMail) -> MailRecord | None:
    with app.store.transaction() as conn:
        known = app.store.find_mail(conn, raw.source, raw.mail_id)
    return record_mail(app, raw, RunReport(), known, {}, {})


def queued_for(app: App, mail: int) -> int:
    with app.store.transaction() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(outbox)
                            .where(outbox.c.mail == mail)).scalar_one()


def test_a_run_whose_lease_ran_out_cannot_commit_a_second_decision(two_runs, dataset):
    first_run, second_run, raw = two_runs
    held = record(first_run, raw)
    assert held is not None and record(second_run, raw) is None  # held: left alone
    later(second_run, CLAIM_LEASE + dt.timedelta(seconds=1))  # the first run stalls that long
    taken = record(second_run, raw)
    assert taken is not None and taken.attempts == 2
    decide_mail(second_run, taken, raw)

    with pytest.raises(ClaimLost):  # the stalled run wakes up and decides too
        decide_mail(first_run, held, raw)
    assert queued_for(first_run, held.id) == 1  # its whole decision rolled back
    with first_run.store.transaction() as conn:
        bound = conn.execute(sa.select(sa.func.count()).select_from(keys)
                             .where(keys.c.serial.is_not(None))).scalar_one()
    assert bound == len(dataset.mails[0].licences)  # one key per request of the mail, once


def test_a_claim_whose_process_is_gone_is_taken_over_at_once(two_runs):
    first_run, second_run, raw = two_runs
    held = record(first_run, raw)
    assert held is not None
    ended = subprocess.Popen(["true"])
    ended.wait()  # its pid runs nothing now: as a run SIGKILLed while it held the mail
    dead = f"{uuid.uuid4().hex} {ended.pid}@{socket.gethostname()[:50]}"
    with first_run.store.transaction() as conn:
        conn.execute(mails.update().where(mails.c.id == held.id).values(claimed_by=dead))
    taken = record(second_run, raw)  # well within the lease
    assert taken is not None and taken.id == held.id and taken.attempts == 2


def test_runs_that_meet_a_waiting_mail_at_once_count_one_attempt(two_runs):
    """Only the run that holds a mail counts an attempt: others meeting it meanwhile neither
    count one nor quarantine it under the run deciding it."""
    first_run, second_run, raw = two_runs
    held = record(first_run, raw)
    assert held is not None and held.attempts == 1
    let_go(first_run, [held.id])  # its decision failed: the mail waits for another attempt
    taken = record(second_run, raw)
    assert taken is not None and taken.attempts == 2
    others = [open_app(first_run.config) for _ in range(MAX_ATTEMPTS)]
    try:
        assert [record(run, raw) for run in [first_run, *others]] == [None] * (MAX_ATTEMPTS + 1)
    finally:
        for run in others:
            run.store.close()
    with first_run.store.transaction() as conn:
        now = first_run.store.get_mail(conn, held.id)
    assert now.status == "received" and now.attempts == 2


def test_only_the_run_holding_a_mail_sends_its_replies(two_runs):
    first_run, second_run, raw = two_runs
    held = record(first_run, raw)
    assert held is not None
    decide_mail(first_run, held, raw)
    report = RunReport()
    deliver_due(second_run, report)  # a pass starting meanwhile finds the reply due
    assert report.sent == 0
    deliver_due(first_run, report, mail_ids=[held.id], keep_claims=True)
    assert report.sent == 1
    let_go(first_run, [held.id])
    deliver_due(second_run, report)
    assert report.sent == 1 and len(FileSink(first_run.config.resolve("outbox")).sent()) == 1
