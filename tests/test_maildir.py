"""The Maildir inbox (the embedded default): listed once per pass, filed by path (issue 10, §1)."""

from __future__ import annotations

from pathlib import Path

import pytest

import mailbot.transport.maildir as maildir
from mailbot.transport.maildir import MaildirSource


def deliver(root: Path, key: str, sub: str = "new", info: str = "") -> Path:
    path = root / sub / f"{key}{info}"
    path.write_bytes(f"Message-ID: <{key}@example.com>\r\n\r\nhola\r\n".encode())
    return path


@pytest.fixture
def source(tmp_path: Path) -> MaildirSource:
    return MaildirSource(tmp_path / "inbox", max_message_bytes=10**6)


def test_filing_what_the_pass_listed_does_not_list_the_inbox_again(source, monkeypatch):
    for n in range(30):
        deliver(source.root, f"m{n:02d}")
    fetched = [raw.mail_id for raw in source.fetch_new()]
    listings = []
    real_scandir = maildir.os.scandir
    monkeypatch.setattr(maildir.os, "scandir", lambda *a: listings.append(a) or real_scandir(*a))

    source.file_many(fetched[:20], "processed")
    for mail_id in fetched[20:]:
        source.file(mail_id, "review")

    assert listings == []
    assert sorted(p.name for p in (source.root / ".processed" / "cur").iterdir()) == fetched[:20]
    assert sorted(p.name for p in (source.root / ".review" / "cur").iterdir()) == fetched[20:]
    assert list((source.root / "new").iterdir()) == []


def test_a_mail_a_client_moved_to_cur_meanwhile_is_still_filed(source):
    deliver(source.root, "moved")
    [raw] = list(source.fetch_new())
    (source.root / "new" / "moved").rename(source.root / "cur" / "moved:2,S")

    source.file(raw.mail_id, "processed")

    assert [p.name for p in (source.root / ".processed" / "cur").iterdir()] == ["moved:2,S"]
    assert list((source.root / "cur").iterdir()) == []


def test_a_mail_listed_by_an_earlier_run_is_filed_by_a_new_source(source, tmp_path):
    deliver(source.root, "earlier")
    deliver(source.root, "other")
    later = MaildirSource(source.root, max_message_bytes=10**6)  # a restart: nothing listed yet

    later.file_many(["earlier", "gone"], "failed")

    assert [p.name for p in (source.root / ".failed" / "cur").iterdir()] == ["earlier"]
    assert [p.name for p in (source.root / "new").iterdir()] == ["other"]


def test_filing_twice_or_after_another_run_filed_it_is_a_no_op(source):
    deliver(source.root, "once")
    [raw] = list(source.fetch_new())
    source.file(raw.mail_id, "processed")
    source.file(raw.mail_id, "processed")
    source.file_many([raw.mail_id, raw.mail_id], "review")

    assert [p.name for p in (source.root / ".processed" / "cur").iterdir()] == ["once"]
    assert not (source.root / ".review" / "cur" / "once").exists()


def test_a_folder_removed_during_the_pass_is_made_again(source):
    import shutil

    deliver(source.root, "a")
    deliver(source.root, "b")
    fetched = [raw.mail_id for raw in source.fetch_new()]
    source.file(fetched[0], "ignored")
    shutil.rmtree(source.root / ".ignored")

    source.file(fetched[1], "ignored")

    assert [p.name for p in (source.root / ".ignored" / "cur").iterdir()] == [fetched[1]]
    assert (source.root / ".ignored" / "maildirfolder").exists()


def test_an_unknown_folder_is_refused(source):
    with pytest.raises(ValueError):
        source.file_many(["x"], "elsewhere")


def test_ids_no_listing_saw_cost_one_listing_per_pass_not_one_per_batch(source, monkeypatch):
    for n in range(6):
        deliver(source.root, f"old{n}")
    later = MaildirSource(source.root, max_message_bytes=10**6)  # a restart
    listings = []
    real_scandir = maildir.os.scandir
    monkeypatch.setattr(maildir.os, "scandir", lambda *a: listings.append(a) or real_scandir(*a))

    for batch in (["old0", "gone1"], ["old1", "gone2"], ["gone3", "old2"]):
        later.file_many(batch, "processed")

    assert len(listings) == 2  # new/ and cur/, once
    assert sorted(p.name for p in (source.root / ".processed" / "cur").iterdir()) == [
        "old0", "old1", "old2"]
