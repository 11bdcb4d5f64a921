"""The IMAP source against a real Dovecot on loopback: what the pipeline may rely on."""

from __future__ import annotations

import imaplib
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient  # the class the spies patch: every connection's

import mailbot.transport.imap as imap_module
from mailbot.errors import ConfigError
from mailbot.transport import seams
from mailbot.transport.imap import ImapSource, MailboxError, MailboxUnreachable

# Fixtures dovecot / imap_server / imap_config come from tests/fixtures_imap.py (a plugin that
# tests/conftest.py loads).

LIMIT = 10_000  # max_message_bytes unless a test says otherwise


def mail(n: int, body: str = "", subject: str | None = None) -> bytes:
    """A small, realistic request mail; `n` makes it unique."""
    subject = subject or f"Solicitud de claves para actualización sin costo {n}"
    text = body or f"Empresa: Ferretería {n}\r\nNúmero de serie: ABCD-EFGH-IJKL-{n:04d}\r\n"
    return (f"From: cliente{n}@example.com\r\nTo: claves@example.com\r\n"
            f"Subject: {subject}\r\nMessage-ID: <m{n}@example.com>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n" + text).encode("utf-8")


class Sleeps(list):
    """An injectable sleep that records delays instead of waiting them out."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_source(imap_config, tmp_path: Path, sleeps: Sleeps) -> Iterator[Callable[..., ImapSource]]:
    """Build ImapSources for the test server; keyword arguments override ImapConfig settings,
    except the ImapSource ones (max_message_bytes, max_attempts, ignore_capabilities, ...)."""
    made: list[ImapSource] = []
    own = {"max_message_bytes", "max_attempts", "backoff_base", "backoff_max",
           "ignore_capabilities", "token_provider", "clock", "sleep"}

    def make(**kwargs: Any) -> ImapSource:
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in own}
        options.setdefault("max_message_bytes", LIMIT)
        options.setdefault("sleep", sleeps)
        source = ImapSource(imap_config(**kwargs), tmp_path, **options)
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


class Calls:
    """Records the calls an ImapSource makes to one imapclient method (then calls through)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
        self.args: list[tuple] = []
        original = getattr(IMAPClient, method)

        def spy(client, *args, **kwargs):
            self.args.append(args)
            return original(client, *args, **kwargs)

        monkeypatch.setattr(IMAPClient, method, spy)

    def __len__(self) -> int:
        return len(self.args)


# -- reading ------------------------------------------------------------------------------------


def test_source_name_says_user_host_and_inbox(make_source, imap_server):
    assert make_source().name == f"imap:bot@{imap_server.host}/INBOX"


def test_fetch_returns_appended_mails_oldest_first_with_uidvalidity_uid_ids(make_source,
                                                                           imap_server):
    mails = [mail(n) for n in range(3)]
    imap_server.append_many("INBOX", mails)
    validity = imap_server.uidvalidity()

    got = list(make_source().fetch_new())

    assert [m.data for m in got] == mails
    first_uid = int(got[0].mail_id.split(":")[1])
    assert [m.mail_id for m in got] == [f"{validity}:{first_uid + i}" for i in range(3)]
    assert [m.size for m in got] == [len(m) for m in mails]
    assert all(m.source == f"imap:bot@{imap_server.host}/INBOX" and not m.oversized for m in got)


def test_fetch_of_an_empty_inbox_yields_nothing(make_source):
    assert list(make_source().fetch_new()) == []


def test_fetch_uses_body_peek_so_mails_stay_unseen(make_source, imap_server, monkeypatch):
    imap_server.append("INBOX", mail(1))
    imap_server.append("INBOX", mail(2), flags=[r"\Seen"])  # a person already read this one
    fetches = Calls(monkeypatch, "fetch")

    assert len(list(make_source().fetch_new())) == 2

    assert ["BODY.PEEK[]"] in [args[1] for args in fetches.args]
    flags = [f for _, f in imap_server.list_folder_with_flags("INBOX")]
    assert r"\Seen" not in flags[0] and r"\Seen" in flags[1]


def test_fetch_reads_sizes_first_then_bodies_in_batches_of_batch_size(make_source, imap_server,
                                                                      monkeypatch):
    imap_server.append_many("INBOX", [mail(n) for n in range(5)])
    fetches = Calls(monkeypatch, "fetch")

    got = list(make_source(batch_size=2).fetch_new())

    assert len(got) == 5
    u = [int(m.mail_id.split(":")[1]) for m in got]
    assert [(list(uids), items) for uids, items in fetches.args] == [
        (u[0:2], ["RFC822.SIZE"]), (u[0:2], ["BODY.PEEK[]"]),
        (u[2:4], ["RFC822.SIZE"]), (u[2:4], ["BODY.PEEK[]"]),
        (u[4:], ["RFC822.SIZE"]), (u[4:], ["BODY.PEEK[]"]),
    ]


def test_oversized_mail_is_reported_by_size_and_never_fetched(make_source, imap_server,
                                                             monkeypatch):
    big = mail(2, body="x" * 5000 + "\r\n")
    imap_server.append_many("INBOX", [mail(1), big, mail(3)])
    fetches = Calls(monkeypatch, "fetch")

    got = list(make_source(max_message_bytes=2000).fetch_new())

    assert [m.oversized for m in got] == [False, True, False]
    assert got[1].data == b"" and got[1].size == len(big)
    big_uid = int(got[1].mail_id.split(":")[1])
    body_fetches = [list(uids) for uids, items in fetches.args if items == ["BODY.PEEK[]"]]
    assert body_fetches and all(big_uid not in uids for uids in body_fetches)


def test_mails_flagged_deleted_are_not_fetched(make_source, imap_server):
    imap_server.append("INBOX", mail(1), flags=[r"\Deleted"])
    imap_server.append("INBOX", mail(2))
    assert [m.data for m in make_source().fetch_new()] == [mail(2)]


# -- filing -------------------------------------------------------------------------------------


def test_filing_moves_the_mail_into_its_folder_creating_it(make_source, imap_server, monkeypatch):
    imap_server.append_many("INBOX", [mail(1), mail(2)])
    source = make_source()
    first, second = source.fetch_new()
    moves = Calls(monkeypatch, "move")

    source.file(first.mail_id, seams.PROCESSED)

    assert len(moves) == 1
    assert imap_server.list_folder("mailbot/procesados") == [first.data]
    assert imap_server.list_folder("INBOX") == [second.data]


def test_each_outcome_is_filed_into_its_configured_folder(make_source, imap_server):
    imap_server.append_many("INBOX", [mail(n) for n in range(4)])
    source = make_source(folder_review="Revisión/claves")  # non-ASCII: modified UTF-7 on the wire
    mails = list(source.fetch_new())
    for m, folder in zip(mails, seams.FOLDERS, strict=True):
        source.file(m.mail_id, folder)

    assert imap_server.list_folder("INBOX") == []
    assert imap_server.list_folder("mailbot/procesados") == [mails[0].data]
    assert imap_server.list_folder("Revisión/claves") == [mails[1].data]
    assert imap_server.list_folder("mailbot/ignorados") == [mails[2].data]
    assert imap_server.list_folder("mailbot/fallidos") == [mails[3].data]


@pytest.mark.parametrize("missing", [("MOVE",), ("MOVE", "UIDPLUS")], ids=["uidplus", "plain"])
def test_without_move_filing_copies_then_deletes_and_expunges(make_source, imap_server,
                                                              monkeypatch, missing):
    imap_server.append_many("INBOX", [mail(1), mail(2)])
    source = make_source(ignore_capabilities=missing)
    first, second = source.fetch_new()
    copies, moves = Calls(monkeypatch, "copy"), Calls(monkeypatch, "move")
    uid_expunges, expunges = Calls(monkeypatch, "uid_expunge"), Calls(monkeypatch, "expunge")

    source.file(first.mail_id, seams.REVIEW)

    assert (len(copies), len(moves)) == (1, 0)
    assert (len(uid_expunges), len(expunges)) == ((1, 0) if missing == ("MOVE",) else (0, 1))
    assert imap_server.list_folder("mailbot/revision") == [first.data]
    assert imap_server.list_folder("INBOX") == [second.data]


def test_without_move_a_failed_copy_deletes_nothing(make_source, imap_server, monkeypatch):
    imap_server.append("INBOX", mail(1))
    source = make_source(ignore_capabilities=["MOVE"])
    (m,) = source.fetch_new()

    def refuse(client, *args):
        raise imaplib.IMAP4.error("COPY failed: [OVERQUOTA] Quota exceeded")

    monkeypatch.setattr(IMAPClient, "copy", refuse)
    with pytest.raises(MailboxError, match="OVERQUOTA"):
        source.file(m.mail_id, seams.PROCESSED)

    ((data, flags),) = imap_server.list_folder_with_flags("INBOX")
    assert data == m.data and r"\Deleted" not in flags


@pytest.mark.parametrize("missing", [(), ("MOVE",)], ids=["move", "copy"])
def test_filing_twice_is_harmless(make_source, imap_server, missing):
    imap_server.append("INBOX", mail(1))
    source = make_source(ignore_capabilities=missing)
    (m,) = source.fetch_new()

    source.file(m.mail_id, seams.PROCESSED)
    source.file(m.mail_id, seams.PROCESSED)
    make_source(ignore_capabilities=missing).file(m.mail_id, seams.IGNORED)  # a later run

    assert imap_server.list_folder("mailbot/procesados") == [m.data]
    assert imap_server.list_folder("mailbot/ignorados") == []
    assert imap_server.list_folder("INBOX") == []


def test_filing_recreates_a_folder_deleted_behind_its_back(make_source, imap_server):
    imap_server.append_many("INBOX", [mail(1), mail(2)])
    source = make_source()
    first, second = source.fetch_new()
    source.file(first.mail_id, seams.PROCESSED)
    imap = imap_server.connect()
    imap.delete('"mailbot/procesados"')
    imap.logout()

    source.file(second.mail_id, seams.PROCESSED)

    assert imap_server.list_folder("mailbot/procesados") == [second.data]


def test_file_rejects_unknown_folders_and_malformed_ids(make_source):
    source = make_source()
    with pytest.raises(ValueError, match="unknown folder"):
        source.file("1:1", "spam")
    with pytest.raises(ValueError, match="UIDVALIDITY:UID"):
        source.file("1.eml", seams.PROCESSED)


# -- filing many at once (file_many) -----------------------------------------------------------


@pytest.mark.parametrize("missing", [(), ("MOVE",), ("MOVE", "UIDPLUS")],
                         ids=["move", "copy-uidplus", "copy-plain"])
def test_file_many_moves_them_all_with_one_command(make_source, imap_server, monkeypatch,
                                                    missing):
    imap_server.append_many("INBOX", [mail(n) for n in range(5)])
    source = make_source(ignore_capabilities=missing)
    mails = list(source.fetch_new())
    moves, copies = Calls(monkeypatch, "move"), Calls(monkeypatch, "copy")

    source.file_many([m.mail_id for m in mails[:4]], seams.PROCESSED)

    assert (len(moves), len(copies)) == ((1, 0) if not missing else (0, 1))
    assert imap_server.list_folder("mailbot/procesados") == [m.data for m in mails[:4]]
    assert imap_server.list_folder("INBOX") == [mails[4].data]


@pytest.mark.parametrize("missing", [(), ("MOVE",)], ids=["move", "copy"])
def test_file_many_twice_or_with_some_gone_is_harmless(make_source, imap_server, missing):
    imap_server.append_many("INBOX", [mail(n) for n in range(3)])
    source = make_source(ignore_capabilities=missing)
    mails = list(source.fetch_new())
    source.file(mails[0].mail_id, seams.PROCESSED)  # one filed already

    source.file_many([m.mail_id for m in mails], seams.PROCESSED)
    source.file_many([m.mail_id for m in mails], seams.PROCESSED)

    assert imap_server.list_folder("mailbot/procesados") == [m.data for m in mails]
    assert imap_server.list_folder("INBOX") == []


@pytest.mark.parametrize("missing", [(), ("MOVE",)], ids=["move", "copy"])
def test_file_many_after_another_session_expunged_one_moves_the_rest(make_source, imap_server,
                                                                       missing):
    # Two mailbots on one mailbox: the other one filed mails[0] while this session still lists
    # it, and Dovecot answers the whole UID MOVE with NO [EXPUNGEISSUED] (seen in the
    # two-instance concurrency test): the rest must still be filed, without an error.
    imap_server.append_many("INBOX", [mail(n) for n in range(3)])
    source = make_source(ignore_capabilities=missing)
    mails = list(source.fetch_new())
    other = imap_server.connect()
    other.select("INBOX")
    uid = mails[0].mail_id.split(":")[1]
    other.uid("STORE", uid, "+FLAGS.SILENT", "(\\Deleted)")
    other.expunge()
    other.logout()

    source.file_many([m.mail_id for m in mails], seams.PROCESSED)

    assert imap_server.list_folder("mailbot/procesados") == [m.data for m in mails[1:]]
    assert imap_server.list_folder("INBOX") == []


def test_file_many_leaves_ids_of_an_older_uidvalidity_alone(make_source, imap_server):
    imap_server.append_many("INBOX", [mail(1), mail(2)])
    source = make_source()
    first, second = source.fetch_new()
    stale = f"{int(first.mail_id.split(':')[0]) - 1}:{first.mail_id.split(':')[1]}"

    source.file_many([stale, second.mail_id], seams.REVIEW)

    assert imap_server.list_folder("INBOX") == [first.data]
    assert imap_server.list_folder("mailbot/revision") == [second.data]


def test_file_many_rejects_unknown_folders_and_malformed_ids(make_source):
    source = make_source()
    with pytest.raises(ValueError, match="unknown folder"):
        source.file_many(["1:1"], "spam")
    with pytest.raises(ValueError, match="UIDVALIDITY:UID"):
        source.file_many(["1:1", "1.eml"], seams.PROCESSED)


# -- faults -------------------------------------------------------------------------------------


def test_a_kick_mid_session_reconnects_and_continues(make_source, imap_server, sleeps):
    imap_server.append_many("INBOX", [mail(n) for n in range(4)])
    source = make_source(batch_size=1)
    mails = source.fetch_new()
    first = next(mails)

    imap_server.kick()
    source.file(first.mail_id, seams.PROCESSED)  # the dead session is noticed here
    imap_server.kick()
    rest = list(mails)  # and here, between two batches

    assert [m.data for m in rest] == [mail(n) for n in range(1, 4)]
    assert imap_server.list_folder("mailbot/procesados") == [first.data]
    assert sleeps == []  # the first reconnect is immediate


def test_a_server_restart_is_survived(make_source, imap_server):
    imap_server.append("INBOX", mail(1))
    source = make_source()
    (m,) = source.fetch_new()

    imap_server.restart()

    source.file(m.mail_id, seams.PROCESSED)
    assert imap_server.list_folder("mailbot/procesados") == [m.data]


def test_an_unreachable_mailbox_raises_once_after_backing_off(make_source, imap_server, sleeps):
    source = make_source(max_attempts=5, backoff_base=2, backoff_max=5)
    assert list(source.fetch_new()) == []
    imap_server.stop()

    with pytest.raises(MailboxUnreachable) as caught:
        list(source.fetch_new())

    assert sleeps == [2, 4, 5]  # immediate retry, then doubling, capped
    assert "after 5 attempts" in caught.value.detail
    assert "Connection refused" in caught.value.detail
    assert source.name in caught.value.detail


def test_uidvalidity_change_gives_new_ids_for_the_same_bytes(make_source, imap_server):
    imap_server.append_many("INBOX", [mail(1), mail(2)])
    source = make_source()
    before = list(source.fetch_new())

    old = int(before[0].mail_id.split(":")[0])
    imap_server.set_uidvalidity("INBOX", old + 1000)  # dovecot drops the session too
    after = list(source.fetch_new())

    assert [m.data for m in after] == [m.data for m in before]
    assert [m.mail_id for m in after] == [
        f"{old + 1000}:{m.mail_id.split(':')[1]}" for m in before]


def test_filing_an_id_from_an_old_uidvalidity_does_nothing(make_source, imap_server):
    imap_server.append("INBOX", mail(1))
    source = make_source()
    (m,) = source.fetch_new()
    old = int(m.mail_id.split(":")[0])
    # The change happens between sessions (within one, a server keeps the session's UIDs
    # meaning what they meant, or drops it): the UID may now name another mail.
    imap_server.kick()
    imap_server.set_uidvalidity("INBOX", old + 7)

    source.file(m.mail_id, seams.PROCESSED)

    assert imap_server.list_folder("INBOX") == [m.data]


# -- Sent copies --------------------------------------------------------------------------------


def test_append_sent_lands_in_sent_marked_seen(make_source, imap_server):
    reply = mail(9, subject="Re: Solicitud de claves")
    make_source().append_sent(reply)
    assert imap_server.list_folder_with_flags("Sent") == [(reply, (r"\Seen",))]


def test_append_sent_is_skipped_when_no_sent_folder_is_configured(make_source, imap_server):
    make_source(sent_folder="").append_sent(mail(9))
    make_source(sent_folder="").append_sent_many([mail(9), mail(10)])
    assert imap_server.folders() == ["INBOX"]


@pytest.mark.parametrize("missing", [(), ("MULTIAPPEND",)], ids=["multiappend", "append"])
def test_append_sent_many_lands_them_all_in_sent_marked_seen(make_source, imap_server,
                                                             monkeypatch, missing):
    replies = [mail(n, subject=f"Re: Solicitud {n}") for n in range(5)]
    multi, single = Calls(monkeypatch, "multiappend"), Calls(monkeypatch, "append")

    make_source(ignore_capabilities=missing).append_sent_many(replies)

    assert (len(multi), len(single)) == ((1, 0) if not missing else (0, 5))
    assert imap_server.list_folder_with_flags("Sent") == [(r, (r"\Seen",)) for r in replies]


def test_append_sent_many_skips_only_the_copy_the_server_refuses(make_source, imap_server,
                                                                 monkeypatch):
    replies = [mail(n) for n in range(3)]
    real = IMAPClient.append

    def append(client, folder, message, *args, **kwargs):
        if message == replies[1]:
            raise imaplib.IMAP4.error("APPEND failed: [OVERQUOTA] Quota exceeded")
        return real(client, folder, message, *args, **kwargs)

    def multiappend(client, folder, messages):
        raise imaplib.IMAP4.error("APPEND failed: [OVERQUOTA] Quota exceeded")

    monkeypatch.setattr(IMAPClient, "append", append)
    monkeypatch.setattr(IMAPClient, "multiappend", multiappend)
    make_source().append_sent_many(replies)

    assert imap_server.list_folder("Sent") == [replies[0], replies[2]]


# -- IDLE ---------------------------------------------------------------------------------------


def append_later(imap_server, delay: float, message: bytes) -> threading.Thread:
    """Append `message` from another connection after `delay` s; `thread.appended_at` says when
    the server confirmed it (time.monotonic())."""

    def run() -> None:
        time.sleep(delay)
        imap_server.append("INBOX", message)
        thread.appended_at = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_idle_wakes_up_within_a_second_of_an_append_from_another_connection(make_source,
                                                                           imap_server):
    source = make_source()
    assert list(source.fetch_new()) == []
    thread = append_later(imap_server, 0.3, mail(1))

    woke = source.wait_for_mail(timeout=10)
    woke_at = time.monotonic()
    thread.join()

    assert woke is True
    assert woke_at - thread.appended_at < 1.0  # dovecot batches notifications for 0.5 s
    assert [m.data for m in source.fetch_new()] == [mail(1)]


def test_wait_for_mail_returns_false_after_the_timeout(make_source):
    source = make_source()
    list(source.fetch_new())
    started = time.monotonic()
    assert source.wait_for_mail(timeout=0.3) is False
    assert 0.25 < time.monotonic() - started < 1.5


def test_wait_for_mail_is_true_at_once_for_mail_that_came_after_the_last_fetch(make_source,
                                                                              imap_server):
    source = make_source()
    list(source.fetch_new())
    imap_server.append("INBOX", mail(1))  # before IDLE began: no EXISTS will come for it
    started = time.monotonic()
    assert source.wait_for_mail(timeout=5) is True
    assert time.monotonic() - started < 0.5


def test_idle_is_reissued_before_idle_renew_seconds(make_source, monkeypatch):
    source = make_source(idle_renew_seconds=1)
    list(source.fetch_new())
    idles = Calls(monkeypatch, "idle")
    assert source.wait_for_mail(timeout=2.2) is False
    assert len(idles) == 3  # at 0 s, 1 s, 2 s


def test_idle_survives_a_kick_and_still_wakes_up(make_source, imap_server):
    source = make_source()
    list(source.fetch_new())
    kicker = threading.Timer(0.2, imap_server.kick)
    kicker.start()
    thread = append_later(imap_server, 0.6, mail(1))

    started = time.monotonic()
    assert source.wait_for_mail(timeout=10) is True
    assert time.monotonic() - started < 2
    thread.join()
    kicker.join()
    assert [m.data for m in source.fetch_new()] == [mail(1)]


def test_idle_survives_a_server_restart_and_still_wakes_up(make_source, imap_server):
    source = make_source(sleep=time.sleep, backoff_base=0.2)  # really wait while it is down
    list(source.fetch_new())

    def restart_then_deliver() -> None:
        time.sleep(0.2)
        imap_server.restart()
        time.sleep(0.3)
        imap_server.append("INBOX", mail(1))

    thread = threading.Thread(target=restart_then_deliver)
    thread.start()
    assert source.wait_for_mail(timeout=10) is True
    thread.join()
    assert [m.data for m in source.fetch_new()] == [mail(1)]


def test_new_mail_is_announced_once_until_a_listing_covers_it(make_source, imap_server):
    source = make_source()
    list(source.fetch_new())
    imap_server.append("INBOX", mail(1))
    assert source.wait_for_mail(timeout=5) is True
    # a caller whose pass is still running must not be woken again and again for it
    assert source.wait_for_mail(timeout=0.2) is False
    assert len(list(source.fetch_new())) == 1
    assert source.wait_for_mail(timeout=0.2) is False  # listed now: nothing new
    imap_server.append("INBOX", mail(2))
    assert source.wait_for_mail(timeout=5) is True


def test_idle_in_one_thread_and_a_pass_in_another_do_not_disturb_each_other(make_source,
                                                                          imap_server):
    """The service waits with IDLE in its main thread while the scheduler runs passes."""
    source = make_source()
    imap_server.append_many("INBOX", [mail(n) for n in range(20)])
    list(source.fetch_new())
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(source.wait_for_mail(timeout=10)))
    waiter.start()
    for m in source.fetch_new():  # a pass: fetch and file while the other thread idles
        source.file(m.mail_id, seams.PROCESSED)
        source.append_sent(m.data)
    imap_server.append("INBOX", mail(99))
    waiter.join(timeout=5)

    assert woke == [True]
    assert len(imap_server.list_folder("mailbot/procesados")) == 20
    assert len(imap_server.list_folder("Sent")) == 20
    assert [m.data for m in source.fetch_new()] == [mail(99)]


@pytest.mark.parametrize("how", ["server lacks IDLE", "idle = false"])
def test_without_idle_wait_for_mail_returns_false_at_once(make_source, how):
    if how == "idle = false":
        source = make_source(idle=False)
    else:
        source = make_source(ignore_capabilities=["IDLE"])
    started = time.monotonic()
    assert source.wait_for_mail(timeout=5) is False
    assert time.monotonic() - started < 0.5
    assert source.idle_supported() is False


# -- security and login -------------------------------------------------------------------------


def test_plaintext_is_refused_without_allow_plaintext(make_source):
    with pytest.raises(ConfigError, match="allow_plaintext"):
        make_source(allow_plaintext=False)


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_with_ca_file_verifies_the_server(make_source, imap_server, security):
    port = imap_server.tls_port if security == "tls" else imap_server.port
    imap_server.append("INBOX", mail(1))
    source = make_source(host="localhost", port=port, security=security, allow_plaintext=False,
                         ca_file=str(imap_server.ca_file))
    assert [m.data for m in source.fetch_new()] == [mail(1)]


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_without_the_ca_fails_verification_with_a_clear_error(make_source, imap_server,
                                                                  sleeps, security):
    port = imap_server.tls_port if security == "tls" else imap_server.port
    source = make_source(host="localhost", port=port, security=security, allow_plaintext=False)
    with pytest.raises(MailboxUnreachable) as caught:
        list(source.fetch_new())
    assert "certificate is not trusted" in caught.value.detail
    assert "ca_file" in caught.value.detail
    assert sleeps == []  # retrying cannot fix trust: no backoff loop


def test_tls_with_verification_off_connects_to_an_untrusted_server(make_source, imap_server):
    source = make_source(host="localhost", port=imap_server.tls_port, security="tls",
                         allow_plaintext=False, verify_certificates=False)
    assert list(source.fetch_new()) == []


def test_a_missing_ca_file_is_a_config_error(make_source, tmp_path):
    with pytest.raises(ConfigError, match="ca_file"):
        make_source(security="tls", ca_file=str(tmp_path / "nope.pem"))


def test_implicit_tls_on_a_plaintext_port_says_what_to_check(make_source, imap_server):
    source = make_source(host="localhost", security="tls", allow_plaintext=False,
                         ca_file=str(imap_server.ca_file), max_attempts=2)
    with pytest.raises(MailboxUnreachable, match=r"TLS error.*\[imap\] security"):
        list(source.fetch_new())


def test_a_wrong_password_is_reported_without_retrying(make_source, tmp_path, sleeps):
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    with pytest.raises(MailboxUnreachable, match="login rejected") as caught:
        list(make_source(password_file=str(wrong)).fetch_new())
    assert "MAILBOT_IMAP_PASSWORD" in caught.value.detail
    assert sleeps == []


def test_the_password_comes_from_the_environment_when_no_file_is_set(make_source, imap_server,
                                                                   monkeypatch):
    monkeypatch.setenv("MAILBOT_TEST_IMAP_PW", imap_server.password)
    source = make_source(password_file="", password_env="MAILBOT_TEST_IMAP_PW")
    assert list(source.fetch_new()) == []


def test_a_missing_password_names_the_variable_and_the_setting(make_source, monkeypatch):
    monkeypatch.delenv("MAILBOT_IMAP_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="MAILBOT_IMAP_PASSWORD"):
        list(make_source(password_file="").fetch_new())


# -- XOAUTH2 ------------------------------------------------------------------------------------


def token_script(tmp_path: Path, tokens: list[str]) -> str:
    """A token command printing the next token of `tokens` on each run (the last one after)."""
    script = tmp_path / "token.py"
    state = tmp_path / "token-runs"
    script.write_text(
        "import pathlib, sys\n"
        f"state = pathlib.Path({str(state)!r})\n"
        "runs = int(state.read_text()) if state.exists() else 0\n"
        "state.write_text(str(runs + 1))\n"
        f"tokens = {tokens!r}\n"
        "print(tokens[min(runs, len(tokens) - 1)])\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return f"{sys.executable} {script}"


def test_xoauth2_logs_in_with_the_token_the_command_prints(make_source, imap_server, tmp_path):
    imap_server.valid_tokens.add("token-1")
    source = make_source(auth="xoauth2", oauth2_token_command=token_script(tmp_path, ["token-1"]))
    imap_server.append("INBOX", mail(1))

    assert [m.data for m in source.fetch_new()] == [mail(1)]
    assert imap_server.token_checks == ["token-1"]


def test_xoauth2_rejected_token_is_refreshed_once_and_login_retried(make_source, imap_server,
                                                                    tmp_path, sleeps):
    imap_server.valid_tokens.add("fresh")
    source = make_source(auth="xoauth2",
                         oauth2_token_command=token_script(tmp_path, ["expired", "fresh"]))

    assert list(source.fetch_new()) == []
    assert imap_server.token_checks == ["expired", "fresh"]
    assert sleeps == []


def test_xoauth2_token_rejected_twice_is_reported(make_source, imap_server, tmp_path):
    source = make_source(auth="xoauth2",
                         oauth2_token_command=token_script(tmp_path, ["bad-1", "bad-2"]))
    with pytest.raises(MailboxUnreachable, match="XOAUTH2 login rejected even with a fresh token"):
        list(source.fetch_new())
    assert imap_server.token_checks == ["bad-1", "bad-2"]


def test_xoauth2_reads_the_token_file_again_after_a_rejection(make_source, imap_server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    imap_server.valid_tokens.add("file-token")
    source = make_source(auth="xoauth2", oauth2_token_file=str(token_file))
    assert list(source.fetch_new()) == []
    assert imap_server.token_checks == ["file-token"]


# -- doctor -------------------------------------------------------------------------------------


def test_check_finds_nothing_wrong_and_creates_the_folders(make_source, imap_server):
    assert make_source().check() == []
    for name in ("mailbot/procesados", "mailbot/revision", "mailbot/ignorados",
                 "mailbot/fallidos", "Sent"):
        assert imap_server.folder_exists(name)


def test_check_names_missing_capabilities_with_their_consequence(make_source):
    faults = make_source(ignore_capabilities=["IDLE", "MOVE", "UIDPLUS"]).check()
    assert len(faults) == 3
    assert any("lacks IDLE" in f and "idle = false" in f for f in faults)
    assert any("lacks MOVE" in f for f in faults)
    assert any("lacks UIDPLUS" in f and "plain EXPUNGE" in f for f in faults)


def test_check_names_an_inbox_that_does_not_exist(make_source):
    faults = make_source(inbox="Nope").check()
    assert len(faults) == 1 and "[imap] inbox 'Nope' cannot be opened" in faults[0]


def test_check_names_a_folder_that_cannot_be_created(make_source):
    faults = make_source(folder_failed="~fallidos").check()
    assert len(faults) == 1 and faults[0].startswith("[imap] folder_failed")


def test_check_reports_an_unreachable_server_in_one_line(make_source, imap_server, sleeps):
    imap_server.stop()
    faults = make_source().check()
    assert len(faults) == 1 and "Connection refused" in faults[0] and "fix:" in faults[0]
    assert sleeps == []


def test_check_reports_a_wrong_password(make_source, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("nope")
    faults = make_source(password_file=str(wrong)).check()
    assert len(faults) == 1 and "login rejected" in faults[0]


def test_a_folder_that_is_the_inbox_is_refused(make_source):
    with pytest.raises(ConfigError, match="folder_processed is the inbox"):
        make_source(folder_processed="inbox")


# --- the modules -----------------------------------------------------------------------------

def test_no_transport_module_exceeds_700_lines():
    """The IMAP source is two modules along one seam: reaching and logging in to the mailbox
    (imap_connection) and what is done there (imap); neither may outgrow the limit."""
    package = Path(imap_module.__file__).parent
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines())
             for p in package.glob("*.py")}
    assert {"imap.py", "imap_connection.py"} <= set(sizes)
    assert {name: n for name, n in sizes.items() if n > 700} == {}


def test_the_imap_names_callers_use_are_still_importable_from_the_imap_module():
    from mailbot.transport import imap_connection

    assert imap_module.MailboxUnreachable is imap_connection.MailboxUnreachable
    assert imap_module.MailboxError is imap_connection.MailboxError
    assert {"ImapSource", "MailboxError", "MailboxUnreachable"} <= set(imap_module.__all__)
