"""Keys and data only to the registered contact (issue 8 §1), each test an attack end to end.

- A request that waited for keys is decided again against the registry when its key is bound.
- A stranger quoting a reference, or replying in a thread, is not the continuation of
  someone else's unlock: references carry a random code, and the sender must be the
  registered contact or whoever asked.
- Keys sent to a registered contact greet the registered company, not the third party.
- The envelope and the To header name one domain (UTS 46 both).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import json
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from smtp_server import SmtpTestServer
from test_unlock_flow import (
    CONSTRUCTORA,
    FACTURA,
    FREE,
    KEYS,
    NOMINAS,
    PDF,
    PHYSICAL,
    RAUL,
    REGISTRY,
    Harness,
    request_mail,
    unlock_mail,
)

from mailbot.addresses import normalise_domain
from mailbot.answer.message import build_reply, make_message_id
from mailbot.answer.render import Rendered
from mailbot.ops import review_actions
from mailbot.ops.imports import KeyRecord, LicenceRecord
from mailbot.run.pending import fulfil_pending
from mailbot.store.database import keys, outbox

FREE_SUBJECT = "Solicitud de claves para actualización sin costo"
STRANGER = "curioso@competencia.com.mx"
NEW_CONTACT = "sistemas@empresamuestra.com.mx"
LAURA = "compras@otrodominio.com"


def free_request(sender: str = RAUL, **kw) -> bytes:
    return request_mail(sender=sender, serial=FREE, system=FACTURA, subject=FREE_SUBJECT, **kw)


def registered(serial: str, **changes) -> LicenceRecord:
    [record] = [r for r in REGISTRY if r.serial == serial]
    return dataclasses.replace(record, **changes)


def key_rows(bot: Harness) -> list:
    with bot.app.store.transaction() as conn:
        return conn.execute(sa.select(keys).order_by(keys.c.id)).all()


# --- a stale recipient: the registry changes while a request waits for keys ------------------

@pytest.fixture
def waiting(tmp_path):
    """Raúl asked for the keys of FREE while the Factura pool was empty: his request waits."""
    bot = Harness(tmp_path, keys=tuple(k for k in KEYS if k.system != FACTURA))
    bot.run(free_request())
    assert [r.template for r in bot.replies()] == ["pending_keys"]
    assert [r.outcome for r in bot.requests()] == ["pending"]
    yield bot
    bot.close()


def import_keys(bot: Harness) -> int:
    with bot.app.store.transaction() as conn:
        bot.app.store.add_keys(conn, [KeyRecord(FACTURA, "2012-FACT-NEW1")])
    return fulfil_pending(bot.app)


@pytest.mark.parametrize("change", [
    {"contact_email": NEW_CONTACT},  # the company changed its contact
    {"system": "CONTPAQ i Contabilidad"},  # the registry corrected the serial's system
], ids=["contact", "system"])
def test_a_waiting_request_goes_to_review_when_the_registry_changed_meanwhile(waiting, change):
    with waiting.app.store.transaction() as conn:
        waiting.app.store.upsert_licences(conn, [registered(FREE, **change)])

    assert import_keys(waiting) == 0
    waiting.run()

    assert [r.template for r in waiting.replies()] == ["pending_keys"]  # no keys to anyone
    assert all(k.serial is None for k in key_rows(waiting))  # and none bound in waiting
    [req] = waiting.requests()
    assert req.outcome == "review"
    assert json.loads(req.hits)[-1]["rule"] == "keys.imported"
    [task] = waiting.tasks()
    assert (task.kind, task.reason, task.request, task.status) == (
        "free_update", "registry_changed", req.id, "open")
    assert any("Solicitud para revisión" in a for a in waiting.alerts())


def test_an_approved_stale_request_sends_the_keys_to_the_contact_registered_now(waiting):
    with waiting.app.store.transaction() as conn:
        waiting.app.store.upsert_licences(conn, [registered(FREE, contact_email=NEW_CONTACT)])
    import_keys(waiting)
    [task] = waiting.tasks()
    assert NEW_CONTACT in task.reason_text and RAUL in task.reason_text

    result = review_actions.approve(waiting.app, task.id, operator="ana")

    assert ("keys_issued", NEW_CONTACT) in result.messages
    [keys_mail] = waiting.replies(NEW_CONTACT)
    assert "2012-FACT-NEW1" in keys_mail.text
    assert all("2012-FACT-NEW1" not in r.text for r in waiting.replies(RAUL))


def test_a_waiting_request_still_gets_its_keys_when_the_registry_did_not_change(waiting):
    assert import_keys(waiting) == 1
    waiting.run()
    keys_mail = waiting.replies(template="keys_issued")
    assert [(r.to, "2012-FACT-NEW1" in r.text) for r in keys_mail] == [(RAUL, True)]
    assert [r.outcome for r in waiting.requests()] == ["issued"]
    assert waiting.tasks() == []
    assert import_keys(waiting) == 0  # decided once: a second import sends nothing again
    assert len(waiting.replies(template="keys_issued")) == 1


# --- a reference leak: a stranger "continues" someone else's unlock --------------------------

@pytest.fixture
def asked(tmp_path):
    """The Constructora asked to unlock its physical licence; we asked for the certificate."""
    bot = Harness(tmp_path)
    bot.run(unlock_mail(PHYSICAL, CONSTRUCTORA, NOMINAS))
    assert [r.template for r in bot.replies()] == ["documents_needed"]
    yield bot
    bot.close()


def assert_nothing_leaked(bot: Harness) -> None:
    """The stranger was answered as a new mail, and the Constructora's unlock is untouched."""
    [answer] = bot.replies(STRANGER)
    assert answer.template == "unlock_missing_data"
    for secret in (PHYSICAL, NOMINAS, "Constructora", CONSTRUCTORA):
        assert secret not in answer.text and secret not in answer.html
    [entry] = bot.ledger()
    assert (entry.status, json.loads(entry.documents)) == ("awaiting_documents", [])
    assert bot.tasks() == []


def stranger_mail(subject: str, **kw) -> bytes:
    return request_mail(sender=STRANGER, serial="", system="", subject=subject,
                        body="Adjunto el certificado.\n", attachments=(("cert.pdf", PDF),), **kw)


def test_a_stranger_quoting_the_whole_reference_is_a_new_mail(asked):
    reference = asked.mails()[0].reference
    asked.run(stranger_mail(f"RE: Solicitud de desbloqueo {reference}"))
    assert_nothing_leaked(asked)


def test_a_stranger_quoting_the_visible_number_is_a_new_mail(asked):
    number = f"CLV-{asked.mails()[0].id:06d}"  # sequential: anyone can guess it
    asked.run(stranger_mail(f"RE: Solicitud de desbloqueo {number}"))
    assert_nothing_leaked(asked)


def test_a_stranger_replying_in_the_thread_is_a_new_mail(asked):
    [ours] = asked.replies()  # forwarded to them, say: they reply to our Message-ID
    asked.run(stranger_mail("RE: Solicitud de desbloqueo", in_reply_to=ours.message_id))
    assert_nothing_leaked(asked)


def test_the_contact_quoting_the_visible_number_alone_does_not_continue(asked):
    number = f"CLV-{asked.mails()[0].id:06d}"
    asked.run(request_mail(sender=CONSTRUCTORA, serial="", system="",
                           subject=f"Desbloqueo {number}", body="Adjunto.\n",
                           attachments=(("cert.pdf", PDF),)))
    assert asked.replies(CONSTRUCTORA)[-1].template == "unlock_missing_data"
    assert [e.status for e in asked.ledger()] == ["awaiting_documents"]


def test_the_registered_contact_quoting_the_whole_reference_in_any_case_continues(asked):
    reference = asked.mails()[0].reference
    asked.run(request_mail(sender=CONSTRUCTORA.upper(), serial="", system="",
                           subject=f"Desbloqueo {reference.lower()}", body="Adjunto.\n",
                           attachments=(("cert.pdf", PDF),)))
    [entry] = asked.ledger()
    assert (entry.status, json.loads(entry.documents)) == ("in_review", ["cert.pdf"])
    assert [t.reason for t in asked.tasks()] == ["documents_to_check"]


def test_whoever_asked_may_continue_their_own_request(tmp_path):
    bot = Harness(tmp_path, registry=(*(r for r in REGISTRY if r.serial != PHYSICAL),
                                      registered(PHYSICAL, contact_email="otra@constructora.mx")))
    bot.run(unlock_mail(PHYSICAL, CONSTRUCTORA, NOMINAS))  # asked by someone not registered
    [ours] = bot.replies()
    bot.run(request_mail(sender=CONSTRUCTORA, serial="", system="", body="Adjunto.\n",
                         subject="RE: Solicitud de desbloqueo", in_reply_to=ours.message_id,
                         attachments=(("cert.pdf", PDF),)))
    [first, second] = bot.mails()
    assert any(f"answers the unlock request {first.reference}" in n
               for n in json.loads(second.notes))
    bot.close()


def test_references_carry_a_random_code_after_their_number(asked):
    asked.run(unlock_mail(PHYSICAL, CONSTRUCTORA, NOMINAS))
    first, second = (m.reference for m in asked.mails())
    assert first.split("-")[:2] == ["CLV", "000001"] and second.split("-")[:2] == ["CLV", "000002"]
    assert len(first) == len(second) == len("CLV-000001-") + 6
    assert first in asked.replies()[0].text  # customers are shown the whole reference


# --- the greeting of keys sent to the registered contact -------------------------------------

def test_keys_sent_to_the_registered_contact_greet_the_registered_company(tmp_path):
    bot = Harness(tmp_path)
    bot.run(free_request(sender=LAURA, name="Laura Pérez", contact="Laura Pérez",
                         contact_email=LAURA))
    [keys_mail] = bot.replies(RAUL)
    assert keys_mail.template == "keys_issued"
    assert keys_mail.text.startswith("Hola, Empresa de muestra, S.A. de C.V.:")
    assert "Laura" not in keys_mail.text
    [told] = bot.replies(LAURA)  # her own answer may greet her as she wrote
    assert (told.template, told.text.startswith("Hola, Laura Pérez:")) == (
        "keys_redirected", True)
    bot.close()


def test_keys_a_waiting_request_gets_greet_the_registered_company(tmp_path):
    bot = Harness(tmp_path, keys=tuple(k for k in KEYS if k.system != FACTURA))
    bot.run(free_request(sender=LAURA, contact="Laura Pérez", contact_email=LAURA))
    assert import_keys(bot) == 1
    [keys_mail] = bot.replies(RAUL)
    assert keys_mail.text.startswith("Hola, Empresa de muestra, S.A. de C.V.:")
    assert "Laura" not in keys_mail.text
    bot.close()


# --- one domain in the envelope and in the To header -----------------------------------------

STRASSE = "cliente@straße.de"
STRASSE_SERIAL = "S7RA-55E0-DE00-0001"


def test_the_envelope_and_the_to_header_name_the_same_idn_domain(
        tmp_path, smtp_server: SmtpTestServer, make_smtp_sink: Callable) -> None:
    bot = Harness(tmp_path, registry=(*REGISTRY, LicenceRecord(
        STRASSE_SERIAL, FACTURA, "Straße GmbH", STRASSE, dt.date(2012, 2, 1), "electronico",
        None, 1)))
    bot.run(request_mail(sender=STRASSE, serial=STRASSE_SERIAL, system=FACTURA,
                         subject=FREE_SUBJECT))
    with bot.app.store.transaction() as conn:
        [row] = conn.execute(sa.select(outbox).where(outbox.c.purpose != "alert")).all()
    assert row.template == "keys_issued"

    make_smtp_sink().send(row.envelope_from, json.loads(row.recipients), row.data,
                          row.message_id)

    [received] = smtp_server.messages
    header = email.message_from_bytes(received.data, policy=email.policy.default)
    [to] = header["To"].addresses
    uts46 = normalise_domain("straße.de")
    assert uts46 == "xn--strae-oqa.de"  # ß kept: IDNA 2003 would make it strasse.de
    assert received.rcpt_tos == (f"cliente@{uts46}",)
    assert f"{to.username}@{normalise_domain(to.domain)}" == received.rcpt_tos[0]
    bot.close()


def test_the_sender_throttle_counts_an_idn_sender_however_its_domain_is_written(store):
    since = dt.datetime(2026, 1, 1)
    with store.transaction() as conn:
        store.enqueue(conn, mail=None, purpose="reply", template="t", message_id="<1@x>",
                      envelope_from="claves@example.com", recipients=["cliente@straße.de"],
                      data=b"x")
        store.enqueue(conn, mail=None, purpose="reply", template="t", message_id="<2@x>",
                      envelope_from="claves@example.com",
                      recipients=["cliente@xn--strae-oqa.de"], data=b"x")
        for written in ("Cliente@Straße.de", "cliente@XN--STRAE-OQA.DE"):
            assert store.replies_to_since(conn, written, since) == 2, written


def test_headers_built_from_an_idn_address_use_uts46_not_idna_2003():
    data = build_reply(
        from_address="claves@straße.de", from_name="Claves", to=[STRASSE],
        original_subject="Solicitud", in_reply_to=None, references=[],
        rendered=Rendered(text="Hola\n", html=None), reference="CLV-000042-K7M2QX",
        message_id=make_message_id("straße.de"), date=dt.datetime(2026, 3, 10, tzinfo=dt.UTC))
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert [str(a.addr_spec) for a in message["To"].addresses] == ["cliente@xn--strae-oqa.de"]
    assert message["From"].addresses[0].domain == "xn--strae-oqa.de"
    assert message["Message-ID"].endswith("@xn--strae-oqa.de>")
