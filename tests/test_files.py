"""The reply-file sink: one .eml per Message-ID, written atomically, envelope beside it."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

import mailbot.transport.files as files
from mailbot.transport.files import FileSink, safe_message_id
from mailbot.transport.seams import TemporaryDeliveryError

MESSAGE = (b"From: Claves <claves@example.com>\r\n"
           b"To: Cliente <cliente@example.org>\r\n"
           b"Subject: =?utf-8?q?Sus_claves?=\r\n"
           b"Message-ID: <r1.CLV-000042@example.com>\r\n"
           b"\r\n"
           b"Estimado cliente:\r\n")
MESSAGE_ID = "<r1.CLV-000042@example.com>"


def fixed_clock() -> datetime:
    return datetime(2025, 1, 14, 9, 30, 0, tzinfo=UTC)


@pytest.fixture
def sink(tmp_path: Path) -> FileSink:
    return FileSink(tmp_path / "var" / "outbox", clock=fixed_clock)


def test_send_creates_the_folder_and_writes_the_message_bytes_unchanged(sink: FileSink) -> None:
    sink.send("claves@example.com", ["cliente@example.org"], MESSAGE, MESSAGE_ID)

    eml = sink.path / "r1.CLV-000042@example.com.eml"
    assert eml.read_bytes() == MESSAGE


def test_envelope_is_recorded_in_a_sidecar_not_in_the_message(sink: FileSink) -> None:
    sink.send("bounces@example.com", ["cliente@example.org", "hidden-bcc@example.org"], MESSAGE,
              MESSAGE_ID)

    sidecar = sink.path / "r1.CLV-000042@example.com.json"
    assert json.loads(sidecar.read_text()) == {
        "from": "bounces@example.com",
        "to": ["cliente@example.org", "hidden-bcc@example.org"],
        "message_id": MESSAGE_ID,
        "written": "2025-01-14T09:30:00.000000+00:00",
    }
    assert b"hidden-bcc" not in sidecar.with_suffix(".eml").read_bytes()


def test_sending_the_same_message_id_twice_leaves_one_reply(tmp_path: Path) -> None:
    times = iter([datetime(2025, 1, 14, 9, 30, tzinfo=UTC),
                  datetime(2025, 1, 14, 9, 45, tzinfo=UTC)])
    sink = FileSink(tmp_path / "outbox", clock=lambda: next(times))

    sink.send("claves@example.com", ["cliente@example.org"], MESSAGE, MESSAGE_ID)
    sink.send("claves@example.com", ["cliente@example.org"], MESSAGE, MESSAGE_ID)

    assert sorted(p.name for p in sink.path.iterdir()) == [
        "r1.CLV-000042@example.com.eml",
        "r1.CLV-000042@example.com.json",
    ]


def test_a_different_message_id_gets_its_own_file(sink: FileSink) -> None:
    sink.send("claves@example.com", ["a@example.org"], MESSAGE, "<one@example.com>")
    sink.send("claves@example.com", ["b@example.org"], MESSAGE, "<two@example.com>")

    assert [r.message_id for r in sink.sent()] == ["<one@example.com>", "<two@example.com>"]


def test_ids_that_differ_only_in_unsafe_characters_do_not_collide(sink: FileSink) -> None:
    sink.send("claves@example.com", ["a@example.org"], b"first\r\n", "<a/b@example.com>")
    sink.send("claves@example.com", ["a@example.org"], b"second\r\n", "<a_b@example.com>")

    assert sorted(r.message for r in sink.sent()) == [b"first\r\n", b"second\r\n"]


def test_safe_message_id_keeps_file_names_inside_the_folder() -> None:
    name = safe_message_id("<../../etc/passwd@example.com>")

    assert "/" not in name and not name.startswith(".")
    assert len(safe_message_id("<" + "x" * 500 + "@example.com>")) < 140


def test_a_sidecar_left_by_a_crash_is_completed_under_the_same_name(sink: FileSink,
                                                                    monkeypatch) -> None:
    real_write = files._write_atomically

    def crash_on_eml(target: Path, data: bytes) -> None:
        if target.suffix == ".eml":
            raise KeyboardInterrupt("killed between sidecar and message")
        real_write(target, data)

    monkeypatch.setattr(files, "_write_atomically", crash_on_eml)
    with pytest.raises(KeyboardInterrupt):
        sink.send("claves@example.com", ["cliente@example.org"], MESSAGE, MESSAGE_ID)
    assert sink.sent() == []  # no .eml yet: not delivered

    monkeypatch.setattr(files, "_write_atomically", real_write)
    later = FileSink(sink.path, clock=lambda: datetime(2025, 1, 15, tzinfo=UTC))
    later.send("claves@example.com", ["cliente@example.org"], MESSAGE, MESSAGE_ID)

    assert sorted(p.name for p in sink.path.iterdir()) == [
        "r1.CLV-000042@example.com.eml",
        "r1.CLV-000042@example.com.json",
    ]


def test_a_failed_write_leaves_neither_a_partial_file_nor_a_temporary_one(sink: FileSink,
                                                                          monkeypatch) -> None:
    def disk_full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", disk_full)
    with pytest.raises(TemporaryDeliveryError, match="No space left on device"):
        sink.send("claves@example.com", ["cliente@example.org"], MESSAGE, MESSAGE_ID)

    assert list(sink.path.iterdir()) == []


def test_an_unwritable_folder_is_a_temporary_failure_and_a_doctor_fault(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    sink = FileSink(blocker / "outbox")

    with pytest.raises(TemporaryDeliveryError, match="cannot write reply"):
        sink.send("claves@example.com", ["cliente@example.org"], MESSAGE, MESSAGE_ID)
    [fault] = sink.check()
    assert "not writable" in fault and "[sink] path" in fault


def test_check_is_clean_for_a_writable_folder(sink: FileSink) -> None:
    assert sink.check() == []
    assert [p for p in sink.path.iterdir()] == []  # the probe is removed


def test_reply_files_are_private_to_mailbot_user(sink: FileSink) -> None:
    sink.send("claves@example.com", ["cliente@example.org"], MESSAGE, MESSAGE_ID)

    for path in sink.path.iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_sent_reads_replies_back_with_their_envelope(sink: FileSink) -> None:
    sink.send("claves@example.com", ["cliente@example.org"], MESSAGE, MESSAGE_ID)

    [reply] = sink.sent()
    assert (reply.envelope_from, reply.recipients, reply.message_id, reply.message) == (
        "claves@example.com", ("cliente@example.org",), MESSAGE_ID, MESSAGE)


def test_a_reply_without_recipients_is_a_programming_error(sink: FileSink) -> None:
    with pytest.raises(ValueError):
        sink.send("claves@example.com", [], MESSAGE, MESSAGE_ID)


# --- names derived from the Message-ID (issue 10, §1): no listing of the outbox per reply -----

def test_a_reply_is_looked_up_by_its_own_name_not_by_listing_the_outbox(sink: FileSink,
                                                                        monkeypatch) -> None:
    sink.send("claves@example.com", ["a@example.org"], MESSAGE, "<first@example.com>")
    listings = []
    real_scandir, real_glob = files.os.scandir, Path.glob
    monkeypatch.setattr(files.os, "scandir", lambda *a: listings.append(a) or real_scandir(*a))
    monkeypatch.setattr(Path, "glob", lambda *a: listings.append(a) or real_glob(*a))

    for n in range(20):
        sink.send("claves@example.com", ["a@example.org"], MESSAGE, f"<r{n}@example.com>")
    sink.send("claves@example.com", ["a@example.org"], MESSAGE, "<r3@example.com>")  # again

    assert listings == []
    assert len(list(sink.path.glob("*.eml"))) == 21


def test_an_outbox_written_with_time_stamped_names_is_recognised_after_an_upgrade(
        tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    old = "20250113T080000Z-r1.CLV-000042@example.com"
    (outbox / f"{old}.json").write_text(json.dumps(
        {"from": "claves@example.com", "to": ["cliente@example.org"], "message_id": MESSAGE_ID}))
    (outbox / f"{old}.eml").write_bytes(MESSAGE)
    half = "20250113T080500Z-half@example.com"  # a crash left its sidecar only
    (outbox / f"{half}.json").write_text(json.dumps(
        {"from": "claves@example.com", "to": ["x@example.org"], "message_id": "<half@example.com>"}))
    sink = FileSink(outbox, clock=fixed_clock)

    sink.send("claves@example.com", ["cliente@example.org"], MESSAGE, MESSAGE_ID)
    sink.send("claves@example.com", ["x@example.org"], b"half\r\n", "<half@example.com>")
    sink.send("claves@example.com", ["n@example.org"], b"new\r\n", "<new@example.com>")

    assert sorted(p.name for p in outbox.iterdir()) == [
        f"{old}.eml", f"{old}.json", f"{half}.eml", f"{half}.json",
        "new@example.com.eml", "new@example.com.json"]
    # oldest first, across both layouts
    assert [r.message_id for r in sink.sent()] == [MESSAGE_ID, "<half@example.com>",
                                                   "<new@example.com>"]


def test_two_ids_with_the_same_safe_form_get_two_files(sink: FileSink) -> None:
    sink.send("claves@example.com", ["a@example.org"], b"bracketed\r\n", "<same@example.com>")
    sink.send("claves@example.com", ["a@example.org"], b"bare\r\n", "same@example.com")
    sink.send("claves@example.com", ["a@example.org"], b"bare again\r\n", "same@example.com")

    assert sorted((r.message_id, r.message) for r in sink.sent()) == [
        ("<same@example.com>", b"bracketed\r\n"), ("same@example.com", b"bare\r\n")]


def test_sent_is_oldest_first_by_the_recorded_time_not_by_name(tmp_path: Path) -> None:
    times = iter([datetime(2025, 1, 14, 9, 30, tzinfo=UTC), datetime(2025, 1, 14, 9, 31, tzinfo=UTC)])
    sink = FileSink(tmp_path / "outbox", clock=lambda: next(times))
    sink.send("claves@example.com", ["a@example.org"], MESSAGE, "<zzz@example.com>")
    sink.send("claves@example.com", ["a@example.org"], MESSAGE, "<aaa@example.com>")

    assert [r.message_id for r in sink.sent()] == ["<zzz@example.com>", "<aaa@example.com>"]
