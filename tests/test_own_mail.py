"""Never answer our own mail (issue 8, section 3), and a bounded problem list (section 6).

Our answers come back to us forwarded (Outlook `RV:`, Gmail, iPhone), attached, pasted, or
returned by a forwarding rule with our headers stripped. Read as a request, the example in
our "missing data" template (the seed's example, serial AAAA-BBBB-CCCC-DDDD) would bind a real
key to the example serial. The corpus files are real-format forwards of a real answer; the
end-to-end test forwards the answer a pass has just written, through a Maildir, the real
renderer and the store on SQLite and PostgreSQL.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import mailbox
import re
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa
from botconfig import write_config

from mailbot import config as config_module
from mailbot.answer.message import build_reply, make_message_id
from mailbot.answer.plan import problem_rows
from mailbot.answer.render import Renderer
from mailbot.answer.samples import sample_context, sample_contexts
from mailbot.config import LimitsConfig
from mailbot.model import Problem, Request
from mailbot.ops.demo import write_demo
from mailbot.ops.imports import read_keys, read_registry
from mailbot.read.classify import ignored_reason
from mailbot.read.extract import extract_body, read_mail
from mailbot.read.mime import parse_mail
from mailbot.read.own_mail import EXAMPLE_REQUEST, OwnMarks, remove_own_text
from mailbot.read.problem_cap import MAX_PROBLEMS, WHY_UNREAD, cap_problems
from mailbot.read.text import split_quoted
from mailbot.ruleset import load_rules
from mailbot.run.pipeline import run_once
from mailbot.run.wiring import open_app
from mailbot.store.database import keys, mails, requests

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "mail"
TEMPLATES = ROOT / "templates"
OURS = ("claves@example.com",)
EXAMPLE_SERIAL = "AAAA-BBBB-CCCC-DDDD"
SUBJECT = "Solicitud de claves para actualización sin costo"
CUSTOMER = Address("Jorge Medina", addr_spec="jmedina@papeleriaelcentro.com.mx")
REAL_REQUEST = ("Nombre de la empresa: Papelería El Centro, S.A. de C.V.\n"
                "Nombre del contacto: Jorge Medina Salas\n"
                "Correo electrónico del contacto: jmedina@papeleriaelcentro.com.mx\n"
                "Tipo de sistema: CONTPAQ i Contabilidad\n"
                "Número de serie: 7RTA-2KDM-9QXP-4LWE\n")
REAL = Request(company="Papelería El Centro, S.A. de C.V.", contact_name="Jorge Medina Salas",
               contact_email="jmedina@papeleriaelcentro.com.mx", system="CONTPAQ i Contabilidad",
               serial="7RTA-2KDM-9QXP-4LWE", source="body")


@pytest.fixture(scope="module")
def rules():
    return load_rules(ROOT / "rules")


@pytest.fixture(scope="module")
def renderer():
    return Renderer(TEMPLATES)


def read(rules, data: bytes, **kwargs):
    return read_mail(data, rules, LimitsConfig(), OURS, **kwargs)[1]


# --- forwards as clients write them -------------------------------------------------------------

def plain_body(reply: bytes) -> str:
    msg = email.message_from_bytes(reply, policy=email.policy.default)
    return msg.get_body(preferencelist=("plain",)).get_content()


def html_body(reply: bytes) -> str:
    msg = email.message_from_bytes(reply, policy=email.policy.default)
    return msg.get_body(preferencelist=("html",)).get_content()


def subject_of(reply: bytes) -> str:
    return str(email.message_from_bytes(reply, policy=email.policy.default)["Subject"])


def customer_mail(subject: str, text: str | None = None, *, html: str | None = None,
                  attachment: bytes | None = None) -> bytes:
    m = EmailMessage()
    m["From"] = CUSTOMER
    m["To"] = OURS[0]
    m["Subject"] = subject
    m["Message-ID"] = email.utils.make_msgid(domain="papeleriaelcentro.com.mx")
    if text is not None:
        m.set_content(text)
    if html is not None:
        if text is None:
            m.set_content(html, subtype="html")
        else:
            m.add_alternative(html, subtype="html")
    if attachment is not None:
        if text is None and html is None:
            m.set_content("")
        m.add_attachment(attachment, maintype="application", subtype="octet-stream",
                         filename="RE Solicitud.eml")
    return m.as_bytes()


def outlook_rv(reply: bytes, top: str, *, sender: str = "Claves de actualización") -> bytes:
    """Outlook's RV: the reply under a De:/Enviado el:/Para:/Asunto: block (Outlook names a
    sender from the address book by name only)."""
    block = (f"De: {sender}\nEnviado el: lunes, 23 de noviembre de 2026 11:00\n"
             f"Para: {CUSTOMER}\nAsunto: {subject_of(reply)}\n\n")
    return customer_mail("RV: " + subject_of(reply), f"{top}\n\n{block}{plain_body(reply)}")


def gmail_fwd(reply: bytes, top: str) -> bytes:
    block = ("---------- Mensaje reenviado ---------\n"
             "De: Claves de actualización <claves@example.com>\n"
             "Date: lun, 23 nov 2026 a las 11:00\n"
             f"Subject: {subject_of(reply)}\nTo: <{CUSTOMER.addr_spec}>\n\n\n")
    return customer_mail("Fwd: " + subject_of(reply), f"{top}\n\n{block}{plain_body(reply)}")


def iphone_fwd(reply: bytes) -> bytes:
    block = ("Enviado desde mi iPhone\n\nInicio del mensaje reenviado:\n\n"
             "De: Claves de actualización <claves@example.com>\n"
             "Fecha: 23 de noviembre de 2026, 11:00:00 a.m. CST\n"
             f"Para: {CUSTOMER.addr_spec}\nAsunto: {subject_of(reply)}\n\n")
    return customer_mail("Fwd: " + subject_of(reply), block + plain_body(reply))


def stripped(reply: bytes, *, keep_message_id: bool = False) -> bytes:
    """The reply returned by the customer's forwarding rule: From rewritten to the customer,
    Auto-Submitted, X-Auto-Response-Suppress and X-Mailbot-Reference gone; a new Message-ID
    unless `keep_message_id`."""
    msg = email.message_from_bytes(reply, policy=email.policy.default)
    for name in ("From", "Auto-Submitted", "X-Auto-Response-Suppress", "X-Mailbot-Reference",
                 "In-Reply-To", "References"):
        del msg[name]
    msg["From"] = CUSTOMER
    if not keep_message_id:
        del msg["Message-ID"]
        msg["Message-ID"] = email.utils.make_msgid(domain="mx1.papeleriaelcentro.com.mx")
    return msg.as_bytes()


def our_reply(renderer: Renderer, name: str, context: dict, *,
              reference: str = "CLV-000042-K7M2QX", subject: str = SUBJECT) -> bytes:
    return build_reply(from_address=OURS[0], from_name="Claves de actualización",
                       to=[CUSTOMER.addr_spec], original_subject=subject,
                       in_reply_to="<abc@papeleriaelcentro.com.mx>", references=(),
                       rendered=renderer.render(name, context), reference=reference,
                       message_id=make_message_id("example.com"))


# --- the corpus: real-format forwards of a real answer --------------------------------------

def test_our_answer_forwarded_back_from_outlook_is_not_read_and_the_customer_is_answered(rules):
    e = read(rules, (CORPUS / "own_reply_forwarded_outlook_rv.eml").read_bytes())
    assert (e.kind, e.ignored, e.requests) == ("free_update", None, ())
    assert [p.code for p in e.problems] == ["no_request_data"]  # "write the five fields"
    assert ("a mail of ours forwarded in the body was not read "
            "(its sender is claves@example.com)") in e.notes


def test_only_the_customers_request_is_read_above_our_answer_forwarded_from_gmail(rules):
    e = read(rules, (CORPUS / "own_reply_forwarded_gmail.eml").read_bytes())
    assert e.requests == (Request(
        company="Papelería El Centro, S.A. de C.V.", contact_name="Jorge Medina Salas",
        contact_email="jmedina@papeleriaelcentro.com.mx", system="CONTPAQ i Contabilidad",
        serial="7RTA-2KDM-9QXP-4LWE", source="body"),)
    assert e.problems == ()


@pytest.mark.parametrize("name", [
    "own_reply_forwarded_iphone.eml",  # nothing of the customer's but "Enviado desde mi iPhone"
    "own_reply_attached_inline_no_text.eml",  # the attached answer is the only body
    "own_reply_headers_stripped.eml",  # From rewritten, our headers gone
])
def test_a_mail_that_holds_nothing_but_our_answer_is_our_own_mail(rules, name):
    data = (CORPUS / name).read_bytes()
    assert ignored_reason(parse_mail(data), OURS) is None  # nothing in the headers says so
    e = read(rules, data)
    assert (e.ignored, e.requests, e.problems) == ("own_mail", (), ())
    assert e.notes


def test_our_answer_attached_as_a_mail_is_named_in_a_note_and_not_read(rules):
    e = read(rules, (CORPUS / "own_reply_attached_rfc822.eml").read_bytes())
    assert (e.ignored, e.requests) == (None, ())
    assert [p.code for p in e.problems] == ["no_request_data"]
    assert any("is a mail of ours (its sender is claves@example.com)" in n for n in e.notes)


def test_the_forward_keeps_the_customers_part_and_names_our_part_by_its_headers():
    text = parse_mail((CORPUS / "own_reply_forwarded_gmail.eml").read_bytes()).text
    mine, ours = split_quoted(text, forwarded=True)
    assert mine.headers == () and "7RTA-2KDM-9QXP-4LWE" in mine.text
    assert ours.from_lines == ("De: Claves de actualización <claves@example.com>",)
    assert EXAMPLE_SERIAL.title() in ours.text


# --- our headers, on a mail whose From was rewritten -------------------------------------------

@pytest.mark.parametrize("headers", [
    "Message-ID: <1379e6c6b8f04eec8a522f6acf862399@example.com>",  # make_message_id's shape
    "Message-ID: <1379E6C6B8F04EEC8A522F6ACF862399@Example.COM>",
    "X-Mailbot-Reference: CLV-000042-K7M2QX",
])
def test_our_message_id_or_reference_header_makes_a_mail_ours_whoever_it_is_from(rules, headers):
    data = (f"From: {CUSTOMER}\r\nTo: claves@example.com\r\nSubject: RE: {SUBJECT}\r\n"
            f"{headers}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{REAL_REQUEST}").encode()
    e = read(rules, data)
    assert (e.ignored, e.requests) == ("own_mail", ())
    assert e.notes and e.notes[0].startswith("a mail of ours: ")


@pytest.mark.parametrize("message_id", [
    "<1379e6c6b8f04eec8a522f6acf862399@papeleriaelcentro.com.mx>",  # another domain
    "<1379e6c6b8f04eec8a522f6acf86239@example.com>",  # 31 hex digits: not make_message_id's
    "<reply-1379e6c6b8f04eec8a522f6acf862399@example.com>",
])
def test_a_customers_message_id_is_not_taken_for_ours(rules, message_id):
    data = (f"From: {CUSTOMER}\r\nTo: claves@example.com\r\nSubject: {SUBJECT}\r\n"
            f"Message-ID: {message_id}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{REAL_REQUEST}").encode()
    assert read(rules, data).requests == (REAL,)


def test_our_message_id_is_recognised_on_an_internationalised_domain():
    marks = OwnMarks.of(("claves@añil.mx",))
    assert marks.is_our_message_id(make_message_id("añil.mx"))


# --- every answer we send, forwarded back in every way ----------------------------------------

def _answers(rules, renderer):
    """(id, reply bytes) for every customer answer and every sample of it."""
    out = []
    for name in renderer.names():
        if name == "operator_alert":
            continue  # to operators, from us: its From says it is ours
        for label, context in sample_contexts(name, rules).items():
            unlock = name.startswith(("unlock", "document"))
            subject = "Solicitud de desbloqueo" if unlock else SUBJECT
            out.append((f"{name}[{label}]", our_reply(renderer, name, context, subject=subject)))
    return out


def test_no_answer_of_ours_forwarded_back_is_read_as_a_request(rules, renderer):
    answers = _answers(rules, renderer)
    assert len(answers) > 20
    for what, reply in answers:
        for how, data in (("outlook, name only", outlook_rv(reply, "Les reenvío esto.")),
                          ("gmail", gmail_fwd(reply, "¿Qué falta?")),
                          ("iphone", iphone_fwd(reply))):
            e = read(rules, data)
            assert e.requests == (), (what, how)
            assert {p.code for p in e.problems} <= {"no_request_data"}, (what, how, e.problems)


def test_the_customers_request_above_any_answer_of_ours_is_read_alone(rules, renderer):
    for what, reply in _answers(rules, renderer):
        for how, data in (("outlook, name only", outlook_rv(reply, REAL_REQUEST)),
                          ("gmail", gmail_fwd(reply, REAL_REQUEST))):
            e = read(rules, data)
            assert (e.requests, e.problems) == ((REAL,), ()), (what, how)


def test_any_answer_of_ours_coming_back_with_its_headers_stripped_is_not_answered(rules, renderer):
    for what, reply in _answers(rules, renderer):
        for how, data in (("text and html", stripped(reply)),
                          ("html only", customer_mail(subject_of(reply), html=html_body(reply)))):
            e = read(rules, data)
            assert (e.ignored, e.requests, e.problems) == ("own_mail", (), ()), (what, how)


def test_an_operator_alert_forwarded_by_an_operator_is_not_read(rules, renderer):
    reply = our_reply(renderer, "operator_alert", sample_context("operator_alert", rules))
    e = read(rules, gmail_fwd(reply, "Ojo con esto"))
    assert e.requests == () and [p.code for p in e.problems] == ["no_request_data"]


# --- our reference, in both shapes ---------------------------------------------------------

def forwarded_keys_answer(reference: str) -> str:
    """Our keys answer forwarded from Outlook, trimmed to its table (no sign-off, sender
    shown by name): only the subject's reference says it is ours. The customer's company and
    contact above it would complete the table's serial as a request."""
    return ("Empresa: Papelería El Centro, S.A. de C.V.\nContacto: Jorge Medina Salas\n\n"
            "De: Claves de actualización\nEnviado el: lunes, 23 de noviembre de 2026 11:00\n"
            f"Para: {CUSTOMER}\nAsunto: Respuesta a tu solicitud (referencia {reference})\n\n"
            "Esta es tu clave para la actualización sin costo a la versión 2012:\n\n"
            "  Sistema:          CONTPAQ i Factura electrónica\n"
            "  Número de serie:  AAAA-BBBB-CCCC-DDDD\n"
            "  Clave nueva:      FE12-7KQ4-M2ZP-99XA\n")


@pytest.mark.parametrize("reference", ["CLV-000042", "CLV-000042-K7QX", "clv-000042-k7m2qx"])
def test_a_forwarded_mail_carrying_our_reference_is_ours(rules, reference):
    e = read(rules, customer_mail("RV: " + SUBJECT, forwarded_keys_answer(reference)))
    assert e.requests == ()
    assert any(f"our reference {reference.upper()}" in n for n in e.notes)


def test_a_customer_citing_our_reference_in_their_own_words_is_read(rules):
    text = "Buen día, con referencia a CLV-000042-K7M2QX les envío los datos:\n\n" + REAL_REQUEST
    assert read(rules, customer_mail(SUBJECT, text)).requests == (REAL,)


def test_the_configured_reference_prefix_is_the_one_recognised(rules):
    data = customer_mail("RV: " + SUBJECT, forwarded_keys_answer("LIC-000042-K7QX"))
    assert [r.serial for r in read(rules, data).requests] == [EXAMPLE_SERIAL]
    assert read(rules, data, reference_prefix="LIC").requests == ()


# --- the example request of our template --------------------------------------------------

EXAMPLE = "\n".join(EXAMPLE_REQUEST) + "\n"


def test_the_example_in_the_code_is_the_one_in_the_templates():
    for name in ("_example.txt.j2", "_example.html.j2"):
        shown = re.sub(r"<[^>]+>", "", (TEMPLATES / name).read_text(encoding="utf-8"))
        lines = [line.strip() for line in shown.splitlines() if ":" in line]
        assert lines[-5:] == list(EXAMPLE_REQUEST), name


def test_the_seeds_example_written_by_a_customer_alone_is_still_read(rules):
    e = read(rules, (CORPUS / "seed_example_plain_utf8.eml").read_bytes())
    assert [r.serial for r in e.requests] == [EXAMPLE_SERIAL]
    assert e.notes == ()


def test_our_example_pasted_under_its_lead_in_is_dropped_with_a_note(rules):
    text = "Hola, ¿así está bien?\n\nPor ejemplo:\n\n" + EXAMPLE
    e = read(rules, customer_mail(SUBJECT, text))
    assert e.requests == ()
    assert [p.code for p in e.problems] == ["no_request_data"]
    assert "the example request of our answers' template was not read as a request" in e.notes


def test_a_trimmed_example_under_its_lead_in_is_dropped_and_a_real_serial_beside_it_read(rules):
    trimmed = "\n".join(EXAMPLE_REQUEST[2:]) + "\n"
    text = f"{REAL_REQUEST}\nUstedes me pusieron:\nPor ejemplo:\n{trimmed}"
    assert read(rules, customer_mail(SUBJECT, text)).requests == (REAL,)


def test_the_example_anywhere_in_a_mail_that_forwards_ours_is_dropped(rules, renderer):
    reply = our_reply(renderer, "under_review", sample_context("under_review", rules))
    e = read(rules, gmail_fwd(reply, "Copio lo que decía su otro correo:\n\n" + EXAMPLE))
    assert e.requests == ()


def test_remove_own_text_leaves_a_text_without_anything_of_ours_as_it_is():
    text = "Buenas tardes\n\n" + EXAMPLE + "\nSaludos\n"
    assert remove_own_text(text).text == text


# --- end to end: the answer a pass wrote, forwarded back ----------------------------------------

NOW = email.utils.parsedate_to_datetime("Mon, 23 Nov 2026 17:00:00 +0000")


def test_our_answer_forwarded_back_binds_no_key_and_answers_only_people(tmp_path, store):
    demo = write_demo(tmp_path / "demo")
    inbox = mailbox.Maildir(demo.maildir)
    for key in list(inbox.keys()):
        inbox.remove(key)
    path = write_config(tmp_path, '[source]\npath = "demo/inbox"\n[sink]\npath = "outbox"\n'
                                  '[store]\nurl = "sqlite:///unused.db"\n', operators=())
    app = open_app(config_module.load(path))
    app.store, app.clock = store, lambda: NOW
    with store.transaction() as conn:
        store.upsert_licences(conn, read_registry(demo.registry_csv, app.rules.catalogue))
        store.add_keys(conn, read_keys(demo.keys_csv, app.rules.catalogue))
    inbox.add(customer_mail(SUBJECT, "Buen día,\n\nQuisiera mis claves de actualización.\n\n"
                                     "Gracias\nJorge Medina\n"))
    run_once(app)
    (reply,) = [r.message for r in app.sink.sent()]
    assert "Por ejemplo:" in plain_body(reply) and "Aaaa-Bbbb-Cccc-Dddd" in plain_body(reply)

    with_words = [outlook_rv(reply, "No entiendo qué falta.", sender="Claves de actualización "
                                                                        "<claves@example.com>"),
                  gmail_fwd(reply, "¿Qué datos faltan?"),
                  customer_mail("RV: " + subject_of(reply), "Les reenvío su correo.",
                                attachment=reply)]
    only_ours = [iphone_fwd(reply), stripped(reply), stripped(reply, keep_message_id=True),
                 customer_mail(subject_of(reply), html=html_body(reply))]
    for data in with_words + only_ours:
        inbox.add(data)
    report = run_once(app)

    assert report.errors == [] and report.seen == len(with_words) + len(only_ours)
    with store.transaction() as conn:
        bound = conn.execute(sa.select(keys.c.serial).where(keys.c.serial.is_not(None))).all()
        asked = conn.execute(sa.select(requests.c.serial)).scalars().all()
        filed = conn.execute(sa.select(mails.c.outcome, sa.func.count()).group_by(
            mails.c.outcome)).all()
    assert bound == [] and EXAMPLE_SERIAL not in asked
    answers = [plain_body(r.message) for r in app.sink.sent()]
    assert len(answers) == 1 + len(with_words)  # the people get "write the five fields" again
    assert all("CÓMO ENVIAR TU SOLICITUD" in a for a in answers)
    assert dict(filed).get("ignored") == len(only_ours)


# --- section 6: a bounded list of problems ----------------------------------------------------

def system_lines(count: int) -> str:
    return "".join(f"Tipo de sistema: Sistema número {n}\n" for n in range(count))


def test_three_thousand_bad_lines_give_a_capped_list_with_a_count_of_the_rest(rules, monkeypatch):
    data = customer_mail(SUBJECT, system_lines(3000))
    with monkeypatch.context() as patch:
        patch.setattr("mailbot.read.problem_cap.MAX_PROBLEMS", 10**9)
        uncapped = read(rules, data).problems  # the same mail read without the cap
    assert len(uncapped) > 5000
    e = read(rules, data)
    assert len(e.problems) == MAX_PROBLEMS
    *kept, summary = e.problems
    assert (summary.code, summary.source) == ("too_many_problems", "message")
    assert summary.detail.startswith(f"{len(uncapped) - len(kept):,} more problems were left out")
    # Those saying why a part was not read come first, then the first of the rest, in order.
    unread = [p for p in uncapped if p.code in WHY_UNREAD]
    rest = [p for p in uncapped if p.code not in WHY_UNREAD]
    assert kept == [p for p in uncapped if p in unread or p in rest[:len(kept) - len(unread)]]


def test_the_answer_to_three_thousand_bad_lines_renders_within_the_renderers_cap(rules, renderer):
    e = read(rules, customer_mail(SUBJECT, system_lines(3000)))
    context = sample_context("missing_data", rules)
    context["problems"] = problem_rows(e)
    rendered = renderer.render("missing_data", context)
    assert len(rendered.text) < renderer.max_output and len(rendered.html) < renderer.max_output
    assert rendered.text.count("\n  - ") >= MAX_PROBLEMS
    # The customer is told, in words, that the list was cut.
    assert "Encontramos más problemas de los que caben en este correo" in rendered.text
    assert "Encontramos más problemas de los que caben en este correo" in rendered.html


def test_problems_about_the_whole_mail_survive_the_cap(rules):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = CUSTOMER, OURS[0], SUBJECT
    m.set_content(system_lines(3000))
    for n in range(2):
        m.add_attachment(b"x", maintype="application", subtype="pdf", filename=f"f{n}.pdf")
    e = read_mail(m.as_bytes(), rules, LimitsConfig(max_attachments=1), OURS)[1]
    codes = [p.code for p in e.problems]
    assert len(codes) == MAX_PROBLEMS and codes[-1] == "too_many_problems"
    assert "too_many_attachments" in codes


def test_a_mail_within_the_cap_keeps_every_problem(rules):
    text = system_lines(10)
    _, uncapped = extract_body(text, rules, sender=CUSTOMER.addr_spec)
    assert len(uncapped) < MAX_PROBLEMS
    assert read(rules, customer_mail(SUBJECT, text)).problems == tuple(uncapped)


def test_the_cap_holds_even_when_every_problem_says_why_a_part_was_not_read():
    many = [Problem("too_many_rows", f"sheet {n}", source=f"attachment:{n}.xlsx")
            for n in range(150)]
    capped = cap_problems(many)
    assert len(capped) == MAX_PROBLEMS
    assert capped[:-1] == many[:MAX_PROBLEMS - 1]
    assert capped[-1].detail.startswith("51 more problems were left out")
