"""The results spreadsheet's .xlsx writer (over XlsxWriter), read back by openpyxl as a
customer's program would read it."""

from __future__ import annotations

import io
import random

import openpyxl
import pytest

from mailbot.answer.results_sheet import WIDTHS
from mailbot.answer.xlsx_writer import _fast_xlsx, column_letter, xlsx, xlsxwriter_xlsx

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


PIECES = ["a", "B", " ", "\n", "\r", "\r\n", "&", "<", ">", '"', "'", "=", "+", "ñ", "😀",
          "_x0041_", "\t", "<r>", "</r>", "x" * 40, "-", "@"]


def _random_text(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return ""
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 8)))


@pytest.mark.parametrize("seed", range(8))
def test_the_bytes_are_the_ones_xlsxwriter_writes_for_the_same_cells(seed):
    """`xlsx` writes only the cells and strings itself (the constant parts once per shape):
    byte for byte what XlsxWriter writes, on sheets of every shape, with empty rows and
    cells, repeated strings, quote prefixes, blocks of more than 16 rows, and the texts
    XlsxWriter escapes or takes for rich text (those fall back to it)."""
    rng = random.Random(seed)
    for _ in range(40):
        rows = [[(_random_text(rng), rng.random() < 0.2) for _ in range(rng.randint(0, 12))]
                for _ in range(rng.randint(0, 40))]
        widths = rng.choice([(), WIDTHS, (10, 20.5)])
        freeze = rng.random() < 0.5
        title = rng.choice(["Resultados", "S", "Resultados & <más>", "x" * 40])
        assert xlsx(title, rows, widths=widths, freeze_first_row=freeze) == xlsxwriter_xlsx(
            title, rows, widths=widths, freeze_first_row=freeze)


def test_a_results_sheet_is_written_by_the_fast_path_and_matches_xlsxwriter():
    rows = [[(f"Empresa {i} & hijos", False), (f"=HYPERLINK({i})", True), ("", True),
             ("Nóminas", False), (f"SERIE-{i:04d}", False)] for i in range(40)]
    assert _fast_xlsx("Resultados", rows, WIDTHS, True) is not None
    assert xlsx("Resultados", rows, widths=WIDTHS, freeze_first_row=True) == xlsxwriter_xlsx(
        "Resultados", rows, widths=WIDTHS, freeze_first_row=True)
