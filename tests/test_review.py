"""The review queue: every task the rules open, every operator action, and overdue alerts."""

from __future__ import annotations

import datetime as dt
import getpass
import json

import pytest
import sqlalchemy as sa
from test_unlock_flow import (
    FACTURA,
    FREE,
    RAUL,
    TALLER,
    TUESDAY_10,
    Harness,
    clean_store,
    mx,
    request_mail,
    unlock_mail,
)

from mailbot.errors import TemplateError
from mailbot.ops import logview, review_actions
from mailbot.ops.cli import main
from mailbot.ops.review_actions import ReviewError, approve, edit, reject
from mailbot.store.database import keys, outbox

__all__ = ["clean_store"]  # the fixture, for the tests that run on both back-ends

TYPO = "AAAA-BBBB-CCCC-DDDE"  # one character off FREE: not in the registry
ACCOUNTANT = "contador@despachoperez.com.mx"
FREE_SUBJECT = "Solicitud de claves para actualización sin costo"


def free_request(serial: str = FREE, system: str = FACTURA, sender: str = RAUL,
                 **kw) -> bytes:
    return request_mail(sender=sender, serial=serial, system=system, subject=FREE_SUBJECT, **kw)


@pytest.fixture
def bot(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def key_of(bot: Harness, serial: str) -> str | None:
    with bot.app.store.transaction() as conn:
        return conn.execute(sa.select(keys.c.key).where(keys.c.serial == serial)).scalar()


def outbox_count(bot: Harness) -> int:
    with bot.app.store.transaction() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one()


# --- what the rules send to review becomes a task ----------------------------------------------

@pytest.mark.parametrize("mail, kind, reason", [
    (free_request(TYPO), "free_update", "unknown_serial"),
    (free_request(system="CONTPAQ i Nóminas"), "free_update", "system_mismatch"),
    (unlock_mail(sender=ACCOUNTANT), "unlock", "other_requester"),
    (request_mail(sender="facturas@proveedor.com.mx", serial="", system="",
                  subject="Factura del mes", body="Le enviamos su factura.\n"),
     "unrecognised", "unrecognised_subject"),
])
def test_every_review_outcome_opens_one_task_with_reason_and_due_time(bot, mail, kind, reason):
    bot.run(mail)
    [task] = bot.tasks()
    assert (task.kind, task.reason, task.status) == (kind, reason, "open")
    # 24 business hours from Tuesday 10:00 (rules/unlock.toml review_due_hours): Thursday 16:00.
    assert task.due_at == bot.utc(mx(3, 16))
    assert task.reason_text
    [created] = bot.history(task.id)
    assert (created["action"], created["operator"]) == ("created", "mailbot")
    assert created["at"] == bot.utc(TUESDAY_10)


def test_review_show_prints_the_mail_what_was_read_the_reasons_due_time_and_history(
        bot, capsys):
    bot.run(free_request(TYPO))
    assert main(["--config", str(bot.config_path), "review", "show", "1"]) == 0
    out = capsys.readouterr().out
    assert "Review task #1 [open]  free_update: unknown_serial" in out
    assert f"from {RAUL}" in out and FREE_SUBJECT in out
    assert f"serial:        {TYPO}" in out and "system:        " + FACTURA in out
    assert "registry.known: serial AAAA-BBBB-CCCC-DDDE is not in the licence registry" in out
    assert "due:       2026-12-03 16:00 CST" in out
    assert "created by mailbot" in out


def test_review_list_shows_open_tasks_and_filters_overdue_and_closed(bot, capsys):
    bot.run(free_request(TYPO))
    bot.run(unlock_mail(sender=ACCOUNTANT))
    config = ["--config", str(bot.config_path)]
    assert main([*config, "review", "list"]) == 0
    listed = capsys.readouterr().out
    assert "#1 " in listed and "#2 " in listed and "unknown_serial" in listed
    reject(bot.app, 2, template="unlock_rejected", note="No es el contacto registrado.",
           operator="ana")
    main([*config, "review", "list"])
    assert "#2 " not in capsys.readouterr().out
    main([*config, "review", "list", "--all"])
    assert "rejected" in capsys.readouterr().out
    main([*config, "review", "list", "--overdue"])  # the CLI runs on the real clock
    overdue = capsys.readouterr().out
    late = dt.datetime.now(dt.UTC).replace(tzinfo=None) >= bot.task(1).due_at
    assert ("#1 " in overdue and "OVERDUE" in overdue) if late else "(no review task)" in overdue


# --- approve -----------------------------------------------------------------------------------

def test_approving_a_system_mismatch_sends_the_key_to_the_registered_address_only(
        tmp_path, clean_store):
    bot = Harness(tmp_path, store=clean_store)
    bot.run(free_request(system="CONTPAQ i Nóminas", sender=ACCOUNTANT))
    [task] = bot.tasks()
    bot.now = TUESDAY_10 + dt.timedelta(hours=2)
    result = approve(bot.app, task.id, operator="ana", note="confirmado por teléfono")
    assert result.status == "approved"
    key = key_of(bot, FREE)
    assert key is not None
    [keys_mail] = bot.replies(RAUL)
    assert keys_mail.template == "keys_issued" and key in keys_mail.text
    told = bot.replies(ACCOUNTANT)
    assert [r.template for r in told] == ["under_review", "keys_redirected"]
    assert all(key not in r.text for r in told)
    req = bot.requests()[0]
    assert (req.outcome, req.system, req.recipient) == ("issued", FACTURA, RAUL)
    hits = json.loads(req.hits)
    assert hits[0]["rule"] == "review.approve" and "ana" in hits[0]["reason"]
    closed = bot.task(task.id)
    assert (closed.status, closed.closed_by) == ("approved", "ana")
    action = bot.history(task.id)[-1]
    assert (action["action"], action["operator"], action["note"]) == (
        "approve", "ana", "confirmado por teléfono")
    assert action["at"] == bot.utc(bot.now)
    bot.close()


def test_approve_refuses_what_the_rules_still_cannot_answer_and_changes_nothing(bot):
    bot.run(free_request(TYPO))
    before = outbox_count(bot)
    with pytest.raises(ReviewError, match="not in the licence registry.*review edit 1"):
        approve(bot.app, 1, operator="ana")
    assert bot.task(1).status == "open"
    assert [h["action"] for h in bot.history(1)] == ["created"]
    assert outbox_count(bot) == before and key_of(bot, TYPO) is None


def test_approving_an_unlock_records_it_in_the_ledger_and_confirms_it(bot):
    bot.run(unlock_mail(), at=TUESDAY_10 - dt.timedelta(days=30))
    bot.run(unlock_mail(), at=TUESDAY_10)
    [task] = bot.tasks()
    assert task.reason == "policy"
    approve(bot.app, task.id, operator="ana")
    entries = bot.ledger()
    assert [(e.status, e.number, e.approved_by) for e in entries] == [
        ("approved", 1, "rules"), ("approved", 2, "ana")]
    confirmation = bot.replies(TALLER)[-1]
    assert confirmation.template == "unlocked"
    assert "Nuestro equipo revisó y aprobó" in confirmation.text
    assert "Código de Activación (CDA)" in confirmation.text
    assert "segundo desbloqueo" in confirmation.text
    assert bot.requests()[-1].outcome == "unlocked"


def test_an_unlock_asked_by_someone_else_is_confirmed_to_the_registered_contact(bot):
    bot.run(unlock_mail(sender=ACCOUNTANT))
    approve(bot.app, 1, operator="ana")
    assert [r.template for r in bot.replies(ACCOUNTANT)] == ["unlock_review"]
    assert [r.template for r in bot.replies(TALLER)] == ["unlocked"]


def test_approving_a_mail_that_asked_nothing_closes_it_without_an_answer(bot):
    bot.run(request_mail(sender="facturas@proveedor.com.mx", serial="", system="",
                         subject="Factura del mes", body="Le enviamos su factura.\n"))
    before = outbox_count(bot)
    result = approve(bot.app, 1, operator="ana")
    assert result.status == "approved" and result.messages == ()
    assert outbox_count(bot) == before


def test_a_closed_task_cannot_be_acted_on_again(bot):
    bot.run(unlock_mail(sender=ACCOUNTANT))
    approve(bot.app, 1, operator="ana")
    with pytest.raises(ReviewError, match="already approved .*by ana"):
        reject(bot.app, 1, template="unlock_rejected", note="x", operator="luis")
    with pytest.raises(ReviewError, match="no review task #9"):
        approve(bot.app, 9, operator="ana")


def test_an_action_that_fails_half_way_leaves_no_trace(bot, monkeypatch):
    bot.run(free_request(system="CONTPAQ i Nóminas", sender=ACCOUNTANT))
    before = outbox_count(bot)

    def broken(name, context):
        raise TemplateError(f"{name}: broken on purpose")

    monkeypatch.setattr(bot.app.renderer, "render", broken)
    with pytest.raises(TemplateError):
        approve(bot.app, 1, operator="ana")
    assert bot.task(1).status == "open"
    assert [h["action"] for h in bot.history(1)] == ["created"]
    assert key_of(bot, FREE) is None  # the key assignment was rolled back with the rest
    assert outbox_count(bot) == before
    assert bot.requests()[0].outcome == "review"


# --- reject ------------------------------------------------------------------------------------

def test_reject_sends_the_chosen_template_with_the_note_and_records_who(bot):
    bot.run(free_request(TYPO))
    result = reject(bot.app, 1, template="review_rejected",
                    note="La serie no corresponde a ningún sistema registrado.", operator="luis")
    assert result.messages == (("review_rejected", RAUL),)
    sent = bot.replies(RAUL, template="review_rejected")[0]
    assert "La serie no corresponde a ningún sistema registrado." in sent.text
    assert TYPO in sent.text
    assert bot.requests()[0].outcome == "rejected"
    task = bot.task(1)
    assert (task.status, task.closed_by) == ("rejected", "luis")
    last = bot.history(1)[-1]
    assert (last["action"], last["operator"]) == ("reject", "luis")
    assert last["changes"] == {"template": "review_rejected", "to": RAUL}


def test_a_rejected_unlock_never_counts(bot):
    bot.run(unlock_mail(sender=ACCOUNTANT))
    reject(bot.app, 1, template="unlock_rejected", note="Solicite el desbloqueo desde el correo "
           "registrado.", operator="luis")
    rejected = bot.replies(ACCOUNTANT)[-1]
    assert rejected.template == "unlock_rejected"
    assert "Solicite el desbloqueo desde el correo registrado." in rejected.text
    assert [e.status for e in bot.ledger()] == ["rejected"]
    bot.run(unlock_mail(), at=TUESDAY_10 + dt.timedelta(hours=1))  # now the registered contact
    assert bot.replies(TALLER)[-1].template == "unlocked"
    assert [(e.status, e.number) for e in bot.ledger()] == [("rejected", None), ("approved", 1)]


def test_reject_accepts_only_rejection_templates(bot):
    bot.run(free_request(TYPO))
    with pytest.raises(ReviewError, match="not a rejection template"):
        reject(bot.app, 1, template="keys_issued", note="x", operator="luis")


# --- edit --------------------------------------------------------------------------------------

def test_editing_the_serial_runs_the_rules_again_and_issues_the_key(bot):
    bot.run(free_request(TYPO))
    result = edit(bot.app, 1, {"serial": "aaaa bbbb cccc dddd"}, operator="ana")
    assert result.status == "resolved"
    key = key_of(bot, FREE)
    keys_mail = bot.replies(RAUL, template="keys_issued")[0]
    assert key and key in keys_mail.text
    req = bot.requests()[0]
    assert (req.serial, req.outcome) == (FREE, "issued")
    last = bot.history(1)[-1]
    assert (last["action"], last["operator"]) == ("edit", "ana")
    assert last["changes"]["fields"] == {"serial": [TYPO, FREE]}
    assert last["changes"]["outcome"] == "issued"


def test_an_edit_the_rules_still_cannot_answer_keeps_the_task_open_with_the_new_reason(bot):
    bot.run(free_request(TYPO))
    result = edit(bot.app, 1, {"serial": FREE, "system": "nominas"}, operator="ana")
    assert result.status == "open"
    task = bot.task(1)
    assert (task.status, task.reason) == ("open", "system_mismatch")
    assert bot.requests()[0].serial == FREE
    assert key_of(bot, FREE) is None
    # A second edit fixes the system: now the rules answer.
    assert edit(bot.app, 1, {"system": FACTURA}, operator="ana").status == "resolved"
    assert [h["action"] for h in bot.history(1)] == ["created", "edit", "edit"]


def test_an_edited_unlock_is_decided_by_the_unlock_rules(bot):
    bot.run(unlock_mail(system="CONTPAQ i Nóminas"))  # the registry says Comercial
    [task] = bot.tasks()
    assert task.reason == "system_mismatch"
    edit(bot.app, task.id, {"system": "comercial"}, operator="ana")
    assert bot.task(task.id).status == "resolved"
    [entry] = bot.ledger()
    assert (entry.status, entry.number) == ("approved", 1)
    assert entry.approved_by == "rules, after ana's edit"
    assert bot.replies(TALLER)[-1].template == "unlocked"


def test_edit_refuses_values_that_do_not_read(bot):
    bot.run(free_request(TYPO))
    with pytest.raises(ReviewError, match="is not a serial"):
        edit(bot.app, 1, {"serial": "AAAA-BBBB"}, operator="ana")
    with pytest.raises(ReviewError, match="cannot be edited"):
        edit(bot.app, 1, {"key": "x"}, operator="ana")
    with pytest.raises(ReviewError, match="not one e-mail address"):
        edit(bot.app, 1, {"contact_email": "no es correo"}, operator="ana")
    assert [h["action"] for h in bot.history(1)] == ["created"]


# --- who acts ----------------------------------------------------------------------------------

def test_the_operator_defaults_to_mailbot_operator_then_the_os_user(bot, monkeypatch, capsys):
    bot.run(free_request(TYPO))
    bot.run(unlock_mail(sender=ACCOUNTANT))
    config = ["--config", str(bot.config_path)]
    monkeypatch.setenv("MAILBOT_OPERATOR", "Lucía Méndez")
    assert main([*config, "review", "reject", "1", "--template", "review_rejected",
                 "--note", "Serie inexistente."]) == 0
    assert "task #1: rejected" in capsys.readouterr().out
    assert bot.history(1)[-1]["operator"] == "Lucía Méndez"
    monkeypatch.delenv("MAILBOT_OPERATOR")
    assert main([*config, "review", "approve", "2"]) == 0
    assert bot.history(2)[-1]["operator"] == getpass.getuser()
    assert review_actions.default_operator() == getpass.getuser()


def test_cli_mistakes_are_one_line_and_change_nothing(bot, capsys):
    bot.run(free_request(TYPO))
    config = ["--config", str(bot.config_path)]
    assert main([*config, "review", "approve", "1", "--operator", "ana"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mailbot: error: task #1: the rules still cannot answer it")
    assert err.count("\n") == 1
    assert main([*config, "review", "edit", "1", "serial"]) == 2
    assert "is not FIELD=VALUE" in capsys.readouterr().err
    assert main([*config, "review", "edit", "1", "serial=aaaa-bbbb-cccc-dddd",
                 "--operator", "ana"]) == 0
    assert "task #1: resolved" in capsys.readouterr().out


# --- overdue tasks and the log -----------------------------------------------------------------

def test_an_overdue_task_alerts_the_operators_once(bot):
    bot.run(free_request(TYPO))  # due Thursday 16:00
    assert not any("Revisión vencida" in a for a in bot.alerts())
    bot.run(at=mx(3, 15, 59))
    assert not any("Revisión vencida" in a for a in bot.alerts())
    bot.run(at=mx(3, 16, 1))
    overdue = [a for a in bot.alerts() if "Revisión vencida" in a]
    assert len(overdue) == 1
    assert "tarea #1" in overdue[0] and "mailbot review show 1" in overdue[0]
    bot.run(at=mx(7, 9))
    bot.run(at=mx(8, 9))
    assert len([a for a in bot.alerts() if "Revisión vencida" in a]) == 1
    task = bot.task(1)
    assert task.overdue_alerted_at == bot.utc(mx(3, 16, 1))
    assert [h["action"] for h in bot.history(1)] == ["created", "overdue_alerted"]


def test_overdue_alerts_of_several_tasks_are_grouped_in_one_mail(bot):
    bot.run(free_request(TYPO), unlock_mail(sender=ACCOUNTANT))
    before = len(bot.alerts())
    bot.run(at=mx(4, 10))
    new = bot.alerts()[before:]
    assert len(new) == 1 and new[0].count("Revisión vencida") == 2


def test_the_log_shows_each_tasks_history(bot):
    bot.run(free_request(TYPO))
    edit(bot.app, 1, {"serial": FREE}, operator="ana")
    text = logview.format_text(logview.query(bot.app.store))
    assert "review #1 [resolved] free_update: unknown_serial" in text
    assert "created by mailbot" in text and "edit by ana" in text
    [entry] = logview.query(bot.app.store, reference=bot.mails()[0].reference)
    assert [h["action"] for h in entry["reviews"][0]["history"]] == ["created", "edit"]
