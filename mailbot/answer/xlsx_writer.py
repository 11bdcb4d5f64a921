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

Why the bytes are mostly not XlsxWriter's own work on every call: of its 2.6 ms per workbook,
nearly all went into the eight parts that are the same for every answer (content types,
relationships, workbook, styles, theme, properties) and into compressing them again. So each
shape of sheet (title, widths, frozen row, quote prefix used or not) is written by XlsxWriter
once; its constant parts are kept compressed, and per call only the sheet's cells and its
shared strings are written (`_fast_xlsx`), in exactly XlsxWriter's markup and zip layout: the
bytes are the ones XlsxWriter writes for the same cells (tests/test_xlsx_writer.py compares
them on many sheets). Anything out of the ordinary (no text cell at all, Excel's row, column
or string limits, a text XlsxWriter would take for rich text) is written by XlsxWriter itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import io
import struct
import zipfile
import zlib
from collections.abc import Sequence

import xlsxwriter
from xlsxwriter.utility import _preserve_whitespace
from xlsxwriter.xmlwriter import XMLwriter

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
    fast = _fast_xlsx(title, rows, tuple(widths), freeze_first_row)
    return fast if fast is not None else xlsxwriter_xlsx(title, rows, widths=widths,
                                                         freeze_first_row=freeze_first_row)


def xlsxwriter_xlsx(title: str, rows: Sequence[Sequence[Cell]], *,
                    widths: Sequence[float] = (), freeze_first_row: bool = False) -> bytes:
    """The same workbook, every part written by XlsxWriter (the reference `xlsx` matches)."""
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
                text = _cell_text(text)
                sheet.write_string(number, column, text, quoted if prefix else None)
            elif prefix:
                sheet.write_blank(number, column, None, quoted)
    book.close()
    return buffer.getvalue()


def _cell_text(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -- the fast path: XlsxWriter's bytes, its constant parts written once per shape -------------

_SHEET = "xl/worksheets/sheet1.xml"
_STRINGS = "xl/sharedStrings.xml"
_MAX_ROWS, _MAX_COLUMNS = 1_048_576, 16_384
_STRING_LIMIT = 32_767 // 2  # below half of Excel's limit in UTF-16 units: never truncated
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01, XlsxWriter's timestamp of every part
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")
_ATTRIBUTES = 0o600 << 16  # what zipfile gives a part written with writestr
_escape_data = XMLwriter()._escape_data
_escape_control = XMLwriter._escape_control_characters
_STRINGS_HEAD = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<sst xmlns='
                 '"http://schemas.openxmlformats.org/spreadsheetml/2006/main" ')




@dataclasses.dataclass(frozen=True)
class _Part:
    """One member of the zip: its name, and its bytes compressed as zipfile compresses them."""

    name: bytes
    crc: int
    size: int
    compressed: bytes

    @classmethod
    def of(cls, name: str, data: bytes) -> _Part:
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        return cls(name.encode("ascii"), zlib.crc32(data), len(data),
                   compressor.compress(data) + compressor.flush())


@dataclasses.dataclass(frozen=True)
class _Shape:
    """What XlsxWriter writes for every sheet of one shape, cut around the cells."""

    parts: tuple[_Part | str, ...]  # the constant parts, and the names of the two written here
    sheet_head: str  # the worksheet up to its dimension
    sheet_middle: str  # from the dimension to the cells (views, columns)
    sheet_tail: str  # after the cells (margins)
    strings_head: str  # the shared strings up to their counts
    strings_tail: str


@functools.lru_cache(maxsize=16)
def _shape(title: str, widths: tuple[float, ...], freeze: bool, quoted: bool) -> _Shape | None:
    """XlsxWriter's workbook of this shape with one cell, cut into what every sheet of the
    shape shares; None if it is not laid out as expected (then XlsxWriter writes them all)."""
    reference = zipfile.ZipFile(io.BytesIO(xlsxwriter_xlsx(
        title, [[("x", quoted)]], widths=widths, freeze_first_row=freeze)))
    names = [info.filename for info in reference.infolist()]
    if _SHEET not in names or _STRINGS not in names or not all(n.isascii() for n in names):
        return None
    sheet = reference.read(_SHEET).decode("utf-8")
    strings = reference.read(_STRINGS).decode("utf-8")
    head, found, rest = sheet.partition('<dimension ref="A1"/>')
    style = ' s="1"' if quoted else ""
    cell = f'<c r="A1"{style} t="s"><v>0</v></c>'
    middle, found_cells, tail = rest.partition(f'<sheetData><row r="1" spans="1:1">{cell}</row>'
                                               '</sheetData>')
    strings_head, found_counts, strings_rest = strings.partition(
        'count="1" uniqueCount="1"><si><t>x</t></si>')
    if not (found and found_cells and found_counts):
        return None
    parts = tuple(name if name in (_SHEET, _STRINGS) else _Part.of(name, reference.read(name))
                  for name in names)
    return _Shape(parts, head, middle, tail, strings_head, strings_rest)


def _fast_xlsx(title: str, rows: Sequence[Sequence[Cell]], widths: tuple[float, ...],
               freeze: bool) -> bytes | None:
    """XlsxWriter's bytes for these cells, or None when XlsxWriter must write them."""
    if len(rows) > _MAX_ROWS:
        return None
    strings: dict[str, int] = {}
    count = 0
    quoted = False
    written: list[tuple[int, int, int, list[str]]] = []  # row, first and last column, cells
    for number, row in enumerate(rows, start=1):
        if len(row) > _MAX_COLUMNS:
            return None
        cells: list[str] = []
        first = last = -1
        for column, (text, prefix) in enumerate(row):
            if text:
                text = _cell_text(text)
                if len(text) > _STRING_LIMIT or (text.startswith("<r>")
                                                 and text.endswith("</r>")):
                    return None
                index = strings.setdefault(text, len(strings))
                count += 1
                style = ' s="1"' if prefix else ""
                cells.append(f'<c r="{_letter(column)}{number}"{style} t="s"><v>{index}</v></c>')
            elif prefix:
                cells.append(f'<c r="{_letter(column)}{number}" s="1"/>')
            else:
                continue
            quoted = quoted or prefix
            if first < 0:
                first = column
            last = column
        if cells:
            written.append((number, first, last, cells))
    if not strings:
        return None
    shape = _shape(title[:31], widths, freeze, quoted)
    if shape is None:
        return None
    return _zip(shape, _sheet_xml(shape, written).encode("utf-8"),
                _strings_xml(shape, strings, count).encode("utf-8"))


@functools.lru_cache(maxsize=256)
def _letter(column: int) -> str:
    return column_letter(column)


def _sheet_xml(shape: _Shape, written: list[tuple[int, int, int, list[str]]]) -> str:
    """The worksheet as XlsxWriter writes it: the used range, then each row with the span of
    columns of its block of 16 rows."""
    spans: dict[int, tuple[int, int]] = {}
    for number, first, last, _cells in written:
        block = (number - 1) // 16
        low, high = spans.get(block, (first, last))
        spans[block] = (min(low, first), max(high, last))
    top, bottom = written[0][0], written[-1][0]
    left = min(first for _, first, _, _ in written)
    right = max(last for _, _, last, _ in written)
    start = f"{_letter(left)}{top}"
    end = f"{_letter(right)}{bottom}"
    out = [shape.sheet_head, f'<dimension ref="{start if start == end else start + ":" + end}"/>',
           shape.sheet_middle, "<sheetData>"]
    for number, _first, _last, cells in written:
        low, high = spans[(number - 1) // 16]
        out.append(f'<row r="{number}" spans="{low + 1}:{high + 1}">')
        out.extend(cells)
        out.append("</row>")
    out.append("</sheetData>")
    out.append(shape.sheet_tail)
    return "".join(out)


def _strings_xml(shape: _Shape, strings: dict[str, int], count: int) -> str:
    out = [shape.strings_head, f'count="{count}" uniqueCount="{len(strings)}">']
    for text in strings:  # in the order they were first written: their indexes
        text = _escape_control(text)
        space = ' xml:space="preserve"' if _preserve_whitespace(text) else ""
        out.append(f"<si><t{space}>{_escape_data(text)}</t></si>")
    out.append(shape.strings_tail)
    return "".join(out)


def _zip(shape: _Shape, sheet: bytes, strings: bytes) -> bytes:
    """The parts in XlsxWriter's order, laid out as zipfile lays out `writestr` members."""
    out = bytearray()
    directory = bytearray()
    for part in shape.parts:
        if isinstance(part, str):
            part = _Part.of(part, sheet if part == _SHEET else strings)
        offset = len(out)
        out += _LOCAL.pack(b"PK\003\004", 20, 0, 0, zipfile.ZIP_DEFLATED, 0, _DOS_DATE,
                           part.crc, len(part.compressed), part.size, len(part.name), 0)
        out += part.name
        out += part.compressed
        directory += _CENTRAL.pack(b"PK\001\002", 20, 3, 20, 0, 0, zipfile.ZIP_DEFLATED, 0,
                                   _DOS_DATE, part.crc, len(part.compressed), part.size,
                                   len(part.name), 0, 0, 0, 0, _ATTRIBUTES, offset)
        directory += part.name
    start = len(out)
    out += directory
    out += _END.pack(b"PK\005\006", 0, 0, len(shape.parts), len(shape.parts), len(directory),
                     start, 0)
    return bytes(out)
