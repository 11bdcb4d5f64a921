"""The reply that completes a request (issue 11 §6).

A customer whose mail lacked a field gets our "missing data" answer and replies with only the
missing line. The reply is read together with the earlier mail of its thread (found by
In-Reply-To/References or by our whole reference), answered as a complete request, and both
mails' records say so. Strangers learn nothing, the registry still decides, and an earlier mail
is completed once.

The merge rule is unit-tested on its own (`mailbot.read.merge`); the rest runs end to end on a
Maildir and reply files (the Harness of tests/test_unlock_flow.py), with the corpus replies of
tests/data/mail/ (Gmail, Outlook, iPhone), and once on a real Dovecot and aiosmtpd.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from botconfig import server_config
from test_unlock_flow import KEYS, Harness, request_mail

from mailbot import config as config_module
from mailbot.config import LimitsConfig
from mailbot.ops import logview
from mailbot.ops.imports import KeyRecord, LicenceRecord
from mailbot.read import merge
from mailbot.read.extract import read_mail
from mailbot.read.own_mail import OwnMarks
from mailbot.ruleset import load_rules
from mailbot.run.pipeline import run_once
from mailbot.run.wiring import open_app
from mailbot.store import threads
from mailbot.store.database import events, keys

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "mail"
OUR_ID = "<56ed3d04d0154994af1185893c7ea560@example.com>"  # as written in the corpus replies
OUR_REF = "CLV-000001-GE64TE"

VEGA = "lfvega@vegaconsultores.mx"
CONTABILIDAD = "CONTPAQ i Contabilidad"
NOMINAS = "CONTPAQ i Nóminas"
VEGA_SERIAL = "K4VG-7C2M-9PLX-3QRT"  # Contabilidad: what missing_serial.eml lacked
VEGA_NOMINAS = "K4VG-8D3N-5MTY-6WSZ"  # registered for Nóminas, not Contabilidad
STRANGER = "ventas@distribuidoraibarra.com.mx"
FREE_SUBJECT = "Solicitud de claves para actualización sin costo"

REGISTRY = (
    LicenceRecord(VEGA_SERIAL, CONTABILIDAD, "Vega Consultores", VEGA, dt.date(2012, 3, 5),
                  "electronico", None, 3),
    LicenceRecord(VEGA_NOMINAS, NOMINAS, "Vega Consultores", VEGA, dt.date(2013, 1, 10),
                  "electronico", None, 3),
)
ALL_KEYS = (*KEYS, *(KeyRecord(NOMINAS, f"2012-NOMI-{n:04d}") for n in range(1, 4)))
REPLIES = ("completion_reply_gmail_serial_only.eml", "completion_reply_outlook_serial_only.eml",
           "completion_reply_iphone_serial_only.eml")


@pytest.fixture(scope="module")
def rules():
    return load_rules(ROOT / "rules")


@pytest.fixture
def bot(tmp_path):
    harness = Harness(tmp_path, registry=REGISTRY, keys=ALL_KEYS)
    yield harness
    harness.close()


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def in_thread(name: str, answer, reference: str, *, message_id: str | None = None) -> bytes:
    """A corpus reply made to answer `answer` (our reply as it went out) of mail `reference`."""
    data = corpus(name).replace(OUR_ID.encode(), answer.message_id.encode())
    data = data.replace(OUR_REF.encode(), reference.encode())
    if message_id is not None:  # the same reply sent again is another mail
        head, _, body = data.partition(b"\r\n\r\n")
        lines = [line for line in head.split(b"\r\n")
                 if not line.lower().startswith(b"message-id:")]
        data = b"\r\n".join([*lines, f"Message-ID: {message_id}".encode()]) + b"\r\n\r\n" + body
    return data


def first_missing(bot: Harness):
    """missing_serial.eml in, our "missing data" answer out; returns (answer, its mail)."""
    bot.run(corpus("missing_serial.eml"))
    [answer] = bot.replies()
    assert (answer.template, answer.to) == ("missing_data", VEGA)
    return answer, bot.mails()[0]


def key_events(bot: Harness) -> list:
    with bot.app.store.transaction() as conn:
        return conn.execute(sa.select(keys).where(keys.c.serial.is_not(None))).all()


# --- the merge rule (pure) ------------------------------------------------------------------


def parsed_of(name: str, rules):
    parsed, extraction = read_mail(corpus(name), rules, LimitsConfig(), ("claves@example.com",))
    return parsed, extraction


def test_a_mail_missing_its_serial_leaves_one_open_block_with_what_it_said(rules):
    parsed, _ = parsed_of("missing_serial.eml", rules)
    [block] = merge.open_blocks(parsed, rules, OwnMarks.of(("claves@example.com",), "CLV"))
    assert block.open == ("serial",)
    assert block.values["company"] == "Vega Consultores"
    assert block.values["system"] == "CONTPAQ i Contabilidad"
    assert merge.OpenBlock.from_json(json.loads(json.dumps(block.to_json()))) == block


@pytest.mark.parametrize("name", REPLIES)
def test_the_reply_alone_gives_only_the_serial_and_never_our_quoted_example(rules, name):
    parsed, _ = parsed_of(name, rules)
    blocks = merge.own_blocks(parsed, rules, OwnMarks.of(("claves@example.com",), "CLV"))
    assert [values for values, _ in blocks] == [{"serial": blocks[0][0]["serial"]}]
    assert blocks[0][0]["serial"].replace(" ", "-").upper() == VEGA_SERIAL


def note(fields):
    return "from earlier: " + ",".join(fields)


def test_the_new_text_wins_field_by_field(rules):
    earlier = [merge.OpenBlock({"company": "Vega", "contact_name": "Luis", "system": "Nominas",
                                "serial": "K4VG-7C2M-9PLX"}, ("serial",))]
    reply = [({"system": CONTABILIDAD, "serial": VEGA_SERIAL}, True)]
    done = merge.complete(earlier, reply, rules, sender=VEGA, note=note)
    assert done is not None and done.problems == ()
    [request] = done.requests
    assert (request.company, request.contact_name, request.system, request.serial) == (
        "Vega", "Luis", CONTABILIDAD, VEGA_SERIAL)
    assert done.filled == ("company", "contact_name")
    assert done.given == ("system", "serial")
    assert "from earlier: company,contact_name" in request.notes


def test_a_signature_line_fills_only_what_was_missing(rules):
    earlier = [merge.OpenBlock({"company": "Vega", "contact_name": "Luis",
                                "contact_email": VEGA, "system": CONTABILIDAD}, ("serial",))]
    reply = [({"serial": VEGA_SERIAL}, True), ({"contact_email": "asistente@otro.mx"}, False)]
    done = merge.complete(earlier, reply, rules, sender=VEGA, note=note)
    assert done is not None
    assert [r.contact_email for r in done.requests] == [VEGA]


def test_a_reply_that_gives_nothing_missing_completes_nothing(rules):
    earlier = [merge.OpenBlock({"company": "Vega", "system": CONTABILIDAD}, ("serial",))]
    assert merge.complete(earlier, [], rules, sender=VEGA, note=note) is None
    assert merge.complete(earlier, [({"contact_name": "Otro"}, False)], rules, sender=VEGA,
                          note=note) is None


def test_each_reply_block_completes_the_earlier_block_it_names(rules):
    earlier = [merge.OpenBlock({"company": "Vega", "contact_name": "Luis", "system": CONTABILIDAD},
                               ("serial",)),
               merge.OpenBlock({"company": "Vega", "contact_name": "Luis", "system": NOMINAS},
                               ("serial",))]
    reply = [({"system": "nominas", "serial": VEGA_NOMINAS}, True)]
    done = merge.complete(earlier, reply, rules, sender=VEGA, note=note)
    assert done is not None
    assert [(r.system, r.serial) for r in done.requests] == [(NOMINAS, VEGA_NOMINAS)]
    # The other block is still missing its serial: said again, and open for the next reply.
    assert [(p.code, p.field) for p in done.problems] == [("missing_field", "serial")]
    assert [b.values["system"] for b in done.still_open] == [CONTABILIDAD]


# --- end to end: Maildir in, reply files out ------------------------------------------------


@pytest.mark.parametrize("name", REPLIES)
def test_the_reply_with_the_missing_serial_is_answered_with_the_key(bot, name):
    answer, earlier = first_missing(bot)
    bot.run(in_thread(name, answer, earlier.reference))
    keys_reply = bot.replies(template="keys_issued")
    assert [r.to for r in keys_reply] == [VEGA]
    assert "2012-IDAD-0001" in keys_reply[0].text and VEGA_SERIAL in keys_reply[0].text
    [request] = bot.requests()
    assert (request.serial, request.system, request.company, request.outcome) == (
        VEGA_SERIAL, CONTABILIDAD, "Vega Consultores", "issued")
    reasons = [h["reason"] for h in json.loads(request.hits)]
    assert any(f"completes {earlier.reference}" in r and "company" in r and "system" in r
               for r in reasons), reasons
    first, second = bot.mails()
    assert second.outcome == "issued"
    assert any(f"completes {earlier.reference}" in n and "serial from this reply" in n
               for n in json.loads(second.notes))
    assert any(f"completed by {second.reference}" in n for n in json.loads(first.notes))


def test_a_new_mail_quoting_the_whole_reference_completes_it_and_the_number_alone_does_not(bot):
    answer, earlier = first_missing(bot)
    number = earlier.reference.rsplit("-", 1)[0]  # CLV-000001: sequential, no proof
    bot.run(request_mail(sender=VEGA, serial="", system="", subject=f"{FREE_SUBJECT} {number}",
                         body=f"Número de serie: {VEGA_SERIAL}\n"))
    assert bot.replies()[-1].template == "missing_data"
    bot.run(request_mail(sender=VEGA, serial="", system="", subject=FREE_SUBJECT,
                         body=f"Referencia {earlier.reference}\nNúmero de serie: {VEGA_SERIAL}\n"))
    assert [(r.template, r.to) for r in bot.replies()][-1] == ("keys_issued", VEGA)


def test_a_second_completion_of_the_same_mail_issues_no_second_key(bot):
    answer, earlier = first_missing(bot)
    bot.run(in_thread(REPLIES[0], answer, earlier.reference))
    bot.run(in_thread(REPLIES[0], answer, earlier.reference, message_id="<again@gmail.com>"))
    assert len(key_events(bot)) == 1
    assert [r.template for r in bot.replies()] == ["missing_data", "keys_issued", "missing_data"]
    assert [r.outcome for r in bot.requests()] == ["issued"]
    assert json.loads(bot.mails()[2].notes) == ["no complete request: the sender is told what "
                                                "is missing",
                                                "respuesta: el historial citado debajo no se leyó"]


def test_a_stranger_quoting_the_reference_learns_nothing_and_completes_nothing(bot):
    answer, earlier = first_missing(bot)
    bot.run(in_thread("completion_reply_stranger_quotes_reference.eml", answer,
                      earlier.reference))
    [to_stranger] = bot.replies(to=STRANGER)
    assert to_stranger.template == "missing_data"
    assert "Vega Consultores" not in to_stranger.text and VEGA not in to_stranger.text
    assert bot.requests() == [] and key_events(bot) == []
    assert any("neither from its sender" in n for n in json.loads(bot.mails()[1].notes))
    with bot.app.store.transaction() as conn:
        assert threads.completed_by(conn, earlier.id) is None
    # The customer's own reply still completes it afterwards.
    bot.run(in_thread(REPLIES[0], answer, earlier.reference))
    assert [r.to for r in bot.replies(template="keys_issued")] == [VEGA]


def test_a_reply_that_contradicts_the_registry_goes_to_review(bot):
    answer, earlier = first_missing(bot)
    bot.run(in_thread("completion_reply_contradicts_registry.eml", answer, earlier.reference))
    [request] = bot.requests()
    assert (request.serial, request.system, request.outcome) == (VEGA_NOMINAS, CONTABILIDAD,
                                                                 "review")
    assert key_events(bot) == []
    [task] = bot.tasks()
    assert task.reason == "system_mismatch"
    assert any(f"completes {earlier.reference}" in h["reason"] for h in json.loads(request.hits))
    assert bot.replies()[-1].template == "under_review"


def test_a_reply_to_an_answer_that_was_not_missing_data_is_read_on_its_own(bot):
    full = request_mail(sender=VEGA, serial=VEGA_SERIAL, system=CONTABILIDAD,
                        company="Vega Consultores", contact="Luis Fernando Vega",
                        subject=FREE_SUBJECT)
    bot.run(full)
    [keys_answer] = bot.replies()
    assert keys_answer.template == "keys_issued"
    bot.run(in_thread("completion_reply_to_keys_answer.eml", keys_answer,
                      bot.mails()[0].reference))
    assert [r.template for r in bot.replies()] == ["keys_issued", "missing_data"]
    assert [r.serial for r in bot.requests()] == [VEGA_SERIAL]


def test_the_registered_contact_may_complete_what_a_colleague_asked(bot):
    body = (f"Nombre de la empresa: Vega Consultores\nNombre del contacto: Luis Fernando Vega\n"
            f"Correo electrónico del contacto: {VEGA}\nTipo de sistema: {CONTABILIDAD}\n")
    bot.run(request_mail(sender="asistente@vegaconsultores.mx", serial="", system="",
                         subject=FREE_SUBJECT, body=body))
    [answer] = bot.replies()
    reply = request_mail(sender=VEGA, serial="", system="", subject="RE: " + FREE_SUBJECT,
                         body=f"Número de serie: {VEGA_SERIAL}\n", in_reply_to=answer.message_id)
    bot.run(reply)
    assert [(r.template, r.to) for r in bot.replies()][1:] == [("keys_issued", VEGA)]
    # Someone else with a serial of their own completes nothing of it.
    bot2 = request_mail(sender="otro@despacho.mx", serial="", system="", subject="RE: " +
                        FREE_SUBJECT, body=f"Número de serie: {VEGA_NOMINAS}\n",
                        in_reply_to=answer.message_id)
    bot.run(bot2)
    assert bot.replies()[-1].template == "missing_data"


def test_a_multi_request_mail_gets_the_block_the_reply_names_completed(bot):
    body = (f"Nombre de la empresa: Vega Consultores\nNombre del contacto: Luis Fernando Vega\n"
            f"Correo electrónico del contacto: {VEGA}\nTipo de sistema: {CONTABILIDAD}\n\n"
            f"Tipo de sistema: {NOMINAS}\n")
    bot.run(request_mail(sender=VEGA, serial="", system="", subject=FREE_SUBJECT, body=body))
    [answer] = bot.replies()
    assert answer.template == "missing_data"
    reply = request_mail(sender=VEGA, serial="", system="", subject="RE: " + FREE_SUBJECT,
                         body=f"Sistema: Nóminas\nSerie: {VEGA_NOMINAS}\n",
                         in_reply_to=answer.message_id)
    bot.run(reply)
    [request] = bot.requests()
    assert (request.serial, request.system, request.company) == (VEGA_NOMINAS, NOMINAS,
                                                                 "Vega Consultores")
    results = bot.replies()[-1]
    assert results.template == "results"  # the Contabilidad block still lacks its serial
    first, second = bot.mails()
    assert any(n.startswith(f"continued by {second.reference}, which still lacks some data")
               for n in json.loads(first.notes))
    # ...and the next reply gives it.
    bot.run(request_mail(sender=VEGA, serial="", system="", subject="RE: " + FREE_SUBJECT,
                         body=f"Número de serie: {VEGA_SERIAL}\n",
                         in_reply_to=results.message_id))
    assert [r.serial for r in bot.requests()] == [VEGA_NOMINAS, VEGA_SERIAL]
    assert bot.replies()[-1].template == "keys_issued"


def test_the_earlier_mails_completion_is_an_event_the_console_shows(bot):
    answer, earlier = first_missing(bot)
    bot.run(in_thread(REPLIES[2], answer, earlier.reference))
    with bot.app.store.transaction() as conn:
        done = threads.completed_by(conn, earlier.id)
        rows = conn.execute(sa.select(events.c.event).where(events.c.mail == earlier.id)).all()
    assert done is not None and done["fields"] == ["company", "contact_name", "contact_email",
                                                   "system"]
    assert {r.event for r in rows} >= {threads.OPEN_REQUEST, threads.COMPLETED}
    text = logview.format_text(logview.query(bot.app.store, reference=earlier.reference))
    second = bot.mails()[1].reference
    assert f"note: completed by {second}" in text
    text = logview.format_text(logview.query(bot.app.store, reference=second))
    assert f"extract.note: completes {earlier.reference}" in text


# --- on real servers: Dovecot in, aiosmtpd out -------------------------------------------------


def test_on_real_servers_the_reply_through_imap_gets_the_key_by_smtp(tmp_path, imap_server,
                                                                     smtp_server):
    app = open_app(config_module.load(server_config(tmp_path, imap_server, smtp_server)))
    try:
        with app.store.transaction() as conn:
            app.store.upsert_licences(conn, REGISTRY)
            app.store.add_keys(conn, ALL_KEYS)
        imap_server.append("INBOX", corpus("missing_serial.eml"))
        assert run_once(app).errors == []
        [sent] = smtp_server.messages
        answer = email.message_from_bytes(sent.data, policy=email.policy.default)
        assert list(sent.rcpt_tos) == [VEGA] and "Número de serie" in answer.get_body(
            preferencelist=("plain",)).get_content()
        reference = answer["X-Mailbot-Reference"] or ""
        assert reference.startswith("CLV-000001-")

        class Answer:
            message_id = answer["Message-ID"]

        imap_server.append("INBOX", in_thread(REPLIES[1], Answer, reference))
        assert run_once(app).errors == []
        keys_mail = email.message_from_bytes(smtp_server.messages[-1].data,
                                             policy=email.policy.default)
        assert list(smtp_server.messages[-1].rcpt_tos) == [VEGA]
        text = keys_mail.get_body(preferencelist=("plain",)).get_content()
        assert "2012-IDAD-0001" in text and VEGA_SERIAL in text
        assert imap_server.list_folder("INBOX") == []
    finally:
        app.source.close()
        app.sink.close()
        app.store.close()


def test_an_unlock_request_missing_its_serial_is_completed_and_unlocked(tmp_path):
    from test_unlock_flow import COMERCIAL, SUBSCRIPTION, TALLER

    unlock = Harness(tmp_path)
    try:
        unlock.run(request_mail(sender=TALLER, serial="", system=COMERCIAL,
                                company="Taller Mecánico Hermanos Ruiz"))
        [answer] = unlock.replies()
        assert answer.template == "unlock_missing_data"
        unlock.run(request_mail(sender=TALLER, serial="", system="",
                                subject="RE: Solicitud de desbloqueo",
                                body=f"Número de serie: {SUBSCRIPTION}\n\nSaludos\n",
                                in_reply_to=answer.message_id))
        assert [(r.template, r.to) for r in unlock.replies()][1:] == [("unlocked", TALLER)]
        [entry] = unlock.ledger(SUBSCRIPTION)
        assert entry.status == "approved"
    finally:
        unlock.close()


# --- the store's thread queries, on SQLite and PostgreSQL ---------------------------------------


def test_the_thread_lookup_finds_an_open_mail_by_each_path_until_it_is_completed(store):
    now = dt.datetime(2026, 12, 1, 16, 0)
    with store.transaction() as conn:
        first = store.add_mail(conn, source="maildir:x", mail_id="1", fp="a" * 64, size=10)
        other = store.add_mail(conn, source="maildir:x", mail_id="2", fp="b" * 64, size=10)
        store.update_mail(conn, first.id, message_id="<first@cliente.mx>", sender=VEGA)
        store.enqueue(conn, mail=first.id, purpose="reply", template="missing_data",
                      message_id="<ours@example.com>", envelope_from="claves@example.com",
                      recipients=[VEGA], data=b"x")
        block = merge.OpenBlock({"company": "Vega", "system": CONTABILIDAD}, ("serial",))
        threads.remember_open(conn, first.id, kind="free_update", blocks=[block.to_json()],
                              now=now)
        for ids, refs in ((["<ours@example.com>"], []), (["<first@cliente.mx>"], []),
                          ([], [first.reference])):
            [found] = threads.open_in_thread(conn, message_ids=ids, references=refs)
            assert (found.mail, found.sender, found.kind) == (first.id, VEGA, "free_update")
            assert [merge.OpenBlock.from_json(b) for b in found.blocks] == [block]
        assert threads.open_in_thread(conn, message_ids=["<nada@x>"],
                                      references=[other.reference]) == []
        assert threads.claim_open(conn, first.id)
        threads.mark_completed(conn, first.id, by_mail=other.id, by_reference=other.reference,
                               fields=["company", "system"], still_missing=False, now=now)
        assert threads.open_in_thread(conn, message_ids=["<ours@example.com>"],
                                      references=[first.reference]) == []
        assert threads.completed_by(conn, first.id)["by_reference"] == other.reference
        assert not threads.claim_open(conn, first.id)
        assert store.mail_notes(conn, first.id) == [
            f"completed by {other.reference}: the reply gave what was missing; fields taken "
            "from this mail: company, system"]
