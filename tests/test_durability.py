"""Promises under attack (issue 8 §6 and §7): a sender no reply can reach, a damaged SQLite file,
a disk that fills up, a power cut after the SMTP server took a reply, a template that does not
compile. Each ends as a review task or as one `mailbot: error:` line naming the fix, and never
loses a mail or answers one twice.

The full disks are real: a tmpfs of a few kilobytes mounted for the test (we run as root).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from botconfig import ROOT, write_config
from test_cli import assert_clean_error, mailbot
from test_unlock_flow import FACTURA, FREE, RAUL, Harness, request_mail

from mailbot import config as config_module
from mailbot.addresses import UndeliverableAddress, deliverable_parts
from mailbot.answer.message import build_reply, make_message_id
from mailbot.answer.render import Rendered
from mailbot.decide.sender import UNDELIVERABLE, check_sender
from mailbot.errors import StoreError
from mailbot.read.mime import parse_mail
from mailbot.run.pipeline import run_once
from mailbot.run.service import Runner
from mailbot.run.wiring import open_app
from mailbot.store.database import Store
from mailbot.transport.files import FileSink
from mailbot.transport.seams import SinkUnavailable

FREE_UPDATE = "Solicitud de claves para actualización sin costo"
INCOMPLETE = dict(subject=FREE_UPDATE, body="Hola, quiero mis claves nuevas, gracias.\n")


# --- §6: a sender no reply can reach is a review task, decided once, up front -----------------

@pytest.mark.parametrize("sender, reason", [
    ("josé@example.com", "sender_undeliverable"),  # non-ASCII local part: no SMTPUTF8 replies
    ("root@localhost", "sender_undeliverable"),  # a single name, not a domain
    ("user@my_domain.com", "sender_address_invalid"),  # "_" is no host name letter
    ("ana@192.0.2.7", "sender_undeliverable"),  # an address literal without its brackets
])
def test_an_undeliverable_sender_becomes_a_sender_task_not_a_quarantine(tmp_path, sender, reason):
    bot = Harness(tmp_path)
    try:
        report = bot.run(request_mail(sender=sender, serial=FREE, system=FACTURA,
                                      subject=FREE_UPDATE, contact_email=RAUL))
        assert report.errors == []
        (mail,) = bot.mails()
        assert (mail.status, mail.folder, mail.outcome) == ("done", "review", "sender_check")
        (task,) = bot.tasks()
        assert (task.kind, task.reason) == ("sender", reason)
        assert sender in task.reason_text
        assert bot.replies() == []  # nothing was built for an address no reply can reach
        assert len(list((tmp_path / "inbox" / ".review" / "cur").iterdir())) == 1
    finally:
        bot.close()


def test_an_operator_is_told_to_close_an_undeliverable_senders_task_and_can(tmp_path, capsys):
    """Approving or rejecting it would build a reply to an address no reply can reach: one
    'mailbot: error:' line that says what to do instead, nothing changed; closing works."""
    from mailbot.ops.cli import main

    bot = Harness(tmp_path)
    try:
        bot.run(request_mail(sender="root@localhost", serial=FREE, system=FACTURA,
                             subject=FREE_UPDATE, contact_email=RAUL))
        (task,) = bot.tasks()
        config = ("--config", str(bot.config_path))
        capsys.readouterr()
        for action in (["approve", str(task.id)],
                       ["reject", str(task.id), "--template", "review_rejected", "--note", "No."]):
            assert main([*config, "review", *action, "--operator", "ana"]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("mailbot: error: ")
            assert f"mailbot review close {task.id}" in err[0]
        (still,) = bot.tasks()
        assert still.status == "open" and bot.replies() == []
        assert main([*config, "review", "close", str(task.id), "--operator", "ana"]) == 0
        (closed,) = bot.tasks()
        assert (closed.status, closed.closed_by) == ("closed", "ana")
    finally:
        bot.close()


LOCAL_PARTS = ("ana", "José", "a.b", "a..b", ".a", '"a b"', "x" * 65, "o'brien", "ana+tag",
               "K\u212a", "ÄNA", "a\u00a0b")
DOMAINS = ("example.com", "localhost", "my_domain.com", "bücher.example", "straße.de", "1.2.3.4",
           "ex--ample.com", "xn--bcher-kva.example", "a.b", "EXAMPLE.COM.", "-x.com", "x-.com",
           "日本.jp", "é.com", "a" * 64 + ".com", "Ｅｘａｍｐｌｅ.com", "exa mple.com")


def reply_to(address: str | None, rendered: Rendered) -> bytes:
    return build_reply(from_address="claves@example.com", from_name="Claves", to=[address or ""],
                       original_subject="x", in_reply_to=None, references=(),
                       rendered=rendered, reference="CLV-000001",
                       message_id=make_message_id("example.com"))


def test_the_sender_checks_and_the_reply_builder_never_disagree():
    """Whatever the sender checks accept, a reply can be built for; what they refuse as
    undeliverable, the builder refuses too: one rule (`deliverable_parts`) on both sides."""
    rendered = Rendered("Hola", None)
    accepted = 0
    for local, domain in itertools.product(LOCAL_PARTS, DOMAINS):
        address = f"{local}@{domain}"
        parsed = parse_mail(f"From: Cliente <{address}>\r\nSubject: x\r\n\r\nhola\r\n"
                            .encode())
        verdict = check_sender(parsed, require_authentication=False, trusted_authserv_ids=())
        if verdict.ok:
            accepted += 1
            assert b"\r\nTo: " in reply_to(parsed.sender, rendered), address
        elif verdict.hits[-1].rule == UNDELIVERABLE:
            with pytest.raises(UndeliverableAddress):
                reply_to(parsed.sender, rendered)
    assert accepted >= 10  # the corpus holds plenty of good addresses too


def test_deliverable_parts_puts_the_domain_in_its_uts46_ascii_form():
    assert deliverable_parts(" Ana@Bücher.Example ") == ("Ana", "xn--bcher-kva.example")
    assert deliverable_parts("a@straße.de") == ("a", "xn--strae-oqa.de")
    with pytest.raises(UndeliverableAddress, match="single name"):
        deliverable_parts("root@localhost")


# --- §6: a damaged SQLite file is one error line naming it and the fix -------------------------

def maildir_bot(directory: Path, *, store: str = "sqlite:///mailbot.db",
                sink: str = "outbox", templates: Path | None = None, smtp: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = write_config(directory, f"""
[source]
path = "inbox"
[sink]
path = "{sink}"
[store]
url = "{store}"
[smtp]
{smtp}
""")
    if templates is not None:
        text = config.read_text().replace(str(ROOT / "templates"), str(templates))
        config.write_text(text)
    for sub in ("new", "cur", "tmp"):
        (directory / "inbox" / sub).mkdir(parents=True, exist_ok=True)
    return config


def make_store(path: Path) -> None:
    store = Store(f"sqlite:///{path}")
    store.migrate()
    store.close()


def inbox(directory: Path) -> list[str]:
    return sorted(p.name for sub in ("new", "cur") for p in (directory / "inbox" / sub).iterdir())


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("mailbot: error:")]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_sqlite_file_is_one_line_naming_it_and_the_fix(tmp_path, damage):
    config = maildir_bot(tmp_path)
    db = tmp_path / "mailbot.db"
    make_store(db)
    if damage == "garbage":
        db.write_bytes(b"these are not the bytes of a database\n" * 100)
    else:
        db.write_bytes(db.read_bytes()[:3000])
    (tmp_path / "inbox" / "new" / "m1").write_bytes(request_mail(
        sender=RAUL, serial=FREE, system=FACTURA, subject=FREE_UPDATE))
    for command in (("run", "--once"), ("log",)):
        result = mailbot("--config", str(config), *command)
        assert_clean_error(result, str(db), "restore it from a backup", "move it away")
        assert len(error_lines(result)) == 1
    assert inbox(tmp_path) == ["m1"]  # nothing lost


# --- §6: a disk that fills up loses nothing and says so once -----------------------------------

@contextlib.contextmanager
def tiny_disk(path: Path, size: str = "256k") -> Iterator[Path]:
    """A real file system of `size` at `path`, unmounted whatever happens."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the suite runs as root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; removing it frees the disk again."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as out:
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 4096)
    with contextlib.suppress(OSError):
        while True:  # the last blocks, a byte at a time
            with open(filler, "ab", buffering=0) as out:
                out.write(b"\0")
    return filler


def test_a_full_reply_disk_keeps_the_reply_queued_with_one_error_line(tmp_path):
    with tiny_disk(tmp_path / "disk", "64k") as disk:
        config = maildir_bot(tmp_path / "bot", sink=str(disk / "outbox"),
                             smtp="max_attempts = 1\nretry_base_seconds = 0")  # due at once
        (tmp_path / "bot" / "inbox" / "new" / "m1").write_bytes(
            request_mail(sender=RAUL, serial=FREE, system=FACTURA, **INCOMPLETE))
        filler = fill(disk)

        full = mailbot("--config", str(config), "run", "--once")
        assert full.returncode == 1
        assert "Traceback" not in full.stderr
        (line,) = error_lines(full)
        assert str(disk / "outbox") in line and "disk is full" in line and "free space" in line
        assert inbox(tmp_path / "bot") == ["m1"]  # not filed: its answer is not out
        assert [p.name for p in (disk / "outbox").iterdir()] == []  # no half-written file

        # more passes than [smtp] max_attempts: the reply is not given up
        assert len(error_lines(mailbot("--config", str(config), "run", "--once"))) == 1
        filler.unlink()
        freed = mailbot("--config", str(config), "run", "--once")
        assert freed.returncode == 0, freed.stderr
        assert len(list((disk / "outbox").glob("*.eml"))) == 1
        assert inbox(tmp_path / "bot") == []  # answered, then filed


def test_a_full_store_disk_at_start_is_one_error_line_and_loses_nothing(tmp_path):
    with tiny_disk(tmp_path / "disk", "1m") as disk:
        config = maildir_bot(tmp_path / "bot", store=f"sqlite:///{disk / 'mailbot.db'}")
        make_store(disk / "mailbot.db")
        (tmp_path / "bot" / "inbox" / "new" / "m1").write_bytes(
            request_mail(sender=RAUL, serial=FREE, system=FACTURA, **INCOMPLETE))
        filler = fill(disk)
        full = mailbot("--config", str(config), "run", "--once")
        assert_clean_error(full, str(disk / "mailbot.db"), "disk is full", "free space")
        assert len(error_lines(full)) == 1
        assert inbox(tmp_path / "bot") == ["m1"]
        filler.unlink()
        assert mailbot("--config", str(config), "run", "--once").returncode == 0
        assert inbox(tmp_path / "bot") == []
        assert len(list((tmp_path / "bot" / "outbox").glob("*.eml"))) == 1


def open_bot(config: Path):
    return open_app(config_module.load(config))


def test_a_store_disk_that_fills_during_a_pass_stops_it_and_the_next_pass_finishes(tmp_path):
    with tiny_disk(tmp_path / "disk", "2m") as disk:
        config = maildir_bot(tmp_path / "bot", store=f"sqlite:///{disk / 'mailbot.db'}")
        app = open_bot(config)  # open: the WAL exists, the disk fills afterwards
        try:
            run_once(app)
            for n in range(3):
                (tmp_path / "bot" / "inbox" / "new" / f"m{n}").write_bytes(request_mail(
                    sender=f"cliente{n}@example.com", serial=FREE, system=FACTURA,
                    **INCOMPLETE))
            filler = fill(disk)
            with pytest.raises(StoreError, match="disk is full") as raised:
                run_once(app)
            assert str(disk / "mailbot.db") in str(raised.value)
            assert inbox(tmp_path / "bot") == ["m0", "m1", "m2"]
            filler.unlink()
            assert run_once(app).errors == []
            assert inbox(tmp_path / "bot") == []
            assert len(list((tmp_path / "bot" / "outbox").glob("*.eml"))) == 3
        finally:
            app.store.close()


def test_the_service_logs_a_full_store_once_and_carries_on_when_it_is_freed(tmp_path, caplog):
    with tiny_disk(tmp_path / "disk", "2m") as disk:
        config = maildir_bot(tmp_path / "bot", store=f"sqlite:///{disk / 'mailbot.db'}")
        app = open_bot(config)
        try:
            runner = Runner(app)
            runner.run_pass()
            (tmp_path / "bot" / "inbox" / "new" / "m1").write_bytes(
                request_mail(sender=RAUL, serial=FREE, system=FACTURA, **INCOMPLETE))
            filler = fill(disk)
            with caplog.at_level(logging.INFO, logger="mailbot"):
                runner.run_pass()
                runner.run_pass()  # the same fault again: not logged again
                faults = [r for r in caplog.records if "event=store_unavailable" in r.message]
                assert len(faults) == 1 and faults[0].exc_info is None
                assert "disk is full" in faults[0].getMessage()
                filler.unlink()
                runner.run_pass()
            assert any("event=store_writable_again" in r.message for r in caplog.records)
            assert not any(r.exc_info for r in caplog.records)
            assert inbox(tmp_path / "bot") == []
            assert len(list((tmp_path / "bot" / "outbox").glob("*.eml"))) == 1
        finally:
            app.store.close()


def test_a_reply_the_disk_cannot_take_is_a_sink_fault_with_nothing_left_behind(tmp_path,
                                                                               monkeypatch):
    sink = FileSink(tmp_path / "outbox")

    def disk_full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(SinkUnavailable, match="disk is full"):
        sink.send("claves@example.com", [RAUL], b"Subject: x\r\n\r\nhola\r\n", "<1@example.com>")
    assert list((tmp_path / "outbox").iterdir()) == []


# --- §7: a commit is on the disk before anything is sent ---------------------------------------

def test_sqlite_commits_are_durable_when_they_return(tmp_path):
    """WAL with synchronous=NORMAL syncs only at checkpoints: a power cut after the SMTP server
    took a reply could undo its decision, and the next run would answer again. FULL syncs the
    WAL at every commit (https://www.sqlite.org/pragma.html#pragma_synchronous)."""
    store = Store(f"sqlite:///{tmp_path / 'mailbot.db'}")
    store.migrate()
    try:
        with store.transaction() as conn:
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(sa.text("PRAGMA synchronous")).scalar() == 2  # FULL
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "mailbot.db") as plain:  # what the file itself records
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- §7: `mailbot run` does not start with a template that does not compile -------------------

@pytest.mark.parametrize("command", [("run", "--once"), ("run",)])
def test_run_refuses_to_start_with_a_template_that_does_not_compile(tmp_path, command):
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    broken = templates / "under_review.txt.j2"
    broken.write_text(broken.read_text(encoding="utf-8") + "\n{{ reference }\n", encoding="utf-8")
    config = maildir_bot(tmp_path / "bot", templates=templates)
    (tmp_path / "bot" / "inbox" / "new" / "m1").write_bytes(
        request_mail(sender=RAUL, serial=FREE, system=FACTURA, subject=FREE_UPDATE))
    result = subprocess.run([sys.executable, "-m", "mailbot", "--config", str(config), *command],
                            capture_output=True, text=True, timeout=60)
    assert_clean_error(result, str(broken), "line ", "mailbot templates check")
    assert len(error_lines(result)) == 1
    assert inbox(tmp_path / "bot") == ["m1"]  # untouched, not even recorded as an attempt
    assert not (tmp_path / "bot" / "outbox").exists()
