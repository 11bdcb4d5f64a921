"""mailbot on real servers, measured: an honest floor, end-to-end throughput and IDLE latency
(issue 3, §5; issue 10, §2-3).

A script, not a test: it prints its figures and exits 0 even when a target is missed (a crash
or a broken run is still an error). One run:

1. starts a private Dovecot (tests/dovecot.py, plaintext on loopback) and an aiosmtpd server
   (tests/smtp_server.py, the "plain" listener), and stops both at the end, whatever happens;
2. generates N realistic request mails (default 1,000): a fifth from Outlook with an .xlsx
   attached (3-5 rows), the rest single requests in the body from plain-text clients,
   Outlook (text + HTML with a table), Gmail (text + HTML, values under their labels) and
   HTML-only Outlook; each with its own Message-ID, sender, company and serial, and a licence
   registry and key pool that match, imported into a fresh SQLite store, so every request
   really issues a key;
3. measures the HONEST FLOOR, the work no implementation can avoid, on the same servers in the
   same run: raw imapclient fetch (BODY.PEEK[] in batches of 200) + mail-parser
   `parse_from_bytes` + openpyxl (read-only) reading of every .xlsx attachment, of the same
   mails (the old floor, printed as "read"); plus sending one reply per mail over ONE smtplib
   connection to the same aiosmtpd listener, the real replies the end-to-end pass sent (their
   bytes and recipients, so of the real size; measured after that pass); plus filing the same
   mails, appended again (not timed) to a folder of the same Dovecot, with one UID MOVE per
   batch of 200 into another folder. The floor is mails / (read + send + move) seconds.
   The aiosmtpd server runs in a process of its own (benchmarks/smtp_process.py says why;
   `--smtp-in-process` runs it on threads of this one, sharing mailbot's GIL), for the floor
   and the end-to-end pass alike;
4. measures END-TO-END: `run_once` with ImapSource + SmtpSink over the N mails, from the INBOX
   to every reply accepted by the SMTP server, its copy in Sent and the mail filed, as mails/s,
   with a breakdown of where the main process's time went (mails read by the read-ahead
   worker processes are counted, not timed; so are the replies the courier process sent) and
   the CPU time of this process (when it is close to the wall time, the pass is CPU-bound);
5. measures LATENCY with IDLE: `serve()` runs in a thread; mails are appended one at a time
   with small gaps; per mail, APPEND -> its reply's arrival at the SMTP server (matched by
   In-Reply-To); p50 / p95 / max;
6. prints the ratio end-to-end / honest floor and PASS/MISS against the targets of issue 10
   (end-to-end >= 0.6 of the honest floor; latency p95 < 1 s, on a 2-core machine).

Run: `make bench`, or `.venv/bin/python benchmarks/imap_throughput.py [--mails N]
[--latency-mails N] [--latency-gap S] [--poll-seconds S] [--json] [--profile FILE
[--profiler cprofile|pyinstrument]] [--keep]`. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import datetime as dt
import io
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import sqlalchemy as sa  # noqa: E402
from botconfig import server_config  # noqa: E402
from dovecot import INSTALL_HINT, DovecotServer, dovecot_available  # noqa: E402
from honest_floor import (  # noqa: E402
    FLOOR_BATCH,
    honest_floor,
    measure_floor,
    measure_floor_move,
    measure_floor_send,
    sent_replies,
)
from smtp_process import SmtpServerProcess, on_accepted  # noqa: E402
from smtp_server import SmtpTestServer, make_tls_files  # noqa: E402

from mailbot import config as config_module  # noqa: E402
from mailbot.ops.demo import (  # noqa: E402
    SEED_SPREADSHEET_ROWS,
    SUPPORT_FOREVER,
    XLSX_TYPE,
    _finish_mime,
    _gmail_link,
    _message,
    _outlook_html,
)
from mailbot.ops.imports import read_keys, read_registry  # noqa: E402
from mailbot.run import pipeline, reading, replies  # noqa: E402
from mailbot.run.courier import Courier  # noqa: E402
from mailbot.run.pipeline import run_once  # noqa: E402
from mailbot.run.sending import Send  # noqa: E402
from mailbot.run.service import serve  # noqa: E402
from mailbot.run.wiring import open_app  # noqa: E402
from mailbot.store.database import mails as mails_table  # noqa: E402
from mailbot.store.database import outbox  # noqa: E402
from mailbot.store.database import requests as requests_table  # noqa: E402

TARGET_RATIO = 0.6  # end-to-end at least 0.6 of the honest floor (issue 10, §3)
TARGET_P95 = 1.0  # seconds, APPEND -> reply at the SMTP server, with IDLE
OUR_ADDRESS = "claves@example.com"
OPERATORS = "operadores@example.com"
FOLDERS = ("mailbot/procesados", "mailbot/revision", "mailbot/ignorados", "mailbot/fallidos")


# --- the mails, the registry and the key pool ------------------------------------------------

# The systems of rules/catalogue.toml, with ways customers write them (all recognised).
SYSTEMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CONTPAQ i Factura electrónica", ("CONTPAQ i – Factura electrónica", "Factura electrónica",
                                       "CONTPAQi Factura", "CONTPAQ i Factura electrónica")),
    ("CONTPAQ i Contabilidad", ("CONTPAQ i Contabilidad", "Contabilidad", "CONTPAQi Conta")),
    ("CONTPAQ i Nóminas", ("CONTPAQ i Nóminas", "Nóminas", "CONTPAQi Nomina")),
    ("CONTPAQ i Bancos", ("CONTPAQ i Bancos", "Bancos")),
    ("CONTPAQ i Comercial", ("CONTPAQ i Comercial", "CONTPAQi Comercial Premium", "Comercial")),
    ("CONTPAQ i Punto de venta", ("CONTPAQ i Punto de venta", "Punto de venta")),
    ("Aspel FACTURE", ("Aspel FACTURE", "FACTURE")),
)
_FIRST = ("Raúl", "María", "José", "Guadalupe", "Alejandra", "Jorge", "Héctor", "Laura",
          "Ernesto", "Patricia", "Fernando", "Sofía", "Ricardo", "Verónica", "Andrés", "Lucía")
_LAST = ("González", "Hernández", "López", "Martínez", "Pérez", "Ramírez", "Sánchez", "Ruiz",
         "Domínguez", "Álvarez", "Méndez", "Ríos", "Navarro", "Castillo", "Ortega", "Vargas")
_TRADE = ("Ferretería", "Abarrotes", "Distribuidora", "Comercializadora", "Taller Mecánico",
          "Servicios Contables", "Papelería", "Grupo Industrial", "Transportes", "Farmacia",
          "Constructora", "Despacho", "Refaccionaria", "Mueblería", "Panificadora")
_NAMES = ("El Tornillo", "Lomas del Norte", "Doña Lupita", "Hermanos Ruiz", "La Esperanza",
          "Monterrey", "del Bajío", "San Ángel", "Los Pinos", "del Pacífico", "La Central",
          "Santa Fe", "del Valle", "El Águila", "Las Torres", "Tres Ríos", "La Estrella")
_FORMS = (", S.A. de C.V.", ", S.C.", ", S. de R.L. de C.V.", "")
_SERIAL_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_KEY_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_SUBJECTS = ("Solicitud de claves para actualización sin costo",
             "Solicitud de claves para actualizacion sin costo",
             "SOLICITUD DE CLAVES PARA ACTUALIZACION SIN COSTO",
             "Claves para actualización sin costo")
_MAILERS = ("Mozilla/5.0 (Windows NT 6.1; rv:9.0) Gecko/20111222 Thunderbird/9.0.1",
            "iPhone Mail (9A405)", None)
_OUTLOOK = "Microsoft Outlook 14.0"
KINDS = ("spreadsheet", "plain", "outlook", "gmail", "outlook-html")  # one in five each


@dataclass
class Licence:
    serial: str
    system: str
    company: str
    contact_name: str
    contact_email: str
    purchase_date: str
    modality: str
    support_until: str
    users: int


@dataclass
class BenchMail:
    kind: str
    message_id: str
    data: bytes
    licences: list[Licence]


@dataclass
class Dataset:
    mails: list[BenchMail]
    registry: list[Licence]
    keys: list[tuple[str, str]]


class _Gen:
    """Deterministic, distinct companies, senders, serials and keys."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.serials: set[str] = set()
        self.keys: set[str] = set()

    def serial(self) -> str:
        while True:
            s = "-".join("".join(self.rnd.choice(_SERIAL_CHARS) for _ in range(4))
                         for _ in range(4))
            if s not in self.serials:
                self.serials.add(s)
                return s

    def key(self) -> str:
        while True:
            k = "2012-" + "-".join("".join(self.rnd.choice(_KEY_CHARS) for _ in range(5))
                                   for _ in range(4))
            if k not in self.keys:
                self.keys.add(k)
                return k

    def company(self, number: int) -> tuple[str, str]:
        """(company name, mail domain), distinct per number."""
        trade, name = self.rnd.choice(_TRADE), self.rnd.choice(_NAMES)
        company = f"{trade} {name} {number:04d}{self.rnd.choice(_FORMS)}"
        slug = "".join(c for c in f"{trade}{name}".lower() if c.isascii() and c.isalnum())
        return company, f"{slug}{number:04d}.com.mx"

    def licence(self, company: str, contact: str, email: str) -> Licence:
        system = self.rnd.choice(SYSTEMS)[0]
        bought = dt.date(2011, 7, 1) + dt.timedelta(days=self.rnd.randrange(300))  # eligible
        support = self.rnd.choice((SUPPORT_FOREVER, SUPPORT_FOREVER, "", "2012-08-21"))
        return Licence(serial=self.serial(), system=system, company=company,
                       contact_name=contact, contact_email=email,
                       purchase_date=bought.isoformat(),
                       modality=self.rnd.choice(("electronico", "fisico", "suscripcion")),
                       support_until=support, users=self.rnd.choice((1, 2, 3, 5, 10, 20, 35)))

    def spelling(self, system: str) -> str:
        return self.rnd.choice(dict(SYSTEMS)[system])

    def written_serial(self, serial: str) -> str:
        style = self.rnd.randrange(4)
        if style == 1:
            return serial.lower()
        if style == 2:
            return serial.replace("-", " ")
        if style == 3:
            return serial.title()
        return serial


def make_dataset(count: int, seed: int = 2012) -> Dataset:
    gen = _Gen(seed)
    out: list[BenchMail] = []
    registry: list[Licence] = []
    start = dt.datetime(2012, 1, 16, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=-6), "CST"))
    for number in range(count):
        kind = KINDS[number % len(KINDS)]
        company, domain = gen.company(number)
        first, last = gen.rnd.choice(_FIRST), gen.rnd.choice(_LAST)
        contact = f"{first} {last} {gen.rnd.choice(_LAST)}"
        local = "".join(c for c in f"{first[0]}{last}".lower() if c.isascii() and c.isalpha())
        sender = Address(contact, addr_spec=f"{local}@{domain}")
        rows = gen.rnd.randint(3, 5) if kind == "spreadsheet" else 1
        licences = [gen.licence(company, contact, sender.addr_spec) for _ in range(rows)]
        registry.extend(licences)
        date = start + dt.timedelta(minutes=7 * number)
        message_id = f"<bench.{number:05d}.{gen.rnd.getrandbits(48):012x}@{domain}>"
        msg = _build_mail(gen, kind, sender, company, contact, licences, date, message_id)
        _finish_mime(msg, number % 1000)
        out.append(BenchMail(kind, message_id, msg.as_bytes(policy=policy.SMTP), licences))
    # A key for every request, and a few spare per system (as an operator keeps the pool).
    needed = collections.Counter(lic.system for lic in registry)
    keys = [(system, gen.key()) for system, _ in SYSTEMS for _ in range(needed[system] + 5)]
    return Dataset(out, registry, keys)


def _build_mail(gen: _Gen, kind: str, sender: Address, company: str, contact: str,
                licences: list[Licence], date: dt.datetime, message_id: str):
    lic = licences[0]
    subject = gen.rnd.choice(_SUBJECTS)
    fields = [("Nombre de la empresa", company), ("Nombre del contacto", contact),
              ("Correo electrónico del contacto", sender.addr_spec),
              ("Tipo de sistema", gen.spelling(lic.system)),
              ("Número de serie", gen.written_serial(lic.serial))]
    signature = f"{contact}\n{company}\nTel. (55) 5{gen.rnd.randrange(10**6, 10**7)}\n"
    if kind == "spreadsheet":
        msg = _message(sender=sender, to=OUR_ADDRESS, subject=subject, date=date,
                       message_id=message_id, mailer=_OUTLOOK)
        msg["Content-Language"] = "es-mx"
        text = ("Buenas tardes\n\nMe permito solicitar las claves de actualización sin costo de "
                "nuestros sistemas, anexo un archivo donde relaciono los números de serie "
                f"actuales.\n\nGracias\n\n{signature}")
        html = _outlook_html(["Buenas tardes", "", "Me permito solicitar las claves de "
                              "actualizaci&oacute;n sin costo de nuestros sistemas, anexo un "
                              "archivo donde relaciono los n&uacute;meros de serie actuales.",
                              "", "Gracias", "", contact, company])
        msg.set_content(text, charset="windows-1252", cte="quoted-printable")
        msg.add_alternative(html, subtype="html", charset="windows-1252", cte="quoted-printable")
        msg.add_attachment(_spreadsheet(gen, licences), maintype=XLSX_TYPE[0],
                           subtype=XLSX_TYPE[1], filename="Relacion de sistemas sin costo.xlsx")
    elif kind == "plain":
        msg = _message(sender=sender, to=OUR_ADDRESS, subject=subject, date=date,
                       message_id=message_id, mailer=gen.rnd.choice(_MAILERS))
        greeting = gen.rnd.choice(("Buenas tardes", "Buenos días", "Hola, buen día"))
        body = "".join(f"{label}: {value}\n" for label, value in fields)
        text = (f"{greeting}\n\nMe permito solicitar mis claves para la actualización sin "
                f"costo de mi sistema.\n\n{body}\nSaludos\n\n{signature}")
        charset = gen.rnd.choice(("utf-8", "iso-8859-1"))
        try:
            text.encode(charset)
        except UnicodeEncodeError:  # e.g. "CONTPAQ i – Factura": the dash is not Latin-1
            charset = "utf-8"
        msg.set_content(text, charset=charset, cte="quoted-printable")
    elif kind in ("outlook", "outlook-html"):
        msg = _message(sender=sender, to=OUR_ADDRESS, subject=subject, date=date,
                       message_id=message_id, mailer=_OUTLOOK)
        msg["Content-Language"] = "es-mx"
        short = [("Empresa", company), ("Contacto", contact), ("Correo", sender.addr_spec),
                 ("Sistema", fields[3][1]), ("No. de serie", fields[4][1])]
        html_rows = [(label, f'<a href="mailto:{value}">{value}</a>' if "@" in value else value)
                     for label, value in short]
        html = _outlook_html(["Buenos d&iacute;as:", "", "Les solicito las claves de "
                              "actualizaci&oacute;n sin costo:", ""], html_rows,
                             ["", "Saludos cordiales,", contact, company])
        if kind == "outlook":
            text = ("Buenos días:\n\nLes solicito las claves de actualización sin costo:\n\n" +
                    "".join(f"{label}\t{value}\n" for label, value in short) +
                    f"\nSaludos cordiales,\n{signature}")
            msg.set_content(text, charset="windows-1252", cte="quoted-printable")
            msg.add_alternative(html, subtype="html", charset="windows-1252",
                                cte="quoted-printable")
        else:
            msg.set_content(html, subtype="html", charset="windows-1252", cte="quoted-printable")
    else:  # gmail
        msg = _message(sender=sender, to=OUR_ADDRESS, subject=subject, date=date,
                       message_id=message_id)
        text = ("Buenas noches,\n\nMe pueden enviar mis claves por favor\n\n" +
                "".join(f"{label}\n{value}\n\n" for label, value in fields) +
                f"Gracias\n\n-- \n{signature}")
        html = ('<div dir="ltr"><div>Buenas noches,</div><div><br></div><div>Me pueden enviar '
                'mis claves por favor</div><div><br></div>' +
                "".join(f"<div>{label}</div><div>"
                        f"{value if '@' not in value else _gmail_link(value)}</div>"
                        "<div><br></div>" for label, value in fields) +
                f'<div>Gracias</div><br clear="all"><div><br></div>-- <br><div dir="ltr" '
                f'class="gmail_signature">{signature.replace(chr(10), "<br>")}</div></div>\n')
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
    return msg


def _spreadsheet(gen: _Gen, licences: list[Licence]) -> bytes:
    """An .xlsx like the seed's: the seed's header row, one row per serial."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = "Hoja1"
    ws.append(list(SEED_SPREADSHEET_ROWS[0]))
    for lic in licences:
        ws.append([lic.company, lic.contact_name, lic.contact_email, gen.spelling(lic.system),
                   lic.serial])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def write_maildir(config, mails: list[BenchMail]) -> Path:
    """`mails` delivered into the config's Maildir inbox (created if need be), as an MTA would:
    names unique per delivery, mtimes in delivery order (the Maildir source reads in that
    order). Returns its new/ folder."""
    new = config.resolve(config.source.path) / "new"
    for sub in ("new", "cur", "tmp"):
        (new.parent / sub).mkdir(parents=True, exist_ok=True)
    for number, mail in enumerate(mails):
        path = new / f"{1_700_000_000 + number}.M{number}P1.bench"
        path.write_bytes(mail.data)
        os.utime(path, ns=(path.stat().st_atime_ns, 1_700_000_000_000_000_000 + number * 1000))
    return new


def write_imports(directory: Path, data: Dataset) -> tuple[Path, Path]:
    registry_csv, keys_csv = directory / "registry.csv", directory / "keys.csv"
    with registry_csv.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(("serial", "system", "company", "contact_email", "purchase_date", "modality",
                    "support_until", "users"))
        for lic in data.registry:
            w.writerow((lic.serial, lic.system, lic.company, lic.contact_email,
                        lic.purchase_date, lic.modality, lic.support_until, lic.users))
    with keys_csv.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(("system", "key"))
        w.writerows(data.keys)
    return registry_csv, keys_csv


# --- servers and helpers ------------------------------------------------------------------------

class Arrivals:
    """When each message reached the SMTP server (monotonic clock), by In-Reply-To.

    `watch` hooks it to either server: the process of its own (benchmarks/smtp_process.py)
    reports each accepted message; for the in-process server it wraps the DATA hook on the
    handler instance (aiosmtpd looks hooks up when a session opens, so before the first
    connection)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_reply_to: dict[str, float] = {}
        self.times: list[float] = []
        self.catch_up: Callable[[], None] = lambda: None  # the reports not read yet, read

    @classmethod
    def watch(cls, smtp: SmtpTestServer | SmtpServerProcess) -> Arrivals:
        arrivals = cls()
        if isinstance(smtp, SmtpServerProcess):
            smtp.on_accept(arrivals.add)
            arrivals.catch_up = smtp.catch_up
        else:
            on_accepted(smtp, arrivals.add)
        return arrivals

    def add(self, at: float, in_reply_to: str) -> None:
        with self.lock:
            self.times.append(at)
            if in_reply_to:
                self.by_reply_to.setdefault(in_reply_to, at)

    def get(self, message_id: str) -> float | None:
        self.catch_up()
        with self.lock:
            return self.by_reply_to.get(message_id)

    def count(self) -> int:
        self.catch_up()
        with self.lock:
            return len(self.times)

    def wait_for(self, count: int, timeout: float) -> int:
        """The messages accepted so far, once there are `count` (or `timeout` has passed)."""
        deadline = time.monotonic() + timeout
        while self.count() < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.count()


def folder_count(imap: DovecotServer, folder: str) -> int:
    conn = imap.connect()
    try:
        typ, data = conn.status(f'"{folder}"', "(MESSAGES)")
        if typ != "OK":
            return 0
        return int(data[0].decode().rsplit("MESSAGES", 1)[1].strip(" ()"))
    finally:
        conn.logout()


def import_registry(app, registry_csv: Path, keys_csv: Path) -> None:
    with app.store.transaction() as conn:
        app.store.upsert_licences(conn, read_registry(registry_csv, app.rules.catalogue))
        app.store.add_keys(conn, read_keys(keys_csv, app.rules.catalogue))


def close_app(app) -> None:
    for closer in (app.source.close, app.sink.close, app.store.close):
        with contextlib.suppress(Exception):
            closer()


# --- 1. the honest floor: benchmarks/honest_floor.py ---------------------------------------------


# --- 2. end-to-end --------------------------------------------------------------------------------

class Breakdown:
    """Wall time per stage of a pass, by wrapping the seams on the app instance (cheap)."""

    STAGES = ("imap_fetch", "parse_extract", "render", "build_reply", "smtp_send", "courier",
              "sent_append", "imap_file")

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter[str] = collections.Counter()
        self.sql_statements = 0
        self.sql_seconds = 0.0
        self.transactions = 0
        self.synced_later = 0  # of them, committed without their own fsync (the decisions)
        self.per_mail: list[float] = []  # wall time per mail of pipeline.process_batch(), in order

    def timed(self, stage: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - t
                self.calls[stage] += 1
        return wrapper

    def timed_iter(self, stage: str, fn: Callable[[], Iterator]) -> Callable[[], Iterator]:
        def wrapper() -> Iterator:
            it = iter(fn())
            while True:
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    self.seconds[stage] += time.perf_counter() - t
                    return
                self.seconds[stage] += time.perf_counter() - t
                self.calls[stage] += 1
                yield item
        return wrapper

    @contextlib.contextmanager
    def install(self, app) -> Iterator[None]:
        app.source.fetch_new = self.timed_iter("imap_fetch", app.source.fetch_new)
        app.source.file = self.timed("imap_file", app.source.file)
        if hasattr(app.source, "file_many"):
            app.source.file_many = self.timed("imap_file", app.source.file_many)
        # Sends made in this process; the courier's (mailbot.run.courier) are not, only the
        # pass's side of them, between two mails: marks, and handing out the next message.
        # (Wrapping the sink instance's send would keep the courier from starting.)
        real_go, real_poll = Send.go, Courier.poll
        Send.go = self.timed("smtp_send", real_go)  # type: ignore[method-assign]
        Courier.poll = self.timed("courier", real_poll)  # type: ignore[method-assign]
        if app.after_send is not None:
            app.after_send = self.timed("sent_append", app.after_send)
        if app.after_send_many is not None:
            real_many = app.after_send_many
            app.after_send_many = self.timed("sent_append", real_many)
        app.renderer.render = self.timed("render", app.renderer.render)
        # Each step's module looks its helpers up by name, so timing one means patching it there.
        homes = {"read_mail": reading, "build_reply": replies, "process_batch": pipeline}
        real = {name: getattr(module, name) for name, module in homes.items()}
        reading.read_mail = self.timed("parse_extract", real["read_mail"])
        replies.build_reply = self.timed("build_reply", real["build_reply"])

        def process_batch(app, raws, *args, **kwargs):
            t = time.perf_counter()
            try:
                return real["process_batch"](app, raws, *args, **kwargs)
            finally:
                each = (time.perf_counter() - t) / max(1, len(raws))
                self.per_mail.extend([each] * len(raws))

        pipeline.process_batch = process_batch
        real_transaction = app.store.transaction

        @contextlib.contextmanager
        def counted_transaction(**kwargs):
            self.transactions += 1
            self.synced_later += bool(kwargs.get("sync_later"))
            with real_transaction(**kwargs) as conn:
                yield conn

        app.store.transaction = counted_transaction
        engine = app.store.engine
        starts: list[float] = []

        def before(*_a):
            starts.append(time.perf_counter())

        def after(*_a):
            self.sql_seconds += time.perf_counter() - starts.pop()
            self.sql_statements += 1

        sa.event.listen(engine, "before_cursor_execute", before)
        sa.event.listen(engine, "after_cursor_execute", after)
        try:
            yield
        finally:
            for name, fn in real.items():
                setattr(homes[name], name, fn)
            if app.after_send_many is not None:
                app.after_send_many = real_many
            sa.event.remove(engine, "before_cursor_execute", before)
            sa.event.remove(engine, "after_cursor_execute", after)
            for name in ("fetch_new", "file", "file_many"):
                app.source.__dict__.pop(name, None)
            Send.go, Courier.poll = real_go, real_poll  # type: ignore[method-assign]
            app.renderer.__dict__.pop("render", None)
            app.store.__dict__.pop("transaction", None)

    def as_dict(self, total: float) -> dict[str, Any]:
        stages = {s: round(self.seconds.get(s, 0.0), 4) for s in self.STAGES}
        stages["other"] = round(total - sum(self.seconds.get(s, 0.0) for s in self.STAGES), 4)
        tenth = max(1, len(self.per_mail) // 10)
        return {"seconds": stages, "calls": {s: self.calls.get(s, 0) for s in self.STAGES},
                "sql_statements": self.sql_statements, "sql_seconds": round(self.sql_seconds, 4),
                "transactions": self.transactions, "synced_later": self.synced_later,
                # growth with the store's size: the first and last tenth of the mails
                "ms_per_mail_first_tenth": 1000 * statistics.fmean(self.per_mail[:tenth])
                if self.per_mail else None,
                "ms_per_mail_last_tenth": 1000 * statistics.fmean(self.per_mail[-tenth:])
                if self.per_mail else None}


class _Profiler:
    """cProfile (stdlib, deterministic: inflates call-heavy code) or pyinstrument (sampling,
    closer to real proportions; `pip install pyinstrument` into any path on sys.path)."""

    def __init__(self, kind: str, path: str) -> None:
        self.kind, self.path = kind, path
        if kind == "pyinstrument":
            from pyinstrument import Profiler
            self.profiler = Profiler(interval=0.0005)
        else:
            import cProfile
            self.profiler = cProfile.Profile()

    def start(self) -> None:
        (self.profiler.start if self.kind == "pyinstrument" else self.profiler.enable)()

    def stop(self) -> None:
        if self.kind == "pyinstrument":
            self.profiler.stop()
            Path(self.path).write_text(self.profiler.output_text(unicode=True, color=False))
        else:
            self.profiler.disable()
            self.profiler.dump_stats(self.path)


def measure_end_to_end(app, imap: DovecotServer, arrivals: Arrivals,
                       expected: int, profile: str | None,
                       profiler_kind: str = "cprofile") -> dict[str, Any]:
    breakdown = Breakdown()
    profiler = _Profiler(profiler_kind, profile) if profile else None
    before = arrivals.count()
    with breakdown.install(app):
        t0 = time.perf_counter()
        if profiler:
            profiler.start()
        cpu0 = time.process_time()
        report = run_once(app)
        cpu = time.process_time() - cpu0
        if profiler:
            profiler.stop()
        elapsed = time.perf_counter() - t0
    with app.store.transaction() as conn:
        sent = conn.execute(sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.status == "sent")).scalar_one()
        replies = conn.execute(sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.status == "sent", outbox.c.purpose != "alert")).scalar_one()
        outcomes = dict(conn.execute(sa.select(requests_table.c.outcome, sa.func.count())
                                     .group_by(requests_table.c.outcome)).all())
        folders = dict(conn.execute(sa.select(mails_table.c.folder, sa.func.count())
                                    .group_by(mails_table.c.folder)).all())
        statuses = dict(conn.execute(sa.select(mails_table.c.status, sa.func.count())
                                     .group_by(mails_table.c.status)).all())
    received = arrivals.wait_for(before + sent, timeout=10)
    inbox_left = folder_count(imap, "INBOX")
    in_sent = folder_count(imap, "Sent")
    problems = []
    if report.seen != expected:
        problems.append(f"saw {report.seen} mails, expected {expected}")
    if report.errors:
        problems.append(f"{len(report.errors)} errors, first: {report.errors[0]}")
    if inbox_left:
        problems.append(f"{inbox_left} mails left in the INBOX")
    if received - before < sent:
        problems.append(f"SMTP server has {received - before} messages, store says {sent} sent")
    result = {"mails": report.seen, "seconds": elapsed, "mails_per_s": report.seen / elapsed,
              "decided": report.decided, "replies": replies, "messages_sent": sent,
              "smtp_received": received - before, "copies_in_sent": in_sent,
              "inbox_left": inbox_left, "request_outcomes": outcomes, "mail_folders": folders,
              "mail_statuses": statuses, "errors": len(report.errors), "problems": problems,
              "read_by_workers": report.read_ahead,
              "breakdown": breakdown.as_dict(elapsed), "profiled": bool(profile),
              "cpu_s": cpu}
    if profiler:
        result["profile_file"] = profile
    return result


# --- 3. latency with IDLE -------------------------------------------------------------------------

def measure_idle_floor(imap: DovecotServer, batch: list[BenchMail], samples: int = 10,
                       gap: float = 0.2) -> dict[str, Any]:
    """What IDLE itself costs: APPEND on one connection -> EXISTS on another (imapclient).

    Dovecot batches change notifications (about half a second), so this is the part of the
    latency no client can remove. The mails are expunged again afterwards.
    """
    from imapclient import IMAPClient

    watcher = IMAPClient(imap.host, imap.port, ssl=False, timeout=30)
    watcher.login(imap.user, imap.password)
    conn = imap.connect()
    waits: list[float] = []
    try:
        watcher.select_folder("INBOX", readonly=True)
        for mail in batch[:samples]:
            watcher.idle()
            time.sleep(gap)
            t = time.monotonic()
            conn.append("INBOX", None, None, mail.data)
            deadline = t + 10
            while time.monotonic() < deadline:
                responses = watcher.idle_check(timeout=max(0.0, deadline - time.monotonic()))
                if any(len(r) >= 2 and r[1] == b"EXISTS" for r in responses):
                    waits.append(time.monotonic() - t)
                    break
            watcher.idle_done()
        conn.select("INBOX")
        conn.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
        conn.expunge()
    finally:
        with contextlib.suppress(Exception):
            watcher.logout()
        with contextlib.suppress(Exception):
            conn.logout()
    waits.sort()
    return {"samples": len(waits), "p50_s": _percentile(waits, 50) if waits else None,
            "max_s": waits[-1] if waits else None}


def measure_latency(config, imap: DovecotServer, arrivals: Arrivals, batch: list[BenchMail],
                    gap: float, timeout: float = 30.0) -> dict[str, Any]:
    app = open_app(config)  # a fresh service, as `mailbot run` would start, on the same store
    stop = threading.Event()
    failure: list[BaseException] = []

    def service() -> None:
        try:
            serve(app, stop=stop)
        except BaseException as exc:  # reported below
            failure.append(exc)

    thread = threading.Thread(target=service, name="mailbot-serve", daemon=True)
    appended: dict[str, float] = {}
    conn = imap.connect()
    try:
        thread.start()
        time.sleep(1.5)  # the scheduler's first (empty) pass and the IDLE connection settle
        for mail in batch:
            t = time.monotonic()
            typ, data = conn.append("INBOX", None, None, mail.data)
            if typ != "OK":
                raise RuntimeError(f"APPEND failed: {data!r}")
            appended[mail.message_id] = t
            time.sleep(gap)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(arrivals.get(mid) is not None for mid in appended):
                break
            time.sleep(0.01)
    finally:
        with contextlib.suppress(Exception):
            conn.logout()
        stop.set()
        thread.join(15)
        close_app(app)
    if failure:
        raise failure[0]
    latencies = []  # an unanswered mail counts as infinitely late
    for mid, t in appended.items():
        got = arrivals.get(mid)
        latencies.append(got - t if got is not None else float("inf"))
    latencies.sort()
    answered = sum(1 for v in latencies if v != float("inf"))
    result: dict[str, Any] = {"mails": len(appended), "answered": answered,
                              "missing": len(appended) - answered, "gap_s": gap}
    if latencies:
        result.update(p50_s=_percentile(latencies, 50), p95_s=_percentile(latencies, 95),
                      max_s=latencies[-1], min_s=latencies[0])
    return result


def _percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


# --- the run ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mails", type=int, default=1000, help="mails for floor and end-to-end")
    ap.add_argument("--latency-mails", type=int, default=50, help="mails for the IDLE latency")
    ap.add_argument("--latency-gap", type=float, default=0.2,
                    help="seconds between two APPENDs in the latency run (default 0.2)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--profile", metavar="FILE",
                    help="run the end-to-end pass under cProfile, write pstats to FILE and "
                         "print the hot spots (the throughput figure is then inflated)")
    ap.add_argument("--profiler", choices=("cprofile", "pyinstrument"), default="cprofile",
                    help="cProfile (default; pstats file) or pyinstrument (sampling; text "
                         "report; must be importable)")
    ap.add_argument("--poll-seconds", type=int, default=60,
                    help="[imap] poll_interval_seconds of the service in the latency run "
                         "(default 60, the tests' setting)")
    ap.add_argument("--smtp-in-process", action="store_true",
                    help="run the SMTP server on threads of this process, sharing mailbot's "
                         "GIL, as the tests do (default: a process of its own)")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    args = ap.parse_args(argv)
    if args.mails < 1 or args.latency_mails < 0:
        ap.error("--mails must be >= 1 and --latency-mails >= 0")
    if not dovecot_available():
        print(f"dovecot is not installed: {INSTALL_HINT} (or `make system-deps`)",
              file=sys.stderr)
        return 2
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else \
        (lambda *a: print(*a, flush=True))

    work = Path(tempfile.mkdtemp(prefix="mailbot-bench-"))
    logging.basicConfig(level=logging.INFO, filename=str(work / "mailbot.log"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True)
    for noisy in ("apscheduler", "imapclient", "alembic", "mail-parser", "mailparser",
                  "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    figures: dict[str, Any] = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    imap = DovecotServer(tls=False)  # its own temporary directory, removed at the end
    smtp: SmtpTestServer | SmtpServerProcess | None = None
    t_start = time.perf_counter()
    try:
        say(f"mailbot benchmark: {args.mails} mails (+{args.latency_mails} for latency), "
            f"{os.cpu_count()} cores, work dir {work}")
        t = time.perf_counter()
        data = make_dataset(args.mails + args.latency_mails)
        bulk, latency_batch = data.mails[:args.mails], data.mails[args.mails:]
        registry_csv, keys_csv = write_imports(work, data)
        sizes = [len(m.data) for m in bulk]
        kinds = collections.Counter(m.kind for m in bulk)
        figures["dataset"] = {
            "mails": len(bulk), "latency_mails": len(latency_batch), "kinds": dict(kinds),
            "requests": sum(len(m.licences) for m in bulk), "licences": len(data.registry),
            "keys": len(data.keys), "mean_bytes": statistics.fmean(sizes),
            "generate_s": time.perf_counter() - t}
        say(f"  generated {len(data.mails)} mails in {figures['dataset']['generate_s']:.1f} s: "
            + ", ".join(f"{k} {v}" for k, v in kinds.items())
            + f"; {figures['dataset']['requests']} requests, mean "
            f"{statistics.fmean(sizes) / 1024:.1f} KB; registry {len(data.registry)} licences, "
            f"pool {len(data.keys)} keys")

        imap.start()
        smtp = (SmtpTestServer(make_tls_files(work / "smtp-tls")) if args.smtp_in_process
                else SmtpServerProcess(work / "smtp-tls")).start()
        arrivals = Arrivals.watch(smtp)
        config = config_module.load(server_config(work, imap, smtp, poll_seconds=args.poll_seconds,
                                                     imap_timeout=30, smtp_timeout=30))

        t = time.perf_counter()
        imap.append_many("INBOX", (m.data for m in bulk))
        figures["append_s"] = time.perf_counter() - t
        say(f"  appended {len(bulk)} mails to the INBOX in {figures['append_s']:.1f} s")

        read_floor = measure_floor(imap, len(bulk))
        figures["floor_read"] = read_floor

        app = open_app(config)
        try:
            import_registry(app, registry_csv, keys_csv)
            e2e = measure_end_to_end(app, imap, arrivals, len(bulk), args.profile,
                                         args.profiler)
            replies_sent = sent_replies(app)
        finally:
            close_app(app)
        figures["end_to_end"] = e2e
        # The floor's sending and filing parts, on the same servers, with the real replies.
        send_floor = measure_floor_send(smtp, replies_sent)
        move_floor = measure_floor_move(imap, [m.data for m in bulk])
        floor = honest_floor(read_floor, send_floor, move_floor)
        figures.update(floor_send=send_floor, floor_move=move_floor, floor=floor)
        say(f"(1) honest floor: {floor['mails_per_s']:.0f} mails/s  ({floor['mails']} mails in "
            f"{floor['total_s']:.2f} s)")
        say(f"    fetch {read_floor['fetch_s']:.2f} s = {read_floor['fetch_mails_per_s']:.0f}/s, "
            f"parse {read_floor['parse_s']:.2f} s = {read_floor['parse_mails_per_s']:.0f}/s, "
            f"{read_floor['spreadsheets']} spreadsheets {read_floor['sheets_s']:.2f} s "
            f"(read {read_floor['total_s']:.2f} s = {read_floor['mails_per_s']:.0f}/s, the old "
            f"floor); SMTP {send_floor['messages']} replies on one connection "
            f"{send_floor['seconds']:.2f} s = {send_floor['per_s']:.0f}/s (mean "
            f"{send_floor['bytes'] / max(1, send_floor['messages']) / 1024:.1f} KB); "
            f"{move_floor['moves']} UID MOVE of up to {FLOOR_BATCH} {move_floor['seconds']:.2f} s")
        b = e2e["breakdown"]
        say(f"(2) end-to-end: {e2e['mails_per_s']:.0f} mails/s  ({e2e['mails']} mails in "
            f"{e2e['seconds']:.2f} s; {e2e['replies']} replies + "
            f"{e2e['messages_sent'] - e2e['replies']} operator alert(s) accepted by SMTP, "
            f"{e2e['copies_in_sent']} copies in Sent, {e2e['inbox_left']} left in INBOX)"
            + ("  [profiled: inflated]" if args.profile else ""))
        say("    requests: " + ", ".join(f"{k} {v}" for k, v in
                                        sorted(e2e["request_outcomes"].items()))
            + f"; mails read by worker processes: {e2e['read_by_workers']} "
              f"(the rest in-process: parse_extract below)")
        say("    where the time went (main process): " + ", ".join(
            f"{k} {v:.2f} s" for k, v in b["seconds"].items())
            + f"; {b['transactions']} transactions ({b['synced_later']} of them synced later, "
              f"together), {b['sql_statements']} SQL statements "
              f"({b['sql_seconds']:.2f} s in the driver)")
        courier_sent = e2e["messages_sent"] - b["calls"]["smtp_send"]
        say(f"    replies sent by the courier process while the next mails were decided: "
            f"{courier_sent} of {e2e['messages_sent']} (the rest by the pass itself: "
            f"smtp_send above)")
        who = "mailbot, and the SMTP server's thread" if args.smtp_in_process else "mailbot"
        say(f"    CPU of this process ({who}): {e2e['cpu_s']:.2f} s of {e2e['seconds']:.2f} s")
        say(f"    per mail: {1000 * e2e['seconds'] / max(1, e2e['mails']):.1f} ms; first tenth "
            f"{b['ms_per_mail_first_tenth']:.1f} ms, last tenth "
            f"{b['ms_per_mail_last_tenth']:.1f} ms "
            f"(growth with the store; the first batch also starts the reading workers)")
        for problem in e2e["problems"]:
            say(f"    PROBLEM: {problem}")

        if latency_batch:
            idle_floor = measure_idle_floor(imap, latency_batch)
            figures["idle_notify_floor"] = idle_floor
            lat = measure_latency(config, imap, arrivals, latency_batch, args.latency_gap)
            figures["latency"] = lat
            if lat["answered"]:
                say(f"(3) latency with IDLE: p50 {lat['p50_s']:.3f} s, p95 {lat['p95_s']:.3f} s,"
                    f" max {lat['max_s']:.3f} s  ({lat['answered']}/{lat['mails']} answered, "
                    f"one APPEND every {args.latency_gap:g} s)")
            else:
                say(f"(3) latency with IDLE: no reply arrived for {lat['mails']} mails")
            if idle_floor["samples"]:
                say(f"    of which Dovecot's IDLE notification alone (APPEND -> EXISTS, raw "
                    f"imapclient): p50 {idle_floor['p50_s']:.3f} s, "
                    f"max {idle_floor['max_s']:.3f} s")

        ratio = e2e["mails_per_s"] / floor["mails_per_s"]
        figures["ratio"] = ratio
        verdicts = {"end_to_end": "PASS" if ratio >= TARGET_RATIO and not e2e["problems"]
                    else "MISS"}
        if "latency" in figures:
            p95 = figures["latency"].get("p95_s", float("inf"))
            verdicts["latency_p95"] = ("PASS" if p95 < TARGET_P95
                                       and not figures["latency"]["missing"] else "MISS")
        figures["targets"] = {"ratio_min": TARGET_RATIO, "latency_p95_max_s": TARGET_P95,
                              "verdicts": verdicts}
        say(f"(4) ratio end-to-end / honest floor: {ratio:.2f}  target >= {TARGET_RATIO:g}: "
            f"{verdicts['end_to_end']}")
        if "latency_p95" in verdicts:
            say(f"    latency p95 {figures['latency'].get('p95_s', float('inf')):.3f} s  "
                f"target < {TARGET_P95:g} s: {verdicts['latency_p95']}")
        if args.profile and args.profiler == "cprofile":
            _print_profile(args.profile, say)
        elif args.profile:
            say(f"--- pyinstrument report of the end-to-end pass: {args.profile} ---")
            say(Path(args.profile).read_text())
    finally:
        if smtp is not None:
            with contextlib.suppress(Exception):
                smtp.stop()
        imap.stop()
        if not args.keep:
            imap.remove()
        figures["run_s"] = time.perf_counter() - t_start
        if args.keep:
            say(f"  kept {work} and {imap.dir}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    say(f"  run time {figures['run_s']:.0f} s")
    if args.json:
        print(json.dumps(_finite(figures), indent=2, default=_json_default))
    return 0


def _print_profile(path: str, say: Callable[..., None]) -> None:
    import pstats

    for key, title in (("tottime", "own time"), ("cumulative", "cumulative time")):
        out = io.StringIO()
        stats = pstats.Stats(path, stream=out)
        stats.sort_stats(key).print_stats(25)
        say(f"--- cProfile of the end-to-end pass, top 25 by {title} ---")
        text = out.getvalue()
        say(text[text.find("   ncalls"):].rstrip())


def _json_default(value: Any) -> Any:
    return str(value)


def _finite(value: Any) -> Any:
    """JSON has no infinity: an unanswered mail's latency becomes null."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
