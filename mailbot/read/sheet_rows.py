"""A spreadsheet's rows to each data row's values by field: the header search of a request list.

The header row is the first row, in the first 30 of a sheet, that names at least three fields
(synonyms from rules/fields.toml, any column order); title rows above it and blank rows are
skipped, and a row further down that names three fields starts a second list with its own
columns. A row with neither system nor serial and at most one other value is a note or a
total, not a request. Checking the values is `mailbot.read.extract`'s part.

Every row is a header candidate, so a reseller's list of 10,000 rows is 60,000 cells tried as
labels: a row is only matched cell by cell when at least three of its cells could start with a
label (`LabelMatcher.could_name`, a look at each first word), which no data row of names,
addresses, systems and serials comes near. The result is the same as matching every row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from mailbot.read.fields import LabelMatcher
from mailbot.read.sheets import SheetRow

# A spreadsheet's header row must name at least this many fields, within its first rows.
MIN_HEADER_FIELDS = 3
HEADER_SEARCH_ROWS = 30
# A longer cell is a sentence, never a column's name.
MAX_HEADER_CELL = 120
# The core of a request: a row without either is a note under the list, not a request.
CORE_FIELDS = ("system", "serial")


def header_columns(cells: Sequence[str], labels: LabelMatcher) -> dict[str, int]:
    """Column index of each field the cells name (first column wins for a field)."""
    candidates = [(index, cell) for index, cell in enumerate(cells)
                  if cell and len(cell) <= MAX_HEADER_CELL and labels.could_name(cell)]
    if len(candidates) < MIN_HEADER_FIELDS:
        return {}  # fewer cells than a header needs could name a field at all
    columns: dict[str, int] = {}
    for index, cell in candidates:
        field_name = labels.match_header(cell)
        if field_name is not None and field_name not in columns:
            columns[field_name] = index
    return columns


class ListRows:
    """The data rows of a request list, each as ``{field: cell}``, with what was found.

    Iterate once over `rows` (every sheet, in order); afterwards `headers_found` and
    `data_rows` say whether the attachment held a list at all, for the problems that say so.
    """

    def __init__(self, rows: Iterable[SheetRow], labels: LabelMatcher) -> None:
        self._rows, self._labels = rows, labels
        self.headers_found = 0
        self.data_rows = 0

    def __iter__(self) -> Iterator[tuple[SheetRow, dict[str, str]]]:
        sheet: str | None = None
        columns: dict[str, int] | None = None
        for row in self._rows:
            if row.sheet != sheet:
                sheet, columns = row.sheet, None
            if columns is None and row.row_number > HEADER_SEARCH_ROWS:
                continue
            found = header_columns(row.cells, self._labels)
            if len(found) >= MIN_HEADER_FIELDS:
                columns = found
                self.headers_found += 1
                continue
            if columns is None:
                continue  # a title row above the header
            values = {f: row.cell(i) for f, i in columns.items()}
            filled = [f for f, v in values.items() if v.strip()]
            if not any(values.get(f, "").strip() for f in CORE_FIELDS) and len(filled) <= 1:
                continue  # a note or total under the list, not a request
            self.data_rows += 1
            yield row, values
