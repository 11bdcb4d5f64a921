"""Every [limits] size a mail can go past is a named problem, and what is left still reads right.

Each test sets one limit low and sends a small mail that goes past it: the attack of the
benchmark (benchmarks/hostile_mail.py) at a size a unit test can afford. Nothing here is timed.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import zipfile
from pathlib import Path

import pytest

from mailbot.config import LimitsConfig, from_mapping
from mailbot.model import Extraction, ParsedMail
from mailbot.read.extract import extract_sheet, read_mail
from mailbot.read.fields import _fold_chars, _words, fold
from mailbot.read.mime import decode_header_text, read_message
from mailbot.read.sheets import OverBudget, SheetBudget, iter_rows, sheet_budget
from mailbot.ruleset import load_rules

ROOT = Path(__file__).resolve().parent.parent
OWN = ("claves@example.com",)
SENDER = "rgonzalez@empresamuestra.com.mx"
SUBJECT = "Solicitud de claves para actualización sin costo"
BODY = ("Nombre de la empresa: Empresa de muestra S.A. de C.V.\r\n"
        "Nombre del contacto: Raul Gonzalez Rivera\r\n"
        f"Correo electrónico del contacto: {SENDER}\r\n"
        "Tipo de sistema: CONTPAQ i Factura electrónica\r\n"
        "Número de serie: AAAA-BBBB-CCCC-DDDD\r\n")
SMALL = LimitsConfig(max_header_bytes=2000, max_header_field_bytes=300, max_body_chars=1000,
                     max_html_bytes=1000, max_mime_parts=10, max_sheet_bytes=200_000,
                     max_sheet_cells=100, max_sheet_elements=1000, max_sheet_columns=20)
_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml"


@pytest.fixture(scope="module")
def rules():
    return load_rules(ROOT / "rules")


def raw_mail(body: str = BODY, *, subject: str = SUBJECT, from_: str = f"Raul <{SENDER}>",
             extra: str = "", content_type: str = "text/plain; charset=utf-8",
             cte: str = "8bit") -> bytes:
    return (f"From: {from_}\r\nTo: {OWN[0]}\r\nSubject: {subject}\r\n"
            f"Message-ID: <1@empresamuestra.com.mx>\r\n{extra}MIME-Version: 1.0\r\n"
            f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
            f"{body}").encode()


def read(rules, data: bytes, limits: LimitsConfig = SMALL) -> tuple[ParsedMail, Extraction]:
    return read_mail(data, rules, limits, OWN)


def codes(extraction: Extraction) -> list[str]:
    return [p.code for p in extraction.problems]


# --- headers ------------------------------------------------------------------------------------

def test_a_subject_over_the_field_limit_is_cut_and_named(rules):
    subject = "RE: " * 200 + SUBJECT  # 200 prefixes: one loop pass each, before the cut
    parsed, e = read(rules, raw_mail(subject=subject))
    assert "header_too_large" in codes(e)
    problem = next(p for p in e.problems if p.code == "header_too_large")
    assert "Subject" in problem.detail and "max_header_field_bytes" in problem.detail
    assert len(parsed.subject) <= SMALL.max_header_field_bytes
    assert e.sender == SENDER  # a cut Subject says nothing about who wrote


def test_a_subject_of_many_encoded_words_is_cut_before_it_is_decoded(rules):
    word = "=?utf-8?B?" + base64.b64encode(b"Solicitud ").decode() + "?="
    parsed, e = read(rules, raw_mail(subject="\r\n ".join([word] * 1000)))
    assert "header_too_large" in codes(e)
    assert parsed.subject.startswith("Solicitud Solicitud")
    assert len(parsed.subject) < SMALL.max_header_field_bytes


def test_a_from_over_the_field_limit_leaves_no_sender_to_answer(rules):
    mailboxes = ", ".join(f"Persona {n} <p{n}@x.mx>" for n in range(50))
    parsed, e = read(rules, raw_mail(from_=f"Raul <{SENDER}>, {mailboxes}"))
    assert "header_too_large" in codes(e)
    assert parsed.sender is None and e.sender is None
    assert e.ignored == "no_sender"  # filed for an operator, never answered
    assert parsed.from_addresses[0] == SENDER  # what was read still counts (own-mail checks)


def test_a_display_name_over_the_field_limit_hides_the_address_and_is_not_answered(rules):
    parsed, e = read(rules, raw_mail(from_=f'"{"Raul" * 200}" <{SENDER}>'))
    assert "header_too_large" in codes(e)
    assert e.sender is None and e.ignored == "no_sender"


def test_references_over_the_field_limit_are_cut(rules):
    ids = " ".join(f"<{n}@hilo.mx>" for n in range(100))  # 1,300 bytes: over the field limit
    parsed, e = read(rules, raw_mail(extra=f"References: {ids}\r\n"))
    assert codes(e) == ["header_too_large"]
    assert 0 < len(parsed.references) < 100
    assert parsed.references[0] == "<0@hilo.mx>"
    assert e.requests and e.sender == SENDER


def test_a_header_block_over_the_limit_drops_the_rest_and_the_sender(rules):
    extra = "".join(f"X-Relleno-{n}: valor\r\n" for n in range(200))
    parsed, e = read(rules, raw_mail(extra=extra))
    problems = [p for p in e.problems if p.code == "header_too_large"]
    assert problems and "max_header_bytes" in problems[0].detail
    assert "x-relleno-199" not in parsed.headers
    # A field left out might have been a second From: the sender is not known well enough.
    assert e.sender is None


def test_a_cut_auto_submitted_header_still_marks_an_auto_reply(rules):
    parsed, e = read(rules, raw_mail(extra="Auto-Submitted: auto-replied (" + "x" * 500 + ")\r\n"))
    assert "header_too_large" in codes(e)
    assert e.ignored == "auto_reply"


def test_a_mail_within_the_header_limits_is_read_as_before(rules):
    data = raw_mail()
    assert read(rules, data)[1] == read(rules, data, LimitsConfig())[1]
    assert read(rules, data)[1].problems == ()


# --- bodies -------------------------------------------------------------------------------------

def test_a_text_body_over_the_limit_is_cut_and_the_request_on_top_still_read(rules):
    parsed, e = read(rules, raw_mail(BODY + "Texto de relleno.\r\n" * 500))
    assert codes(e) == ["body_too_large"]
    assert "max_body_chars" in e.problems[0].detail
    assert len(parsed.text) <= SMALL.max_body_chars
    assert [r.serial for r in e.requests] == ["AAAA-BBBB-CCCC-DDDD"]


def test_a_base64_body_over_the_limit_is_cut_too(rules):
    encoded = base64.encodebytes((BODY + "Relleno.\r\n" * 2000).encode()).decode()
    parsed, e = read(rules, raw_mail(encoded, cte="base64"))
    assert codes(e) == ["body_too_large"]
    assert [r.serial for r in e.requests] == ["AAAA-BBBB-CCCC-DDDD"]


def test_a_text_part_of_a_multipart_over_the_limit_is_cut(rules):
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{BODY}"
            + "Relleno.\r\n" * 500 + f"--{boundary}--\r\n")
    parsed, e = read(rules, raw_mail(body, content_type=f'multipart/mixed; boundary="{boundary}"'))
    assert codes(e) == ["body_too_large"]
    assert len(parsed.text) <= SMALL.max_body_chars and e.requests


def test_a_body_cut_never_splits_a_character():
    text = "Señor: " + "ñ" * 2000  # two bytes each: a cut at a byte count may fall inside one
    parsed, problems = read_message(raw_mail(text), dataclasses.replace(SMALL,
                                                                       max_body_chars=1001))
    assert [p.code for p in problems] == ["body_too_large"]
    assert parsed.text.startswith("Señor: ñññ") and "\ufffd" not in parsed.text
    assert "Ã" not in parsed.text  # not read as Windows-1252 because of a broken last byte


def test_html_over_the_limit_is_cut_before_it_is_converted(rules):
    html = "<p>" + "</p><p>".join(BODY.splitlines()) + "</p>" + "<p>relleno</p>" * 500
    parsed, e = read(rules, raw_mail(html, content_type="text/html; charset=utf-8"))
    assert codes(e) == ["body_too_large"]
    assert "max_html_bytes" in e.problems[0].detail
    assert len(parsed.html) <= SMALL.max_html_bytes
    assert [r.serial for r in e.requests] == ["AAAA-BBBB-CCCC-DDDD"]


def test_a_line_of_separators_still_splits_the_fields_around_it(rules):
    line = "Tipo de sistema: CONTPAQ i Bancos" + ", " * 300 + ", Número de serie: AAAA-BBBB-CCCC-GGGG"
    body = BODY.split("Tipo")[0] + line + "\r\n"
    _, e = read(rules, raw_mail(body), LimitsConfig())
    assert [(r.system, r.serial) for r in e.requests] == [("CONTPAQ i Bancos",
                                                           "AAAA-BBBB-CCCC-GGGG")]


def test_more_mime_parts_than_allowed_are_not_read(rules):
    boundary = "b0undary"
    parts = "".join(f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nparte {n}\r\n"
                    for n in range(30))
    body = f"--{boundary}\r\nContent-Type: text/plain\r\n\r\n{BODY}\r\n" + parts + \
        f"--{boundary}--\r\n"
    parsed, e = read(rules, raw_mail(body, content_type=f'multipart/mixed; boundary="{boundary}"'))
    assert "too_many_parts" in codes(e)
    assert "max_mime_parts" in next(p.detail for p in e.problems if p.code == "too_many_parts")
    assert "parte 0" in parsed.text and "parte 29" not in parsed.text
    assert e.requests  # the first part was read


def test_attached_mails_share_the_body_limit(rules):
    inner = raw_mail(BODY + "Relleno.\r\n" * 60)
    boundary = "b0undary"
    body = f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nVer adjuntos.\r\n"
    for n in range(3):
        body += (f"--{boundary}\r\nContent-Type: message/rfc822\r\nContent-Disposition: "
                 f"attachment; filename=\"reenviado{n}.eml\"\r\n\r\n{inner.decode()}\r\n")
    body += f"--{boundary}--\r\n"
    _, e = read(rules, raw_mail(body, subject="RV: " + SUBJECT,
                                content_type=f'multipart/mixed; boundary="{boundary}"'))
    cut = [p for p in e.problems if p.code == "body_too_large"]
    assert cut and all(p.source.startswith("attachment:reenviado") for p in cut)
    assert "attachment:reenviado0.eml" not in {p.source for p in cut}  # the first fits
    assert e.requests[0].source == "attachment:reenviado0.eml"


# --- spreadsheets -------------------------------------------------------------------------------

def workbook(rows: str = "", styles: str | None = None, strings: str | None = None) -> bytes:
    """A minimal .xlsx: a header and one request, then `rows` (sheet XML)."""
    header = ["Nombre de la empresa", "Nombre del contacto", "Correo", "Tipo de sistema",
              "Número de serie"]
    values = ["Empresa", "Raul", SENDER, "CONTPAQ i Bancos", "AAAA-BBBB-CCCC-GGGG"]

    def row(number: int, cells: list[str]) -> str:
        return f'<row r="{number}">' + "".join(
            f'<c t="inlineStr"><is><t>{v}</t></is></c>' for v in cells) + "</row>"

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as book:
        rels = f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
        if styles is not None:
            rels += f'<Relationship Id="rId2" Type="{_REL}/styles" Target="styles.xml"/>'
            book.writestr("xl/styles.xml", f'<styleSheet xmlns="{_NS}">{styles}</styleSheet>')
        if strings is not None:
            rels += f'<Relationship Id="rId3" Type="{_REL}/sharedStrings" Target="sst.xml"/>'
            book.writestr("xl/sst.xml", f'<sst xmlns="{_NS}">{strings}</sst>')
        book.writestr("[Content_Types].xml", (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{_CT}.sheet.main+xml"/>'
            f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_CT}.worksheet+xml"/>'
            '</Types>'))
        book.writestr("_rels/.rels", (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
            '</Relationships>'))
        book.writestr("xl/workbook.xml", f'<workbook xmlns="{_NS}" xmlns:r="{_REL}"><sheets>'
                      '<sheet name="Hoja1" sheetId="1" r:id="rId1"/></sheets></workbook>')
        book.writestr("xl/_rels/workbook.xml.rels", (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'{rels}</Relationships>'))
        book.writestr("xl/worksheets/sheet1.xml", (
            f'<worksheet xmlns="{_NS}"><sheetData>{row(1, header)}{row(2, values)}{rows}'
            '</sheetData></worksheet>'))
    return out.getvalue()


def sheet(rules, payload: bytes, limits: LimitsConfig = SMALL, budget: SheetBudget | None = None):
    return extract_sheet("lista.xlsx", payload, rules, limits, sender=SENDER, budget=budget)


def test_a_workbook_within_the_sheet_limits_is_read(rules):
    requests, problems = sheet(rules, workbook())
    assert problems == [] and [r.serial for r in requests] == ["AAAA-BBBB-CCCC-GGGG"]


@pytest.mark.parametrize(("payload", "limit"), [
    # a row of cells without references, as openpyxl counts them: one after the other
    (workbook('<row r="3">' + "<c><v>1</v></c>" * 21 + "</row>"), "max_sheet_columns"),
    # one cell far to the right: openpyxl would pad the row to its column
    (workbook('<row r="3"><c r="XFD3"><v>1</v></c></row>'), "max_sheet_columns"),
    (workbook("".join(f'<row r="{n}"><c><v>1</v></c></row>' for n in range(3, 60))),
     "max_sheet_cells"),
    # shared strings count as cells, used or not (the 5.5 million strings of the catalogue)
    (workbook(strings="<si><t>x</t></si>" * 120), "max_sheet_cells"),
    # formatting costs openpyxl the most: at most a twentieth of the elements
    (workbook(styles="<cellXfs>" + '<xf numFmtId="0"/>' * 60 + "</cellXfs>"),
     "max_sheet_elements"),
    (workbook("<row r='3'/>" + " " * 300_000), "max_sheet_bytes"),
])
def test_a_workbook_past_a_sheet_limit_is_sheet_too_large(rules, payload, limit):
    requests, problems = sheet(rules, payload)
    assert requests == []
    assert [(p.code, p.source) for p in problems] == [("sheet_too_large", "attachment:lista.xlsx")]
    assert limit in problems[0].detail


def test_the_spreadsheets_of_one_mail_share_one_budget(rules):
    budget = sheet_budget(dataclasses.replace(SMALL, max_sheet_cells=20))
    first = sheet(rules, workbook(), budget=budget)  # 2 rows and 10 cells: 12 of the 20
    second = sheet(rules, workbook(), budget=budget)  # the same list again: 12 more
    assert first[1] == [] and first[0]
    assert [p.code for p in second[1]] == ["sheet_too_large"]


def test_twenty_attachments_cost_one_budget_in_read_mail(rules):
    boundary = "b0undary"
    payload = base64.encodebytes(workbook("<row r='3'/>" + " " * 60_000)).decode()
    body = f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nAdjunto.\r\n"
    for n in range(5):
        body += (f"--{boundary}\r\nContent-Type: application/vnd.openxmlformats-officedocument."
                 f"spreadsheetml.sheet\r\nContent-Disposition: attachment; filename=\"l{n}.xlsx\""
                 f"\r\nContent-Transfer-Encoding: base64\r\n\r\n{payload}")
    body += f"--{boundary}--\r\n"
    limits = dataclasses.replace(SMALL, max_mime_parts=1000, max_body_chars=100_000)
    _, e = read(rules, raw_mail(body, content_type=f'multipart/mixed; boundary="{boundary}"'),
                limits)
    assert [p.source for p in e.problems if p.code == "sheet_too_large"] == [
        f"attachment:l{n}.xlsx" for n in range(3, 5)]  # 60 KB each: three fit in 200,000 bytes


def test_a_csv_past_the_cell_or_column_limit_is_sheet_too_large(rules):
    header = "Empresa,Contacto,Correo,Sistema,Serie\n"
    wide = header + "," * 30 + "\n"
    many = header + "a,b\n" * 60
    for payload, limit in ((wide, "max_sheet_columns"), (many, "max_sheet_cells")):
        requests, problems = extract_sheet("lista.csv", payload.encode(), rules, SMALL)
        assert [p.code for p in problems] == ["sheet_too_large"], limit
        assert limit in problems[0].detail


def test_iter_rows_without_a_budget_reads_as_before():
    payload = workbook("".join(f'<row r="{n}"><c><v>1</v></c></row>' for n in range(3, 60)))
    assert len(list(iter_rows("lista.xlsx", payload, max_rows=100))) == 59
    with pytest.raises(OverBudget):
        list(iter_rows("lista.xlsx", payload, max_rows=100, budget=sheet_budget(SMALL)))


# --- the limits themselves, and what the faster paths must keep ---------------------------------

def test_the_new_limits_are_read_from_the_config_and_must_be_positive(tmp_path):
    from mailbot.errors import ConfigError

    loaded = from_mapping({"limits": {"max_sheet_cells": 5, "max_body_chars": 10}},
                          base_dir=tmp_path)
    assert loaded.limits.max_sheet_cells == 5 and loaded.limits.max_body_chars == 10
    with pytest.raises(ConfigError, match="max_header_bytes must be greater than zero"):
        from_mapping({"limits": {"max_header_bytes": 0}}, base_dir=tmp_path)


def test_base64_full_of_junk_decodes_what_is_there_and_says_so():
    parsed, _ = read_message(raw_mail("U2Vy!!!aWU6$$$IEFB\r\nQUEt\r\n", cte="base64"))
    assert parsed.text.startswith("Serie: AAA")
    assert any("invalid base64" in d for d in parsed.defects)


def test_adjacent_encoded_words_are_joined_before_decoding():
    encoded = "ó".encode()
    words = [f"=?utf-8?B?{base64.b64encode(bytes([b])).decode()}?=" for b in encoded] * 300
    assert decode_header_text(" ".join(words)) == "ó" * 300


@pytest.mark.parametrize("text", ["Número de serie: AAAA", "CONTPAQ i – Factura Electrónica.",
                                  "½ ﬁn ²", "plain ASCII, line: 12-34", "", "  \t "])
def test_folding_takes_the_same_words_on_the_fast_path_and_the_slow_one(text):
    slow = "".join(c for c, _ in _fold_chars(text))
    assert fold(text) == slow
    words = _words(text)
    assert " ".join(w for w, _, _ in words) == slow
    assert all(0 <= start < end <= len(text) for _, start, end in words)


def test_an_answer_subject_drops_any_number_of_reply_prefixes():
    from mailbot.answer.message import reply_subject

    assert reply_subject("RE: " * 5000 + "Re[2]: re (3):" + SUBJECT, "CLV-1") == f"RE: {SUBJECT}"
    assert reply_subject("RE: " * 5000, "CLV-1") == "Respuesta a tu solicitud (referencia CLV-1)"


@pytest.mark.parametrize("code", ["header_too_large", "body_too_large", "too_many_parts",
                                  "sheet_too_large"])
def test_the_customer_reads_in_spanish_why_a_part_was_too_large(rules, code):
    """Each new limit's problem has the 'too large' sentence, not the generic 'could not read
    this field' one, in the text and the HTML answer."""
    from mailbot.answer.render import Renderer
    from mailbot.answer.samples import sample_context

    renderer = Renderer(ROOT / "templates")
    context = sample_context("missing_data", rules)
    context["problems"] = [{"code": code, "field": None, "field_label": None, "source": "message",
                            "detail": "over the limit"}]
    rendered = renderer.render("missing_data", context)
    for part in (rendered.text, rendered.html):
        assert "Es demasiado grande para procesarlo de forma automática" in part
        assert "No pudimos leer este dato correctamente" not in part
