"""What an Excel 97-2003 workbook (.xls) would cost to read, counted before any reader opens it.

calamine, which reads .xls for us, builds each sheet as one dense block from A1 to the last
cell it finds: a 5 KB file with a cell in A1 and another in IV65536 took 1 GB. So the OLE
container is walked here (its FAT, its directory, the "Workbook" stream, in the mini stream
when small), and the BIFF records of that stream are read one by one, without decoding any
value: every cell record's row and column, the declared dimensions and the shared strings.
Cost is linear in the file's size, which the attachment limit already bounds; a loop in the
sector chains or a record running past its stream is a damaged file, never a hang.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

_FREE_OR_END = 0xFFFFFFFA  # sector ids at or above this end a chain (or are special)
_STREAM = 2
_ROOT = 5

# BIFF8 records that hold one cell: row (u16) and column (u16) first.
_ONE_CELL = frozenset({0x0203, 0x00FD, 0x0204, 0x027E, 0x0201, 0x0205, 0x0006, 0x00D6})
_MULTIPLE_CELLS = frozenset({0x00BD, 0x00BE})  # MULRK, MULBLANK: row, first col ... last col
_DIMENSIONS = 0x0200
_BOF = 0x0809
_SST = 0x00FC
_FILEPASS = 0x002F


class XlsDamaged(Exception):
    """The container or its records do not hold together."""


class XlsEncrypted(Exception):
    """The workbook is protected with a password (a FILEPASS record)."""


@dataclass
class SheetArea:
    """The dense block a reader would build for one sheet: rows and columns from A1."""

    rows: int = 0
    columns: int = 0

    def include(self, row: int, column: int) -> None:
        self.rows = max(self.rows, row + 1)
        self.columns = max(self.columns, column + 1)

    @property
    def cells(self) -> int:
        return self.rows * self.columns


@dataclass
class XlsCost:
    stream_bytes: int = 0
    cells: int = 0  # cell records (a MULRK counts each of its cells) and shared strings
    sheets: list[SheetArea] = field(default_factory=list)


def _u16(data: bytes, offset: int) -> int:
    return int(struct.unpack_from("<H", data, offset)[0])


def _u32(data: bytes, offset: int) -> int:
    return int(struct.unpack_from("<I", data, offset)[0])


class _Ole:
    """Just enough of the compound file format to read one stream."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 512:
            raise XlsDamaged("shorter than its header")
        self.data = data
        self.sector = 1 << _u16(data, 0x1E)
        self.mini_sector = 1 << _u16(data, 0x20)
        if self.sector not in (512, 4096) or self.mini_sector != 64:
            raise XlsDamaged("unknown sector size")
        self.sectors = max(0, (len(data) - self.sector) // self.sector)
        self.fat = self._fat(data)

    def _fat(self, data: bytes) -> list[int]:
        fat_sectors = [_u32(data, 0x4C + 4 * i) for i in range(109)]
        next_difat, difat_count = _u32(data, 0x44), _u32(data, 0x48)
        for _ in range(min(difat_count, self.sectors)):
            if next_difat >= _FREE_OR_END:
                break
            block = self._sector(next_difat)
            fat_sectors += [_u32(block, 4 * i) for i in range(self.sector // 4 - 1)]
            next_difat = _u32(block, self.sector - 4)
        fat: list[int] = []
        for sector in fat_sectors[:_u32(data, 0x2C)]:
            if sector >= _FREE_OR_END:
                continue
            block = self._sector(sector)
            fat += struct.unpack_from(f"<{self.sector // 4}I", block)
        return fat

    def _sector(self, number: int) -> bytes:
        if number >= self.sectors:
            raise XlsDamaged(f"sector {number} past the end of the file")
        start = (number + 1) * self.sector
        return self.data[start:start + self.sector]

    def chain(self, start: int) -> bytes:
        """The sectors of one chain, joined; a chain longer than the file is a loop."""
        out: list[bytes] = []
        number, steps = start, 0
        while number < _FREE_OR_END:
            steps += 1
            if steps > self.sectors or number >= len(self.fat):
                raise XlsDamaged("a broken sector chain")
            out.append(self._sector(number))
            number = self.fat[number]
        return b"".join(out)

    def stream(self, names: tuple[str, ...]) -> bytes | None:
        """The first stream with one of `names`, or None when there is none."""
        directory = self.chain(_u32(self.data, 0x30))
        root: tuple[int, int] | None = None
        for offset in range(0, len(directory) - 127, 128):
            entry = directory[offset:offset + 128]
            length = min(_u16(entry, 0x40), 64)
            name = entry[:max(0, length - 2)].decode("utf-16-le", errors="replace")
            kind, start, size = entry[0x42], _u32(entry, 0x74), _u32(entry, 0x78)
            if kind == _ROOT:
                root = (start, size)
            elif kind == _STREAM and name in names:
                return self._read(start, size, root)
        return None

    def _read(self, start: int, size: int, root: tuple[int, int] | None) -> bytes:
        if size >= _u32(self.data, 0x38):  # at or over the mini-stream cutoff: plain sectors
            data = self.chain(start)
        else:
            if root is None:
                raise XlsDamaged("a small stream without a root entry")
            mini_stream = self.chain(root[0])
            table_bytes = self.chain(_u32(self.data, 0x3C))
            mini_fat = list(struct.unpack_from(f"<{len(table_bytes) // 4}I", table_bytes))
            parts: list[bytes] = []
            number, steps = start, 0
            while number < _FREE_OR_END:
                steps += 1
                if steps > len(mini_fat) or number >= len(mini_fat):
                    raise XlsDamaged("a broken mini-sector chain")
                parts.append(mini_stream[number * 64:number * 64 + 64])
                number = mini_fat[number]
            data = b"".join(parts)
        if len(data) < size:
            raise XlsDamaged("a stream shorter than its directory entry says")
        return data[:size]


def has_workbook(payload: bytes) -> bool:
    """Whether an OLE file holds an Excel workbook stream (False for anything damaged)."""
    try:
        return _Ole(payload).stream(("Workbook", "Book")) is not None
    except (XlsDamaged, struct.error):
        return False


def scan_xls(payload: bytes) -> XlsCost:
    """The cost of the workbook in `payload` (an OLE file), or XlsDamaged / XlsEncrypted."""
    try:
        stream = _Ole(payload).stream(("Workbook", "Book"))
        if stream is None:
            raise XlsDamaged("no workbook stream")
        return _scan_records(stream)
    except struct.error:
        raise XlsDamaged("a record cut short") from None


def _scan_records(stream: bytes) -> XlsCost:
    cost = XlsCost(stream_bytes=len(stream))
    area: SheetArea | None = None
    offset, size = 0, len(stream)
    while offset + 4 <= size:
        record, length = _u16(stream, offset), _u16(stream, offset + 2)
        body = offset + 4
        if body + length > size:
            raise XlsDamaged("a record runs past the end of the workbook")
        if record == _BOF:
            area = SheetArea()
            cost.sheets.append(area)
        elif record == _FILEPASS:
            raise XlsEncrypted()
        elif record == _SST and length >= 8:
            cost.cells += _u32(stream, body + 4)  # unique strings, each one allocation
        elif area is not None and record in _ONE_CELL and length >= 4:
            area.include(_u16(stream, body), _u16(stream, body + 2))
            cost.cells += 1
        elif area is not None and record in _MULTIPLE_CELLS and length >= 6:
            first, last = _u16(stream, body + 2), _u16(stream, body + length - 2)
            area.include(_u16(stream, body), max(first, last))
            cost.cells += max(1, last - first + 1)
        elif area is not None and record == _DIMENSIONS and length >= 12:
            rows, columns = _u32(stream, body + 4), _u16(stream, body + 10)
            if rows and columns:
                area.include(rows - 1, columns - 1)
        offset = body + length
    return cost
