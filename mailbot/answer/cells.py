"""What a spreadsheet cell we write may hold: one rule for every file mailbot writes that a
spreadsheet program may open (the results spreadsheet of an answer, the console's and the CLI's
exports of the registry and of issued keys).

A spreadsheet program runs formulas: a cell whose text starts with "=", "+", "-" or "@", also
after spaces, tabs or line breaks, could run one (CSV/formula injection). In an .xlsx such a
cell is a text cell with Excel's quote prefix (a format: the text itself is unchanged); in a CSV,
where there are no formats, the text gets a leading "'" (OWASP's advice), which the importer
takes off again (mailbot.ops.imports.unquote) so an exported file imports back unchanged.

No third-party import here: the importer uses the rule without loading XlsxWriter.
"""

from __future__ import annotations

import re
from typing import Any

Cell = tuple[str, bool]  # text, quote prefix

MAX_CELL = 32_767  # characters Excel keeps in one cell
# What XML 1.0 cannot hold: removed before writing (XlsxWriter would escape them as _xHHHH_).
ILLEGAL_CHARACTERS_RE = re.compile(r"[\000-\010]|[\013-\014]|[\016-\037]")
FORMULA_START = re.compile(r"[\s]*[=+\-@]")


def formula_like(text: str) -> bool:
    """Would a spreadsheet program read `text` as the start of a formula? (A leading tab or
    carriage return too: OWASP's list.)"""
    return FORMULA_START.match(text) is not None or text.startswith(("\t", "\r"))


def text_cell(value: Any) -> Cell:
    """A value as an .xlsx text cell that is never a formula: with the quote prefix when it
    starts like one."""
    text = ILLEGAL_CHARACTERS_RE.sub("", "" if value is None else str(value))[:MAX_CELL]
    return text, formula_like(text)


def csv_cell(value: Any) -> str:
    """A value as a CSV field that is never a formula: a leading "'" when it starts like one."""
    text = "" if value is None else str(value)
    return "'" + text if formula_like(text) else text
