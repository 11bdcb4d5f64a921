"""Reading a reseller's list: time and memory at 1,000 and 10,000 rows (issue 11, section 5).

A script, not a test. For each format a customer sends (.xlsx as Excel writes it, .xls as an
old ERP exports it, .ods as LibreOffice saves it) a list of N rows of six columns ("No.",
company, contact, e-mail, system, serial; the header is row 1, so N - 1 requests: a 10,000-row
sheet is exactly [limits] max_rows) is written to a temporary folder,
then read in a fresh subprocess per measurement:

- ``mailbot``: `mailbot.read.extract.extract_sheet` with the shipped rules and the default
  [limits] (the budget scan, calamine, the header search, one validated request per row), as a
  mail's attachment is read;
- ``calamine``: python-calamine alone reading every sheet of the same file (the floor: what
  the library costs before mailbot does anything);
- ``openpyxl``: openpyxl alone in read-only mode on the .xlsx (the reader we had: the
  evaluation of calamine against it; it reads neither .xls nor .ods).

Each child imports and warms up on a 10-row file of the same format, resets the kernel's
peak-RSS mark, reads the file once (peak RSS above the child's own baseline, so Rust's
allocations count too, which tracemalloc would miss), then reads it twice more and keeps the
fastest wall time. Targets, for mailbot at 10,000 rows: under 1 s and under 50 MB, and a cost
per row at 10,000 rows within 1.5 times the cost per row at 1,000 (linear). Each line prints its
figure, the target, the ratio to the calamine floor of the same run, and PASS or MISS; the run
exits 0 even on a miss, non-zero only when a measurement itself breaks.

Run: `PYTHONPATH=. .venv/bin/python benchmarks/sheet_reading.py [--rows 1000,10000]
[--json]`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from peak_memory import PeakMemory  # noqa: E402  (benchmarks/, beside this script)

TARGET_SECONDS = 1.0
TARGET_MB = 50.0
TARGET_LINEARITY = 1.5
HEADER = ["No.", "Razón social", "Contacto", "Correo electrónico", "Tipo sistema", "No de serie"]
SYSTEMS = ["CONTPAQ i Nóminas", "CONTPAQ i Bancos", "CONTPAQ i Contabilidad",
           "CONTPAQ i Factura electrónica"]


def _rows(count: int) -> list[list[object]]:
    return [[i, f"Cliente {i:05d}, S.A. de C.V.", f"Contacto {i}",
             f"contacto{i}@cliente{i:05d}.com.mx", SYSTEMS[i % 4],
             f"RSLR-{i // 10000:04d}-{i % 10000:04d}-ABCD"] for i in range(1, count)]


def write_xlsx(path: Path, count: int) -> None:
    import xlsxwriter
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Clientes")
    sheet.write_row(0, 0, HEADER)
    for index, row in enumerate(_rows(count), start=1):
        sheet.write_row(index, 0, row)
    book.close()


def write_xls(path: Path, count: int) -> None:
    import xlwt
    book = xlwt.Workbook(encoding="utf-8")
    sheet = book.add_sheet("Clientes")
    for index, row in enumerate([HEADER, *_rows(count)]):
        for column, value in enumerate(row):
            sheet.write(index, column, value)
    book.save(str(path))


def write_ods(path: Path, count: int) -> None:
    def cell(value: object) -> str:
        if isinstance(value, int):
            return (f'<table:table-cell office:value-type="float" office:value="{value}">'
                    f"<text:p>{value}</text:p></table:table-cell>")
        return ('<table:table-cell office:value-type="string">'
                f"<text:p>{value}</text:p></table:table-cell>")

    rows = "".join("<table:table-row>" + "".join(cell(v) for v in row) + "</table:table-row>"
                   for row in [HEADER, *_rows(count)])
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.3">'
        '<office:body><office:spreadsheet><table:table table:name="Clientes">'
        f"{rows}</table:table></office:spreadsheet></office:body></office:document-content>")
    manifest = ('<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest='
                '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3">'
                '<manifest:file-entry manifest:full-path="/" '
                'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
                "</manifest:manifest>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", content)
        z.writestr("META-INF/manifest.xml", manifest)


WRITERS = {"xlsx": write_xlsx, "xls": write_xls, "ods": write_ods}


# --- the child: one measurement in a fresh process ---------------------------------------------

def _reader(mode: str) -> Callable[[str, bytes], int]:
    if mode == "mailbot":
        from mailbot.config import Config, LimitsConfig
        from mailbot.read.extract import extract_sheet
        from mailbot.read.sheets import sheet_budget
        from mailbot.run.wiring import open_rules
        rules, limits = open_rules(Config()), LimitsConfig()

        def read(name: str, data: bytes) -> int:
            requests, problems = extract_sheet(name, data, rules, limits,
                                               budget=sheet_budget(limits))
            if problems:
                raise SystemExit(f"{name}: {[p.code for p in problems][:5]}")
            return len(requests)
        return read
    if mode == "calamine":
        import python_calamine

        def read(name: str, data: bytes) -> int:
            book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
            count = sum(len(book.get_sheet_by_name(n).to_python()) for n in book.sheet_names)
            book.close()
            return count
        return read
    if mode == "openpyxl":
        import openpyxl

        def read(name: str, data: bytes) -> int:
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            count = sum(1 for sheet in book.worksheets for _ in sheet.iter_rows(values_only=True))
            book.close()
            return count
        return read
    raise SystemExit(f"unknown mode {mode}")


def child(mode: str, path: str, warm: str) -> None:
    read = _reader(mode)
    read(Path(warm).name, Path(warm).read_bytes())
    data = Path(path).read_bytes()
    memory = PeakMemory()
    memory.start()
    start = time.perf_counter()
    count = read(Path(path).name, data)
    seconds = time.perf_counter() - start
    mb = memory.mb()
    for _ in range(2):
        start = time.perf_counter()
        read(Path(path).name, data)
        seconds = min(seconds, time.perf_counter() - start)
    print(json.dumps({"count": count, "seconds": seconds, "mb": mb}))


def measure(mode: str, path: Path, warm: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, __file__, "--child", mode, str(path), str(warm)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} on {path.name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the run ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="1000,10000")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    counts = [int(n) for n in args.rows.split(",")]
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="sheet-reading-") as tmp:
        folder = Path(tmp)
        for fmt, write in WRITERS.items():
            warm = folder / f"warm.{fmt}"
            write(warm, 10)
            for count in counts:
                path = folder / f"lista_{count}.{fmt}"
                write(path, count)
                modes = ["mailbot", "calamine"] + (["openpyxl"] if fmt == "xlsx" else [])
                for mode in modes:
                    figures = measure(mode, path, warm)
                    results.append({"format": fmt, "rows": count, "mode": mode,
                                    "bytes": path.stat().st_size, **figures})
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"targets for mailbot at {max(counts):,} rows: < {TARGET_SECONDS:g} s, "
          f"< {TARGET_MB:g} MB above the baseline, per-row cost within {TARGET_LINEARITY:g}x "
          f"of {min(counts):,} rows; floor = calamine alone on the same file, same run")
    print(f"{'format':6} {'rows':>6} {'reader':9} {'KB':>6} {'seconds':>8} {'MB':>6} "
          f"{'x floor s':>9} {'us/row':>7}")
    floor = {(r["format"], r["rows"]): r for r in results if r["mode"] == "calamine"}
    for r in results:
        base = floor[(r["format"], r["rows"])]
        print(f"{r['format']:6} {r['rows']:>6} {r['mode']:9} {r['bytes'] / 1024:>6.0f} "
              f"{r['seconds']:>8.3f} {r['mb']:>6.1f} {r['seconds'] / base['seconds']:>9.1f} "
              f"{r['seconds'] / r['rows'] * 1e6:>7.1f}")
    verdicts = []
    big, small = max(counts), min(counts)
    for fmt in WRITERS:
        ours = {r["rows"]: r for r in results if r["format"] == fmt and r["mode"] == "mailbot"}
        top = ours[big]
        verdicts.append((f"{fmt} {big:,} rows: time", top["seconds"], TARGET_SECONDS, "s"))
        verdicts.append((f"{fmt} {big:,} rows: memory", top["mb"], TARGET_MB, "MB"))
        if big != small:
            linear = (top["seconds"] / big) / (ours[small]["seconds"] / small)
            verdicts.append((f"{fmt} per-row cost {big:,} / {small:,}", linear, TARGET_LINEARITY,
                             "x"))
    openpyxl_rows = {r["rows"]: r for r in results if r["mode"] == "openpyxl"}
    if big in openpyxl_rows:
        cal = floor[("xlsx", big)]
        print(f"evaluation, xlsx {big:,} rows: openpyxl {openpyxl_rows[big]['seconds']:.3f} s "
              f"{openpyxl_rows[big]['mb']:.1f} MB, calamine {cal['seconds']:.3f} s "
              f"{cal['mb']:.1f} MB: calamine {openpyxl_rows[big]['seconds'] / cal['seconds']:.0f}x"
              f" faster")
    for name, value, target, unit in verdicts:
        print(f"{name:36} {value:8.3f} {unit:2} target < {target:g} {unit:2} "
              f"ratio {value / target:5.2f}  {'PASS' if value < target else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
