"""Rows out of a customer's spreadsheet (.xlsx/.xlsm, .ods, .xls) or CSV, whatever wrote it.

A generic reader: it knows nothing about requests (`mailbot.read.extract` finds the header row) and
is also used for importing the licence registry. Attachments come from strangers, so every
failure is a `SheetError` with a sentence an operator can act on, never a library traceback;
size, row count and zip expansion are bounded. The workbooks are read by calamine (Rust: 35
times faster than openpyxl on a 10,000-row list, see benchmarks/sheet_reading.py), which
builds each sheet as one dense block from A1 to its last cell and aborts the whole process
when an allocation fails. So nothing reaches it unmeasured: with a `SheetBudget` every element
of an .xlsx or .ods is counted by a cheap scan of its zip (and an .xls's cell records by
`xls_scan`), and the dense block each sheet would become is bounded too: a 300 KB file of 5.5
million shared strings, a row of a million cells or two cells in A1 and IV1048576 are refused in
milliseconds, before calamine sees them. Hidden sheets (the lists behind a drop-down) are not
read. The only module that imports a spreadsheet reader.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import PurePath
from typing import Any

from mailbot.config import LimitsConfig
from mailbot.read.xls_scan import XlsDamaged, XlsEncrypted, has_workbook, scan_xls

# What extract.py reads as request lists, and what it refuses with a hint.
SPREADSHEET_EXTENSIONS = (".xlsx", ".xlsm", ".xls", ".ods", ".csv", ".tsv")
UNSUPPORTED_EXTENSIONS = (".xlsb", ".fods", ".numbers")
SAVE_AS_HINT = "save it as .xlsx or .csv and send it again"

# A real request list is kilobytes; an .xlsx that expands past this is a zip bomb.
DEFAULT_MAX_UNCOMPRESSED_BYTES = 100 * 1024 * 1024
# Blank rows read (not returned) on top of max_rows before giving up on a sheet.
BLANK_ROW_ALLOWANCE = 10_000

_ZIP_SIGNATURE = b"PK\x03\x04"
_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


class SheetError(Exception):
    """A spreadsheet that cannot be read; `detail` says why and what the sender can do."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnreadableSheet(SheetError):
    """Corrupt, truncated or not what its name says."""


class EncryptedSheet(UnreadableSheet):
    """Password-protected: we cannot (and must not try to) open it."""


class UnsupportedSheet(SheetError):
    """A format we do not read (.numbers, .xlsb, flat .fods...)."""


class SheetTooLarge(SheetError):
    """Expands to more than the configured size (a zip bomb, or simply far too big)."""


class TooManyRows(SheetError):
    """More rows than allowed. Raised after the first `max_rows` rows were yielded: they count."""


class OverBudget(SheetError):
    """More than what the spreadsheets of one mail may cost together (`SheetBudget`)."""


# Elements that carry cell data; any other element (a style, a format, a merged range, a rich
# text run) costs openpyxl up to ten times more, so those get a twentieth of the allowance.
_DATA_ELEMENTS = frozenset({b"row", b"c", b"v", b"f", b"is", b"t", b"si", b"sheetData",
                            # OpenDocument's: a table, its rows, cells and their paragraphs
                            b"table", b"table-row", b"table-cell", b"covered-table-cell", b"p",
                            b"s", b"span"})
_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)([^<>]*)")
_CELL_COLUMN = re.compile(rb"\sr\s*=\s*[\"']\$?([A-Za-z]{1,7})")
_ROW_NUMBER = re.compile(rb"\sr\s*=\s*[\"'](\d{1,9})")
_ROWS_REPEATED = re.compile(rb"number-rows-repeated\s*=\s*[\"'](\d{1,12})")
_COLUMNS_REPEATED = re.compile(rb"number-columns-repeated\s*=\s*[\"'](\d{1,12})")
_SCAN_CHUNK = 1024 * 1024


@dataclass
class SheetBudget:
    """What the spreadsheets of one mail may still cost, all together ([limits] max_sheet_*).

    Shared by every attachment of the mail, so twenty attachments cost no more than one.
    `cells` counts cells, rows and shared strings; `elements` every XML element of a workbook,
    of which at most a twentieth may lie outside the cell data; `columns` bounds one row.
    """

    bytes: int
    cells: int
    elements: int
    columns: int

    def spend_bytes(self, filename: str, size: int) -> None:
        if size > self.bytes:
            raise OverBudget(f"{filename}: expands to {size:,} bytes, more than the "
                             f"{self.bytes:,} left for the spreadsheets of this mail "
                             f"([limits] max_sheet_bytes); send only the rows needed")
        self.bytes -= size

    def check(self, filename: str, cells: int, elements: int = 0, other: int = 0) -> None:
        if cells > self.cells:
            raise OverBudget(f"{filename}: more than {self.cells:,} cells, rows and strings "
                             f"left for the spreadsheets of this mail ([limits] max_sheet_cells);"
                             f" send only the rows and columns needed")
        if elements > self.elements or other > self.elements // 20:
            raise OverBudget(f"{filename}: more XML elements (formats, styles, cells) than the "
                             f"{self.elements:,} left for the spreadsheets of this mail "
                             f"([limits] max_sheet_elements); {SAVE_AS_HINT} with only the rows "
                             f"needed and no formatting")

    def check_area(self, filename: str, rows: int, columns: int) -> None:
        """The reader builds a sheet as one block from A1 to its last cell: that must fit."""
        if rows * columns > self.cells:
            raise OverBudget(f"{filename}: a sheet spans {rows:,} rows by {columns:,} columns, "
                             f"more than the {self.cells:,} cells left for the spreadsheets of "
                             f"this mail ([limits] max_sheet_cells); send only the rows and "
                             f"columns needed, from the top left corner")

    def spend(self, cells: int, elements: int = 0) -> None:
        self.cells -= cells
        self.elements -= elements

    def too_wide(self, filename: str, where: str) -> OverBudget:
        return OverBudget(f"{filename}: {where} has more than {self.columns:,} columns "
                          f"([limits] max_sheet_columns); send only the columns needed")


def sheet_budget(limits: LimitsConfig) -> SheetBudget:
    """A fresh budget for the spreadsheets of one mail."""
    return SheetBudget(bytes=limits.max_sheet_bytes, cells=limits.max_sheet_cells,
                       elements=limits.max_sheet_elements, columns=limits.max_sheet_columns)


@dataclass(frozen=True)
class SheetRow:
    """One non-empty row. `row_number` is the number the spreadsheet program shows (1-based);
    `cells` are clean strings, trailing empty cells dropped."""

    sheet: str
    row_number: int
    cells: tuple[str, ...]

    def cell(self, index: int) -> str:
        return self.cells[index] if 0 <= index < len(self.cells) else ""


def iter_rows(filename: str, payload: bytes, *, max_rows: int,
              max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
              budget: SheetBudget | None = None) -> Iterator[SheetRow]:
    """Every non-empty row of every sheet, in order; blank rows are skipped.

    The format is decided by the content first (zip, OLE compound file, text) and the name
    second. Raises a `SheetError` subclass when the file cannot be read, `TooManyRows`
    once more than `max_rows` non-empty rows were found (those before it were yielded), and
    `OverBudget` before any row when the file costs more than what is left of `budget`.
    """
    extension = PurePath(filename.strip().lower()).suffix
    head = payload[:8]
    if head.startswith(_ZIP_SIGNATURE):
        rows = _zip_rows(filename, payload, extension, max_uncompressed_bytes,
                         budget or _file_budget(max_rows, max_uncompressed_bytes))
    elif head == _OLE_SIGNATURE:
        if not has_workbook(payload):
            raise _ole_error(filename, payload)
        rows = _xls_rows(filename, payload, max_uncompressed_bytes,
                         budget or _file_budget(max_rows, max_uncompressed_bytes))
    elif extension in (".csv", ".tsv", ".txt"):
        rows = _csv_rows(filename, payload, budget)
    elif extension in UNSUPPORTED_EXTENSIONS:
        raise UnsupportedSheet(f"{filename}: this spreadsheet format is not supported; "
                               f"{SAVE_AS_HINT}")
    elif extension in (".xlsx", ".xlsm"):
        raise UnreadableSheet(f"{filename}: the file is damaged or is not really an Excel "
                              f"workbook; {SAVE_AS_HINT}")
    else:
        raise UnsupportedSheet(f"{filename}: not a spreadsheet mailbot can read; {SAVE_AS_HINT}")
    yield from _limit(filename, rows, max_rows)


def _limit(filename: str, rows: Iterable[SheetRow | None], max_rows: int) -> Iterator[SheetRow]:
    """Count rows against the limit; `None` stands for a blank row (read, never yielded)."""
    try:
        yield from _count(filename, rows, max_rows)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # let the reader close the workbook even when we stop early


def _count(filename: str, rows: Iterable[SheetRow | None], max_rows: int) -> Iterator[SheetRow]:
    kept = blank = 0
    for row in rows:
        if row is None:
            blank += 1
            if blank > max_rows + BLANK_ROW_ALLOWANCE:
                raise TooManyRows(f"{filename}: more than {max_rows + BLANK_ROW_ALLOWANCE} "
                                  f"blank rows; only the first {kept} rows with data were read")
            continue
        if kept >= max_rows:
            raise TooManyRows(f"{filename}: more than {max_rows} rows; only the first "
                              f"{max_rows} were read (sheet {row.sheet!r}, row {row.row_number} "
                              f"and after were not)")
        kept += 1
        yield row


def _ole_error(filename: str, payload: bytes) -> SheetError:
    # Office stores a password-protected .xlsx inside an OLE file with these stream names.
    if ("EncryptionInfo".encode("utf-16-le") in payload
            or "EncryptedPackage".encode("utf-16-le") in payload):
        return EncryptedSheet(f"{filename}: the spreadsheet is protected with a password; "
                              f"remove the password and {SAVE_AS_HINT}")
    return UnreadableSheet(f"{filename}: an Office file without a workbook inside (damaged, or "
                           f"not a spreadsheet); {SAVE_AS_HINT}")


# --- cells --------------------------------------------------------------------------------------

def clean_cell(value: Any) -> str:
    """A cell as the customer sees it: 12 not 12.0, dates as YYYY-MM-DD, None as ""."""
    if type(value) is str:  # most cells: tested first, 60,000 times in a 10,000-row list
        return value.replace("\u00a0", " ").strip()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return ""
        if value.is_integer() and abs(value) < 1e18:
            return str(int(value))
        return repr(value)
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return str(value).replace("\u00a0", " ").strip()


def _row(sheet: str, number: int, values: Iterable[Any]) -> SheetRow | None:
    cells = [clean_cell(v) for v in values]
    while cells and not cells[-1]:
        cells.pop()
    return SheetRow(sheet, number, tuple(cells)) if cells else None


# --- workbooks (xlsx, ods, xls) ----------------------------------------------------------------

def _zip_rows(filename: str, payload: bytes, extension: str, max_uncompressed_bytes: int,
              budget: SheetBudget) -> Iterator[SheetRow | None]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
        names = set(archive.namelist())
        expanded = sum(info.file_size for info in archive.infolist())
    except Exception:  # BadZipFile, NotImplementedError (odd zip versions), OSError, ...
        raise UnreadableSheet(f"{filename}: the file is damaged (not a valid Excel workbook); "
                              f"{SAVE_AS_HINT}") from None
    if expanded > max_uncompressed_bytes:
        raise SheetTooLarge(f"{filename}: expands to {expanded:,} bytes, more than the "
                            f"{max_uncompressed_bytes:,} allowed; send only the rows needed")
    ods = "xl/workbook.xml" not in names and "content.xml" in names
    # zipfile never returns more than a member's declared size, so the sum bounds the scan.
    budget.spend_bytes(filename, expanded)
    _scan_workbook(filename, archive, budget, ods=ods)
    if not ods and "xl/workbook.xml" not in names:
        if "xl/workbook.bin" in names:
            raise UnsupportedSheet(f"{filename}: Excel binary workbooks (.xlsb) are not "
                                   f"supported; {SAVE_AS_HINT}")
        if "mimetype" in names:
            raise UnreadableSheet(f"{filename}: the OpenDocument file has no content.xml "
                                  f"(damaged); {SAVE_AS_HINT}")
        if any(n.startswith("Index/") for n in names):
            raise UnsupportedSheet(f"{filename}: Apple Numbers files are not supported; "
                                   f"{SAVE_AS_HINT}")
        if extension in (".xlsx", ".xlsm"):
            raise UnreadableSheet(f"{filename}: the file is damaged (no workbook inside); "
                                  f"{SAVE_AS_HINT}")
        raise UnsupportedSheet(f"{filename}: a zip archive, not a spreadsheet; {SAVE_AS_HINT}")
    return _calamine_rows(filename, payload)


def _xls_rows(filename: str, payload: bytes, max_uncompressed_bytes: int,
              budget: SheetBudget) -> Iterator[SheetRow | None]:
    try:
        cost = scan_xls(payload)
    except XlsEncrypted:
        raise EncryptedSheet(f"{filename}: the spreadsheet is protected with a password; "
                             f"remove the password and {SAVE_AS_HINT}") from None
    except XlsDamaged as exc:
        raise UnreadableSheet(f"{filename}: the old Excel workbook (.xls) is damaged ({exc}); "
                              f"{SAVE_AS_HINT}") from None
    if cost.stream_bytes > max_uncompressed_bytes:
        raise SheetTooLarge(f"{filename}: holds {cost.stream_bytes:,} bytes, more than the "
                            f"{max_uncompressed_bytes:,} allowed; send only the rows needed")
    budget.spend_bytes(filename, cost.stream_bytes)
    budget.check(filename, cost.cells)
    for area in cost.sheets:
        if area.columns > budget.columns:
            raise budget.too_wide(filename, "a sheet")
        budget.check_area(filename, area.rows, area.columns)
    budget.spend(cost.cells)
    return _calamine_rows(filename, payload)


# Without a mail's budget (an operator importing the licence registry): room for `max_rows`
# rows of this many columns, however wide a row may be. Unmeasured, calamine's dense sheets
# could take any amount of memory, so a file is always measured.
_FILE_COLUMNS = 40


def _file_budget(max_rows: int, max_bytes: int) -> SheetBudget:
    """What one file may cost when no mail's budget applies: bounded by its row limit."""
    limits = LimitsConfig()
    cells = max(limits.max_sheet_cells, (max_rows + 1) * _FILE_COLUMNS)
    return SheetBudget(bytes=max_bytes, cells=cells,
                       elements=max(limits.max_sheet_elements, 4 * cells),
                       columns=limits.max_sheet_columns)


class _Area:
    """The dense block of one member's sheet as calamine would build it (rows x columns)."""

    def __init__(self, filename: str, budget: SheetBudget) -> None:
        self.filename, self.budget = filename, budget
        self.rows = self.columns = 0

    def include(self, rows: int, columns: int) -> None:
        if rows > self.rows or columns > self.columns:
            self.rows, self.columns = max(rows, self.rows), max(columns, self.columns)
            self.budget.check_area(self.filename, self.rows, self.columns)


class _OdsTable:
    """Where one OpenDocument table's cells land once their repeats are expanded.

    Empty cells (self-closing, no value) cost nothing: LibreOffice writes a million of them at
    the end of a sheet and calamine skips them; a cell with a value repeated counts each time.
    """

    def __init__(self, area: _Area) -> None:
        self.area = area
        self.row = 0  # rows before the current one
        self.repeat = 0  # how many times the current row repeats (0: no row open)
        self.width = self.used = 0  # columns so far in the row; up to its last value

    def start_row(self, attributes: bytes) -> int:
        cost = self.end_row()
        found = _ROWS_REPEATED.search(attributes)
        self.repeat = int(found.group(1)) if found else 1
        return cost

    def cell(self, attributes: bytes) -> None:
        found = _COLUMNS_REPEATED.search(attributes)
        self.width += int(found.group(1)) if found else 1
        if not attributes.rstrip().endswith(b"/") or b"value-type" in attributes:
            self.used = self.width
            if self.used > self.area.budget.columns:
                raise self.area.budget.too_wide(self.area.filename, f"row {self.row + 1}")

    def end_row(self) -> int:
        """The cells of the row just finished (repeats included)."""
        cost = self.repeat * self.used
        if self.used:
            self.area.include(self.row + self.repeat, self.used)
        self.row += self.repeat
        self.repeat = self.width = self.used = 0
        return cost


def _scan_workbook(filename: str, archive: zipfile.ZipFile, budget: SheetBudget, *,
                   ods: bool = False) -> None:
    """Count what the reader would build, member by member, and stop at the first excess.

    Every member is scanned, whatever its name (a workbook's relationships may point a sheet
    anywhere); a tag split between two chunks is carried over to the next. A cell's column is
    read from its ``r`` attribute, or counted on from the one before as the readers do; the
    dense block from A1 to the last cell must fit the cells left (a declared <dimension> is
    not: calamine does not build from it, and writers get it wrong).
    In OpenDocument, repeated rows and cells count as many times as they repeat.
    """
    cells = elements = other = 0
    try:
        for info in archive.infolist():
            row, row_index, column, carry = "?", 0, 0, b""
            area = _Area(filename, budget)
            table = _OdsTable(area)
            with archive.open(info) as member:
                while chunk := member.read(_SCAN_CHUNK):
                    text = carry + chunk
                    end = text.rfind(b"<")
                    end = len(text) if end < 0 else end
                    carry = text[end:]
                    for match in _TAG.finditer(text, 0, end):
                        name = match.group(1)
                        elements += 1
                        if ods:
                            if name == b"table-row":
                                cells += table.start_row(match.group(2))
                            elif name in (b"table-cell", b"covered-table-cell"):
                                table.cell(match.group(2))
                            elif name == b"table":
                                cells += table.end_row()
                                area = _Area(filename, budget)
                                table = _OdsTable(area)
                            elif name not in _DATA_ELEMENTS:
                                other += 1
                        elif name == b"c":
                            cells += 1
                            ref = _CELL_COLUMN.search(match.group(2))
                            column = _column_number(ref.group(1)) if ref else column + 1
                            if column > budget.columns:
                                raise budget.too_wide(filename, f"row {row}")
                            area.include(row_index, column)
                        elif name == b"row":
                            cells += 1
                            number = _ROW_NUMBER.search(match.group(2))
                            row_index = int(number.group(1)) if number else row_index + 1
                            row, column = str(row_index), 0
                        elif name == b"si":
                            cells += 1
                        elif name not in _DATA_ELEMENTS:
                            other += 1
                        if elements > budget.elements or cells > budget.cells:
                            budget.check(filename, cells, elements, other)
                    budget.check(filename, cells, elements, other)
            cells += table.end_row()
    except SheetError:
        raise
    except Exception as exc:  # a damaged member: say so, as the reader would have
        raise UnreadableSheet(f"{filename}: the workbook is damaged and cannot be opened "
                              f"({type(exc).__name__}); {SAVE_AS_HINT}") from None
    budget.check(filename, cells, elements, other)
    budget.spend(cells, elements)


def _column_number(letters: bytes) -> int:
    number = 0
    for letter in letters.upper():
        number = number * 26 + letter - 64
    return number


def _calamine_rows(filename: str, payload: bytes) -> Iterator[SheetRow | None]:
    """Every row of every visible sheet; only ever called on a file measured as above."""
    import python_calamine  # imported here: only spreadsheets need it

    try:
        book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(payload))
        sheets = [m.name for m in book.sheets_metadata
                  if m.visible == python_calamine.SheetVisibleEnum.Visible
                  and m.typ == python_calamine.SheetTypeEnum.WorkSheet]
    except python_calamine.PasswordError:
        raise EncryptedSheet(f"{filename}: the spreadsheet is protected with a password; "
                             f"remove the password and {SAVE_AS_HINT}") from None
    except Exception as exc:  # CalamineError, XmlError, ZipError, ...
        raise UnreadableSheet(f"{filename}: the workbook is damaged and cannot be opened "
                              f"({type(exc).__name__}); {SAVE_AS_HINT}") from None
    try:
        for title in sheets:
            try:
                # From A1, as the customer's program numbers rows and columns.
                values = book.get_sheet_by_name(title).to_python(skip_empty_area=False)
            except Exception as exc:
                raise UnreadableSheet(f"{filename}: sheet {title!r} is damaged and could not be "
                                      f"read ({type(exc).__name__}); {SAVE_AS_HINT}") from None
            for number, row in enumerate(values, start=1):
                yield _row(str(title), number, row)
            del values
    finally:
        book.close()


# --- csv ----------------------------------------------------------------------------------------

def decode_text(payload: bytes) -> str:
    """Text of a CSV as Excel and others write it: UTF-8 (with or without BOM), UTF-16 with a
    BOM ("Unicode text"), else Windows-1252, which is what Excel in Spanish saves as "CSV"."""
    if payload.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return payload.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return payload.decode("utf-8-sig")
    except UnicodeDecodeError:
        return payload.decode("cp1252", errors="replace")


def sniff_delimiter(text: str) -> str:
    """The delimiter (",", ";" or tab) that splits the first lines most consistently."""
    sample = [line for line in text.splitlines()[:30] if line.strip()]
    best, best_score = ",", (0, 0)
    for delimiter in (",", ";", "\t"):
        try:
            counts = [len(r) for r in csv.reader(sample, delimiter=delimiter)]
        except csv.Error:
            continue
        wide = [c for c in counts if c > 1]
        if not wide:
            continue
        mode = max(set(wide), key=wide.count)
        score = (wide.count(mode), mode)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _csv_rows(filename: str, payload: bytes,
              budget: SheetBudget | None = None) -> Iterator[SheetRow | None]:
    if b"\x00" in payload[:4096] and not payload.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnreadableSheet(f"{filename}: not a text CSV file; {SAVE_AS_HINT}")
    if budget is not None:
        budget.spend_bytes(filename, len(payload))
    text = decode_text(payload)
    delimiter = sniff_delimiter(text)
    if budget is not None:
        # Each delimiter or line break starts a cell: counted before the csv module builds rows.
        cells = text.count(delimiter) + text.count("\n")
        budget.check(filename, cells)
        budget.spend(cells)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    sheet = PurePath(filename).stem or "csv"
    number = 0
    try:
        for number, values in enumerate(reader, start=1):
            if budget is not None and len(values) > budget.columns:
                raise budget.too_wide(filename, f"line {number}")
            yield _row(sheet, number, values)
    except csv.Error as exc:
        raise UnreadableSheet(f"{filename}: line {number + 1} cannot be read as CSV ({exc}); "
                              f"{SAVE_AS_HINT}") from None
