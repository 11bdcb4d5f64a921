"""A reseller's many-row spreadsheet end to end (issue 10 §1, issue 11 §5): the throttle looks
once per mail at other mails only, the answer carries a results spreadsheet (never a formula),
a many-row answer is a summary that points to it, and a mail that will fail again is
quarantined at once instead of being retried."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import io
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import openpyxl
import pytest
import sqlalchemy as sa
from openpyxl.cell import WriteOnlyCell
from test_unlock_flow import FACTURA, KEYS, REGISTRY, TUESDAY_10, Harness

from mailbot.answer.results_sheet import results_sheet
from mailbot.errors import TemplateError
from mailbot.ops.imports import KeyRecord, LicenceRecord
from mailbot.ruleset import Answers
from mailbot.run.pipeline import run_once
from mailbot.store.database import mails

COMPANY = "Distribuidora Norte, S.A. de C.V."
CONTACT = "compras@distribuidoranorte.com.mx"
SUBJECT = "Solicitud de claves para actualización sin costo"
HEADER = ["Nombre de la empresa", "Nombre del contacto", "Correo electrónico",
          "Tipo de sistema", "Número de serie"]


def serial(n: int) -> str:
    return f"DN{n // 10000 % 100:02d}-{n // 100 % 100:02d}AB-CD{n % 100:02d}-EFGH"


def licences(count: int, *, start: int = 0) -> tuple[LicenceRecord, ...]:
    return tuple(LicenceRecord(serial(n), FACTURA, COMPANY, CONTACT, dt.date(2012, 1, 5),
                               "electronico", None, 2) for n in range(start, start + count))


def keys(count: int) -> tuple[KeyRecord, ...]:
    return tuple(KeyRecord(FACTURA, f"2012-DNFE-{n:06d}") for n in range(count))


def sheet(rows: list[list[str]]) -> bytes:
    """An .xlsx of `rows` under the header, every value a text cell (as a customer who typed
    "=HYPERLINK(...)" into a text-formatted column sends it)."""
    book = openpyxl.Workbook(write_only=True)
    ws = book.create_sheet("Sistemas")
    ws.append(HEADER)
    for r in rows:
        cells = []
        for value in r:
            cell = WriteOnlyCell(ws, value=value)
            cell.data_type = "s"
            cells.append(cell)
        ws.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def sheet_mail(rows: list[list[str]], *, sender: str = CONTACT,
               filename: str = "sistemas.xlsx") -> bytes:
    msg = EmailMessage(policy=email.policy.default)
    msg["From"] = f"Compras <{sender}>"
    msg["To"] = "claves@example.com"
    msg["Subject"] = SUBJECT
    msg["Date"] = format_datetime(TUESDAY_10)
    msg["Message-ID"] = make_msgid(domain="distribuidoranorte.com.mx")
    msg.set_content("Buenas tardes:\n\nLes envío la relación de nuestros sistemas.\n\nSaludos.\n")
    msg.add_attachment(sheet(rows), maintype="application",
                       subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                       filename=filename)
    return msg.as_bytes()


def rows_for(numbers) -> list[list[str]]:
    return [[COMPANY, "Compras", CONTACT, FACTURA, serial(n)] for n in numbers]


def harness(tmp_path, count: int, security: str = "", **limits: int) -> Harness:
    bot = Harness(tmp_path, security=security, registry=REGISTRY + licences(count),
                  keys=KEYS + keys(count))
    if limits:
        config = bot.app.config
        bot.app.config = dataclasses.replace(
            config, limits=dataclasses.replace(config.limits, **limits))
    return bot


def attachments(msg) -> dict[str, bytes]:
    return {part.get_filename(): part.get_content() for part in msg.iter_attachments()}


def book_rows(data: bytes) -> list[list]:
    book = openpyxl.load_workbook(io.BytesIO(data))  # not read-only: data types and styles
    [ws] = book.worksheets
    return [[c for c in row] for row in ws.iter_rows()]


def values(data: bytes) -> list[list[str]]:
    return [[c.value or "" for c in row] for row in book_rows(data)]


def text(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


# --- the throttle: once per mail, other mails only -------------------------------------------

def test_a_mail_with_many_rows_for_one_company_is_not_throttled_by_its_own_rows(tmp_path):
    # (The old per-row query scanned the mail's own rows but did not count them, its mail not
    # being decided yet; the grouped one leaves the mail out by its id: tests/test_throttle_queries.)
    bot = harness(tmp_path, 30, "max_requests_per_company = 3\nmax_requests_per_serial = 1\n")
    bot.run(sheet_mail(rows_for(range(25))))
    outcomes = [r.outcome for r in bot.requests()]
    assert outcomes == ["issued"] * 25
    assert bot.tasks() == []


def test_the_company_limit_still_counts_earlier_mails(tmp_path):
    bot = harness(tmp_path, 30, "max_requests_per_company = 2\n")
    for n in range(2):
        bot.run(sheet_mail(rows_for([n * 2, n * 2 + 1])),
                at=TUESDAY_10 + dt.timedelta(minutes=n))
    bot.run(sheet_mail(rows_for([10, 11, 12])), at=TUESDAY_10 + dt.timedelta(minutes=5))
    assert [r.outcome for r in bot.requests()] == ["issued"] * 4 + ["review"] * 3
    assert {t.reason for t in bot.tasks()} == {"throttled_company"}


def test_the_throttle_is_one_look_up_per_mail_not_one_per_row(tmp_path):
    bot = harness(tmp_path, 60)
    statements: list[str] = []
    engine = bot.app.store.engine

    def count(conn, cursor, statement, *args):
        if "mails.decided_at >=" in statement:  # the throttle's look-ups, old or new
            statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        bot.run(sheet_mail(rows_for(range(60))))
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert len(bot.requests()) == 60
    assert len(statements) == 1  # by serial and by company in one statement: not 60 of each


# --- the results spreadsheet ------------------------------------------------------------------

def test_a_reply_about_several_requests_carries_the_results_spreadsheet(tmp_path):
    bot = harness(tmp_path, 3)
    bot.run(sheet_mail(rows_for(range(3)) + [[COMPANY, "Compras", CONTACT, FACTURA,
                                              "NO-ES-SERIE"]]))
    [reply] = bot.replies()
    assert reply.template == "results"  # few rows: the text lists them as before
    reference = reply.message["X-Mailbot-Reference"]
    got = attachments(reply.message)
    assert list(got) == [f"resultados-{reference}.xlsx"]
    table = values(got[f"resultados-{reference}.xlsx"])
    assert table[0] == ["Nombre de la empresa", "Nombre del contacto", "Correo electrónico",
                        "Tipo de sistema", "Número de serie", "Origen", "Resultado",
                        "Clave nueva", "Observaciones"]
    assert [r[:5] for r in table[1:4]] == [[COMPANY, "Compras", CONTACT, FACTURA, serial(n)]
                                          for n in range(3)]
    assert [r[5] for r in table[1:4]] == [f"archivo sistemas.xlsx, fila {n}" for n in (2, 3, 4)]
    assert [r[6] for r in table[1:4]] == ["Clave emitida"] * 3
    assert all(r[7].startswith("2012-") for r in table[1:4]), table
    assert len({r[7] for r in table[1:4]}) == 3
    # the row we could not read comes last, with what to fix
    assert table[4][5:7] == ["archivo sistemas.xlsx, fila 5", "No se pudo leer"]
    assert "Número de serie" in table[4][8]
    # and each key in the sheet is the one the text gives for that serial
    body = " ".join(text(reply.message).split())
    for row in table[1:4]:
        assert f"{row[4]} " in body and f"Clave nueva: {row[7]}" in body


def test_a_single_request_gets_no_spreadsheet(tmp_path):
    bot = harness(tmp_path, 1)
    bot.run(sheet_mail(rows_for([0])))
    [reply] = bot.replies()
    assert reply.template == "keys_issued" and attachments(reply.message) == {}


HOSTILE = ["=HYPERLINK(\"http://evil.example/\",\"clic\")", "+52 55 1234 5678", "-1+2",
           "@SUM(A1:A9)", " =1+1", "\t=cmd|' /C calc'!A0", "\r=2*3", "\n+3", "  @x", "=",
           "Compañía normal", "2012-AAAA"]


def test_no_cell_of_the_results_spreadsheet_is_a_formula():
    rows = [{"company": value, "contact_name": value, "contact_email": value, "system": value,
             "serial": value, "source": "body", "outcome": "issued", "key": value,
             "recipient_masked": None, "redirected": False} for value in HOSTILE]
    data = results_sheet(rows, [], answers=Answers(), target_version="2012",
                         eligible_from=dt.date(2011, 7, 1))
    cells = book_rows(data)[1:]
    assert len(cells) == len(HOSTILE)
    for value, row in zip(HOSTILE, cells, strict=True):
        for cell in (row[0], row[1], row[2], row[3], row[4], row[7]):
            assert cell.data_type != "f", (value, cell.value)
            assert cell.value == value.replace("\r", "\n")  # a cell's line break is "\n"
            if value.lstrip()[:1] in ("=", "+", "-", "@"):
                assert cell.quotePrefix, value
    assert not any(c.data_type == "f" for row in book_rows(data) for c in row)


def test_formula_looking_customer_text_comes_back_as_text_end_to_end(tmp_path):
    bot = harness(tmp_path, 2)
    evil = "=HYPERLINK(\"http://evil.example/\",\"Ver claves\")"
    bot.run(sheet_mail([[evil, "@Compras", CONTACT, FACTURA, serial(0)],
                        [COMPANY, "+Compras", CONTACT, FACTURA, serial(1)]]))
    [reply] = bot.replies()
    [data] = attachments(reply.message).values()
    cells = book_rows(data)
    assert not any(c.data_type == "f" for row in cells for c in row)
    assert [c.value for c in cells[1][:2]] == [evil, "@Compras"]
    assert cells[2][1].value == "+Compras"


# --- a many-row answer: a summary and the spreadsheet ----------------------------------------

def test_a_mail_with_more_rows_than_rows_in_text_is_answered_with_a_summary(tmp_path):
    bot = harness(tmp_path, 30)
    numbers = list(range(24)) + [40, 41]  # 40, 41: not in the registry (review)
    bot.run(sheet_mail(rows_for(numbers)))
    [reply] = bot.replies()
    assert reply.template == "results_summary"
    body = " ".join(text(reply.message).split())
    assert "con 26 sistemas" in body and "Clave emitida: 24" in body
    assert "En revisión: 2" in body
    reference = reply.message["X-Mailbot-Reference"]
    assert f"resultados-{reference}.xlsx" in body
    assert serial(3) not in body  # no block per row
    html = reply.message.get_body(preferencelist=("html",)).get_content()
    assert f"resultados-{reference}.xlsx" in html and serial(3) not in html
    table = values(attachments(reply.message)[f"resultados-{reference}.xlsx"])
    assert [r[4] for r in table[1:]] == [serial(n) for n in numbers]
    assert [r[6] for r in table[1:]] == ["Clave emitida"] * 24 + ["En revisión"] * 2
    assert len({r[7] for r in table[1:25]}) == 24


def test_keys_for_another_contact_go_to_that_contact_only_also_in_the_spreadsheet(tmp_path):
    bot = harness(tmp_path, 30)
    bot.run(sheet_mail(rows_for(range(25)), sender="asistente@otrodominio.mx"))
    replies = {r.to: r for r in bot.replies()}
    assert set(replies) == {"asistente@otrodominio.mx", CONTACT}
    mine, theirs = replies["asistente@otrodominio.mx"], replies[CONTACT]
    assert theirs.template == mine.template == "results_summary"
    [their_sheet] = attachments(theirs.message).values()
    [my_sheet] = attachments(mine.message).values()
    their_keys = {r[7] for r in values(their_sheet)[1:]}
    assert len(their_keys) == 25 and all(k.startswith("2012-") for k in their_keys)
    assert {r[7] for r in values(my_sheet)[1:]} == {""}  # no key for the requester
    # what the requester wrote stays with the requester
    assert {tuple(r[:3]) + (r[5],) for r in values(their_sheet)[1:]} == {("", "", "", "")}
    assert [r[4] for r in values(their_sheet)[1:]] == [serial(n) for n in range(25)]
    assert not any(k in mine.message.as_string() for k in their_keys)
    assert "Recibimos una solicitud de claves" in text(theirs.message)


def test_a_thousand_row_mail_is_answered_under_the_output_cap(tmp_path):
    # Before the summary, every row's block (and installation line) went into the text and
    # the HTML: the renderer's 500,000-character cap refused the answer on every attempt.
    bot = harness(tmp_path, 1000, max_rows=1100, max_requests=1100, max_sheet_cells=20_000,
                  max_sheet_elements=60_000)
    bot.run(sheet_mail(rows_for(range(1000))))
    [reply] = bot.replies()
    assert reply.template == "results_summary"
    assert len(reply.message.as_bytes()) < 400_000
    [data] = attachments(reply.message).values()
    assert len(values(data)) == 1001
    with bot.app.store.transaction() as conn:
        assert conn.execute(sa.select(mails.c.status, mails.c.error)).one() == ("done", None)


# --- what will fail again is quarantined at once ---------------------------------------------

def mail_row(bot):
    with bot.app.store.transaction() as conn:
        return conn.execute(sa.select(mails)).one()


def failed_folder(bot) -> list[str]:
    folder = bot.root / "inbox" / ".failed" / "cur"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_mail_over_a_render_limit_is_quarantined_at_once_not_retried(tmp_path):
    # The case: one block per row for 1,000 rows (no summary, as before it existed)
    # passes the renderer's 500,000-character cap on every attempt, minutes each.
    bot = harness(tmp_path, 1000, max_rows=1100, max_requests=1100, max_sheet_cells=20_000,
                  max_sheet_elements=60_000)
    free = bot.app.rules.free_update
    if hasattr(free, "answers"):
        bot.app.rules = dataclasses.replace(bot.app.rules, free_update=dataclasses.replace(
            free, answers=dataclasses.replace(free.answers, rows_in_text=10**6)))
    bot.deliver(sheet_mail(rows_for(range(1000))))
    report = run_once(bot.app)
    assert len(report.errors) == 1 and "larger than 500000" in report.errors[0]
    row = mail_row(bot)
    assert (row.status, row.folder, row.outcome, row.attempts, row.filed) == (
        "quarantined", "failed", "quarantined", 1, True)
    assert "larger than 500000" in row.error
    assert len(failed_folder(bot)) == 1  # out of the inbox, in `failed`
    assert bot.replies() == [] and bot.requests() == []  # nothing was answered or kept
    [alert] = bot.alerts()
    assert "Correo en cuarentena" in alert and "no se reintenta" in alert
    run_once(bot.app)  # the next pass leaves it alone
    assert mail_row(bot).attempts == 1 and bot.replies() == []


def test_a_template_broken_for_every_mail_keeps_its_retries(tmp_path):
    bot = harness(tmp_path, 3)
    bot.app.renderer.max_output = 2000  # too small for the templates' own samples too
    bot.deliver(sheet_mail(rows_for(range(3))))
    run_once(bot.app)
    row = mail_row(bot)
    assert (row.status, row.attempts, row.filed) == ("received", 1, False)
    assert "limit exceeded" in row.error
    bot.app.renderer.max_output = 500_000  # fixed: the next pass answers it
    run_once(bot.app)
    assert mail_row(bot).status == "done" and len(bot.replies()) == 1


def test_a_bug_in_the_rules_on_this_mails_data_is_quarantined_at_once(tmp_path, monkeypatch):
    from mailbot.decide import free_update

    def broken(inst, licence, today):
        raise KeyError("users")

    monkeypatch.setattr(free_update, "installation_offer", broken)
    bot = harness(tmp_path, 2)
    bot.deliver(sheet_mail(rows_for(range(2))))
    run_once(bot.app)
    row = mail_row(bot)
    assert (row.status, row.folder, row.attempts) == ("quarantined", "failed", 1)
    assert "mailbot.decide" in row.notes and "KeyError" in row.error


def test_a_store_fault_keeps_its_retries(tmp_path, monkeypatch):
    bot = harness(tmp_path, 2)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bot.app.store, "add_request", full_disk)
    bot.deliver(sheet_mail(rows_for(range(2))))
    run_once(bot.app)
    row = mail_row(bot)
    assert (row.status, row.attempts, row.filed) == ("received", 1, False)
    run_once(bot.app)
    assert mail_row(bot).attempts == 2  # retried, as before
    monkeypatch.undo()
    run_once(bot.app)
    assert mail_row(bot).status == "done" and len(bot.replies()) == 1


def test_a_missing_template_is_the_installations_fault_and_keeps_its_retries(tmp_path):
    import shutil

    from mailbot.answer.render import Renderer

    templates = tmp_path / "templates"
    shutil.copytree(bot_templates(), templates)
    (templates / "keys_issued.txt.j2").unlink()
    bot = harness(tmp_path / "bot", 1)
    bot.app.renderer = Renderer(templates)
    bot.deliver(sheet_mail(rows_for([0])))
    run_once(bot.app)
    row = mail_row(bot)
    assert (row.status, row.attempts, row.filed) == ("received", 1, False)
    assert "template not found" in row.error


def bot_templates():
    from botconfig import ROOT

    return ROOT / "templates"


@pytest.mark.parametrize(("error", "again"), [
    (TemplateError("t/keys_issued.html.j2: limit exceeded: output larger than 500000 "
                   "characters"), True),
    (TemplateError("t/results.txt.j2, line 4: limit exceeded: template loops too long (too "
                   "many steps)"), True),
    (TemplateError("t/results.txt.j2: limit exceeded: template takes too long to render"),
     False),  # a busy machine: may pass next time
    (TemplateError("t/results.txt.j2: template not found"), False),
    (TemplateError("t/results.txt.j2, line 2: syntax error: unexpected '}'"), False),
    (OSError(28, "No space left on device"), False),
    (ConnectionResetError("the SMTP server went away"), False),
    (RuntimeError("raised outside the pure layers"), False),
])
def test_what_will_fail_again(tmp_path, error, again):
    from mailbot.run.quarantine import will_fail_again

    bot = harness(tmp_path, 1)
    assert (will_fail_again(bot.app, error) is not None) is again
