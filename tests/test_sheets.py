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


@pytest.mark.parametrize("name", ["old.xls", "list.ods"])
def test_old_excel_and_opendocument_files_are_unsupported_with_a_hint(name):
    with pytest.raises(UnsupportedSheet, match=r"save it as \.xlsx or \.csv"):
        rows(name)


def test_an_xls_named_xlsx_is_still_recognised_by_its_content():
    payload = (SHEETS / "old.xls").read_bytes()
    with pytest.raises(UnsupportedSheet, match="97-2003"):
        list(iter_rows("lista.xlsx", payload, max_rows=10))


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
