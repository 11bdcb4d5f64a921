"""A one-sheet .xlsx of text cells, written directly: the results spreadsheet's writer.

Why not openpyxl: for the few rows of a usual answer it spent 4 ms building objects, styles
and a theme, where these strings take a tenth of that; the file is the one openpyxl's
write-only mode wrote (inline strings, the quote-prefix style, frozen heading, column widths),
so any spreadsheet program, and openpyxl in the tests, reads it the same way.

Every cell is text (`t="inlineStr"`): nothing in it is ever a formula or a number a
spreadsheet program reinterprets. A cell with the quote prefix (style 1) is shown as typed
even when it starts with "=", "+", "-" or "@".
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence

Cell = tuple[str, bool]  # text, quote prefix

# What XML 1.0 cannot hold (openpyxl's own ILLEGAL_CHARACTERS_RE): removed before writing.
ILLEGAL_CHARACTERS_RE = re.compile(r"[\000-\010]|[\013-\014]|[\016-\037]")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_CONTENT_TYPES = (
    _HEAD + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.'
    'openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.spreadsheetml.styles+xml"/></Types>')
_ROOT_RELS = (
    _HEAD + f'<Relationships xmlns="{_PKG_REL}"><Relationship Id="rId1" '
    f'Type="{_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
_WORKBOOK_RELS = (
    _HEAD + f'<Relationships xmlns="{_PKG_REL}">'
    f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_REL}/styles" Target="styles.xml"/></Relationships>')
# Style 0: plain; style 1: the same with the quote prefix.
_STYLES = (
    _HEAD + f'<styleSheet xmlns="{_MAIN}"><fonts count="1"><font><name val="Calibri"/>'
    '<family val="2"/><sz val="11"/></font></fonts><fills count="2"><fill><patternFill/>'
    '</fill><fill><patternFill patternType="gray125"/></fill></fills><borders count="1">'
    '<border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
    '</cellStyleXfs><cellXfs count="2">'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" quotePrefix="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" quotePrefix="1" xfId="0"/>'
    '</cellXfs><cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/>'
    '</cellStyles></styleSheet>')
_FROZEN = ('<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" '
           'activePane="bottomLeft" state="frozen"/><selection pane="bottomLeft" '
           'activeCell="A1" sqref="A1"/></sheetView></sheetViews>')
_STAMP = (2012, 1, 1, 0, 0, 0)  # the parts' date in the zip: the same bytes for the same cells


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
    letters = [column_letter(i) for i in range(max((len(r) for r in rows), default=0))]
    out = [_HEAD, f'<worksheet xmlns="{_MAIN}">']
    if freeze_first_row:
        out.append(_FROZEN)
    out.append('<sheetFormatPr baseColWidth="8" defaultRowHeight="15"/>')
    if widths:
        out.append("<cols>" + "".join(
            f'<col width="{w:g}" customWidth="1" min="{i}" max="{i}"/>'
            for i, w in enumerate(widths, start=1)) + "</cols>")
    out.append("<sheetData>")
    for number, row in enumerate(rows, start=1):
        out.append(f'<row r="{number}">')
        for letter, (text, quoted) in zip(letters, row, strict=False):
            style = ' s="1"' if quoted else ""
            if not text:
                out.append(f'<c r="{letter}{number}"{style} t="inlineStr"></c>')
                continue
            space = ' xml:space="preserve"' if text != text.strip() else ""
            out.append(f'<c r="{letter}{number}"{style} t="inlineStr"><is><t{space}>'
                       f'{text.translate(_ESCAPES)}</t></is></c>')
        out.append("</row>")
    out.append('</sheetData><pageMargins left="0.75" right="0.75" top="1" bottom="1" '
               'header="0.5" footer="0.5"/></worksheet>')
    name = title.translate(_ESCAPES).replace('"', "&quot;")
    workbook = (_HEAD + f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>'
                f'<sheet name="{name}" sheetId="1" r:id="rId1"/></sheets></workbook>')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as book:
        for part, content in (("[Content_Types].xml", _CONTENT_TYPES),
                              ("_rels/.rels", _ROOT_RELS), ("xl/workbook.xml", workbook),
                              ("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS),
                              ("xl/styles.xml", _STYLES),
                              ("xl/worksheets/sheet1.xml", "".join(out))):
            info = zipfile.ZipInfo(part, _STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            book.writestr(info, content.encode("utf-8"))
    return buffer.getvalue()
