"""`mailbot retry REFERENCE` (issue 8 §7): a quarantined mail is decided again once its cause is
fixed, on a Maildir and on a real Dovecot; moving it back to the inbox by hand only files it
straight back to `failed`, because the store says it is handled."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from botconfig import server_config
from test_cli import assert_clean_error, mailbot
from test_unlock_flow import FACTURA, FREE, RAUL, Harness, request_mail

from mailbot import config as config_module
from mailbot.errors import TemplateError
from mailbot.ops import retry as retry_module
from mailbot.ops.imports import LicenceRecord
from mailbot.ops.retry import RetryError, retry
from mailbot.run.app import MAX_ATTEMPTS
from mailbot.run.pipeline import run_once
from mailbot.run.wiring import open_app
from mailbot.store.database import events, mails
from mailbot.transport.imap import ImapSource

FREE_UPDATE = "Solicitud de claves para actualización sin costo"


def broken_renderer(renderer):
    """The renderer with every customer reply broken at run time (alerts still render)."""
    real = renderer.render

    def render(template, context):
        if template != "operator_alert":
            raise TemplateError(f"{template}.txt.j2, line 3: 'installation' is undefined")
        return real(template, context)

    return render


def quarantine(app, monkeypatch) -> str:
    """Fail the waiting mail MAX_ATTEMPTS times (a template broken at run time), then let the
    next pass quarantine and file it; the renderer works again afterwards. Its reference."""
    with monkeypatch.context() as patch:
        patch.setattr(app.renderer, "render", broken_renderer(app.renderer))
        for _ in range(MAX_ATTEMPTS + 1):
            run_once(app)
    with app.store.transaction() as conn:
        (rec,) = conn.execute(sa.select(mails)).all()
    assert (rec.status, rec.folder, bool(rec.filed)) == ("quarantined", "failed", True)
    return rec.reference


def maildir(bot: Harness, folder: str = "") -> list[str]:
    box = bot.root / "inbox" / (f".{folder}" if folder else "")
    return sorted(p.name for sub in ("new", "cur") if (box / sub).is_dir()
                  for p in (box / sub).iterdir())


def retry_events(app) -> list[tuple[str, dict]]:
    with app.store.transaction() as conn:
        rows = conn.execute(sa.select(events.c.event, events.c.detail)
                            .where(events.c.event.in_(("retry", "retried")))
                            .order_by(events.c.id)).all()
    return [(r.event, json.loads(r.detail)) for r in rows]


@pytest.fixture
def bot(tmp_path):
    harness = Harness(tmp_path / "bot")
    yield harness
    harness.close()


def test_moved_back_by_hand_a_quarantined_mail_is_filed_straight_back(bot, monkeypatch):
    bot.deliver(request_mail(sender=RAUL, serial=FREE, system=FACTURA, subject=FREE_UPDATE))
    quarantine(bot.app, monkeypatch)
    (name,) = maildir(bot, "failed")
    (bot.root / "inbox" / ".failed" / "cur" / name).rename(bot.root / "inbox" / "cur" / name)
    run_once(bot.app)
    assert maildir(bot) == [] and maildir(bot, "failed") == [name]
    assert bot.replies() == []


def test_retry_puts_the_mail_back_and_the_next_pass_answers_it_once(bot, monkeypatch):
    bot.deliver(request_mail(sender=RAUL, serial=FREE, system=FACTURA, subject=FREE_UPDATE))
    reference = quarantine(bot.app, monkeypatch)
    (name,) = maildir(bot, "failed")

    result = retry(bot.app, reference, operator="ana")

    assert maildir(bot) == [name] and maildir(bot, "failed") == []
    assert "installation" in (result.previous_error or "")
    (mail,) = bot.mails()
    assert (mail.status, mail.attempts, mail.folder, bool(mail.filed)) == (
        "received", 0, None, False)
    assert [(event, detail["operator"]) for event, detail in retry_events(bot.app)] == [
        ("retry", "ana"), ("retried", "ana")]

    report = run_once(bot.app)
    assert report.errors == []
    assert [(r.template, r.to) for r in bot.replies()] == [("keys_issued", RAUL)]
    assert maildir(bot, "processed") == [name] and maildir(bot) == []
    assert bot.mails()[0].reference == reference  # the customer's reference is kept
    run_once(bot.app)
    assert len(bot.replies()) == 1


def test_the_short_reference_an_operator_reads_is_enough(bot, monkeypatch):
    bot.deliver(request_mail(sender=RAUL, serial=FREE, system=FACTURA, subject=FREE_UPDATE))
    reference = quarantine(bot.app, monkeypatch)
    short = "-".join(reference.split("-")[:2])  # CLV-000001 of CLV-000001-K7M2QX
    assert retry(bot.app, short, operator="ana").reference == reference


def test_retry_finds_a_mail_already_moved_back_by_hand(bot, monkeypatch):
    bot.deliver(request_mail(sender=RAUL, serial=FREE, system=FACTURA, subject=FREE_UPDATE))
    reference = quarantine(bot.app, monkeypatch)
    (name,) = maildir(bot, "failed")
    # moved back and renamed, as a mail client does when it sets a flag
    (bot.root / "inbox" / ".failed" / "cur" / name).rename(
        bot.root / "inbox" / "cur" / "1733068800.M1P2.host:2,S")
    result = retry(bot.app, reference, operator="ana")
    assert result.mail_id == "1733068800.M1P2.host"
    run_once(bot.app)
    assert [(r.template, r.to) for r in bot.replies()] == [("keys_issued", RAUL)]


def test_a_retry_cut_short_after_the_store_reset_can_be_run_again(bot, monkeypatch):
    bot.deliver(request_mail(sender=RAUL, serial=FREE, system=FACTURA, subject=FREE_UPDATE))
    reference = quarantine(bot.app, monkeypatch)

    def power_cut(*_args):
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr("mailbot.transport.maildir.os.replace", power_cut)
        with pytest.raises(OSError):
            retry(bot.app, reference, operator="ana")
    assert maildir(bot) == [] and len(maildir(bot, "failed")) == 1  # nothing lost
    run_once(bot.app)  # a pass meanwhile neither loses nor answers it
    assert bot.replies() == []

    retry(bot.app, reference, operator="ana")
    run_once(bot.app)
    assert [(r.template, r.to) for r in bot.replies()] == [("keys_issued", RAUL)]


def test_only_a_quarantined_mail_can_be_retried(bot, monkeypatch):
    bot.deliver(request_mail(sender=RAUL, serial=FREE, system=FACTURA, subject=FREE_UPDATE))
    with monkeypatch.context() as patch:
        patch.setattr(bot.app.renderer, "render", broken_renderer(bot.app.renderer))
        run_once(bot.app)  # failed once: every pass tries again by itself
    reference = bot.mails()[0].reference
    with pytest.raises(RetryError, match="is received, not quarantined"):
        retry(bot.app, reference, operator="ana")
    run_once(bot.app)
    with pytest.raises(RetryError, match="is done, not quarantined"):
        retry(bot.app, reference, operator="ana")
    with pytest.raises(RetryError, match="no mail 'CLV-999999'"):
        retry(bot.app, "CLV-999999", operator="ana")
    assert retry_events(bot.app) == []
    assert len(bot.replies()) == 1


def test_the_cli_retries_and_refuses_in_one_line(bot, monkeypatch):
    bot.deliver(request_mail(sender=RAUL, serial=FREE, system=FACTURA, subject=FREE_UPDATE))
    reference = quarantine(bot.app, monkeypatch)
    bot.close()
    config = str(bot.config_path)

    done = mailbot("--config", config, "retry", reference, "--operator", "ana")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{reference}: back in the inbox as ")
    again = mailbot("--config", config, "retry", reference)  # harmless until a pass ran
    assert again.returncode == 0 and "back in the inbox" in again.stdout
    assert mailbot("--config", config, "run", "--once").returncode == 0
    assert_clean_error(mailbot("--config", config, "retry", reference), "is done")


# --- on a real Dovecot ------------------------------------------------------------------------

@pytest.fixture
def imap_bot(tmp_path, imap_server, smtp_server):
    app = open_app(config_module.load(server_config(tmp_path, imap_server, smtp_server)))
    with app.store.transaction() as conn:
        app.store.upsert_licences(conn, [LicenceRecord(
            FREE, FACTURA, "Empresa de muestra", RAUL, dt.date(2011, 9, 15),
            "electronico", None, 2)])
    yield app
    app.source.close()
    app.sink.close()
    app.store.close()


def test_retry_on_dovecot_brings_the_mail_back_unseen_by_passes_until_the_store_knows_it(
        imap_bot, imap_server, imap_config, smtp_server, tmp_path, monkeypatch):
    app = imap_bot
    data = request_mail(sender=RAUL, serial=FREE, system=FACTURA,
                        subject=FREE_UPDATE).replace(b"\n", b"\r\n")
    imap_server.append("INBOX", data)
    reference = quarantine(app, monkeypatch)
    failed = app.config.imap.folder_failed
    assert imap_server.list_folder("INBOX") == [] and imap_server.list_folder(failed) == [data]

    watcher = ImapSource(imap_config(), tmp_path, max_message_bytes=1_000_000)
    seen_before_reset: list[list[str]] = []
    real_reset = retry_module.retries.reset

    def reset_while_watching(conn, mail, *, mail_id):
        # another instance's pass, just before the store learns the new id
        seen_before_reset.append([raw.mail_id for raw in watcher.fetch_new()])
        return real_reset(conn, mail, mail_id=mail_id)

    monkeypatch.setattr(retry_module.retries, "reset", reset_while_watching)
    try:
        result = retry(app, reference, operator="ana")
    finally:
        watcher.close()
    assert seen_before_reset == [[]]  # the copy in the inbox was invisible to fetch_new
    assert imap_server.list_folder_with_flags("INBOX") == [(data, ())]
    assert imap_server.list_folder(failed) == []
    uid = result.mail_id.partition(":")[2]
    assert result.mail_id == f"{imap_server.uidvalidity()}:{uid}"
    with app.store.transaction() as conn:
        mail_id, status = conn.execute(sa.select(mails.c.mail_id, mails.c.status)).one()
    assert (mail_id, status) == (result.mail_id, "received")

    report = run_once(app)
    assert report.errors == []
    to_customer = [m for m in smtp_server.messages if RAUL in m.rcpt_tos]
    assert len(to_customer) == 1
    assert imap_server.list_folder("INBOX") == []
    assert imap_server.list_folder(app.config.imap.folder_processed) == [data]


def test_a_dovecot_retry_whose_store_reset_fails_leaves_the_mail_in_failed(
        imap_bot, imap_server, monkeypatch):
    app = imap_bot
    data = request_mail(sender=RAUL, serial=FREE, system=FACTURA,
                        subject=FREE_UPDATE).replace(b"\n", b"\r\n")
    imap_server.append("INBOX", data)
    reference = quarantine(app, monkeypatch)

    def store_down(*_args, **_kwargs):
        raise RetryError("the store went away")

    with monkeypatch.context() as patch:
        patch.setattr(retry_module.retries, "reset", store_down)
        with pytest.raises(RetryError):
            retry(app, reference, operator="ana")
    failed = app.config.imap.folder_failed
    assert imap_server.list_folder(failed) == [data]  # nothing lost
    assert [m for m, flags in imap_server.list_folder_with_flags("INBOX")
            if "\\Deleted" not in flags] == []  # and nothing a pass would read
    retry(app, reference, operator="ana")
    assert run_once(app).errors == []
    assert imap_server.list_folder(app.config.imap.folder_processed) == [data]
