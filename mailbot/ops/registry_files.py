"""The registry and the issued keys written out as CSV or XLSX, for `mailbot registry export`,
`mailbot keys export --issued` and the console's download links.

The registry export has the import's columns (mailbot.ops.imports.REGISTRY_COLUMNS) in its
order, dates as YYYY-MM-DD: the file imports back unchanged (its preview: nothing to add,
nothing to change). The issued keys: system, key, the serial it went to, the recipient, the
date it was issued (in the business time zone, marked) and the reference of the mail.

Every cell goes through mailbot.answer.cells: a cell that starts like a formula is neutralised
(XLSX: Excel's quote prefix; CSV: a leading "'", which the importer takes off again). The
XLSX is written by mailbot.answer.xlsx_writer, the results spreadsheet's writer.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

from mailbot.answer.cells import csv_cell, text_cell
from mailbot.answer.xlsx_writer import xlsx
from mailbot.ops.imports import REGISTRY_COLUMNS
from mailbot.ops.timefmt import operator_time
from mailbot.store import Connection
from mailbot.store import registry as stored

FORMATS = ("csv", "xlsx")
ISSUED_COLUMNS = ("system", "key", "serial", "recipient", "issued_at", "reference")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8",
               "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
_REGISTRY_WIDTHS = (22, 32, 40, 36, 14, 14, 14, 8)
_ISSUED_WIDTHS = (32, 30, 22, 36, 22, 24)


def _day(value: dt.date | None) -> str:
    return value.isoformat() if value is not None else ""


def registry_rows(conn: Connection) -> list[tuple[str, ...]]:
    return [(r.serial, r.system, r.company, r.contact_email or "", _day(r.purchase_date),
             r.modality, _day(r.support_until), "" if r.users is None else str(r.users))
            for r in stored.every_licence(conn)]


def issued_rows(conn: Connection, zone: dt.tzinfo) -> list[tuple[str, ...]]:
    return [(r.system, r.key, r.serial, r.recipient or "",
             operator_time(r.assigned_at, zone) if r.assigned_at else "", r.reference or "")
            for r in stored.issued_keys(conn)]


def table_bytes(fmt: str, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                widths: Sequence[float] = ()) -> bytes:
    """`rows` under a heading of `columns`, as CSV (UTF-8 with BOM, so a spreadsheet program
    reads the accents) or as a one-sheet XLSX."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        writer.writerows([csv_cell(v) for v in row] for row in rows)
        return out.getvalue().encode("utf-8-sig")
    if fmt == "xlsx":
        return xlsx(title, [[text_cell(c) for c in columns],
                            *([text_cell(v) for v in row] for row in rows)],
                    widths=widths, freeze_first_row=True)
    raise ValueError(fmt)


def registry_file(conn: Connection, fmt: str) -> bytes:
    return table_bytes(fmt, "registro", REGISTRY_COLUMNS, registry_rows(conn), _REGISTRY_WIDTHS)


def issued_file(conn: Connection, fmt: str, zone: dt.tzinfo) -> bytes:
    return table_bytes(fmt, "claves emitidas", ISSUED_COLUMNS, issued_rows(conn, zone),
                       _ISSUED_WIDTHS)


def file_name(what: str, fmt: str, today: dt.date) -> str:
    """"registro-2026-12-01.csv", "claves-emitidas-2026-12-01.xlsx"."""
    return f"{what}-{today.isoformat()}.{fmt}"
