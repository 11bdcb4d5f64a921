"""Unlocks end to end (seed 000): a Maildir in, reply files out, the ledger in the store.

Every test drives `run_once` on real mails and reads the replies that went out. The clock is
fixed on Tuesday 1 December 2026, 10:00 in Mexico City, so every window is a known date.
The `Harness` here is shared by tests/test_review.py and tests/test_sender_flow.py.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import itertools
import json
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from botconfig import local_sections, write_config

from mailbot import config as config_module
from mailbot.ops.imports import KeyRecord, LicenceRecord
from mailbot.run.pipeline import run_once
from mailbot.run.wiring import open_app
from mailbot.store import ledger, reviews
from mailbot.store.database import Store, mails, outbox, requests
from mailbot.transport.files import FileSink

MX = ZoneInfo("America/Mexico_City")
TUESDAY_10 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=MX)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

COMERCIAL = "CONTPAQ i Comercial"
FACTURA = "CONTPAQ i Factura electrónica"
NOMINAS = "CONTPAQ i Nóminas"

SUBSCRIPTION = "R8TZ-5N1Q-6WHK-2JCE"
ELECTRONIC = "E7KD-2M4P-9QXT-3LWA"
PHYSICAL = "F9PH-4C2X-7NQD-8ZKM"
FREE = "AAAA-BBBB-CCCC-DDDD"
OTHER_FREE = "AAAA-BBBB-CCCC-EEEE"

TALLER = "administracion@tallerhermanosruiz.com.mx"
ELECTRO = "sistemas@electrodomesticoslupe.com.mx"
CONSTRUCTORA = "jperez@constructoradelvalle.com.mx"
RAUL = "rgonzalez@empresamuestra.com.mx"

REGISTRY = (
    LicenceRecord(SUBSCRIPTION, COMERCIAL, "Taller Mecánico Hermanos Ruiz, S.A. de C.V.", TALLER,
                  dt.date(2024, 3, 1), "suscripcion", None, 2),
    LicenceRecord(ELECTRONIC, COMERCIAL, "Electrodomésticos Lupe", ELECTRO,
                  dt.date(2024, 5, 2), "electronico", None, 1),
    LicenceRecord(PHYSICAL, NOMINAS, "Constructora del Valle, S.A. de C.V.", CONSTRUCTORA,
                  dt.date(2023, 8, 9), "fisico", None, 5),
    LicenceRecord(FREE, FACTURA, "Empresa de muestra, S.A. de C.V.", RAUL,
                  dt.date(2011, 9, 15), "electronico", dt.date(2099, 12, 31), 2),
    LicenceRecord(OTHER_FREE, "CONTPAQ i Contabilidad", "Empresa de muestra, S.A. de C.V.", RAUL,
                  dt.date(2011, 11, 3), "electronico", None, 5),
)
KEYS = tuple(KeyRecord(system, f"2012-{system[-4:].upper()}-{n:04d}")
             for system in (FACTURA, "CONTPAQ i Contabilidad", COMERCIAL) for n in range(1, 4))

_numbers = itertools.count(1)


@dataclass
class Reply:
    template: str
    to: str
    message: EmailMessage
    message_id: str
    status: str

    @property
    def text(self) -> str:
        return " ".join(self.message.get_body(preferencelist=("plain",)).get_content().split())

    @property
    def html(self) -> str:
        return self.message.get_body(preferencelist=("html",)).get_content()


class Harness:
    """A mailbot on the embedded defaults in `tmp_path`, with a fixed, movable clock."""

    def __init__(self, tmp_path: Path, *, security: str = "", throttle: str = "",
                 store: Store | None = None, registry=REGISTRY, keys=KEYS) -> None:
        self.root = tmp_path
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.config_path = write_config(tmp_path, local_sections() + f"""
[security]
{security}
[throttle]
{throttle}
""")
        self.app = open_app(config_module.load(self.config_path))
        if store is not None:
            self.app.store.close()
            self.app.store = store
        self.now = TUESDAY_10
        self.app.clock = lambda: self.now
        with self.app.store.transaction() as conn:
            self.app.store.upsert_licences(conn, registry)
            self.app.store.add_keys(conn, keys)

    # -- mail in ------------------------------------------------------------------------------

    def deliver(self, data: bytes) -> None:
        name = f"{next(_numbers):06d}.test"
        path = self.root / "inbox" / "new" / name
        path.write_bytes(data)

    def run(self, *mails_: bytes, at: dt.datetime | None = None):
        if at is not None:
            self.now = at
        for data in mails_:
            self.deliver(data)
        report = run_once(self.app)
        assert report.errors == []
        return report

    # -- what came out --------------------------------------------------------------------------

    def replies(self, to: str | None = None, template: str | None = None) -> list[Reply]:
        with self.app.store.transaction() as conn:
            rows = conn.execute(sa.select(outbox).where(outbox.c.purpose != "alert")
                                .order_by(outbox.c.id)).all()
        out = []
        for r in rows:
            recipients = json.loads(r.recipients)
            msg = email.message_from_bytes(r.data, policy=email.policy.default)
            reply = Reply(r.template, recipients[0], msg, r.message_id, r.status)
            if (to is None or to in recipients) and (template is None or r.template == template):
                out.append(reply)
        delivered = {s.message_id for s in self.sink.sent()}
        assert all(x.message_id in delivered for x in out if x.status == "sent")
        return out

    def alerts(self) -> list[str]:
        with self.app.store.transaction() as conn:
            rows = conn.execute(sa.select(outbox.c.data).where(outbox.c.purpose == "alert")
                                .order_by(outbox.c.id)).scalars().all()
        return [" ".join(email.message_from_bytes(d, policy=email.policy.default)
                         .get_body(preferencelist=("plain",)).get_content().split())
                for d in rows]

    @property
    def sink(self) -> FileSink:
        assert isinstance(self.app.sink, FileSink)
        return self.app.sink

    def ledger(self, serial: str | None = None) -> list[Any]:
        with self.app.store.transaction() as conn:
            return ledger.entries(conn, serial=serial)

    def tasks(self, *, include_closed: bool = True) -> list[reviews.Task]:
        with self.app.store.transaction() as conn:
            return reviews.tasks(conn, include_closed=include_closed)

    def task(self, task_id: int) -> reviews.Task:
        with self.app.store.transaction() as conn:
            found = reviews.get(conn, task_id)
        assert found is not None
        return found

    def history(self, task_id: int) -> list[dict[str, Any]]:
        with self.app.store.transaction() as conn:
            return reviews.history(conn, task_id)

    def requests(self, serial: str | None = None) -> list[Any]:
        with self.app.store.transaction() as conn:
            query = sa.select(requests).order_by(requests.c.id)
            if serial:
                query = query.where(requests.c.serial == serial)
            return conn.execute(query).all()

    def mails(self) -> list[Any]:
        with self.app.store.transaction() as conn:
            return conn.execute(sa.select(mails).order_by(mails.c.id)).all()

    def utc(self, moment: dt.datetime) -> dt.datetime:
        """A moment as the store keeps it: naive UTC."""
        return moment.astimezone(dt.UTC).replace(tzinfo=None)

    def close(self) -> None:
        self.app.store.close()


def request_mail(*, sender: str, serial: str, system: str, company: str = "Empresa",
                 contact: str = "Contacto", contact_email: str | None = None,
                 subject: str = "Solicitud de desbloqueo", name: str = "Cliente",
                 date: dt.datetime = TUESDAY_10, message_id: str | None = None,
                 in_reply_to: str | None = None, attachments: tuple[tuple[str, bytes], ...] = (),
                 body: str | None = None, reply_to: str | None = None,
                 extra_headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A customer's request as a mail client writes it: the five labelled fields in the body."""
    msg = EmailMessage(policy=email.policy.default)
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = "claves@example.com"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    domain = sender.rpartition("@")[2]
    msg["Message-ID"] = message_id or make_msgid(domain=domain if domain.isascii()
                                                 else "example.net")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    if reply_to:
        msg["Reply-To"] = reply_to
    for header, value in extra_headers:
        msg[header] = value
    if body is None:
        body = ("Buenas tardes:\n\nCambiamos el equipo y el sistema ya no se puede activar. "
                "Les solicito el desbloqueo.\n\n"
                f"Nombre de la empresa: {company}\nNombre del contacto: {contact}\n"
                f"Correo electrónico del contacto: {contact_email or sender}\n"
                f"Tipo de sistema: {system}\nNúmero de serie: {serial}\n\nGracias.\n")
    msg.set_content(body)
    for filename, payload in attachments:
        maintype, subtype = ("application", "pdf") if filename.endswith(".pdf") else ("image",
                                                                                       "jpeg")
        msg.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=msg.policy.clone(utf8=True))  # RFC 6532, as for "ñ" domains


def unlock_mail(serial: str = SUBSCRIPTION, sender: str = TALLER, system: str = COMERCIAL,
                **kw: Any) -> bytes:
    return request_mail(sender=sender, serial=serial, system=system, **kw)


def mx(day: int, hour: int, minute: int = 0, month: int = 12) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=MX)


@pytest.fixture
def bot(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()


# --- the 1st unlock of a subscription ---------------------------------------------------------

def test_first_subscription_unlock_is_approved_automatically_and_recorded(bot):
    bot.run(unlock_mail())
    [reply] = bot.replies()
    assert (reply.template, reply.to) == ("unlocked", TALLER)
    assert "quedó liberada" in reply.text
    assert "nuevo Código de Activación (CDA)" in reply.text
    assert "Inmediato o puede demorar de 10 a 15 minutos" in reply.text
    assert "¿Cómo puedo identificar la serie y su modalidad de contratación?" in reply.text
    assert "Certificado de Autenticidad" in reply.text  # the identify help names both paths
    assert SUBSCRIPTION in reply.text and "Código de Activación" in reply.html
    [entry] = bot.ledger()
    assert (entry.serial, entry.status, entry.number, entry.approved_by) == (
        SUBSCRIPTION, "approved", 1, "rules")
    assert entry.decided_at == bot.utc(TUESDAY_10)
    assert bot.tasks() == []
    [req] = bot.requests()
    assert req.outcome == "unlocked"
    assert json.loads(req.hits)[-1]["rule"] == "unlock.policy"


def test_first_electronic_unlock_is_approved_automatically(bot):
    bot.run(unlock_mail(ELECTRONIC, ELECTRO))
    assert [r.template for r in bot.replies(ELECTRO)] == ["unlocked"]
    assert [e.status for e in bot.ledger(ELECTRONIC)] == ["approved"]


# --- the 2nd unlock of a subscription: review with a window -----------------------------------

def test_second_subscription_unlock_goes_to_review_with_the_window_in_business_hours(bot):
    bot.run(unlock_mail(), at=mx(1, 10) - dt.timedelta(days=30))  # the 1st, a month ago
    bot.run(unlock_mail(date=TUESDAY_10), at=TUESDAY_10)
    reply = bot.replies(template="unlock_review")[0]
    assert reply.to == TALLER
    # 4 to 24 business hours from Tuesday 10:00 (Mon-Fri 09:00-18:00): Tuesday 14:00 to
    # Thursday 16:00.
    assert "segundo desbloqueo" in reply.text
    assert "de 4 a 24 horas hábiles" in reply.text
    assert ("entre el martes 1 de diciembre de 2026 a las 14:00 h y el jueves 3 de diciembre "
            "de 2026 a las 16:00 h (hora del centro de México)") in reply.text
    assert "¿Cómo puedo identificar la serie" in reply.text
    first, second = bot.ledger(SUBSCRIPTION)
    assert (first.status, second.status) == ("approved", "in_review")
    assert second.due_at == bot.utc(mx(3, 16))
    [task] = bot.tasks()
    assert (task.kind, task.reason, task.status, task.unlock) == ("unlock", "policy", "open",
                                                                   second.id)
    assert task.due_at == bot.utc(mx(3, 16))


def test_a_request_on_friday_evening_counts_from_monday_morning(bot):
    bot.run(unlock_mail(), at=mx(1, 10) - dt.timedelta(days=30))
    bot.run(unlock_mail(), at=mx(4, 17, 30))  # Friday 17:30: half an hour left that day
    reply = bot.replies(template="unlock_review")[0]
    # 4 h: 30 min on Friday, 3.5 h on Monday -> Monday 12:30; 24 h: 0.5 + 9 + 9 + 5.5 ->
    # Wednesday 14:30.
    assert "entre el lunes 7 de diciembre de 2026 a las 12:30 h" in reply.text
    assert "miércoles 9 de diciembre de 2026 a las 14:30 h" in reply.text


# --- documents: physical licences --------------------------------------------------------------

def test_physical_licence_without_documents_is_asked_for_the_certificate(bot):
    bot.run(unlock_mail(PHYSICAL, CONSTRUCTORA, NOMINAS))
    [reply] = bot.replies()
    assert (reply.template, reply.to) == ("documents_needed", CONSTRUCTORA)
    assert "Certificado de Autenticidad" in reply.text
    assert "Responde a este correo con los archivos adjuntos" in reply.text
    assert "PDF, JPG, JPEG o PNG" in reply.text
    assert "de 24 a 48 horas hábiles" in reply.text
    assert "¿Cómo puedo identificar la serie" in reply.text
    [entry] = bot.ledger()
    assert (entry.status, entry.number) == ("awaiting_documents", 1)
    assert bot.tasks() == []  # waiting for the customer, not for an operator


def test_the_customers_reply_with_the_certificate_continues_the_same_request(bot):
    bot.run(unlock_mail(PHYSICAL, CONSTRUCTORA, NOMINAS))
    [asked] = bot.replies()
    reply_at = mx(4, 17, 30)  # Friday evening
    bot.run(request_mail(sender=CONSTRUCTORA, serial="", system="",
                         subject="RE: Solicitud de desbloqueo", in_reply_to=asked.message_id,
                         body="Adjunto el certificado de autenticidad.\n\nSaludos\n",
                         attachments=(("certificado.pdf", PDF),), date=reply_at), at=reply_at)
    [entry] = bot.ledger()  # the same entry, not a new unlock
    assert entry.status == "in_review"
    assert ledger.stored_documents(entry) == ["certificado.pdf"]
    calendar = bot.app.calendar()
    due = calendar.add_business_hours(reply_at, 48)
    assert entry.due_at == bot.utc(due)
    [task] = bot.tasks()
    assert (task.kind, task.reason, task.unlock) == ("unlock", "documents_to_check", entry.id)
    assert task.due_at == bot.utc(due)
    received = bot.replies(template="documents_received")[0]
    assert received.to == CONSTRUCTORA
    assert "certificado.pdf" in received.text
    assert "de 24 a 48 horas hábiles" in received.text
    start = calendar.add_business_hours(reply_at, 24)
    assert calendar.describe(start).split(" (")[0] in received.text
    assert calendar.describe(due) in received.text
    # The reply quotes the reference the customer already has, and threads under their mail.
    first_reference = bot.mails()[0].reference
    assert f"Tu número de referencia es {first_reference}" in received.text
    assert received.message["In-Reply-To"]


def test_a_reply_quoting_only_the_reference_continues_the_request(bot):
    bot.run(unlock_mail(PHYSICAL, CONSTRUCTORA, NOMINAS))
    reference = bot.mails()[0].reference
    bot.run(request_mail(sender=CONSTRUCTORA, serial="", system="",
                         subject=f"Documentos para el desbloqueo {reference}",
                         body="Les envío la foto del certificado.\n",
                         attachments=(("certificado.jpg", b"\xff\xd8\xff\xe0JFIF"),)))
    [entry] = bot.ledger()
    assert entry.status == "in_review"
    assert ledger.stored_documents(entry) == ["certificado.jpg"]
    assert [t.reason for t in bot.tasks()] == ["documents_to_check"]


def test_a_reply_without_documents_is_asked_again_and_the_request_still_waits(bot):
    bot.run(unlock_mail(PHYSICAL, CONSTRUCTORA, NOMINAS))
    [asked] = bot.replies()
    bot.run(request_mail(sender=CONSTRUCTORA, serial="", system="", body="¿Qué les envío?\n",
                         subject="RE: Solicitud de desbloqueo", in_reply_to=asked.message_id,
                         attachments=(("carta.docx", b"PK\x03\x04"),)))
    again = bot.replies(template="documents_needed")
    assert len(again) == 2
    assert "carta.docx" in again[1].text  # named as not accepted
    [entry] = bot.ledger()
    assert entry.status == "awaiting_documents"
    assert bot.tasks() == []


def test_physical_licence_with_the_certificate_attached_goes_straight_to_review(bot):
    bot.run(unlock_mail(PHYSICAL, CONSTRUCTORA, NOMINAS,
                        attachments=(("certificado.pdf", PDF),)))
    [reply] = bot.replies()
    assert reply.template == "documents_received"
    [entry] = bot.ledger()
    assert entry.status == "in_review"
    assert [t.reason for t in bot.tasks()] == ["documents_to_check"]


def test_second_electronic_unlock_needs_documents(bot):
    bot.run(unlock_mail(ELECTRONIC, ELECTRO), at=TUESDAY_10 - dt.timedelta(days=20))
    bot.run(unlock_mail(ELECTRONIC, ELECTRO), at=TUESDAY_10)
    assert [r.template for r in bot.replies(ELECTRO)] == ["unlocked", "documents_needed"]
    assert [e.status for e in bot.ledger()] == ["approved", "awaiting_documents"]


# --- repetitions never count twice ------------------------------------------------------------

def test_a_repeated_request_soon_after_an_approved_unlock_is_not_a_second_unlock(bot):
    bot.run(unlock_mail())
    bot.run(unlock_mail(), at=TUESDAY_10 + dt.timedelta(hours=2))  # "it still does not work"
    first, second = bot.replies(TALLER)
    assert (first.template, second.template) == ("unlocked", "unlocked")
    assert "no cuenta como uno nuevo" in second.text
    [entry] = bot.ledger()
    assert entry.number == 1
    assert bot.tasks() == []
    hits = json.loads(bot.requests()[-1].hits)
    assert hits[-1]["rule"] == "unlock.repeat"
    # Three days and more later the same request is a genuine 2nd unlock: review.
    bot.run(unlock_mail(), at=TUESDAY_10 + dt.timedelta(days=6))
    assert bot.replies(TALLER)[-1].template == "unlock_review"
    assert [e.status for e in bot.ledger()] == ["approved", "in_review"]


def test_a_repeated_request_while_in_review_adds_to_the_task_not_a_new_one(bot):
    bot.run(unlock_mail(), at=TUESDAY_10 - dt.timedelta(days=30))
    bot.run(unlock_mail(), at=TUESDAY_10)
    bot.run(unlock_mail(), at=TUESDAY_10 + dt.timedelta(hours=3))
    assert [e.status for e in bot.ledger()] == ["approved", "in_review"]
    [task] = bot.tasks()
    assert [h["action"] for h in bot.history(task.id)] == ["created", "repeat"]
    again = bot.replies(TALLER)[-1]
    assert again.template == "unlock_review"
    assert "ya está en revisión" in again.text
    assert "jueves 3 de diciembre de 2026 a las 16:00 h" in again.text  # the same window


# --- who may ask -------------------------------------------------------------------------------

def test_an_unlock_asked_by_someone_else_goes_to_review_and_reveals_nothing(bot):
    bot.run(unlock_mail(sender="contador@despacho.com.mx"))
    [reply] = bot.replies()
    assert (reply.template, reply.to) == ("unlock_review", "contador@despacho.com.mx")
    assert TALLER not in reply.text and "liberada" not in reply.text
    [task] = bot.tasks()
    assert task.reason == "other_requester"
    assert [e.status for e in bot.ledger()] == ["in_review"]


def test_an_unlock_request_without_the_fields_is_told_what_is_missing(bot):
    bot.run(request_mail(sender=TALLER, serial="", system="", body="Necesito un desbloqueo.\n"))
    [reply] = bot.replies()
    assert reply.template == "unlock_missing_data"
    assert "«Solicitud de desbloqueo»" in reply.text
    assert bot.ledger() == []


# --- the schema --------------------------------------------------------------------------------

@pytest.fixture
def clean_store(store):
    """The shared `store` fixture, emptied of this issue's tables afterwards (they reference
    mails, which the fixture empties before the next test)."""
    yield store
    with store.transaction() as conn:
        for table in ("review_actions", "reviews", "unlock_mails", "unlocks"):
            conn.execute(sa.text(f"DELETE FROM {table}"))


def test_migration_0002_creates_the_ledger_and_the_queue_and_matches_the_code(clean_store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from mailbot.store.schema import metadata

    new_tables = {"unlocks", "unlock_mails", "reviews", "review_actions"}
    with clean_store.transaction() as conn:
        assert new_tables <= set(sa.inspect(conn).get_table_names())
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    clean_store.downgrade("0001")
    with clean_store.transaction() as conn:
        assert not new_tables & set(sa.inspect(conn).get_table_names())
    clean_store.migrate()
    with clean_store.transaction() as conn:
        assert new_tables <= set(sa.inspect(conn).get_table_names())


def test_the_whole_documents_path_runs_on_sqlite_and_postgresql(tmp_path, clean_store):
    bot = Harness(tmp_path, store=clean_store)
    bot.run(unlock_mail(PHYSICAL, CONSTRUCTORA, NOMINAS))
    [asked] = bot.replies()
    bot.run(request_mail(sender=CONSTRUCTORA, serial="", system="", body="Adjunto.\n",
                         subject="RE: Solicitud de desbloqueo", in_reply_to=asked.message_id,
                         attachments=(("certificado.pdf", PDF),)))
    [entry] = bot.ledger()
    assert entry.status == "in_review"
    [task] = bot.tasks()
    from mailbot.ops.review_actions import approve

    approve(bot.app, task.id, operator="ana")
    [entry] = bot.ledger()
    assert (entry.status, entry.approved_by, entry.number) == ("approved", "ana", 1)
    assert bot.replies()[-1].template == "unlocked"
