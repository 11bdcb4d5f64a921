"""Reading rows out of whatever spreadsheet a customer attaches."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import xlsxwriter

from mailbot.read.sheets import (
    EncryptedSheet,
    SheetError,
    SheetRow,
    SheetTooLarge,
    TooManyRows,
    UnreadableSheet,
    UnsupportedSheet,
    clean_cell,
    iter_rows,
    sniff_delimiter,
)

SHEETS = Path(__file__).resolve().parent / "data" / "sheets"
SEED = "Relacion de sistemas sin costo.xlsx"
HEADER = ("Nombre de la empresa", "Nombre del contacto", "Correo electrónico", "Tipo de sistema",
          "Número de serie")


def rows(name: str, *, max_rows: int = 100) -> list[SheetRow]:
    return list(iter_rows(name, (SHEETS / name).read_bytes(), max_rows=max_rows))


def xlsx_with_rows(count: int) -> bytes:
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True})
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, HEADER)
    for i in range(1, count):
        sheet.write_row(i, 0, ["Empresa", "Raul", "r@x.mx", "Bancos", f"AAAA-BBBB-CCCC-{i:04d}"])
    book.close()
    return out.getvalue()


def test_the_seed_spreadsheet_reads_as_written():
    got = rows(SEED)
    assert [r.row_number for r in got] == [1, 2, 3, 4, 5]
    assert got[0] == SheetRow("Hoja1", 1, HEADER)
    assert got[1].cells == ("Empresa de muestra, S.A. de C.V.", "Raul Gonzalez Rivera",
                            "rgonzalez@empresamuestra.com.mx", "CONTPAQ i Factura electrónica",
                            "AAAA-BBBB-CCCC-DDDD")
    assert got[4].cells[3:] == ("CONTPAQ i Bancos", "AAAA-BBBB-CCCC-GGGG")


def test_row_numbers_are_the_spreadsheets_own_and_blank_rows_are_skipped():
    assert [r.row_number for r in rows("blank_rows.xlsx")] == [1, 3, 6]
    assert [r.row_number for r in rows("title_rows.xlsx")] == [1, 2, 4, 5, 6]


def test_every_sheet_is_read_in_order():
    got = rows("second_sheet.xlsx")
    assert [(r.sheet, r.row_number) for r in got] == [
        ("Instrucciones", 1), ("Sistemas", 1), ("Sistemas", 2), ("Sistemas", 3)]


def test_cells_are_clean_strings_with_trailing_empty_cells_dropped():
    header, first, second = rows("cell_types.xlsx")
    assert first.cells == ("12", "12", "2011-07-01", "2012-01-15 09:30:00", "TRUE", "", "hola")
    assert second.cells == ("1.5", "1234567890123", "2011-06-30", "", "FALSE")
    assert second.cell(10) == ""


def test_padded_values_lose_their_outer_spaces_and_non_breaking_spaces():
    header, first, _ = rows("padded.xlsx")
    assert header.cells == HEADER
    assert first.cells[1] == "Raul Gonzalez Rivera"
    assert first.cells[4] == "aaaa bbbb cccc ffff"


def test_semicolon_csv_in_windows_1252_is_read():
    got = rows("semicolon_cp1252.csv")
    assert got[0].cells == HEADER
    assert got[1].cells[3] == "CONTPAQ i Factura electrónica"
    assert [r.row_number for r in got] == [1, 2, 3]


@pytest.mark.parametrize("encoding, delimiter", [
    ("utf-8", ","), ("utf-8-sig", ";"), ("utf-16", "\t"), ("cp1252", ","),
])
def test_csv_in_any_common_encoding_and_delimiter(encoding, delimiter):
    text = delimiter.join(["Número de serie", "Tipo de sistema", "Empresa"]) + "\r\n"
    text += delimiter.join(["aaaa-bbbb-cccc-dddd", "Nóminas", '"Muestra, S.A."' if delimiter == ","
                            else "Muestra, S.A."]) + "\r\n"
    got = list(iter_rows("lista.csv", text.encode(encoding), max_rows=10))
    assert got[0].cells == ("Número de serie", "Tipo de sistema", "Empresa")
    assert got[1].cells == ("aaaa-bbbb-cccc-dddd", "Nóminas", "Muestra, S.A.")


def test_sniff_delimiter_prefers_the_one_that_splits_lines_consistently():
    assert sniff_delimiter("a;b;c\n1;2,5;3\n") == ";"
    assert sniff_delimiter("a,b\n1,2\n") == ","
    assert sniff_delimiter("a\tb\n1\t2\n") == "\t"
    assert sniff_delimiter("solo una columna\n") == ","


@pytest.mark.parametrize("value, text", [
    (None, ""), (7, "7"), (7.0, "7"), (0.25, "0.25"), (True, "TRUE"), ("  x\u00a0", "x"),
])
def test_clean_cell(value, text):
    assert clean_cell(value) == text


def test_a_corrupt_workbook_is_unreadable():
    with pytest.raises(UnreadableSheet, match="damaged"):
        rows("corrupt.xlsx")


def test_a_password_protected_workbook_is_reported_as_encrypted():
    with pytest.raises(EncryptedSheet, match="password"):
        rows("encrypted.xlsx")


ERP_REPORT = [
    ("Reporte", 1, ("SISTEMA ADMINISTRATIVO - Reporte de licencias",)),
    ("Reporte", 2, ("Fecha:", "2012-01-16")),  # a date cell, shown as the customer sees it
    ("Reporte", 4, ("Razón social", "Contacto", "Correo", "Tipo sistema", "No de serie")),
    ("Reporte", 5, ("Comercializadora del Bajío, S.A. de C.V.", "Ana Torres",
                    "atorres@cbajio.com.mx", "CONTPAQ i Nóminas", "AAAA-BBBB-CCCC-1111")),
    ("Reporte", 6, ("Comercializadora del Bajío, S.A. de C.V.", "Ana Torres",
                    "atorres@cbajio.com.mx", "Bancos", "aaaa bbbb cccc 2222")),
    ("Reporte", 7, ("Transportes Villa, S.C.", "Luis Villa", "lvilla@tvilla.mx", "Contabilidad",
                    "AAAABBBBCCCC3333")),
]


def test_an_old_excel_97_2003_workbook_is_read_and_its_hidden_sheet_is_not():
    assert [(r.sheet, r.row_number, r.cells) for r in rows("old.xls")] == ERP_REPORT


def test_an_xls_named_xlsx_is_still_recognised_by_its_content():
    payload = (SHEETS / "old.xls").read_bytes()
    assert [r.cells for r in iter_rows("lista.xlsx", payload, max_rows=10)] == [
        r[2] for r in ERP_REPORT]


def test_a_libreoffice_ods_is_read_without_its_hidden_list_or_trailing_empty_rows():
    got = rows("list.ods")
    assert [(r.sheet, r.row_number) for r in got] == [("Hoja1", n) for n in (1, 2, 3, 4)]
    assert got[0].cells[:5] == HEADER
    assert got[3].cells == ("Empresa de muestra, S.A. de C.V.", "Raul Gonzalez Rivera",
                            "rgonzalez@empresamuestra.com.mx", "CONTPAQ i Nóminas",
                            "AAAA-BBBB-CCCC-FFFF", "Sí", "Sí")  # a repeated cell is two cells


def test_hidden_and_very_hidden_excel_sheets_give_no_rows():
    got = rows("hidden_lists.xlsx")
    assert {r.sheet for r in got} == {"Solicitud"}
    assert [r.row_number for r in got] == [1, 2, 3]


def test_an_office_file_without_a_workbook_is_unreadable():
    with pytest.raises(UnreadableSheet, match=r"without a workbook.*save it as \.xlsx or \.csv"):
        rows("no_workbook.xls")


def test_apple_numbers_is_unsupported_with_a_hint():
    with pytest.raises(UnsupportedSheet, match=r"Numbers.*save it as \.xlsx or \.csv"):
        rows("lista.numbers")


def test_a_reseller_list_of_1000_rows_is_read_whole():
    got = rows("reseller_1000.xlsx", max_rows=10_000)
    assert len(got) == 1001
    assert got[-1].cells == ("1000", "Cliente 1000, S.A. de C.V.", "Contacto 1000",
                             "contacto1000@cliente1000.com.mx", "CONTPAQ i Nóminas",
                             "RSLR-0000-1000-ABCD")


@pytest.mark.parametrize("name, payload", [
    ("lista.xlsx", b"this is not a workbook"),
    ("lista.xlsx", b""),
    ("lista.xlsx", b"PK\x03\x04garbage"),
])
def test_anything_else_named_xlsx_is_unreadable(name, payload):
    with pytest.raises(UnreadableSheet):
        list(iter_rows(name, payload, max_rows=10))


def test_a_zip_that_is_not_a_workbook_is_unreadable():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("hola.txt", "hola")
    with pytest.raises(UnreadableSheet):
        list(iter_rows("lista.xlsx", out.getvalue(), max_rows=10))


@pytest.mark.parametrize("name", ["factura.pdf", "lista.numbers", "foto.jpg"])
def test_other_files_are_unsupported(name):
    with pytest.raises(UnsupportedSheet):
        list(iter_rows(name, b"%PDF-1.4 whatever", max_rows=10))


def test_a_zip_bomb_is_refused_before_decompressing():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
        z.writestr("xl/worksheets/sheet1.xml", b"\x00" * (5 * 1024 * 1024))
    assert len(out.getvalue()) < 100_000
    with pytest.raises(SheetTooLarge, match="expands to"):
        list(iter_rows("bomba.xlsx", out.getvalue(), max_rows=10,
                       max_uncompressed_bytes=1024 * 1024))


def test_too_many_rows_are_reported_after_the_rows_within_the_limit():
    payload = xlsx_with_rows(30)
    got: list[SheetRow] = []
    with pytest.raises(TooManyRows, match="more than 10 rows"):
        for row in iter_rows("grande.xlsx", payload, max_rows=10):
            got.append(row)
    assert [r.row_number for r in got] == list(range(1, 11))


def test_too_many_csv_rows_are_reported_too():
    payload = ("a,b\n" * 50).encode()
    with pytest.raises(TooManyRows):
        list(iter_rows("grande.csv", payload, max_rows=49))
    assert len(list(iter_rows("grande.csv", payload, max_rows=50))) == 50


def test_every_failure_is_a_sheet_error():
    for cls in (UnreadableSheet, EncryptedSheet, UnsupportedSheet, SheetTooLarge, TooManyRows):
        assert issubclass(cls, SheetError)
    assert SheetError("x").detail == "x"


# --- hostile workbooks in front of calamine (it builds each sheet as one block from A1) -------

def _budget():
    from mailbot.config import LimitsConfig
    from mailbot.read.sheets import sheet_budget
    return sheet_budget(LimitsConfig())


def _openpyxl_two_corners(row: int, column: int) -> bytes:
    import openpyxl
    book = openpyxl.Workbook()
    book.active["A1"] = "x"
    book.active.cell(row=row, column=column, value="y")
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _xls_two_corners(row: int, column: int) -> bytes:
    import xlwt
    book = xlwt.Workbook()
    sheet = book.add_sheet("a")
    sheet.write(0, 0, "x")
    sheet.write(row, column, "y")
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _ods(rows_xml: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", (
            '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:'
            'office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
            'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body>'
            '<office:spreadsheet><table:table table:name="H">' + rows_xml
            + "</table:table></office:spreadsheet></office:body></office:document-content>"))
        z.writestr("META-INF/manifest.xml", (
            '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:'
            '1.0"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/'
            'vnd.oasis.opendocument.spreadsheet"/></manifest:manifest>'))
    return out.getvalue()


_VALUE = '<table:table-cell office:value-type="string"><text:p>x</text:p></table:table-cell>'


@pytest.mark.parametrize("name, payload", [
    # A 6 KB .xlsx with cells in A1 and IV1048576: calamine would abort the process.
    ("esquinas.xlsx", _openpyxl_two_corners(1_048_576, 256)),
    # A 6 KB .xls with cells in A1 and IV65536: 1 GB in calamine.
    ("esquinas.xls", _xls_two_corners(65_535, 255)),
    # 800 bytes of .ods: one value cell repeated in a million rows.
    ("filas.ods", _ods(f'<table:table-row table:number-rows-repeated="1000000">{_VALUE}'
                       "</table:table-row>")),
    # ... and in 1,000 columns of 100,000 rows.
    ("ambos.ods", _ods('<table:table-row table:number-rows-repeated="100000">'
                       + _VALUE.replace("<table:table-cell ", '<table:table-cell '
                                        'table:number-columns-repeated="200" ')
                       + "</table:table-row>")),
])
@pytest.mark.parametrize("budgeted", [True, False])
def test_a_sheet_that_would_expand_past_the_budget_is_refused_before_reading(name, payload,
                                                                            budgeted):
    from mailbot.read.sheets import OverBudget
    assert len(payload) < 10_000
    with pytest.raises(OverBudget, match="max_sheet_cells"):
        list(iter_rows(name, payload, max_rows=10, budget=_budget() if budgeted else None))


def test_an_ods_row_of_too_many_repeated_values_is_too_wide():
    from mailbot.read.sheets import OverBudget
    payload = _ods("<table:table-row>" + _VALUE.replace(
        "<table:table-cell ", '<table:table-cell table:number-columns-repeated="16384" ')
        + "</table:table-row>")
    with pytest.raises(OverBudget, match="max_sheet_columns"):
        list(iter_rows("ancha.ods", payload, max_rows=10, budget=_budget()))


def test_a_million_empty_repeated_ods_rows_cost_nothing():
    payload = _ods(f"<table:table-row>{_VALUE}</table:table-row>"
                   '<table:table-row table:number-rows-repeated="1048575">'
                   '<table:table-cell table:number-columns-repeated="1024"/></table:table-row>')
    assert [r.cells for r in iter_rows("lista.ods", payload, max_rows=10, budget=_budget())] == [
        ("x",)]


@pytest.mark.parametrize("payload", [
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\xff" * 600,  # an OLE header of nonsense
    (SHEETS / "old.xls").read_bytes()[:3000],  # cut short
])
def test_a_damaged_xls_is_unreadable_not_a_crash(payload):
    with pytest.raises(UnreadableSheet):
        list(iter_rows("viejo.xls", payload, max_rows=10, budget=_budget()))


def test_xls_cells_count_against_the_budget():
    from mailbot.read.sheets import OverBudget, SheetBudget
    budget = SheetBudget(bytes=10**8, cells=10, elements=10**6, columns=256)
    with pytest.raises(OverBudget, match="max_sheet_cells"):
        list(iter_rows("viejo.xls", (SHEETS / "old.xls").read_bytes(), max_rows=10,
                       budget=budget))


# --- whole mails with these spreadsheets attached (tests/data/mail) ---------------------------

MAIL = Path(__file__).resolve().parent / "data" / "mail"


def _read(name: str):
    from mailbot.config import LimitsConfig
    from mailbot.read.extract import read_mail
    from mailbot.ruleset import load_rules
    rules = load_rules(Path(__file__).resolve().parent.parent / "rules")
    return read_mail((MAIL / name).read_bytes(), rules, LimitsConfig(), ["claves@example.com"])[1]


def _fields(request) -> tuple[str, ...]:
    return (request.company, request.contact_name, request.contact_email, request.system,
            request.serial)


def test_an_excel_form_with_a_hidden_lists_sheet_gives_its_rows_and_no_problems():
    got = _read("sheet_excel_hidden_listas_validation.eml")
    assert got.problems == ()
    assert [(_fields(r), r.source) for r in got.requests] == [
        (("Empresa de muestra, S.A. de C.V.", "Raul Gonzalez Rivera",
          "rgonzalez@empresamuestra.com.mx", "CONTPAQ i Factura electrónica",
          "AAAA-BBBB-CCCC-DDDD"), "attachment:Formato solicitud claves.xlsx:row 2"),
        (("Empresa de muestra, S.A. de C.V.", "Raul Gonzalez Rivera",
          "rgonzalez@empresamuestra.com.mx", "CONTPAQ i Contabilidad",
          "AAAA-BBBB-CCCC-EEEE"), "attachment:Formato solicitud claves.xlsx:row 3"),
    ]


def test_a_libreoffice_ods_from_thunderbird_is_read():
    got = _read("sheet_libreoffice_ods_thunderbird.eml")
    assert got.problems == ()
    assert [(r.system, r.serial, r.source) for r in got.requests] == [
        ("CONTPAQ i Factura electrónica", "AAAA-BBBB-CCCC-DDDD", "attachment:sistemas.ods:row 2"),
        ("CONTPAQ i Contabilidad", "AAAA-BBBB-CCCC-EEEE", "attachment:sistemas.ods:row 3"),
        ("CONTPAQ i Nóminas", "AAAA-BBBB-CCCC-FFFF", "attachment:sistemas.ods:row 4"),
    ]


def test_an_old_erps_xls_report_is_read_below_its_title_rows():
    got = _read("sheet_erp_xls_report.eml")
    assert got.problems == ()
    assert [_fields(r) for r in got.requests] == [
        ("Comercializadora del Bajío, S.A. de C.V.", "Ana Torres", "atorres@cbajio.com.mx",
         "CONTPAQ i Nóminas", "AAAA-BBBB-CCCC-1111"),
        ("Comercializadora del Bajío, S.A. de C.V.", "Ana Torres", "atorres@cbajio.com.mx",
         "CONTPAQ i Bancos", "AAAA-BBBB-CCCC-2222"),
        ("Transportes Villa, S.C.", "Luis Villa", "lvilla@tvilla.mx", "CONTPAQ i Contabilidad",
         "AAAA-BBBB-CCCC-3333"),
    ]
    assert got.requests[0].source == "attachment:REPLIC01.XLS:row 5"


def test_a_resellers_list_of_1000_rows_is_1000_requests_within_the_default_limits():
    got = _read("sheet_reseller_1000_rows_gmail.eml")
    assert got.problems == ()
    assert len(got.requests) == 1000
    assert _fields(got.requests[-1]) == (
        "Cliente 1000, S.A. de C.V.", "Contacto 1000", "contacto1000@cliente1000.com.mx",
        "CONTPAQ i Nóminas", "RSLR-0000-1000-ABCD")
    assert got.requests[-1].source == "attachment:clientes_actualizacion.xlsx:row 1001"
