"""A reseller's many-row spreadsheet end to end (issue 10 §1, issue 11 §5): the throttle looks
once per mail at other mails only, the answer carries a results spreadsheet (never a formula),
a many-row answer is a summary that points to it, and a mail that will fail again is
quarantined at once instead of being retried."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import openpyxl
import sqlalchemy as sa
from test_unlock_flow import FACTURA, KEYS, REGISTRY, TUESDAY_10, Harness

from mailbot.ops.imports import KeyRecord, LicenceRecord

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
    book = openpyxl.Workbook(write_only=True)
    ws = book.create_sheet("Sistemas")
    ws.append(HEADER)
    for r in rows:
        ws.append(r)
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


def harness(tmp_path, count: int, security: str = "", limits: str = "") -> Harness:
    bot = Harness(tmp_path, security=security, registry=REGISTRY + licences(count),
                  keys=KEYS + keys(count))
    if limits:
        bot.app.config = bot.app.config.__class__(**{
            **bot.app.config.__dict__,
            "limits": bot.app.config.limits.__class__(**{
                **bot.app.config.limits.__dict__, **limits})})
    return bot


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
    assert len(statements) == 2  # by serial, by company: not 60 of each
