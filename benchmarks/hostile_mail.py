"""Hostile mails through the real read path: time and peak memory per mail (issue 8, section 5).

A script, not a test. Each case of the issue's catalogue (a spreadsheet of 5.5 M shared
strings, a row of a million cells, a 9.8 MB Subject, a From of 500,000 mailboxes...) is built
in memory, written to a temporary file, and read in a fresh subprocess by
`mailbot.read.extract.read_mail` with the shipped rules and the default limits, as
`mailbot parse` reads it. The child loads the file, imports and warms up everything (one plain
request mail with an .xlsx attached), resets the kernel's peak-RSS mark, reads the mail once and
reports the wall time and the peak RSS above its own baseline. The same is done for the floor
(the plain mail) and, per case, for mail-parser alone on the same bytes (what the library costs
before mailbot does anything). A case that takes longer than `--timeout` is killed and counted
as that many seconds.

Run: `.venv/bin/python benchmarks/hostile_mail.py [--cases a,b] [--seconds 2] [--megabytes 300]
[--timeout 60] [--no-mailparser] [--json]`. Exits 1 when a case misses a target.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from peak_memory import PeakMemory  # noqa: E402  (benchmarks/, beside this script)

MB = 1024 * 1024
SUBJECT = "Solicitud de claves para actualización sin costo"
SENDER = "rgonzalez@empresamuestra.com.mx"
BODY = (
    "Buenas tardes\n\n"
    "Nombre de la empresa: Empresa de muestra S.A. de C.V.\n"
    "Nombre del contacto: Raul Gonzalez Rivera\n"
    f"Correo electrónico del contacto: {SENDER}\n"
    "Tipo de sistema: CONTPAQ i Factura electrónica\n"
    "Número de serie: AAAA-BBBB-CCCC-DDDD\n\n"
    "Saludos\n"
)
HEADER_ROW = ["Nombre de la empresa", "Nombre del contacto", "Correo electrónico",
              "Tipo de sistema", "Número de serie"]
DATA_ROW = ["Empresa de muestra S.A. de C.V.", "Raul Gonzalez Rivera", SENDER,
            "CONTPAQ i Contabilidad", "AAAA-BBBB-CCCC-EEEE"]


# --- building mails -----------------------------------------------------------------------------

def headers(subject: str = SUBJECT, from_: str = f"Raul Gonzalez <{SENDER}>",
            extra: str = "", content_type: str = "text/plain; charset=utf-8",
            cte: str = "8bit") -> bytes:
    return (
        f"Return-Path: <{SENDER}>\r\n"
        f"From: {from_}\r\n"
        "To: claves@example.com\r\n"
        f"Subject: {subject}\r\n"
        "Date: Mon, 3 Oct 2022 16:02:11 -0500\r\n"
        "Message-ID: <8d2f61a3-5b7e-4c1e-9f0a-3e6b2d9c4a10@empresamuestra.com.mx>\r\n"
        f"{extra}"
        "MIME-Version: 1.0\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Transfer-Encoding: {cte}\r\n\r\n"
    ).encode()


def plain_mail(body: str = BODY, **kw: str) -> bytes:
    return headers(**kw) + body.replace("\n", "\r\n").encode("utf-8")


def with_attachments(files: list[tuple[str, bytes]], body: str = BODY) -> bytes:
    boundary = "----=_Part_hostile_0001"
    out = [headers(content_type=f'multipart/mixed; boundary="{boundary}"', cte="7bit"),
           f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n".encode(),
           body.replace("\n", "\r\n").encode("utf-8"), b"\r\n"]
    for name, payload in files:
        out.append(
            f"--{boundary}\r\nContent-Type: application/vnd.openxmlformats-officedocument."
            f"spreadsheetml.sheet; name=\"{name}\"\r\nContent-Disposition: attachment; "
            f"filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n".encode())
        out.append(base64.encodebytes(payload).replace(b"\n", b"\r\n"))
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml"


Chunks = Callable[[], Iterator[bytes]]


def xlsx(sheet_xml: Chunks, strings: Chunks | None = None, styles: Chunks | None = None) -> bytes:
    """A minimal, valid workbook whose sheet (shared strings, styles) XML is streamed in chunks."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as book:
        overrides = (f'<Override PartName="/xl/workbook.xml" ContentType="{_CT}.sheet.main+xml"/>'
                     f'<Override PartName="/xl/worksheets/sheet1.xml" '
                     f'ContentType="{_CT}.worksheet+xml"/>')
        rels = f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
        if strings is not None:
            overrides += (f'<Override PartName="/xl/sharedStrings.xml" '
                          f'ContentType="{_CT}.sharedStrings+xml"/>')
            rels += (f'<Relationship Id="rId2" Type="{_REL}/sharedStrings" '
                     'Target="sharedStrings.xml"/>')
        if styles is not None:
            overrides += f'<Override PartName="/xl/styles.xml" ContentType="{_CT}.styles+xml"/>'
            rels += f'<Relationship Id="rId3" Type="{_REL}/styles" Target="styles.xml"/>'
        book.writestr("[Content_Types].xml", (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            f'{overrides}</Types>'))
        book.writestr("_rels/.rels", (
            f'<Relationships xmlns="{_PKG}"><Relationship Id="rId1" Type="{_REL}/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>'))
        book.writestr("xl/workbook.xml", (
            f'<workbook xmlns="{_NS}" xmlns:r="{_REL}"><sheets>'
            '<sheet name="Hoja1" sheetId="1" r:id="rId1"/></sheets></workbook>'))
        book.writestr("xl/_rels/workbook.xml.rels", f'<Relationships xmlns="{_PKG}">{rels}'
                      '</Relationships>')
        for name, chunks in (("xl/worksheets/sheet1.xml", sheet_xml),
                             ("xl/sharedStrings.xml", strings), ("xl/styles.xml", styles)):
            if chunks is None:
                continue
            with book.open(name, "w", force_zip64=True) as part:
                for chunk in chunks():
                    part.write(chunk)
    return buffer.getvalue()


def _inline_row(number: int, values: list[str]) -> bytes:
    cells = "".join(f'<c t="inlineStr"><is><t>{v}</t></is></c>' for v in values)
    return f'<row r="{number}">{cells}</row>'.encode()


def _request_rows() -> bytes:
    return _inline_row(1, HEADER_ROW) + _inline_row(2, DATA_ROW)


def _in_chunks(piece: bytes, count: int, per_chunk: int = 65536) -> Iterator[bytes]:
    block = piece * per_chunk
    for _ in range(count // per_chunk):
        yield block
    yield piece * (count % per_chunk)


def case_xlsx_shared_strings() -> bytes:
    """A 5.5 M-entry sharedStrings part (a few hundred KB zipped) beside a real list."""
    count = 5_500_000

    def strings() -> Iterator[bytes]:
        yield (f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{_NS}" count="{count}" '
               f'uniqueCount="{count}">').encode()
        yield from _in_chunks(b"<si><t>x</t></si>", count)
        yield b"</sst>"

    def sheet() -> Iterator[bytes]:
        yield f'<worksheet xmlns="{_NS}"><sheetData>'.encode() + _request_rows()
        yield b'<row r="3"><c t="s"><v>5499999</v></c></row></sheetData></worksheet>'

    return with_attachments([("lista.xlsx", xlsx(sheet, strings))])


def case_xlsx_wide_row() -> bytes:
    """One row of 1,000,000 cells below a real header and request."""
    def sheet() -> Iterator[bytes]:
        yield f'<worksheet xmlns="{_NS}"><sheetData>'.encode() + _request_rows()
        yield b'<row r="3">'
        yield from _in_chunks(b"<c><v>1</v></c>", 1_000_000)
        yield b"</row></sheetData></worksheet>"

    return with_attachments([("lista.xlsx", xlsx(sheet))])


def case_xlsx_whitespace_sheets() -> bytes:
    """Twenty attachments, each a real list followed by 95 MB of whitespace in its sheet."""
    def sheet() -> Iterator[bytes]:
        yield f'<worksheet xmlns="{_NS}"><sheetData>'.encode() + _request_rows()
        yield from _in_chunks(b" " * 1024, 95 * 1024)
        yield b"</sheetData></worksheet>"

    book = xlsx(sheet)
    return with_attachments([(f"lista{n:02d}.xlsx", book) for n in range(1, 21)])


def case_html_body() -> bytes:
    """A 22 MB HTML body: the request, then table rows and paragraphs, 8-bit."""
    row = ("<tr><td class=x>Concepto de relleno</td><td>Valor de relleno 1234</td></tr>\r\n"
           "<p class=MsoNormal>Texto <b>de</b> relleno con <a href='mailto:a@b.mx'>enlace</a>"
           "</p>\r\n")
    request = "".join(f"<p>{line}</p>\r\n" for line in BODY.splitlines())
    count = 22 * MB // len(row)
    html = f"<html><body>{request}<table>{row * count}</table></body></html>"
    return headers(content_type="text/html; charset=utf-8") + html.encode()


def case_text_body() -> bytes:
    """A 25 MB text body (just under max_message_bytes): the request, then label-like lines."""
    lines = ("Empresa: Otra empresa de relleno S.A.\r\nSistema: CONTPAQ i Nóminas\r\n"
             "Texto de relleno sin etiqueta alguna, solo palabras y más palabras.\r\n"
             "> Serie: ZZZZ-ZZZZ-ZZZZ-ZZZZ\r\n")
    body = BODY.replace("\n", "\r\n") + lines * ((25 * MB - 4096) // len(lines.encode()))
    return headers() + body.encode()


def case_base64_garbage() -> bytes:
    """A text part declared base64 holding 21 MB of junk with some base64 in it."""
    junk = b"!@#$%^&*QUJD()[]{};:,.<>?~`|\\ \t" * 3 + b"\r\n"
    return headers(cte="base64") + junk * (21 * MB // len(junk))


def _encoded_subject(target_bytes: int | None, words: int) -> str:
    word = "=?utf-8?B?" + base64.b64encode(b"Solicitud ").decode() + "?="
    count = words if target_bytes is None else target_bytes // (len(word) + 3)
    return "\r\n ".join([word] * count)


def case_subject_encoded_words() -> bytes:
    """A Subject of 100,000 RFC 2047 encoded-words, folded."""
    return plain_mail(subject=_encoded_subject(None, 100_000))


def case_subject_encoded_words_9mb() -> bytes:
    """A 9.8 MB Subject of encoded-words."""
    return plain_mail(subject=_encoded_subject(int(9.8 * MB), 0))


def _mailboxes(count: int) -> str:
    return ",\r\n ".join(f"Persona {n} <p{n}@x{n % 97}.mx>" for n in range(count))


def case_from_mailboxes() -> bytes:
    """A From of 50,000 mailboxes."""
    return plain_mail(from_=_mailboxes(50_000))


def case_from_mailboxes_500k() -> bytes:
    """A From of 500,000 mailboxes."""
    return plain_mail(from_=_mailboxes(500_000))


def case_references() -> bytes:
    """References and In-Reply-To of 60,000 message ids."""
    ids = "\r\n ".join(f"<{n:08x}.{n}@hilo.empresamuestra.com.mx>" for n in range(60_000))
    return plain_mail(extra=f"In-Reply-To: {ids}\r\nReferences: {ids}\r\n")


def case_display_name() -> bytes:
    """A From whose display name is 10 MB long, quoted, folded every 76 characters."""
    name = "\r\n ".join(["Raul" * 19] * (10 * MB // 78))
    return plain_mail(from_=f'"{name}" <{SENDER}>')


def case_re_prefixes() -> bytes:
    """A Subject of 250,000 "RE: " prefixes before the request subject."""
    return plain_mail(subject="RE: " * 250_000 + SUBJECT)


def case_separator_line() -> bytes:
    """A body line of 256 KB of separators after a label."""
    return plain_mail(body="Tipo de sistema: " + ", " * (128 * 1024) + "\n" + BODY)


def case_many_headers() -> bytes:
    """200,000 small header fields (about 4 MB) above an ordinary request."""
    extra = "".join(f"X-Relleno-{n}: valor {n}\r\n" for n in range(200_000))
    return plain_mail(extra=extra)


def case_many_parts() -> bytes:
    """A multipart/mixed of 50,000 small text parts."""
    boundary = "b0undary"
    part = (f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Texto de relleno.\r\n")
    last = f"--{boundary}\r\nContent-Type: text/plain\r\n\r\n{BODY}\r\n--{boundary}--\r\n"
    head = headers(content_type=f'multipart/mixed; boundary="{boundary}"', cte="7bit")
    return head + (part * 50_000 + last).encode()


def case_tab_line() -> bytes:
    """A body line of 128,000 one-letter cells separated by tabs (a "pasted spreadsheet")."""
    return plain_mail(body="a\t" * 128_000 + "\n" + BODY)


def case_eml_attachments() -> bytes:
    """Twenty forwarded mails attached as .eml, each with a 1 MB body of label lines."""
    inner = case_text_body()[:1024 * 1024]
    boundary = "----=_Part_eml"
    out = [headers(content_type=f'multipart/mixed; boundary="{boundary}"', cte="7bit"),
           f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nVer adjuntos.\r\n".encode()]
    for n in range(20):
        out.append(f"--{boundary}\r\nContent-Type: message/rfc822\r\nContent-Disposition: "
                   f"attachment; filename=\"reenviado{n}.eml\"\r\n\r\n".encode() + inner
                   + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


def case_xlsx_styles() -> bytes:
    """A real list whose styles part holds 200,000 cell formats (about 10 MB unzipped)."""
    def styles() -> Iterator[bytes]:
        yield f'<styleSheet xmlns="{_NS}"><cellXfs count="200000">'.encode()
        yield from _in_chunks(b'<xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>', 200_000)
        yield b"</cellXfs></styleSheet>"

    def sheet() -> Iterator[bytes]:
        yield f'<worksheet xmlns="{_NS}"><sheetData>'.encode() + _request_rows()
        yield b"</sheetData></worksheet>"

    return with_attachments([("lista.xlsx", xlsx(sheet, styles=styles))])


def case_xlsx_at_the_limits() -> bytes:
    """The costliest list the default limits let through: 1,999 rows of 14 inline-string
    cells (30,000 cells and rows, 86,000 elements), the header first."""
    def sheet() -> Iterator[bytes]:
        yield f'<worksheet xmlns="{_NS}"><sheetData>'.encode() + _request_rows()
        for number in range(3, 2000):
            yield _inline_row(number, DATA_ROW + [f"relleno {n}" for n in range(9)])
        yield b"</sheetData></worksheet>"

    return with_attachments([("lista.xlsx", xlsx(sheet))])


CASES: dict[str, Callable[[], bytes]] = {
    "xlsx_shared_strings": case_xlsx_shared_strings,
    "xlsx_wide_row": case_xlsx_wide_row,
    "xlsx_whitespace_sheets": case_xlsx_whitespace_sheets,
    "html_body_22mb": case_html_body,
    "text_body_25mb": case_text_body,
    "base64_garbage_21mb": case_base64_garbage,
    "subject_100k_words": case_subject_encoded_words,
    "subject_9.8mb": case_subject_encoded_words_9mb,
    "from_50k_mailboxes": case_from_mailboxes,
    "from_500k_mailboxes": case_from_mailboxes_500k,
    "references_60k": case_references,
    "display_name_10mb": case_display_name,
    "re_prefixes_250k": case_re_prefixes,
    "separator_line_256kb": case_separator_line,
    "headers_200k_fields": case_many_headers,
    "parts_50k": case_many_parts,
    "tab_line_128k_cells": case_tab_line,
    "eml_attachments_20x1mb": case_eml_attachments,
    "xlsx_styles_200k": case_xlsx_styles,
    "xlsx_at_the_limits": case_xlsx_at_the_limits,
}


def floor_mail() -> bytes:
    """The floor: one plain request in the body and a two-row .xlsx list attached."""
    def sheet() -> Iterator[bytes]:
        yield f'<worksheet xmlns="{_NS}"><sheetData>'.encode() + _request_rows()
        yield b"</sheetData></worksheet>"

    return with_attachments([("lista.xlsx", xlsx(sheet))])


# --- the child: one measured reading ------------------------------------------------------------

def child(mode: str, path: str) -> None:
    from mailbot.config import Config
    from mailbot.read.extract import read_mail
    from mailbot.run.wiring import open_rules

    config = Config()
    rules = open_rules(config)
    own = (config.bot.address.lower(),)
    data = Path(path).read_bytes()

    def run(mail: bytes) -> dict:
        if mode == "mailparser":
            import mailparser
            mailparser.MailParser.from_bytes(mail)
            return {}
        parsed, extraction = read_mail(mail, rules, config.limits, own)
        return {"requests": len(extraction.requests), "kind": extraction.kind,
                "ignored": extraction.ignored, "subject_chars": len(parsed.subject),
                "problems": sorted({p.code for p in extraction.problems})}

    run(floor_mail())  # imports (openpyxl, lxml...) and caches outside the measurement
    memory = PeakMemory()
    memory.start()
    start = time.perf_counter()
    result = run(data)
    seconds = time.perf_counter() - start
    result.update(seconds=seconds, mb=memory.mb())
    print(json.dumps(result))


def measure(mode: str, path: Path, timeout: float) -> dict:
    try:
        done = subprocess.run([sys.executable, __file__, "--child", mode, str(path)],
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"seconds": timeout, "mb": float("nan"), "timeout": True}
    if done.returncode != 0:
        return {"seconds": float("nan"), "mb": float("nan"),
                "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the table ---------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--seconds", type=float, default=2.0, help="target seconds per mail")
    parser.add_argument("--megabytes", type=float, default=300.0, help="target peak MB per mail")
    parser.add_argument("--timeout", type=float, default=60.0, help="kill a case after this")
    parser.add_argument("--no-mailparser", action="store_true",
                        help="skip mail-parser alone on each case's bytes")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    names = args.cases.split(",") if args.cases else list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(CASES)}")

    out = sys.stderr if args.json else sys.stdout
    figures: dict[str, dict] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mailbot-hostile-") as tmp:
        floor_path = Path(tmp) / "floor.eml"
        floor_path.write_bytes(floor_mail())
        floor = measure("read", floor_path, args.timeout)
        floor_mp = measure("mailparser", floor_path, args.timeout)
        print(f"floor: plain request + 2-row .xlsx ({floor_path.stat().st_size:,} bytes): "
              f"read_mail {floor['seconds'] * 1000:.1f} ms, {floor['mb']:.1f} MB; "
              f"mail-parser alone {floor_mp['seconds'] * 1000:.1f} ms", file=out, flush=True)
        head = (f"{'case':24} {'size MB':>8} {'seconds':>8} {'MB':>7} {'x floor':>8} "
                f"{'ratio':>6} {'':4}  {'mail-parser s':>13}  problems")
        print(f"targets: {args.seconds:g} s and {args.megabytes:g} MB per mail; ratio = the "
              f"larger of seconds/{args.seconds:g} and MB/{args.megabytes:g}", file=out, flush=True)
        print(head, file=out, flush=True)
        failed = []
        for name in names:
            path = Path(tmp) / f"{name}.eml"
            data = CASES[name]()
            path.write_bytes(data)
            del data
            got = measure("read", path, args.timeout)
            mp = ({} if args.no_mailparser else measure("mailparser", path, args.timeout))
            ratio = max(got["seconds"] / args.seconds, got["mb"] / args.megabytes)
            ok = ratio <= 1.0  # NaN (a crash, a timeout's memory) compares False: a miss
            failed += [] if ok else [name]
            figures[name] = {"size": path.stat().st_size, **got, "ratio": ratio, "pass": ok,
                             "mailparser_seconds": mp.get("seconds"),
                             "mailparser_mb": mp.get("mb")}
            seconds = (f">{got['seconds']:.0f}" if got.get("timeout")
                       else f"{got['seconds']:.2f}")
            mp_text = ("-" if not mp else f">{mp['seconds']:.0f}" if mp.get("timeout")
                       else f"{mp['seconds']:.2f}")
            what = got.get("error") or ", ".join(got.get("problems", ())) or "-"
            print(f"{name:24} {path.stat().st_size / MB:8.1f} {seconds:>8} {got['mb']:7.1f} "
                  f"{got['seconds'] / floor['seconds']:8.0f} {ratio:6.2f} "
                  f"{'PASS' if ok else 'FAIL':4}  {mp_text:>13}  {what}", file=out, flush=True)
            path.unlink()
    # The answer's subject is built from the customer's: 250,000 "RE: " before it (1 MB, as a
    # mail read without header limits would give it) must not take seconds there either.
    from mailbot.answer.message import reply_subject

    start = time.perf_counter()
    reply_subject("RE: " * 250_000 + SUBJECT, "CLV-000001")
    reply_seconds = time.perf_counter() - start
    reply_ok = reply_seconds <= args.seconds
    failed += [] if reply_ok else ["reply_subject"]
    print(f"reply_subject of a 1 MB Subject of 250,000 'RE: ': {reply_seconds:.2f} s  "
          f"{'PASS' if reply_ok else 'FAIL'}", file=out, flush=True)
    print(f"{len(names) - len(failed) + (not reply_ok)}/{len(names)} cases within target; "
          f"run time {time.perf_counter() - started:.0f} s", file=out, flush=True)
    if args.json:
        print(json.dumps({"floor": floor, "floor_mailparser": floor_mp, "cases": figures,
                          "reply_subject_seconds": reply_seconds,
                          "targets": {"seconds": args.seconds, "megabytes": args.megabytes}}))
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
