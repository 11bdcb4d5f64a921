"""Large passes: mails read ahead by worker processes, replies copied to Sent per batch, mails
filed per folder; with the same answers and the same crash safety as one mail at a time."""

from __future__ import annotations

import email
import os
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from botconfig import server_config
from test_servers import FOLDERS

from mailbot import config as config_module
from mailbot.config import LimitsConfig
from mailbot.model import RawMail
from mailbot.ops.imports import read_keys, read_registry
from mailbot.read.extract import read_mail
from mailbot.ruleset import load_rules
from mailbot.run import readahead as readahead_module
from mailbot.run.pipeline import run_once
from mailbot.run.readahead import MIN_MAILS, ReadAhead
from mailbot.run.wiring import open_app
from mailbot.store.database import mails, outbox

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import imap_throughput as bench  # its realistic mail generator

OWN = ("claves@example.com",)


@pytest.fixture(scope="module")
def dataset():
    return bench.make_dataset(24)


@pytest.fixture
def bot(tmp_path, imap_server, smtp_server, dataset):
    registry_csv, keys_csv = bench.write_imports(tmp_path, dataset)
    app = open_app(config_module.load(server_config(tmp_path, imap_server, smtp_server)))
    with app.store.transaction() as conn:
        app.store.upsert_licences(conn, read_registry(registry_csv, app.rules.catalogue))
        app.store.add_keys(conn, read_keys(keys_csv, app.rules.catalogue))
    yield app
    app.source.close()
    app.sink.close()
    app.store.close()


def raws(dataset) -> list[RawMail]:
    return [RawMail("test", str(n), m.data) for n, m in enumerate(dataset.mails)]


@pytest.fixture(scope="module")
def rules():
    return load_rules(Path(__file__).resolve().parent.parent / "rules")


def test_worker_readings_are_the_in_process_readings(rules, dataset):
    mails_ = raws(dataset)
    assert len(mails_) >= MIN_MAILS
    limits = LimitsConfig()
    with ReadAhead(rules, limits, OWN, workers=2) as readahead:
        readahead.submit(mails_)
        assert readahead.settle()
        for raw in mails_:
            got = readahead.take(raw)
            assert got == read_mail(raw.data, rules, limits, OWN)
        assert readahead.read_by_workers == len(mails_)


def test_workers_read_at_a_lower_priority_than_the_pass(rules, dataset):
    """Reading ahead yields the core to the pass's courier and whatever else wakes to answer."""
    with ReadAhead(rules, LimitsConfig(), OWN, workers=1) as readahead:
        readahead.submit(raws(dataset))
        assert readahead.settle()
        workers = readahead_workers_in(Path.cwd())
        assert workers
        expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + readahead_module.NICENESS)
        assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in workers} == {expected}


def test_few_mails_are_read_in_process(rules, dataset):
    with ReadAhead(rules, LimitsConfig(), OWN, workers=2) as readahead:
        readahead.submit(raws(dataset)[:MIN_MAILS - 1])
        assert readahead._procs == []
        assert all(readahead.take(raw) is None for raw in raws(dataset))


def test_a_dead_worker_turns_reading_back_in_process(rules, dataset):
    mails_ = raws(dataset)
    with ReadAhead(rules, LimitsConfig(), OWN, workers=1) as readahead:
        readahead.submit(mails_)
        assert readahead.settle()
        for proc in readahead._procs:
            proc.kill()
            proc.wait()
        again = [RawMail("test", f"again-{r.mail_id}", r.data) for r in mails_]
        readahead.submit(again)
        assert readahead.settle()  # the worker's thread meets the dead worker, and gives up
        assert readahead._broken
        assert [readahead.take(raw) for raw in again] == [None] * len(again)  # read in-process
        readahead.submit([RawMail("test", f"third-{r.mail_id}", r.data) for r in mails_])
        assert readahead.take(RawMail("test", "third-0", b"")) is None


def test_a_large_pass_reads_ahead_copies_and_files_per_batch(bot, imap_server, smtp_server,
                                                             dataset, monkeypatch):
    imap_server.append_many("INBOX", (m.data for m in dataset.mails))
    appends = []
    real = bot.after_send_many
    bot.after_send_many = lambda messages: (appends.append(len(messages)), real(messages))
    report = run_once(bot)

    assert report.errors == [] and report.seen == report.decided == len(dataset.mails)
    customer = [m for m in smtp_server.messages if "operadores@example.com" not in m.rcpt_tos]
    assert len(customer) == len(dataset.mails)
    assert {email.message_from_bytes(m.data)["In-Reply-To"] for m in customer} == \
        {m.message_id for m in dataset.mails}
    assert appends == [len(customer)]  # one MULTIAPPEND for the batch
    assert len(imap_server.list_folder("Sent")) == len(customer)
    assert imap_server.list_folder("INBOX") == []
    assert len(imap_server.list_folder(FOLDERS["processed"])) == len(dataset.mails)
    with bot.store.transaction() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.copy_pending.is_(True))).scalar_one() == 0
        assert {r.status for r in conn.execute(sa.select(mails.c.status))} == {"done"}


class Crash(BaseException):
    pass


def test_a_crash_after_the_sends_leaves_the_copies_to_the_next_run(bot, imap_server,
                                                                   smtp_server, dataset):
    imap_server.append_many("INBOX", (m.data for m in dataset.mails[:5]))
    seen = []

    def hook(point: str) -> None:
        if point == "after_smtp_accept":
            seen.append(point)
            if len(seen) == 5:
                raise Crash  # the process dies before the 5th is marked sent

    bot.hook = hook
    with pytest.raises(Crash):
        run_once(bot)
    assert imap_server.list_folder("Sent") == []  # copies are made after the batch's sends
    with bot.store.transaction() as conn:
        pending = conn.execute(sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.copy_pending.is_(True))).scalar_one()
    assert pending == 4

    bot.hook = lambda point: None
    report = run_once(bot)
    assert report.errors == []
    customer = [m for m in smtp_server.messages if "operadores@example.com" not in m.rcpt_tos]
    ids = [email.message_from_bytes(m.data)["Message-ID"] for m in customer]
    assert len(set(ids)) == 5 and len(ids) == 6  # the one SMTP window: one identical resend
    assert len(imap_server.list_folder("Sent")) == 5  # every reply has its copy, once
    assert imap_server.list_folder("INBOX") == []


def readahead_workers_in(directory: Path, module: bytes = b"mailbot.run.readahead") -> list[int]:
    """PIDs of read-ahead workers (or of another helper `module`) whose working directory is
    `directory`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            cwd = (proc / "cwd").resolve()
        except OSError:
            continue
        if module in cmdline and cwd == directory.resolve():
            found.append(int(proc.name))
    return found


def _set_up(pid: int) -> bool:
    """Whether a read-ahead worker has run its set-up (see mailbot.run.readahead's main)."""
    try:
        return (os.readlink(f"/proc/{pid}/fd/1") == os.readlink(f"/proc/{pid}/fd/2")
                and Path(f"/proc/{pid}/fd/3").exists())
    except OSError:
        return False


def test_sigkill_with_workers_reading_ahead_then_restart(bot, imap_server, smtp_server,
                                                         dataset, tmp_path):
    import signal
    import time

    from test_servers import run_bot

    imap_server.append_many("INBOX", (m.data for m in dataset.mails))
    config = tmp_path / "config.toml"
    killed = run_bot(config, "run", "--once", crash_at="after_decision:12")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    deadline = time.monotonic() + 10
    while readahead_workers_in(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert readahead_workers_in(tmp_path) == []  # orphaned workers saw the end of their input

    finished = run_bot(config, "run", "--once")
    assert finished.returncode == 0, finished.stderr
    assert imap_server.list_folder("INBOX") == []
    with bot.store.transaction() as conn:
        assert {r.status for r in conn.execute(sa.select(mails.c.status))} == {"done"}
        queued = {m.message_id for m in conn.execute(sa.select(outbox.c.message_id).where(
            outbox.c.purpose != "alert"))}
    customer = [m for m in smtp_server.messages if "operadores@example.com" not in m.rcpt_tos]
    ids = [email.message_from_bytes(m.data)["Message-ID"] for m in customer]
    assert sorted(ids) == sorted(queued) and len(queued) == len(dataset.mails)
    assert len(imap_server.list_folder("Sent")) == len(dataset.mails)


def test_workers_die_with_their_parent_even_when_they_cannot_see_their_input_end(tmp_path,
                                                                                 dataset):
    """A SIGKILLed pass must not leave workers behind. Stopped workers cannot notice the end of
    their input (that alone made them exit before), so only the kernel's parent-death signal
    can end them: on the code before it, they stayed forever."""
    import os
    import signal
    import subprocess
    import time

    from botconfig import ROOT, write_config

    inbox = tmp_path / "inbox"
    for sub in ("cur", "new", "tmp"):
        (inbox / sub).mkdir(parents=True)
    for number, mail in enumerate(dataset.mails):  # more than MIN_MAILS: read ahead
        (inbox / "new" / f"{1000 + number}.M{number}.test").write_bytes(mail.data)
    config = write_config(tmp_path, '[source]\ntype = "maildir"\npath = "inbox"\n'
                                    '[sink]\ntype = "files"\npath = "outbox"\n')
    parent = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(config), "run",
                               "--once"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while not workers and parent.poll() is None and time.monotonic() < deadline:
            # Running its main: past die_with_parent, it has moved its answers off stdout
            # (fd 1 is then its stderr). Stopped any earlier (an fd 3 alone may be a module
            # file being imported), it would never ask for the parent-death signal at all.
            workers = [pid for pid in readahead_workers_in(tmp_path) if _set_up(pid)]
            time.sleep(0.005)
        assert workers, "the pass ended before it started a worker"
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)  # as if busy on a mail: it will not read its input
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while readahead_workers_in(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert readahead_workers_in(tmp_path) == []
    finally:
        parent.kill()
        parent.wait()
        for pid in readahead_workers_in(tmp_path):
            os.kill(pid, signal.SIGKILL)
