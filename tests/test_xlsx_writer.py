"""The results spreadsheet's .xlsx writer (over XlsxWriter), read back by openpyxl as a
customer's program would read it."""

from __future__ import annotations

import io

import openpyxl

from mailbot.answer.xlsx_writer import column_letter, xlsx

TEXTS = ["plain", "a & b <c> \"d\" 'e'", "\r=2*3", "  espacios  ", "línea\nsegunda", "\ttab",
         "日本語 ñ 😀", "", "=SUM(A1)", "x" * 5000]


def test_every_text_comes_back_as_written_and_never_as_a_formula():
    rows = [[(t, t.lstrip()[:1] in "=+-@" and bool(t)) for t in TEXTS]]
    data = xlsx("Resultados & <más>", rows, widths=[10, 20.5], freeze_first_row=True)
    book = openpyxl.load_workbook(io.BytesIO(data))
    [ws] = book.worksheets
    assert ws.title == "Resultados & <más>"
    [cells] = list(ws.iter_rows())
    assert [c.value for c in cells] == [t.replace("\r", "\n") or None for t in TEXTS]
    assert all(c.data_type != "f" for c in cells)
    assert [c.quotePrefix for c in cells] == [t.lstrip()[:1] in "=+-@" and bool(t)
                                              for t in TEXTS]
    assert ws.freeze_panes == "A2"
    # XlsxWriter stores a width as Excel does, with the cell padding added (10 -> 10.71)
    assert 10 <= ws.column_dimensions["A"].width < 11
    assert 20.5 <= ws.column_dimensions["B"].width < 21.5


def test_many_rows_and_columns_land_in_their_cells():
    rows = [[(f"{r}:{c}", False) for c in range(30)] for r in range(200)]
    ws = openpyxl.load_workbook(io.BytesIO(xlsx("S", rows)), read_only=True).worksheets[0]
    got = [[c.value for c in row] for row in ws.iter_rows()]
    assert got == [[f"{r}:{c}" for c in range(30)] for r in range(200)]


def test_column_letters():
    assert [column_letter(i) for i in (0, 8, 25, 26, 27, 51, 52, 701, 702)] == [
        "A", "I", "Z", "AA", "AB", "AZ", "BA", "ZZ", "AAA"]


def test_the_same_cells_make_the_same_bytes():
    rows = [[("a", False), ("=b", True)]]
    assert xlsx("S", rows) == xlsx("S", rows)
