"""A one-sheet .xlsx of text cells: the results spreadsheet's writer, over XlsxWriter.

Why XlsxWriter and not openpyxl (which still writes the demo's spreadsheet): openpyxl's
write-only mode spends about 5 ms on every workbook (objects, styles, a theme, a temporary file)
whatever its size, and a fifth of the answers carry one; XlsxWriter writes the same sheet from
memory in a fraction of that, and is the writer Excel's own file format tests are run against.

Every cell is written with `write_string`: never a formula, a number or a link a spreadsheet
program would reinterpret (`strings_to_*` are all off). A cell marked quoted also gets Excel's
quote prefix, so it stays text even when someone edits it and it starts with "=", "+", "-" or
"@" (the rule is mailbot.answer.cells'). A carriage return becomes the line break
spreadsheets use ("\n"). The workbook's dates are fixed: the same cells make the same bytes.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence

import xlsxwriter

from mailbot.answer.cells import ILLEGAL_CHARACTERS_RE, Cell

__all__ = ["ILLEGAL_CHARACTERS_RE", "Cell", "column_letter", "xlsx"]
_OPTIONS = {"in_memory": True, "strings_to_numbers": False, "strings_to_formulas": False,
            "strings_to_urls": False}
_CREATED = dt.datetime(2012, 1, 1)  # the same bytes for the same cells


def column_letter(index: int) -> str:
    """0 -> "A", 25 -> "Z", 26 -> "AA"."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def xlsx(title: str, rows: Sequence[Sequence[Cell]], *, widths: Sequence[float] = (),
         freeze_first_row: bool = False) -> bytes:
    """The .xlsx bytes of one sheet named `title` with `rows` of text cells (texts already
    free of ILLEGAL_CHARACTERS_RE)."""
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, _OPTIONS)
    book.set_properties({"created": _CREATED})
    quoted = book.add_format({"quote_prefix": True})
    sheet = book.add_worksheet(title[:31])
    for column, width in enumerate(widths):
        sheet.set_column(column, column, width)
    if freeze_first_row:
        sheet.freeze_panes(1, 0)
    for number, row in enumerate(rows):
        for column, (text, prefix) in enumerate(row):
            if text:  # a line break in a cell is "\n" (XlsxWriter writes a CR as _x000D_)
                text = text.replace("\r\n", "\n").replace("\r", "\n")
                sheet.write_string(number, column, text, quoted if prefix else None)
            elif prefix:
                sheet.write_blank(number, column, None, quoted)
    book.close()
    return buffer.getvalue()
