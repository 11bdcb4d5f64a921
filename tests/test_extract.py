"""Reading requests out of bodies, spreadsheets and whole mails."""

from __future__ import annotations

import dataclasses
import io
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
import xlsxwriter

from mailbot.config import LimitsConfig
from mailbot.model import FIELDS, Request
from mailbot.read.extract import NOTE_EMAIL_FROM_SENDER, extract_body, extract_sheet
from mailbot.ruleset import load_rules

ROOT = Path(__file__).resolve().parent.parent
SHEETS = ROOT / "tests" / "data" / "sheets"
SEED_SHEET = "Relacion de sistemas sin costo.xlsx"

COMPANY = "Empresa de muestra S.A. de C.V."
SHEET_COMPANY = "Empresa de muestra, S.A. de C.V."
CONTACT = "Raul Gonzalez Rivera"
EMAIL = "rgonzalez@empresamuestra.com.mx"
FACTURA = "CONTPAQ i Factura electrónica"

# The seed's example mail body, exactly as the procedure shows it.
SEED_BODY = """Buenas tardes

Me permito solicitar mis claves para la actualización sin costo de mi sistema.

Nombre de la empresa: Empresa de muestra S.A. de C.V.
Nombre del contacto: Raul Gonzalez Rivera
Correo electrónico del contacto: rgonzalez@empresamuestra.com.mx
Tipo de sistema: CONTPAQ i – Factura electrónica
Número de serie: Aaaa-Bbbb-Cccc-Dddd
"""

SEED_REQUEST = Request(company=COMPANY, contact_name=CONTACT, contact_email=EMAIL,
                       system=FACTURA, serial="AAAA-BBBB-CCCC-DDDD", source="body")


@pytest.fixture(scope="module")
def rules():
    return load_rules(ROOT / "rules")


def body(rules, text: str, sender: str | None = None):
    return extract_body(text, rules, sender=sender)


def codes(problems) -> list[tuple[str, str | None]]:
    return [(p.code, p.field) for p in problems]


# --- the body ---------------------------------------------------------------------------------

def test_the_seed_example_gives_exactly_the_expected_request(rules):
    assert body(rules, SEED_BODY, sender=EMAIL) == ([SEED_REQUEST], [])


@pytest.mark.parametrize("company, contact, email, system, serial", [
    ("NOMBRE DE LA EMPRESA", "NOMBRE DEL CONTACTO", "CORREO ELECTRONICO DEL CONTACTO",
     "TIPO DE SISTEMA", "NUMERO DE SERIE"),
    ("Empresa", "Contacto", "Correo", "Sistema", "Serie"),
    ("Razón social", "Nombre", "E-mail", "Sistema", "No. de serie"),
    ("Razon social", "Nombre de contacto", "Email", "Producto", "Núm. de serie"),
    ("Nombre de la empresa / Nombre de la persona física", "Persona de contacto",
     "Correo electrónico", "Tipo de sistema", "N° de serie"),
])
def test_every_label_spelling_is_read(rules, company, contact, email, system, serial):
    text = (f"{company}: {COMPANY}\n{contact}: {CONTACT}\n{email}: {EMAIL}\n"
            f"{system}: {FACTURA}\n{serial}: AAAA-BBBB-CCCC-DDDD\n")
    assert body(rules, text) == ([SEED_REQUEST], [])


def test_fields_may_come_in_any_order(rules):
    text = (f"Número de serie: AAAA-BBBB-CCCC-DDDD\nTipo de sistema: {FACTURA}\n"
            f"Correo: {EMAIL}\nEmpresa: {COMPANY}\nContacto: {CONTACT}\n")
    assert body(rules, text) == ([SEED_REQUEST], [])


def test_values_on_the_next_line_are_read(rules):
    text = (f"Nombre de la empresa:\n{COMPANY}\n\nNombre del contacto\n{CONTACT}\n\n"
            f"Correo electrónico del contacto:\n\n{EMAIL}\n\nTipo de sistema:\n{FACTURA}\n\n"
            f"Número de serie:\nAAAA-BBBB-CCCC-DDDD\n")
    assert body(rules, text) == ([SEED_REQUEST], [])


def test_bullets_dashes_and_tabs_are_understood(rules):
    text = (f"• Nombre de la empresa - {COMPANY}\n* Nombre del contacto – {CONTACT}\n"
            f"- Correo electrónico del contacto:\t{EMAIL}\n1. Tipo de sistema\t{FACTURA}\n"
            f"2. Número de serie    AAAA-BBBB-CCCC-DDDD\n")
    assert body(rules, text) == ([SEED_REQUEST], [])


@pytest.mark.parametrize("written", [
    "aaaa-bbbb-cccc-dddd", "aaaabbbbccccdddd", "AAAA BBBB CCCC DDDD", "aaaa.bbbb.cccc.dddd",
])
def test_serials_in_lower_case_spaced_or_without_separators_are_normalised(rules, written):
    text = SEED_BODY.replace("Aaaa-Bbbb-Cccc-Dddd", written)
    assert body(rules, text)[0][0].serial == "AAAA-BBBB-CCCC-DDDD"


def test_contact_email_written_as_name_and_address(rules):
    text = SEED_BODY.replace(EMAIL, f"Raul Gonzalez <{EMAIL.upper()}>")
    assert body(rules, text) == ([SEED_REQUEST], [])


def test_greeting_signature_and_prose_are_ignored(rules):
    text = ("Hola, buenas tardes.\nSolicito mis claves. Mi sistema es muy importante.\n\n"
            + SEED_BODY.split("\n\n", 2)[2]
            + "\nSaludos cordiales\nRaul Gonzalez Rivera\nGerente de sistemas\n"
            "Tel. 55 1234 5678\nE-mail: raul.personal@gmail.com\n")
    assert body(rules, text) == ([SEED_REQUEST], [])


def test_two_blocks_give_two_requests(rules):
    second = (f"\nNombre de la empresa: {COMPANY}\nNombre del contacto: {CONTACT}\n"
              f"Correo electrónico del contacto: {EMAIL}\nTipo de sistema: Nóminas\n"
              f"Número de serie: AAAA-BBBB-CCCC-FFFF\n")
    requests, problems = body(rules, SEED_BODY + second)
    assert problems == []
    assert [(r.system, r.serial, r.source) for r in requests] == [
        (FACTURA, "AAAA-BBBB-CCCC-DDDD", "body"),
        ("CONTPAQ i Nóminas", "AAAA-BBBB-CCCC-FFFF", "body")]


def test_later_blocks_inherit_company_and_contact(rules):
    text = (f"Empresa: {COMPANY}\nContacto: {CONTACT}\nCorreo: {EMAIL}\n\n"
            f"Sistema: Contabilidad\nSerie: AAAA-BBBB-CCCC-EEEE\n\n"
            f"Sistema: Bancos\nSerie: AAAA-BBBB-CCCC-GGGG\n")
    requests, problems = body(rules, text)
    assert problems == []
    assert [(r.company, r.contact_email, r.system) for r in requests] == [
        (COMPANY, EMAIL, "CONTPAQ i Contabilidad"), (COMPANY, EMAIL, "CONTPAQ i Bancos")]


def test_a_problem_in_the_second_block_names_the_block(rules):
    text = SEED_BODY + "\nTipo de sistema: Nóminas\nNúmero de serie: AAAA-BBBB\n"
    requests, problems = body(rules, text)
    assert requests == [SEED_REQUEST]
    assert codes(problems) == [("invalid_serial", "serial")]
    assert "block 2" in problems[0].detail and problems[0].source == "body"


def test_a_spreadsheet_pasted_into_the_body_gives_one_request_per_row(rules):
    text = ("Buenas tardes, estos son mis sistemas:\n\n"
            "Nombre de la empresa\tNombre del contacto\tCorreo electrónico\tTipo de sistema\t"
            "Número de serie\n"
            f"{COMPANY}\t{CONTACT}\t{EMAIL}\tCONTPAQ i Contabilidad\tAAAA-BBBB-CCCC-EEEE\n"
            f"{COMPANY}\t{CONTACT}\t{EMAIL}\tCONTPAQ i Bancos\tAAAA-BBBB-CCCC-GGGG\n\nGracias\n")
    requests, problems = body(rules, text)
    assert problems == []
    assert [r.serial for r in requests] == ["AAAA-BBBB-CCCC-EEEE", "AAAA-BBBB-CCCC-GGGG"]


def test_several_fields_on_one_line_are_split(rules):
    text = (f"Empresa: {COMPANY}; Contacto: {CONTACT}; Correo: {EMAIL}\n"
            "Sistema: Bancos, Serie: aaaa-bbbb-cccc-gggg\n")
    requests, problems = body(rules, text)
    assert problems == []
    assert [(r.company, r.contact_name, r.system, r.serial) for r in requests] == [
        (COMPANY, CONTACT, "CONTPAQ i Bancos", "AAAA-BBBB-CCCC-GGGG")]


def test_two_serials_on_one_line_give_one_request_each(rules):
    text = SEED_BODY.replace("Aaaa-Bbbb-Cccc-Dddd", "AAAA-BBBB-CCCC-DDDD, AAAA-BBBB-CCCC-HHHH")
    requests, problems = body(rules, text)
    assert problems == []
    assert [r.serial for r in requests] == ["AAAA-BBBB-CCCC-DDDD", "AAAA-BBBB-CCCC-HHHH"]


def test_an_invalid_serial_is_a_problem_on_the_serial_field(rules):
    requests, problems = body(rules, SEED_BODY.replace("Aaaa-Bbbb-Cccc-Dddd", "AAAA-BBBB-CCCC-DDD"))
    assert requests == []
    assert codes(problems) == [("invalid_serial", "serial")]
    assert "AAAA-BBBB-CCCC-DDD" in problems[0].detail
    assert problems[0].source == "body"


def test_an_unknown_system_names_what_was_written_and_the_catalogue(rules):
    requests, problems = body(rules, SEED_BODY.replace("CONTPAQ i – Factura electrónica",
                                                       "SAP Business One"))
    assert requests == []
    assert codes(problems) == [("unknown_system", "system")]
    assert "SAP Business One" in problems[0].detail
    assert all(name in problems[0].detail for name in rules.catalogue.names)


def test_an_invalid_contact_email_is_a_problem(rules):
    requests, problems = body(rules, SEED_BODY.replace(EMAIL, "rgonzalez en empresamuestra"),
                              sender=EMAIL)
    assert requests == []
    assert codes(problems) == [("invalid_email", "contact_email")]


@pytest.mark.parametrize("missing", [f for f in FIELDS if f != "contact_email"])
def test_each_missing_field_is_named(rules, missing):
    label = {"company": "Nombre de la empresa", "contact_name": "Nombre del contacto",
             "system": "Tipo de sistema", "serial": "Número de serie"}[missing]
    text = "\n".join(line for line in SEED_BODY.splitlines() if not line.startswith(label))
    requests, problems = body(rules, text, sender=EMAIL)
    assert requests == []
    assert codes(problems) == [("missing_field", missing)]
    assert problems[0].source == "body"
    assert label in problems[0].detail


def test_missing_contact_email_without_a_sender_is_named(rules):
    text = "\n".join(line for line in SEED_BODY.splitlines() if not line.startswith("Correo"))
    assert codes(body(rules, text)[1]) == [("missing_field", "contact_email")]


def test_missing_contact_email_is_taken_from_the_sender_with_a_note(rules):
    text = "\n".join(line for line in SEED_BODY.splitlines() if not line.startswith("Correo"))
    requests, problems = body(rules, text, sender="Raul@EmpresaMuestra.com.mx")
    assert problems == []
    assert requests[0].contact_email == "raul@empresamuestra.com.mx"
    assert requests[0].notes == (NOTE_EMAIL_FROM_SENDER,)


def test_several_missing_fields_each_get_a_problem(rules):
    requests, problems = body(rules, f"Empresa: {COMPANY}\nCorreo: {EMAIL}\n")
    assert requests == []
    assert codes(problems) == [("missing_field", "contact_name"), ("missing_field", "system"),
                               ("missing_field", "serial")]


def test_the_instructions_pasted_without_values_name_every_field(rules):
    text = ("Nombre de la empresa / Nombre de la persona física.\n\nNombre del contacto\n\n"
            "Correo electrónico del contacto (recomendable que sea el mismo que envía la "
            "solicitud)\n\nTipo de sistema\n\nNúmero de serie\n\nSaludos\n")
    requests, problems = body(rules, text)
    assert requests == []
    assert codes(problems) == [("missing_field", f) for f in FIELDS]


def test_a_label_followed_by_the_closing_has_no_value(rules):
    text = SEED_BODY.replace("Número de serie: Aaaa-Bbbb-Cccc-Dddd", "Número de serie:\n\nSaludos")
    assert codes(body(rules, text)[1]) == [("missing_field", "serial")]


@pytest.mark.parametrize("text", [
    "", "Buenas tardes, quiero mis claves.\n\nGracias", "Me interesa el sistema de nóminas.",
])
def test_no_labelled_data_gives_nothing_at_all(rules, text):
    assert body(rules, text, sender=EMAIL) == ([], [])


# --- spreadsheets -----------------------------------------------------------------------------

def sheet(rules, name: str, limits: LimitsConfig | None = None, **kwargs):
    return extract_sheet(name, (SHEETS / name).read_bytes(), rules, limits or LimitsConfig(),
                         **kwargs)


def test_the_seed_spreadsheet_gives_one_request_per_row(rules):
    requests, problems = sheet(rules, SEED_SHEET)
    assert problems == []
    assert requests[0] == Request(company=SHEET_COMPANY, contact_name=CONTACT,
                                  contact_email=EMAIL, system=FACTURA,
                                  serial="AAAA-BBBB-CCCC-DDDD",
                                  source=f"attachment:{SEED_SHEET}:row 2")
    assert [(r.system, r.serial, r.source) for r in requests[1:]] == [
        ("CONTPAQ i Contabilidad", "AAAA-BBBB-CCCC-EEEE", f"attachment:{SEED_SHEET}:row 3"),
        ("CONTPAQ i Nóminas", "AAAA-BBBB-CCCC-FFFF", f"attachment:{SEED_SHEET}:row 4"),
        ("CONTPAQ i Bancos", "AAAA-BBBB-CCCC-GGGG", f"attachment:{SEED_SHEET}:row 5"),
    ]


@pytest.mark.parametrize("name, rows, serials", [
    ("title_rows.xlsx", [5, 6], ["AAAA-BBBB-CCCC-DDDD", "AAAA-BBBB-CCCC-EEEE"]),
    ("reordered.xlsx", [2, 3, 4], ["AAAA-BBBB-CCCC-DDDD", "AAAA-BBBB-CCCC-EEEE",
                                   "AAAA-BBBB-CCCC-FFFF"]),
    ("second_sheet.xlsx", [2, 3], ["AAAA-BBBB-CCCC-FFFF", "AAAA-BBBB-CCCC-GGGG"]),
    ("blank_rows.xlsx", [3, 6], ["AAAA-BBBB-CCCC-DDDD", "AAAA-BBBB-CCCC-EEEE"]),
    ("padded.xlsx", [2, 3], ["AAAA-BBBB-CCCC-FFFF", "AAAA-BBBB-CCCC-GGGG"]),
    ("semicolon_cp1252.csv", [2, 3], ["AAAA-BBBB-CCCC-DDDD", "AAAA-BBBB-CCCC-EEEE"]),
])
def test_every_spreadsheet_layout_is_read(rules, name, rows, serials):
    requests, problems = sheet(rules, name)
    assert problems == []
    assert [r.source for r in requests] == [f"attachment:{name}:row {n}" for n in rows]
    assert [r.serial for r in requests] == serials
    assert all(r.company == SHEET_COMPANY and r.contact_email == EMAIL for r in requests)


def test_padded_values_are_cleaned_and_matched(rules):
    requests, _ = sheet(rules, "padded.xlsx")
    assert [(r.company, r.contact_name, r.system) for r in requests] == [
        (SHEET_COMPANY, CONTACT, "CONTPAQ i Nóminas"), (SHEET_COMPANY, CONTACT, "CONTPAQ i Bancos")]


def test_a_bad_row_is_a_problem_naming_the_row_and_good_rows_still_count(rules):
    requests, problems = sheet(rules, "bad_row.xlsx")
    assert [r.source for r in requests] == ["attachment:bad_row.xlsx:row 2",
                                            "attachment:bad_row.xlsx:row 5"]
    assert [(p.code, p.field, p.source) for p in problems] == [
        ("invalid_serial", "serial", "attachment:bad_row.xlsx:row 3"),
        ("unknown_system", "system", "attachment:bad_row.xlsx:row 4"),
    ]
    assert "row 3" in problems[0].detail and "row 4" in problems[1].detail


@pytest.mark.parametrize("name, code", [
    ("corrupt.xlsx", "unreadable_attachment"),
    ("encrypted.xlsx", "unreadable_attachment"),
    ("no_workbook.xls", "unreadable_attachment"),
    ("lista.numbers", "unsupported_attachment"),
])
def test_broken_or_unsupported_files_are_problems_not_crashes(rules, name, code):
    requests, problems = sheet(rules, name)
    assert requests == []
    assert [(p.code, p.source) for p in problems] == [(code, f"attachment:{name}")]
    assert ".xlsx" in problems[0].detail


def test_a_spreadsheet_without_a_header_row_is_no_request_data(rules):
    requests, problems = sheet(rules, "cell_types.xlsx")
    assert requests == []
    assert [(p.code, p.source) for p in problems] == [("no_request_data",
                                                        "attachment:cell_types.xlsx")]
    assert "Número de serie" in problems[0].detail


def test_an_attachment_over_the_size_limit_is_not_read(rules):
    limits = LimitsConfig(max_attachment_bytes=1000)
    requests, problems = sheet(rules, SEED_SHEET, limits)
    assert requests == []
    assert [p.code for p in problems] == ["attachment_too_large"]


def seed_like_xlsx(rows: int) -> bytes:
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True})
    s = book.add_worksheet()
    s.write_row(0, 0, ["Empresa", "Contacto", "Correo", "Sistema", "Serie"])
    for i in range(1, rows + 1):
        s.write_row(i, 0, [COMPANY, CONTACT, EMAIL, "Bancos", f"AAAA-BBBB-{i:04d}-GGGG"])
    book.close()
    return out.getvalue()


def test_rows_over_the_limit_are_a_problem_and_the_rows_before_it_count(rules):
    limits = LimitsConfig(max_rows=20)
    requests, problems = extract_sheet("muchos.xlsx", seed_like_xlsx(50), rules, limits)
    assert len(requests) == 19  # the header is one of the 20 rows read
    assert requests[-1].source == "attachment:muchos.xlsx:row 20"
    assert [(p.code, p.source) for p in problems] == [("too_many_rows", "attachment:muchos.xlsx")]


def test_a_sheet_without_contact_columns_takes_them_from_the_body_and_sender(rules):
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True})
    s = book.add_worksheet()
    s.write_row(0, 0, ["Empresa", "Sistema", "Serie"])
    s.write_row(1, 0, ["", "Bancos", "aaaa-bbbb-cccc-gggg"])
    book.close()
    requests, problems = extract_sheet("lista.xlsx", out.getvalue(), rules, LimitsConfig(),
                                       sender=EMAIL,
                                       defaults={"company": COMPANY, "contact_name": CONTACT})
    assert problems == []
    assert requests == [Request(company=COMPANY, contact_name=CONTACT, contact_email=EMAIL,
                                system="CONTPAQ i Bancos", serial="AAAA-BBBB-CCCC-GGGG",
                                source="attachment:lista.xlsx:row 2",
                                notes=(NOTE_EMAIL_FROM_SENDER,))]


def test_notes_under_the_list_are_not_requests(rules):
    text = ("Empresa;Contacto;Correo;Sistema;Serie\r\n"
            f"{COMPANY};{CONTACT};{EMAIL};Bancos;AAAA-BBBB-CCCC-GGGG\r\n"
            ";;;;\r\nNota: favor de enviar las claves al correo indicado;;;;\r\n")
    requests, problems = extract_sheet("lista.csv", text.encode("cp1252"), rules, LimitsConfig())
    assert problems == []
    assert len(requests) == 1


def test_a_header_with_no_rows_below_is_no_request_data(rules):
    requests, problems = extract_sheet("vacia.csv", b"Empresa,Sistema,Serie\n", rules,
                                       LimitsConfig())
    assert requests == []
    assert [p.code for p in problems] == ["no_request_data"]


# --- whole mails ------------------------------------------------------------------------------

OWN = ("claves@example.com",)
SUBJECT = "Solicitud de claves para actualización sin costo"
XLSX_TYPE = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")


def mail(text: str | None = SEED_BODY, *, subject: str = SUBJECT,
         sender: str = f"Raul Gonzalez <{EMAIL}>", html: str | None = None,
         attachments: tuple[tuple[str, bytes, tuple[str, str]], ...] = (),
         headers: dict[str, str] | None = None) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = OWN[0]
    m["Subject"] = subject
    m["Message-ID"] = make_msgid(domain="empresamuestra.com.mx")
    for name, value in (headers or {}).items():
        m[name] = value
    if text is not None:
        m.set_content(text)
        if html is not None:
            m.add_alternative(html, subtype="html")
    elif html is not None:
        m.set_content(html, subtype="html")
    for filename, payload, (maintype, subtype) in attachments:
        m.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename)
    return m.as_bytes()


def read(rules, data: bytes, limits: LimitsConfig | None = None):
    from mailbot.read.extract import read_mail

    return read_mail(data, rules, limits or LimitsConfig(), OWN)[1]


def sheet_attachment(name: str = SEED_SHEET) -> tuple[str, bytes, tuple[str, str]]:
    return (name, (SHEETS / name).read_bytes(), XLSX_TYPE)


def test_read_mail_reads_the_seed_example(rules):
    e = read(rules, mail())
    assert (e.kind, e.ignored, e.sender, e.subject) == ("free_update", None, EMAIL, SUBJECT)
    assert e.requests == (SEED_REQUEST,)
    assert e.problems == ()


def test_read_mail_reads_an_outlook_html_only_mail_with_a_table(rules):
    html = ("<html><body><p class=MsoNormal>Buenas tardes&nbsp;</p><table>"
            f"<tr><td><p class=MsoNormal><b>Nombre de la empresa:</b></p></td><td>{COMPANY}</td></tr>"
            f"<tr><td>Nombre del contacto:</td><td>{CONTACT}</td></tr>"
            f"<tr><td>Correo electr&oacute;nico del contacto:</td><td><a href=\"mailto:{EMAIL}\">"
            f"{EMAIL}</a></td></tr>"
            "<tr><td>Tipo de sistema:</td><td>CONTPAQ i &ndash; Factura electr&oacute;nica</td></tr>"
            "<tr><td>N&uacute;mero de serie:</td><td>aaaa-bbbb-cccc-dddd</td></tr>"
            "</table></body></html>")
    e = read(rules, mail(None, html=html))
    assert e.requests == (SEED_REQUEST,)
    assert e.problems == ()


def test_read_mail_ignores_the_quoted_history_of_a_reply(rules):
    text = ("Número de serie: AAAA-BBBB-CCCC-HHHH\nTipo de sistema: Bancos\n"
            f"Empresa: {COMPANY}\nContacto: {CONTACT}\n\n"
            "El lun, 3 oct 2022 a las 10:00, Claves <claves@example.com> escribió:\n"
            + "".join(f"> {line}\n" for line in SEED_BODY.splitlines()))
    e = read(rules, mail(text, subject="RE: " + SUBJECT))
    assert [r.serial for r in e.requests] == ["AAAA-BBBB-CCCC-HHHH"]
    assert e.requests[0].contact_email == EMAIL
    assert e.requests[0].notes == (NOTE_EMAIL_FROM_SENDER,)


def test_read_mail_reads_the_seed_spreadsheet_and_takes_the_body_as_context(rules):
    text = ("Buenas tardes\n\nMe permito solicitar las claves de actualización sin costo de "
            "nuestros sistemas, anexo un archivo.\n\nGracias\nRaul Gonzalez\nE-mail: "
            f"{EMAIL}\n")
    e = read(rules, mail(text, attachments=(sheet_attachment(),)))
    assert e.problems == ()
    assert [r.source for r in e.requests] == [f"attachment:{SEED_SHEET}:row {n}"
                                              for n in (2, 3, 4, 5)]


def test_read_mail_keeps_one_request_per_serial(rules):
    e = read(rules, mail(SEED_BODY, attachments=(sheet_attachment(),)))
    assert [r.serial for r in e.requests] == ["AAAA-BBBB-CCCC-DDDD", "AAAA-BBBB-CCCC-EEEE",
                                              "AAAA-BBBB-CCCC-FFFF", "AAAA-BBBB-CCCC-GGGG"]
    assert e.requests[0].source == "body"
    assert any("AAAA-BBBB-CCCC-DDDD" in note for note in e.notes)


def test_read_mail_reports_a_bad_row_and_keeps_the_good_ones(rules):
    e = read(rules, mail("Anexo la lista.", attachments=(sheet_attachment("bad_row.xlsx"),)))
    assert len(e.requests) == 2
    assert [p.source for p in e.problems] == ["attachment:bad_row.xlsx:row 3",
                                              "attachment:bad_row.xlsx:row 4"]


@pytest.mark.parametrize("name, code", [
    ("no_workbook.xls", "unreadable_attachment"),
    ("lista.numbers", "unsupported_attachment"),
    ("corrupt.xlsx", "unreadable_attachment"),
    ("encrypted.xlsx", "unreadable_attachment"),
])
def test_read_mail_explains_an_unusable_spreadsheet_instead_of_no_request_data(rules, name, code):
    e = read(rules, mail("Anexo la lista.\n\nGracias", attachments=(
        (name, (SHEETS / name).read_bytes(), ("application", "octet-stream")),)))
    assert e.requests == ()
    assert [(p.code, p.source) for p in e.problems] == [(code, f"attachment:{name}")]


def test_read_mail_with_the_subject_but_no_data_is_no_request_data(rules):
    e = read(rules, mail("Buenas tardes, quiero mis claves.\n\nGracias", attachments=(
        ("factura.pdf", b"%PDF-1.4\n", ("application", "pdf")),)))
    assert e.requests == ()
    assert [p.code for p in e.problems] == ["no_request_data", "unsupported_attachment"]
    assert "factura.pdf" in e.problems[0].detail
    assert e.problems[1].source == "attachment:factura.pdf"


def test_a_file_beside_a_request_in_the_body_is_no_problem(rules):
    e = read(rules, mail(SEED_BODY, attachments=(
        ("constancia.pdf", b"%PDF-1.4\n", ("application", "pdf")),)))
    assert len(e.requests) == 1
    assert e.problems == ()


def test_read_mail_names_the_missing_fields_of_a_request_mail(rules):
    e = read(rules, mail(f"Empresa: {COMPANY}\nSistema: Bancos\n"))
    assert [(p.code, p.field) for p in e.problems] == [("missing_field", "contact_name"),
                                                       ("missing_field", "serial")]


def test_read_mail_without_a_request_subject_reports_no_problems_for_a_signature(rules):
    e = read(rules, mail("Hola, ¿a qué hora abren?\n\nRaul\nE-mail: otro@empresa.com",
                         subject="Pregunta"))
    assert (e.kind, e.requests, e.problems) == (None, (), ())


def test_read_mail_over_the_size_limit_is_classified_but_not_read(rules):
    e = read(rules, mail(), LimitsConfig(max_message_bytes=200))
    assert e.kind == "free_update" and e.sender == EMAIL
    assert e.requests == ()
    assert [p.code for p in e.problems] == ["message_too_large"]


def test_read_mail_keeps_the_first_requests_over_the_limit(rules):
    e = read(rules, mail(attachments=(sheet_attachment(),)), LimitsConfig(max_requests=2))
    assert [r.serial for r in e.requests] == ["AAAA-BBBB-CCCC-DDDD", "AAAA-BBBB-CCCC-EEEE"]
    assert [p.code for p in e.problems] == ["too_many_requests"]


def test_read_mail_reads_at_most_max_attachments(rules):
    e = read(rules, mail("Anexo las listas.", attachments=(
        sheet_attachment("title_rows.xlsx"), sheet_attachment("second_sheet.xlsx"))),
        LimitsConfig(max_attachments=1))
    assert [r.serial for r in e.requests] == ["AAAA-BBBB-CCCC-DDDD", "AAAA-BBBB-CCCC-EEEE"]
    assert [p.code for p in e.problems] == ["too_many_attachments"]


def test_read_mail_does_not_extract_from_an_ignored_mail(rules):
    e = read(rules, mail(headers={"Auto-Submitted": "auto-replied"}))
    assert e.ignored is not None
    assert (e.requests, e.problems) == ((), ())


@pytest.mark.parametrize("data", [
    b"", b"\x00\xff\xfe garbage", b"Subject: " + SUBJECT.encode() + b"\n", b"From:\n\n\n",
    b"Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\nhola",
])
def test_read_mail_never_raises(rules, data):
    e = read(rules, data)
    assert all(p.code != "internal_error" for p in e.problems)


def test_an_unexpected_failure_becomes_an_internal_error_problem(rules, monkeypatch, caplog):
    import mailbot.read.extract as extract

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(extract, "extract_sheet", boom)
    e = read(rules, mail(SEED_BODY, attachments=(sheet_attachment(),)))
    assert e.requests == (SEED_REQUEST,)
    assert [(p.code, p.source) for p in e.problems] == [
        ("internal_error", f"extract_sheet {SEED_SHEET}")]
    assert "extract_sheet" in caplog.text


def test_a_workbook_misnamed_xls_is_read_by_its_content(rules):
    payload = (SHEETS / SEED_SHEET).read_bytes()
    e = read(rules, mail("Anexo la lista.", attachments=(
        ("lista.xls", payload, ("application", "vnd.ms-excel")),)))
    assert len(e.requests) == 4
    assert e.requests[0].source == "attachment:lista.xls:row 2"


def test_read_mail_reads_a_request_forwarded_from_outlook(rules):
    text = ("Les reenvío la solicitud de mi jefe.\n\nAna\n\n"
            f"De: Raul Gonzalez <{EMAIL}>\nEnviado: lunes, 3 de octubre de 2022 10:00\n"
            f"Para: Ana Lopez <ana@empresamuestra.com.mx>\nAsunto: {SUBJECT}\n\n" + SEED_BODY)
    e = read(rules, mail(text, subject="RV: " + SUBJECT,
                         sender="Ana Lopez <ana@empresamuestra.com.mx>"))
    assert e.requests == (SEED_REQUEST,)


def test_read_mail_reads_a_request_forwarded_as_an_attached_mail(rules):
    inner = mail(SEED_BODY, sender=f"Raul Gonzalez <{EMAIL}>")
    e = read(rules, mail("Va adjunto el correo del cliente.", subject="RV: " + SUBJECT,
                         sender="Soporte <soporte@distribuidor.mx>",
                         attachments=(("Solicitud.eml", inner, ("application", "octet-stream")),)))
    assert e.requests == (dataclasses.replace(SEED_REQUEST, source="attachment:Solicitud.eml"),)


def test_read_mail_never_reads_our_own_answer_attached_back(rules):
    ours = mail(SEED_BODY, sender=f"Claves <{OWN[0]}>")
    e = read(rules, mail("Les reenvío su respuesta, no entiendo.", attachments=(
        ("Respuesta.eml", ours, ("application", "octet-stream")),)))
    assert e.requests == ()
    assert [p.code for p in e.problems] == ["no_request_data"]
