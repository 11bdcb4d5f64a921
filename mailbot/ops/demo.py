"""A realistic demo set for `make demo`: an inbox of request mails, a licence registry, a key pool.

Everything is built from fixed data, so writing the set again gives byte-identical files.
The mails are dated January 2012 (the seed's story: free keys for the 2012 versions); support
policies are either long expired (2012-2013) or run to 2099-12-31, so what the demo shows does
not depend on the day it is run.

A mail that mailbot has already filed out of the inbox (Maildir++ sub-folders such as
`.processed/`) or moved to `cur/` is not put back into `new/`: a second `make demo` finds nothing
new, as an operator would expect.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
import re
import zipfile
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

MEXICO_CITY = dt.timezone(dt.timedelta(hours=-6), "CST")
XLSX_TYPE = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
SEED_COMPANY = "Empresa de muestra, S.A. de C.V."
SEED_CONTACT = "rgonzalez@empresamuestra.com.mx"
SEED_SPREADSHEET = "Relacion de sistemas sin costo.xlsx"
SUPPORT_FOREVER = "2099-12-31"  # a support policy that is still valid whenever the demo runs


@dataclass(frozen=True)
class DemoMail:
    name: str  # the Maildir file name (its key): stable across rewrites
    path: Path  # where the mail is now (new/, or wherever mailbot filed it)
    purpose: str  # what the mail shows, for the demo's printout


@dataclass(frozen=True)
class DemoFiles:
    root: Path
    maildir: Path  # <root>/inbox, with cur/, new/ and tmp/
    registry_csv: Path  # for `mailbot registry import`
    keys_csv: Path  # for `mailbot keys import`
    mails: tuple[DemoMail, ...]


# --- the licence registry -------------------------------------------------------------------------
# serial, system, company, contact_email, purchase_date, modality, support_until, users
REGISTRY_COLUMNS = ("serial", "system", "company", "contact_email", "purchase_date", "modality",
                    "support_until", "users")
REGISTRY: tuple[tuple[str, ...], ...] = (
    # The seed's four systems (spreadsheet example of seed 004), all bought after 2011-07-01.
    # Valid support policy: the answer says to call to schedule the (included) installation.
    ("AAAA-BBBB-CCCC-DDDD", "CONTPAQ i Factura electrónica", SEED_COMPANY, SEED_CONTACT,
     "2011-09-15", "electronico", SUPPORT_FOREVER, "2"),
    # No support policy at all: renewal prices and per-event price for 5 users.
    ("AAAA-BBBB-CCCC-EEEE", "CONTPAQ i Contabilidad", SEED_COMPANY, SEED_CONTACT,
     "2011-11-03", "electronico", "", "5"),
    # Policy expired: renewal prices and per-event price for 10 users. A physical licence.
    ("AAAA-BBBB-CCCC-FFFF", "CONTPAQ i Nóminas", SEED_COMPANY, SEED_CONTACT,
     "2011-08-22", "fisico", "2012-08-21", "10"),
    # Valid support, subscription licence.
    ("AAAA-BBBB-CCCC-GGGG", "CONTPAQ i Bancos", SEED_COMPANY, SEED_CONTACT,
     "2012-01-10", "suscripcion", SUPPORT_FOREVER, "1"),
    # Bought before 2011-07-01: "not eligible" (mail 04).
    ("K7Q2-M9XD-41PL-ZT8R", "CONTPAQ i Comercial", "Ferretería El Tornillo, S.A. de C.V.",
     "contabilidad@ferreteriaeltornillo.com.mx", "2010-11-15", "fisico", "", "2"),
    # Registered to mlopez@, requested by the company's outside accountant (mail 07).
    ("D4LN-8P2Q-77XK-M3WA", "CONTPAQ i Contabilidad", "Distribuidora Lomas del Norte, S.A. de C.V.",
     "mlopez@lomasdelnorte.com.mx", "2012-02-20", "electronico", SUPPORT_FOREVER, "3"),
    # A system with no keys in the pool: the request waits as pending (mail 08).
    ("P7VT-3K9D-2LMX-8QRW", "CONTPAQ i Punto de venta", "Abarrotes Doña Lupita",
     "abarrotes.dona.lupita@gmail.com", "2011-10-05", "electronico", "", "1"),
    # Subscription licence, first unlock: immediate (mail 10).
    ("R8TZ-5N1Q-6WHK-2JCE", "CONTPAQ i Comercial", "Taller Mecánico Hermanos Ruiz, S.A. de C.V.",
     "administracion@tallerhermanosruiz.com.mx", "2012-03-01", "suscripcion", SUPPORT_FOREVER, "2"),
    # Physical licence with 20 users and an expired policy; its unlock waits for the
    # Certificado de Autenticidad (mail 11).
    ("S3CA-9M4L-T2XV-7PQE", "Aspel FACTURE", "Servicios Contables Álvarez, S.C.",
     "salvarez@contablesalvarez.com.mx", "2011-12-12", "fisico", "2013-06-30", "20"),
    # More than 20 users: installation is quoted by project.
    ("H2GM-6Y8B-5VNC-4KRT", "CONTPAQ i Nóminas", "Grupo Industrial Monterrey, S.A. de C.V.",
     "sistemas@gimonterrey.com.mx", "2011-07-01", "electronico", "", "35"),
    # No registered contact address: any request for it goes to review (mail 12).
    ("L9EP-3T7W-8ZUA-6FDN", "CONTPAQ i Bancos", "Papelería La Esperanza", "",
     "2012-04-18", "fisico", "", "1"),
)

# Systems the key pool has keys for: every system of the catalogue except "Punto de venta", so a
# request for it (mail 08) shows the "pending keys" answer.
KEY_POOL: tuple[tuple[str, int], ...] = (
    ("CONTPAQ i Factura electrónica", 5),
    ("CONTPAQ i Contabilidad", 5),
    ("CONTPAQ i Nóminas", 5),
    ("CONTPAQ i Bancos", 5),
    ("CONTPAQ i Comercial", 5),
    ("Aspel FACTURE", 3),
)
_KEY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: keys are typed by people


def demo_key(system: str, number: int) -> str:
    """A made-up key, always the same for (system, number): 2012-XXXXX-XXXXX-XXXXX-XXXXX."""
    digest = hashlib.sha256(f"{system}\x00{number}".encode()).digest()
    chars = "".join(_KEY_ALPHABET[b % len(_KEY_ALPHABET)] for b in digest[:20])
    return "2012-" + "-".join(chars[i:i + 5] for i in range(0, 20, 5))


# --- writing the set --------------------------------------------------------------------------------

def write_demo(root: Path, *, our_address: str = "claves@example.com") -> DemoFiles:
    """Write (or rewrite, identically) the demo inbox, registry and key pool under `root`."""
    root = Path(root)
    maildir = root / "inbox"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)

    registry_csv = root / "registry.csv"
    _write_if_changed(registry_csv, _csv_bytes(REGISTRY_COLUMNS, REGISTRY))
    keys_csv = root / "keys.csv"
    keys = [(system, demo_key(system, n)) for system, count in KEY_POOL for n in range(1, count + 1)]
    _write_if_changed(keys_csv, _csv_bytes(("system", "key"), keys))

    mails = []
    for number, (slug, purpose, date, message) in enumerate(_demo_mails(our_address), start=1):
        name = f"{int(date.timestamp())}.M{number:02d}_{slug}.demo"
        _finish_mime(message, number)
        path = _deliver(maildir, name, message.as_bytes(policy=policy.default), date)
        mails.append(DemoMail(name=name, path=path, purpose=purpose))
    return DemoFiles(root=root, maildir=maildir, registry_csv=registry_csv, keys_csv=keys_csv,
                     mails=tuple(mails))


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write atomically, and not at all when the file already holds `data` (keeps its mtime)."""
    try:
        if path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _csv_bytes(header: tuple[str, ...], rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _deliver(maildir: Path, name: str, data: bytes, date: dt.datetime) -> Path:
    """Put a mail in new/ the Maildir way (tmp/ then rename), unless it was already handled."""
    for existing in _find(maildir, name):
        if existing.parent != maildir / "new":
            return existing  # read or filed by mailbot: leave it where it is
    target = maildir / "new" / name
    try:
        unchanged = target.read_bytes() == data
    except FileNotFoundError:
        unchanged = False
    if not unchanged:
        tmp = maildir / "tmp" / name
        tmp.write_bytes(data)
        os.replace(tmp, target)
    stamp = date.timestamp()
    os.utime(target, (stamp, stamp))  # mailbot reads the inbox oldest first, by mtime
    return target


def _find(maildir: Path, name: str) -> list[Path]:
    """Every copy of mail `name` in the Maildir and its sub-folders (flags after ':' ignored)."""
    found = []
    for directory, _, files in os.walk(maildir):
        if Path(directory).name not in ("new", "cur"):
            continue
        found.extend(Path(directory) / f for f in files if f.split(":", 1)[0] == name)
    return sorted(found)


def _finish_mime(message: EmailMessage, number: int) -> None:
    """Fixed MIME boundaries (random by default) keep rewrites byte-identical; and no part but
    the top one carries MIME-Version, as in mail that real clients write."""
    for index, part in enumerate(message.walk()):
        if part is not message:
            del part["MIME-Version"]
        if part.is_multipart():
            part.set_boundary(f"----=_NextPart_{number:03d}_{index:04d}_01CCD4A1.5F3E2B90")


# --- the mails ---------------------------------------------------------------------------------------

def _when(day: int, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(2012, 1, day, hour, minute, tzinfo=MEXICO_CITY)


def _message(*, sender: Address, to: str, subject: str, date: dt.datetime, message_id: str,
             mailer: str | None = None) -> EmailMessage:
    """A mail with the headers a Maildir delivery would carry."""
    msg = EmailMessage(policy=policy.default)
    msg["Return-Path"] = f"<{sender.addr_spec}>"
    msg["Delivered-To"] = to
    received_at = format_datetime(date + dt.timedelta(seconds=7))
    msg["Received"] = (f"from mail.{sender.domain} (mail.{sender.domain} [203.0.113.25]) "
                       f"by mx.example.com (Postfix) with ESMTPS id 3F2A81C0{date:%d%H%M}; {received_at}")
    msg["Message-ID"] = message_id
    msg["Date"] = format_datetime(date)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    if mailer:
        msg["X-Mailer"] = mailer
    return msg


def _outlook_html(paragraphs: list[str], table: list[tuple[str, str]] | None = None,
                  after: list[str] | None = None) -> str:
    """HTML the way Outlook writes it: MsoNormal paragraphs, &nbsp; spacers, an optional table."""
    def para(text: str) -> str:
        return f"<p class=MsoNormal>{text}<o:p></o:p></p>\n" if text else \
            "<p class=MsoNormal><o:p>&nbsp;</o:p></p>\n"

    body = "".join(para(p) for p in paragraphs)
    if table:
        body += ("<table class=MsoTableGrid border=1 cellspacing=0 cellpadding=0 "
                 "style='border-collapse:collapse;border:none'>\n")
        for label, value in table:
            body += ("<tr><td width=208 valign=top style='width:155.9pt;border:solid windowtext 1.0pt;"
                     f"padding:0cm 5.4pt 0cm 5.4pt'><p class=MsoNormal><b>{label}<o:p></o:p></b></p></td>"
                     "<td width=388 valign=top style='width:291.1pt;border:solid windowtext 1.0pt;"
                     f"border-left:none;padding:0cm 5.4pt 0cm 5.4pt'><p class=MsoNormal>{value}"
                     "<o:p></o:p></p></td></tr>\n")
        body += "</table>\n"
    body += "".join(para(p) for p in (after or []))
    return (
        '<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" '
        'xmlns:w="urn:schemas-microsoft-com:office:word" '
        'xmlns:m="http://schemas.microsoft.com/office/2004/12/omml" xmlns="http://www.w3.org/TR/REC-html40">'
        '<head><meta http-equiv=Content-Type content="text/html; charset=windows-1252">'
        '<meta name=Generator content="Microsoft Word 14 (filtered medium)"><style><!--\n'
        '@font-face\n\t{font-family:Calibri;\n\tpanose-1:2 15 5 2 2 2 4 3 2 4;}\n'
        'p.MsoNormal, li.MsoNormal, div.MsoNormal\n\t{margin:0cm;\n\tmargin-bottom:.0001pt;\n'
        '\tfont-size:11.0pt;\n\tfont-family:"Calibri","sans-serif";}\n'
        '--></style></head><body lang=ES-MX link=blue vlink=purple><div class=WordSection1>\n'
        f"{body}</div></body></html>\n"
    )


_SEED_BODY = """\
Buenas tardes

Me permito solicitar mis claves para la actualización sin costo de mi sistema.

Nombre de la empresa: Empresa de muestra S.A. de C.V.
Nombre del contacto: Raul Gonzalez Rivera
Correo electrónico del contacto: rgonzalez@empresamuestra.com.mx
Tipo de sistema: CONTPAQ i – Factura electrónica
Número de serie: Aaaa-Bbbb-Cccc-Dddd

Saludos

Raúl González Rivera
Empresa de muestra, S.A. de C.V.
Tel. (55) 5555-0101
"""

_RAUL = Address("Raúl González Rivera", addr_spec=SEED_CONTACT)
_OUTLOOK = "Microsoft Outlook 14.0"


def _demo_mails(our_address: str) -> list[tuple[str, str, dt.datetime, EmailMessage]]:
    """(slug, purpose, date, message) for every demo mail, in the order they arrive."""
    to = our_address
    mails: list[tuple[str, str, dt.datetime, EmailMessage]] = []

    # 01: the seed's example, exactly: one request in the body of a plain-text mail.
    date = _when(16, 13, 5)
    msg = _message(sender=_RAUL, to=to, subject="Solicitud de claves para actualización sin costo.",
                   date=date, message_id="<000001ccd45a$8e2f1b10$aa8d5130$@empresamuestra.com.mx>")
    msg.set_content(_SEED_BODY)
    mails.append(("single-request", "the seed's single request in the body (AAAA-BBBB-CCCC-DDDD): "
                  "keys issued, support valid so installation is included", date, msg))

    # 02: the seed's spreadsheet as an .xlsx attachment, from Outlook (text + HTML + attachment).
    date = _when(16, 13, 21)
    msg = _message(sender=_RAUL, to=to, subject="Solicitud de claves para actualización sin costo",
                   date=date, message_id="<000201ccd45c$d1a4e6f0$74eeb4d0$@empresamuestra.com.mx>",
                   mailer=_OUTLOOK)
    msg["Thread-Index"] = "AczUXNGk5vB07rTQTnqvX3IKtE1bqA=="
    msg["Content-Language"] = "es-mx"
    text = ("Buenas tardes\n\nMe permito solicitar las claves de actualización sin costo de nuestros "
            "sistemas, anexo un archivo donde relaciono los números de serie actuales.\n\nGracias\n\n"
            "Raúl González Rivera\nEmpresa de muestra, S.A. de C.V.\n")
    html = _outlook_html(["Buenas tardes", "", "Me permito solicitar las claves de actualizaci&oacute;n "
                          "sin costo de nuestros sistemas, anexo un archivo donde relaciono los "
                          "n&uacute;meros de serie actuales.", "", "Gracias", "",
                          "Ra&uacute;l Gonz&aacute;lez Rivera", "Empresa de muestra, S.A. de C.V."])
    msg.set_content(text, charset="windows-1252", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="windows-1252", cte="quoted-printable")
    msg.add_attachment(seed_spreadsheet(), maintype=XLSX_TYPE[0], subtype=XLSX_TYPE[1],
                       filename=SEED_SPREADSHEET)
    mails.append(("seed-spreadsheet", "the seed's spreadsheet attached (DDDD, EEEE, FFFF, GGGG): one "
                  "answer with a row per serial; DDDD re-sends the key of mail 01", date, msg))

    # 03: the right subject, but neither serial nor system: one answer naming what is missing.
    date = _when(16, 16, 42)
    msg = _message(sender=Address("Alejandra Ríos", addr_spec="arios@riosyasociados.com.mx"), to=to,
                   subject="Solicitud de claves para actualizacion sin costo", date=date,
                   message_id="<5A3F1C2E-77B1-4E0C-9D2A-1F8E6B4C9A01@riosyasociados.com.mx>",
                   mailer="iPhone Mail (9A405)")
    msg.set_content("Hola, buen día\n\nSolicito las claves de actualización para nuestro sistema.\n\n"
                    "Empresa: Ríos y Asociados Consultores, S.C.\nContacto: Alejandra Ríos Medina\n"
                    "Correo: arios@riosyasociados.com.mx\n\nGracias.\n\nEnviado desde mi iPhone\n")
    mails.append(("missing-serial-and-system", "no serial and no system: an answer naming both "
                  "missing fields, with the seed's example", date, msg))

    # 04: a licence bought before 2011-07-01. Capitals without accents, Latin-1, the serial in
    # lower case with spaces.
    date = _when(17, 9, 15)
    msg = _message(sender=Address("Contabilidad Ferretería El Tornillo",
                                  addr_spec="contabilidad@ferreteriaeltornillo.com.mx"),
                   to=to, subject="SOLICITUD DE CLAVES PARA ACTUALIZACION SIN COSTO", date=date,
                   message_id="<20120117151500.4F1C2.ferreteria@ferreteriaeltornillo.com.mx>",
                   mailer="Mozilla/5.0 (Windows NT 6.1; rv:9.0) Gecko/20111222 Thunderbird/9.0.1")
    msg.set_content("Buenos dias,\n\nNOMBRE DE LA EMPRESA: Ferretería El Tornillo, S.A. de C.V.\n"
                    "NOMBRE DEL CONTACTO: Héctor Domínguez Salas\n"
                    "CORREO ELECTRONICO DEL CONTACTO: contabilidad@ferreteriaeltornillo.com.mx\n"
                    "TIPO DE SISTEMA: CONTPAQi Comercial\nNUMERO DE SERIE: k7q2 m9xd 41pl zt8r\n\n"
                    "Quedo atento.\nHéctor Domínguez\n",
                    charset="iso-8859-1", cte="quoted-printable")
    mails.append(("ineligible-serial", "K7Q2-M9XD-41PL-ZT8R bought 2010-11-15, before 2011-07-01: "
                  "the 'not eligible' answer", date, msg))

    # 05: an out-of-office auto-reply to our answer; its subject looks like a request, but
    # Auto-Submitted says a machine wrote it: never answered.
    date = _when(17, 10, 2)
    msg = _message(sender=_RAUL, to=to, subject="RE: Solicitud de claves para actualización sin costo",
                   date=date, message_id="<000301ccd50a$1b2c3d40$5e6f7a80$@empresamuestra.com.mx>",
                   mailer=_OUTLOOK)
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content("Estaré fuera de la oficina del 17 al 20 de enero de 2012, sin acceso a mi correo.\n"
                    "Para asuntos urgentes comuníquese con Laura Méndez "
                    "(lmendez@empresamuestra.com.mx).\n\nAtentamente,\nRaúl González Rivera\n")
    mails.append(("out-of-office", "an out-of-office auto-reply (Auto-Submitted: auto-replied): "
                  "ignored, never answered", date, msg))

    # 06: mail 01's request sent again two days later as a new mail: the same key is re-sent and
    # nothing new is taken from the pool.
    date = _when(18, 9, 40)
    msg = _message(sender=_RAUL, to=to, subject="Solicitud de claves para actualización sin costo",
                   date=date, message_id="<000401ccd5c8$0a9b8c70$1f8aa550$@empresamuestra.com.mx>")
    msg.set_content("Les reenvío mi solicitud.\n\n" + _SEED_BODY)
    mails.append(("repeated-request", "mail 01's request again as a new mail: the same key re-sent, "
                  "no second key used", date, msg))

    # 07: an outside accountant asks for a client's licence, in an Outlook HTML table. The keys go
    # to the address in the registry (mlopez@lomasdelnorte.com.mx), and he is told where (masked).
    date = _when(18, 11, 27)
    msg = _message(sender=Address("Jorge Pérez Nava", addr_spec="jperez@despachopereznava.com.mx"),
                   to=to, subject="Solicitud de claves para actualización sin costo", date=date,
                   message_id="<001a01ccd5d7$2c4e6a80$84ebbf80$@despachopereznava.com.mx>",
                   mailer=_OUTLOOK)
    msg["Content-Language"] = "es-mx"
    fields = [("Empresa", "Distribuidora Lomas del Norte, S.A. de C.V."),
              ("Contacto", "Jorge Pérez Nava"),
              ("Correo", "jperez@despachopereznava.com.mx"),
              ("Sistema", "CONTPAQ i Contabilidad"),
              ("No. de serie", "D4LN-8P2Q-77XK-M3WA")]
    text = ("Buenos días:\n\nPor parte de mi cliente les solicito las claves de actualización sin "
            "costo:\n\n" + "".join(f"{label}\t{value}\n" for label, value in fields) +
            "\nSaludos cordiales,\nC.P. Jorge Pérez Nava\nDespacho Pérez Nava y Asociados\n")
    html_fields = [(label, f'<a href="mailto:{value}">{value}</a>' if "@" in value else
                    value.replace("é", "&eacute;")) for label, value in fields]
    html = _outlook_html(["Buenos d&iacute;as:", "", "Por parte de mi cliente les solicito las claves de "
                          "actualizaci&oacute;n sin costo:", ""], html_fields,
                         ["", "Saludos cordiales,", "C.P. Jorge P&eacute;rez Nava",
                          "Despacho P&eacute;rez Nava y Asociados"])
    msg.set_content(text, charset="windows-1252", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="windows-1252", cte="quoted-printable")
    mails.append(("other-requester", "D4LN-8P2Q-77XK-M3WA asked by someone who is not the registered "
                  "contact: keys go to mlopez@lomasdelnorte.com.mx, the requester is told (masked)",
                  date, msg))

    # 08: Gmail (text + HTML), values on the line below their labels, serial with spaces; the pool
    # has no key for "Punto de venta": the request waits as pending.
    date = _when(18, 18, 3)
    msg = _message(sender=Address("Guadalupe Hernández", addr_spec="abarrotes.dona.lupita@gmail.com"),
                   to=to, subject="Solicitud de claves para actualización sin costo", date=date,
                   message_id="<CAK7pXw3Hq9+dLZ1mT0vYQ4eG8rN2sJ5bF6cUoA1wE7iKx3zR9g@mail.gmail.com>")
    lines = [("Nombre de la empresa", "Abarrotes Doña Lupita"),
             ("Nombre del contacto", "Guadalupe Hernández"),
             ("Correo electrónico del contacto", "abarrotes.dona.lupita@gmail.com"),
             ("Tipo de sistema", "Punto de venta"),
             ("Número de serie", "P7VT 3K9D 2LMX 8QRW")]
    text = ("Buenas noches,\n\nMe pueden enviar mis claves por favor\n\n" +
            "".join(f"{label}\n{value}\n\n" for label, value in lines) +
            "Gracias\n\n-- \nGuadalupe Hernández\nAbarrotes Doña Lupita\nTel. 33 3615 0000\n")
    html = ('<div dir="ltr"><div>Buenas noches,</div><div><br></div><div>Me pueden enviar mis claves por '
            'favor</div><div><br></div>' +
            "".join(f"<div>{label}</div><div>{value if '@' not in value else _gmail_link(value)}</div>"
                    "<div><br></div>" for label, value in lines) +
            '<div>Gracias</div><br clear="all"><div><br></div>-- <br><div dir="ltr" '
            'class="gmail_signature">Guadalupe Hernández<br>Abarrotes Doña Lupita<br>'
            'Tel. 33 3615 0000</div></div>\n')
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    mails.append(("pending-keys", "P7VT-3K9D-2LMX-8QRW for Punto de venta, a system with no keys in "
                  "the pool: pending, the customer is told keys will follow, operators alerted",
                  date, msg))

    # 09: an invoice from a supplier: no recognised subject, so no answer; filed for operators.
    date = _when(19, 8, 0)
    msg = _message(sender=Address("Papelería y Consumibles del Centro",
                                  addr_spec="facturacion@papeleriadelcentro.com.mx"),
                   to=to, subject="Factura del mes", date=date,
                   message_id="<1326981600.7731.facturacion@papeleriadelcentro.com.mx>")
    msg.set_content("Estimado cliente:\n\nLe enviamos su factura A-10234 correspondiente a diciembre "
                    "de 2011 por un total de $1,856.00 (IVA incluido).\n\nAtentamente,\n"
                    "Departamento de Facturación\nPapelería y Consumibles del Centro\n")
    msg.add_attachment(_INVOICE_PDF, maintype="application", subtype="pdf", filename="Factura_A-10234.pdf")
    mails.append(("unrelated-invoice", "'Factura del mes', not a request: not answered, filed for "
                  "operators", date, msg))

    # 10: an unlock request for a subscription licence that has never been unlocked (first unlock:
    # immediate).
    date = _when(19, 12, 30)
    msg = _message(sender=Address("Ernesto Ruiz Carrillo", addr_spec="administracion@tallerhermanosruiz.com.mx"),
                   to=to, subject="Solicitud de desbloqueo", date=date,
                   message_id="<4F186A3E.9030104@tallerhermanosruiz.com.mx>",
                   mailer="Mozilla/5.0 (Windows NT 6.1; rv:9.0) Gecko/20111222 Thunderbird/9.0.1")
    msg.set_content("Buenas tardes:\n\nCambiamos el equipo de la oficina y al activar el sistema nos "
                    "indica que el número de serie ya excedió las activaciones permitidas. Les "
                    "solicito el desbloqueo.\n\nNombre de la empresa: Taller Mecánico Hermanos Ruiz, "
                    "S.A. de C.V.\nNombre del contacto: Ernesto Ruiz Carrillo\n"
                    "Correo electrónico del contacto: administracion@tallerhermanosruiz.com.mx\n"
                    "Tipo de sistema: CONTPAQ i Comercial\nNúmero de serie: R8TZ-5N1Q-6WHK-2JCE\n\n"
                    "Gracias.\n")
    mails.append(("unlock-request", "'Solicitud de desbloqueo' for R8TZ-5N1Q-6WHK-2JCE, a "
                  "subscription licence, first unlock (immediate)", date, msg))

    # 11: an unlock of a physical licence without its documents: the reply asks for the
    # Certificado de Autenticidad; the customer's reply carrying it continues the same request.
    date = _when(19, 17, 45)
    msg = _message(sender=Address("Sofía Álvarez Medina", addr_spec="salvarez@contablesalvarez.com.mx"),
                   to=to, subject="Desbloqueo", date=date,
                   message_id="<CAK7x2mP9q-desbloqueo-fisico@mail.gmail.com>")
    msg.set_content("Hola:\n\nFormateamos la computadora y el sistema ya no se deja activar.\n\n"
                    "Empresa: Servicios Contables Álvarez, S.C.\nContacto: Sofía Álvarez Medina\n"
                    "Correo: salvarez@contablesalvarez.com.mx\nSistema: Aspel FACTURE\n"
                    "Serie: s3ca 9m4l t2xv 7pqe\n\nSaludos.\n")
    mails.append(("unlock-physical", "'Desbloqueo' for S3CA-9M4L-T2XV-7PQE, a physical licence, "
                  "without documents: the reply asks for the Certificado de Autenticidad", date, msg))

    # 12: keys for a licence the registry holds without a contact address: nobody may receive
    # them automatically, so the request becomes a review task.
    date = _when(20, 9, 10)
    msg = _message(sender=Address("Papelería La Esperanza", addr_spec="papeleria.esperanza@hotmail.com"),
                   to=to, subject="Solicitud de claves para actualización sin costo", date=date,
                   message_id="<BLU0-SMTP4471A2B3C4D5E6F@phx.gbl>")
    msg.set_content("Nombre de la empresa: Papelería La Esperanza\nNombre del contacto: Lucía "
                    "Herrera\nCorreo electrónico del contacto: papeleria.esperanza@hotmail.com\n"
                    "Tipo de sistema: CONTPAQ i Bancos\nNúmero de serie: L9EP-3T7W-8ZUA-6FDN\n")
    mails.append(("no-registered-address", "keys for L9EP-3T7W-8ZUA-6FDN, which the registry holds "
                  "without a contact address: a review task", date, msg))
    return mails


def _gmail_link(address: str) -> str:
    return f'<a href="mailto:{address}" target="_blank">{address}</a>'


# A one-page PDF that says "Factura A-10234": enough for any reader to see a real PDF.
_INVOICE_PDF = b"""%PDF-1.4
1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj
2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj
3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R
/Resources << /Font << /F1 5 0 R >> >> >> endobj
4 0 obj << /Length 44 >> stream
BT /F1 18 Tf 72 720 Td (Factura A-10234) Tj ET
endstream endobj
5 0 obj << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> endobj
trailer << /Root 1 0 R >>
%%EOF
"""


# --- the seed's spreadsheet ---------------------------------------------------------------------------

SEED_SPREADSHEET_ROWS: tuple[tuple[str, ...], ...] = (
    ("Nombre de la empresa", "Nombre del contacto", "Correo electrónico", "Tipo de sistema",
     "Número de serie"),
    (SEED_COMPANY, "Raul Gonzalez Rivera", SEED_CONTACT, "CONTPAQ i Factura electrónica",
     "AAAA-BBBB-CCCC-DDDD"),
    (SEED_COMPANY, "Raul Gonzalez Rivera", SEED_CONTACT, "CONTPAQ i Contabilidad", "AAAA-BBBB-CCCC-EEEE"),
    (SEED_COMPANY, "Raul Gonzalez Rivera", SEED_CONTACT, "CONTPAQ i Nóminas", "AAAA-BBBB-CCCC-FFFF"),
    (SEED_COMPANY, "Raul Gonzalez Rivera", SEED_CONTACT, "CONTPAQ i Bancos", "AAAA-BBBB-CCCC-GGGG"),
)
_FIXED_ZIP_TIME = (2012, 1, 16, 13, 18, 0)


def seed_spreadsheet() -> bytes:
    """The seed's "Relacion de sistemas sin costo.xlsx", the same bytes every time."""
    from openpyxl import Workbook  # only the demo writes spreadsheets; mailbot itself reads them
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = "Hoja1"
    for row in SEED_SPREADSHEET_ROWS:
        ws.append(list(row))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for column, width in zip("ABCDE", (34, 24, 34, 32, 24), strict=True):
        ws.column_dimensions[column].width = width
    wb.properties.creator = "Raúl González Rivera"
    wb.properties.created = dt.datetime(*_FIXED_ZIP_TIME)
    buffer = io.BytesIO()
    wb.save(buffer)
    return _freeze_zip(buffer.getvalue())


def _freeze_zip(data: bytes) -> bytes:
    """Rewrite an .xlsx with fixed entry times and modification date, so its bytes are stable."""
    stamp = "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}Z".format(*_FIXED_ZIP_TIME)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            content = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)",
                                 rb"\g<1>" + stamp.encode() + rb"\g<2>", content)
            entry = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = info.external_attr
            dst.writestr(entry, content)
    return out.getvalue()
