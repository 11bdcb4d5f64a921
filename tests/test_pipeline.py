"""End to end on the embedded defaults: a Maildir in, reply files out, SQLite."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from botconfig import write_config

from mailbot import config as config_module
from mailbot.ops.demo import write_demo
from mailbot.ops.imports import read_keys, read_registry
from mailbot.run.pending import fulfil_pending
from mailbot.run.pipeline import run_once
from mailbot.run.wiring import open_app
from mailbot.store.database import mails, outbox, requests
from mailbot.transport.files import FileSink

NOW = dt.datetime(2026, 11, 23, 17, 0, tzinfo=dt.UTC)


def make_app(tmp_path: Path, *, keys: bool = True, operators: bool = True):
    files = write_demo(tmp_path / "demo")
    path = write_config(tmp_path, """
[source]
path = "demo/inbox"
[sink]
path = "outbox"
[store]
url = "sqlite:///mailbot.db"
""", operators=("operadores@example.com",) if operators else ())
    app = open_app(config_module.load(path))
    app.clock = lambda: NOW
    with app.store.transaction() as conn:
        app.store.upsert_licences(conn, read_registry(files.registry_csv, app.rules.catalogue))
        if keys:
            app.store.add_keys(conn, read_keys(files.keys_csv, app.rules.catalogue))
    return app, files


def sent(app) -> list[email.message.EmailMessage]:
    assert isinstance(app.sink, FileSink)
    return [email.message_from_bytes(r.message, policy=email.policy.default)
            for r in app.sink.sent()]


def body(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def by_recipient(app) -> dict[str, list]:
    out: dict[str, list] = {}
    for m in sent(app):
        out.setdefault(str(m["To"]).split("<")[-1].strip(">"), []).append(m)
    return out


def rows(app, table):
    import sqlalchemy as sa

    with app.store.transaction() as conn:
        return conn.execute(sa.select(table)).all()


def test_the_demo_inbox_is_answered_once_each_and_filed(tmp_path):
    app, files = make_app(tmp_path)
    report = run_once(app)
    assert report.seen == len(files.mails) == 12
    assert report.errors == []
    replies = by_recipient(app)
    # The seed's request (mail 1) and its repetition (mail 6) and the spreadsheet (mail 2),
    # all from the registered contact: three answers with keys.
    seed = replies["rgonzalez@empresamuestra.com.mx"]
    assert len(seed) == 3
    assert all(m["Auto-Submitted"] == "auto-replied" for m in seed)
    assert all(m["In-Reply-To"] for m in seed)
    # Nobody gets an answer for the auto-reply or the unrelated mail.
    statuses = {r.mail_id: (r.outcome, r.folder) for r in rows(app, mails)}
    assert sorted(f for _, f in statuses.values()).count("ignored") == 1
    # Nothing is left in the inbox.
    assert not list((files.maildir / "new").iterdir())
    assert not list((files.maildir / "cur").iterdir())


def test_a_repeated_request_gets_the_same_key_again_and_consumes_nothing(tmp_path):
    app, _ = make_app(tmp_path)
    run_once(app)
    reqs = [r for r in rows(app, requests) if r.serial == "AAAA-BBBB-CCCC-DDDD"]
    assert len(reqs) >= 2
    assert len({r.key for r in reqs}) == 1 and reqs[0].key is not None
    bodies = [body(m) for m in by_recipient(app)["rgonzalez@empresamuestra.com.mx"]]
    import sqlalchemy as sa

    from mailbot.store.database import keys

    with app.store.transaction() as conn:
        key = conn.execute(sa.select(keys.c.key).where(keys.c.serial == "AAAA-BBBB-CCCC-DDDD")).scalar()
        bound = conn.execute(sa.select(sa.func.count()).select_from(keys)
                             .where(keys.c.serial.is_not(None))).scalar()
    assert sum(key in b for b in bodies) == 3
    assert bound == 5  # DDDD, EEEE, FFFF, GGGG and D4LN: one key each, nothing more


def test_a_second_run_answers_nothing_twice(tmp_path):
    app, files = make_app(tmp_path)
    run_once(app)
    first = len(app.sink.sent())
    write_demo(tmp_path / "demo")  # the demo writer puts nothing back that was handled
    # An operator restores a handled mail into the inbox by hand: it is only re-filed.
    processed = files.maildir / ".processed" / "cur"
    restored = sorted(processed.iterdir())[0]
    shutil.copy(restored, files.maildir / "new" / restored.name)
    report = run_once(app)
    assert len(app.sink.sent()) == first
    assert report.decided == 0
    assert not list((files.maildir / "new").iterdir())


def test_keys_for_someone_elses_serial_go_only_to_the_registered_contact(tmp_path):
    app, _ = make_app(tmp_path)
    run_once(app)
    replies = by_recipient(app)
    registered = replies["mlopez@lomasdelnorte.com.mx"]
    assert len(registered) == 1
    req = [r for r in rows(app, requests) if r.serial == "D4LN-8P2Q-77XK-M3WA"][0]
    import sqlalchemy as sa

    from mailbot.store.database import keys

    with app.store.transaction() as conn:
        key = conn.execute(sa.select(keys.c.key).where(keys.c.id == req.key)).scalar()
    assert key in body(registered[0])
    requester_mail = [m for to, ms in replies.items() for m in ms
                      if to not in ("mlopez@lomasdelnorte.com.mx",) and "D4LN" in body(m)]
    assert requester_mail, "the requester is told where the keys went"
    assert all(key not in body(m) for m in requester_mail)
    assert all("mlopez@lomasdelnorte.com.mx" not in body(m) for m in requester_mail)


def test_missing_data_gets_one_answer_naming_each_field(tmp_path):
    app, _ = make_app(tmp_path)
    run_once(app)
    incomplete = [r for r in rows(app, mails) if r.outcome == "incomplete"]
    assert len(incomplete) == 1
    msgs = [m for m in rows(app, outbox) if m.mail == incomplete[0].id]
    assert len(msgs) == 1 and msgs[0].template == "missing_data"
    text = email.message_from_bytes(msgs[0].data, policy=email.policy.default)
    plain = body(text)
    assert "Número de serie" in plain and "Tipo de sistema" in plain


def test_an_ineligible_serial_gets_the_not_eligible_answer(tmp_path):
    app, _ = make_app(tmp_path)
    run_once(app)
    req = [r for r in rows(app, requests) if r.serial == "K7Q2-M9XD-41PL-ZT8R"][0]
    assert req.outcome == "not_eligible"
    assert any("before 2011-07-01" in h["reason"] for h in json.loads(req.hits))
    assert req.key is None


def test_an_empty_pool_leaves_the_request_pending_until_keys_are_imported(tmp_path):
    app, files = make_app(tmp_path)
    run_once(app)
    pending = [r for r in rows(app, requests) if r.outcome == "pending"]
    assert [r.serial for r in pending] == ["P7VT-3K9D-2LMX-8QRW"]
    alerts = [m for m in rows(app, outbox) if m.purpose == "alert"]
    assert alerts and b"Punto de venta" in alerts[0].data.replace(b"=\r\n", b"")
    from mailbot.ops.imports import KeyRecord

    with app.store.transaction() as conn:
        app.store.add_keys(conn, [KeyRecord("CONTPAQ i Punto de venta", "PDV-NEW-KEY-0001")])
    assert fulfil_pending(app) == 1
    run_once(app)
    lupita = by_recipient(app)["abarrotes.dona.lupita@gmail.com"]
    assert any("PDV-NEW-KEY-0001" in body(m) for m in lupita)
    assert [r.outcome for r in rows(app, requests) if r.serial == "P7VT-3K9D-2LMX-8QRW"] == ["issued"]


class Crash(BaseException):
    """Stands in for the process dying at a hook point (the SIGKILL tests do it for real)."""


@pytest.mark.parametrize("point", ["after_fetch", "after_key_assigned", "after_decision",
                                   "after_smtp_accept", "before_file"])
def test_a_crash_at_any_step_resumes_without_a_lost_or_second_answer(tmp_path, point):
    app, files = make_app(tmp_path)
    crashes = {"left": 1}

    def hook(name: str) -> None:
        if name == point and crashes["left"]:
            crashes["left"] -= 1
            raise Crash(name)

    app.hook = hook
    for _ in range(10):
        try:
            run_once(app)
            break
        except Crash:
            continue
    app.hook = lambda name: None
    run_once(app)
    answered = [r for r in rows(app, mails) if r.status == "done"]
    assert len(answered) == 12
    per_mail: dict[int, list[str]] = {}
    for m in rows(app, outbox):
        if m.mail is not None:
            per_mail.setdefault(m.mail, []).append(m.message_id)
    assert all(len(ids) == len(set(ids)) for ids in per_mail.values())
    # Every queued answer went out; at most the one SMTP window resends identical bytes.
    sent_ids = [r.message_id for r in app.sink.sent()]
    assert len(sent_ids) == len(set(sent_ids))
    assert {m.message_id for m in rows(app, outbox)} == set(sent_ids)
    assert not list((files.maildir / "new").iterdir())


def test_a_pass_over_a_quiet_inbox_records_that_it_ended_and_keeps_few_such_records(
        tmp_path, monkeypatch):
    """/healthz and the panel read the last pass; an idle service adds no history."""
    from test_unlock_flow import Harness

    from mailbot.store import panel
    from mailbot.store.schema import events

    monkeypatch.setattr(panel, "KEPT_PASSES", 3)
    bot = Harness(tmp_path)
    try:
        for _ in range(5):
            assert bot.run().errors == []
        with bot.app.store.transaction() as conn:
            last = panel.last_pass(conn)
            kept = conn.execute(sa.select(sa.func.count()).select_from(events)
                                .where(events.c.event == panel.PASS_FINISHED)).scalar_one()
        assert last is not None and last.source == panel.PASS_FINISHED
        assert last.duration_seconds is not None and last.duration_seconds >= 0
        assert kept == 3
    finally:
        bot.close()
