"""Who may receive keys (issue 4 §3), end to end: the sender checks on headers as real receiving
servers write them (tests/data/auth), Reply-To, look-alike domains, IDNA, and the throttles."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from test_unlock_flow import (
    COMERCIAL,
    CONSTRUCTORA,
    FACTURA,
    FREE,
    KEYS,
    NOMINAS,
    OTHER_FREE,
    PDF,
    PHYSICAL,
    RAUL,
    REGISTRY,
    SUBSCRIPTION,
    TALLER,
    TUESDAY_10,
    Harness,
    request_mail,
    unlock_mail,
)

from mailbot.ops import review_actions
from mailbot.ops.imports import KeyRecord, LicenceRecord

AUTH = Path(__file__).parent / "data" / "auth"
OUR_POSTFIX = 'trusted_authserv_ids = ["mail.softwaremx.com.mx"]'
REQUIRE = "require_authentication = true\n"

PAPELERIA = "ventas@papeleriaruiz.com.mx"
PAPELERIA_SERIAL = "P4PR-7K2M-9QWE-3XZA"
ALTAMIRA = "direccion@grupoaltamira.com.mx"
ALTAMIRA_SERIAL = "G5AL-8T3R-2MNB-6VCX"
GMAIL = "maria.lopez.contab@gmail.com"
GMAIL_SERIAL = "M1LC-4D8F-7GHJ-2KLP"
ANORADA = "ventas@añorada.mx"
ANORADA_SERIAL = "N0RA-3D4M-5X6Y-7Z8W"

SENDERS = (
    LicenceRecord(PAPELERIA_SERIAL, FACTURA, "Papelería Ruiz", PAPELERIA, dt.date(2012, 1, 5),
                  "electronico", None, 1),
    LicenceRecord(ALTAMIRA_SERIAL, COMERCIAL, "Grupo Altamira", ALTAMIRA, dt.date(2024, 1, 5),
                  "suscripcion", None, 1),
    LicenceRecord(GMAIL_SERIAL, COMERCIAL, "María López, contadora", GMAIL, dt.date(2024, 2, 5),
                  "suscripcion", None, 1),
    LicenceRecord(ANORADA_SERIAL, FACTURA, "Añorada, S.A.", ANORADA, dt.date(2012, 3, 5),
                  "electronico", None, 1),
)


def harness(tmp_path: Path, security: str = "", throttle: str = "") -> Harness:
    return Harness(tmp_path, security=security, throttle=throttle, registry=REGISTRY + SENDERS,
                   keys=KEYS + (KeyRecord(FACTURA, "2012-FACT-0100"),))


def from_sample(name: str, *, subject: str, body: str,
                attachment: tuple[str, bytes] | None = None) -> bytes:
    """A sample's headers exactly as the receiving server wrote them, with our request as the
    subject and the body (and an attachment, as a mail client would add it)."""
    head = (AUTH / name).read_bytes().split(b"\n\n", 1)[0].decode("utf-8").split("\n")
    kept, skipping = [], False
    for line in head:
        if line[:1] in (" ", "\t"):
            if not skipping:
                kept.append(line)
            continue
        name_ = line.split(":", 1)[0].lower()
        skipping = name_ in ("subject", "content-type", "mime-version",
                             "content-transfer-encoding")
        if not skipping:
            kept.append(line)
    kept.append("Subject: " + subject)
    kept.append("MIME-Version: 1.0")
    if attachment is None:
        kept.append('Content-Type: text/plain; charset="utf-8"')
        kept.append("Content-Transfer-Encoding: 8bit")
        return ("\n".join(kept) + "\n\n" + body).encode("utf-8")
    import base64

    filename, payload = attachment
    kept.append('Content-Type: multipart/mixed; boundary="b1"')
    parts = ["--b1", 'Content-Type: text/plain; charset="utf-8"',
             "Content-Transfer-Encoding: 8bit", "", body, "--b1",
             f'Content-Type: application/pdf; name="{filename}"',
             f'Content-Disposition: attachment; filename="{filename}"',
             "Content-Transfer-Encoding: base64", "", base64.b64encode(payload).decode(),
             "--b1--", ""]
    return ("\n".join(kept) + "\n\n" + "\n".join(parts)).encode("utf-8")


def fields(serial: str, system: str, email: str, company: str = "Empresa") -> str:
    return (f"Nombre de la empresa: {company}\nNombre del contacto: Contacto\n"
            f"Correo electrónico del contacto: {email}\nTipo de sistema: {system}\n"
            f"Número de serie: {serial}\n")


@pytest.fixture
def secure(tmp_path):
    bot = harness(tmp_path, REQUIRE + OUR_POSTFIX)
    yield bot
    bot.close()


# --- sender authentication ----------------------------------------------------------------------

def test_dmarc_pass_from_our_server_is_answered_and_reply_to_receives_nothing(secure):
    secure.run(from_sample("postfix_opendmarc.txt",
                           subject="Solicitud de claves para actualización sin costo",
                           body=fields(PAPELERIA_SERIAL, FACTURA, PAPELERIA)))
    replies = secure.replies()
    assert [(r.template, r.to) for r in replies] == [("keys_issued", PAPELERIA)]
    assert "2012-FACT-0100" in replies[0].text or "2012-" in replies[0].text
    assert not secure.replies("compras.externas@gmail.com")
    assert all("compras.externas" not in json.dumps(r.message["To"]) for r in replies)
    [mail] = secure.mails()
    notes = json.loads(mail.notes)
    assert any(n.startswith("reply_to_differs") for n in notes)
    assert secure.tasks() == []


def test_forged_pass_headers_below_an_untrusted_hop_go_to_review_until_an_operator_approves(
        secure):
    body = fields(ALTAMIRA_SERIAL, COMERCIAL, ALTAMIRA)
    secure.run(from_sample("postfix_forged_untrusted.txt", subject="Solicitud de desbloqueo",
                           body=body))
    [task] = secure.tasks()
    assert (task.kind, task.reason) == ("sender", "sender_not_authenticated")
    assert "did not authenticate grupoaltamira.com.mx" in task.reason_text
    assert secure.ledger() == [] and secure.requests() == []  # the rules did not run
    # The sender only hears that a person will look at it.
    assert [(r.template, r.to) for r in secure.replies()] == [("under_review", ALTAMIRA)]
    # An operator confirms it by phone and approves: decided now, as the pipeline would have.
    result = review_actions.approve(secure.app, task.id, operator="ana")
    assert result.messages == (("unlocked", ALTAMIRA),)
    [entry] = secure.ledger()
    assert (entry.status, entry.number) == ("approved", 1)
    assert secure.task(task.id).status == "approved"


def test_exchange_online_topmost_header_counts_only_when_configured(tmp_path):
    mail = from_sample("microsoft365.txt", subject="Solicitud de desbloqueo",
                       body=fields(PHYSICAL, NOMINAS, CONSTRUCTORA),
                       attachment=("certificado.pdf", PDF))
    plain = harness(tmp_path / "a", REQUIRE + 'trusted_authserv_ids = ["mx.microsoft.com"]')
    plain.run(mail)
    assert [t.reason for t in plain.tasks()] == ["sender_not_authenticated"]
    trusting = harness(tmp_path / "b", REQUIRE + 'trusted_authserv_ids = '
                                                 '["(topmost-without-authserv-id)"]')
    trusting.run(mail)
    # From is "JPerez@ConstructoraDelValle.com.mx": the registered contact, compared normalised.
    [reply] = trusting.replies()
    assert reply.template == "documents_received"
    assert [t.reason for t in trusting.tasks()] == ["documents_to_check"]


def test_a_forged_exchange_header_under_the_real_one_is_not_believed(tmp_path):
    bot = harness(tmp_path, REQUIRE + 'trusted_authserv_ids = ["(topmost-without-authserv-id)"]')
    bot.run(from_sample("microsoft365_forged.txt", subject="Solicitud de desbloqueo",
                        body=fields(PHYSICAL, NOMINAS, CONSTRUCTORA),
                        attachment=("certificado.pdf", PDF)))
    assert [(t.kind, t.reason) for t in bot.tasks()] == [("sender", "sender_not_authenticated")]
    assert bot.ledger() == []


def test_gmail_dmarc_pass_releases_a_first_subscription_unlock(tmp_path):
    bot = harness(tmp_path, REQUIRE + 'trusted_authserv_ids = ["mx.google.com"]')
    bot.run(from_sample("gmail.txt", subject="Solicitud de desbloqueo",
                        body=fields(GMAIL_SERIAL, COMERCIAL, GMAIL)))
    assert [(r.template, r.to) for r in bot.replies()] == [("unlocked", GMAIL)]


def test_without_require_authentication_the_rules_decide_as_before(tmp_path):
    bot = harness(tmp_path)
    bot.run(from_sample("postfix_forged_untrusted.txt", subject="Solicitud de desbloqueo",
                        body=fields(ALTAMIRA_SERIAL, COMERCIAL, ALTAMIRA)))
    assert [r.template for r in bot.replies()] == ["unlocked"]
    assert bot.tasks() == []


def test_require_authentication_without_trusted_servers_is_a_configuration_error(tmp_path):
    from mailbot.errors import ConfigError

    with pytest.raises(ConfigError, match="trusted_authserv_ids is empty"):
        Harness(tmp_path, security=REQUIRE)


# --- addresses ----------------------------------------------------------------------------------

def test_a_look_alike_from_domain_goes_to_review_and_receives_no_keys(tmp_path):
    bot = harness(tmp_path)  # even without authentication required
    look_alike = "ventas@pаpeleriaruiz.com.mx"  # a Cyrillic "а"
    bot.run(request_mail(sender=look_alike, serial=PAPELERIA_SERIAL, system=FACTURA,
                         subject="Solicitud de claves para actualización sin costo",
                         contact_email=PAPELERIA))
    [task] = bot.tasks()
    assert (task.kind, task.reason) == ("sender", "sender_domain_suspicious")
    assert "mixes Cyrillic and Latin" in task.reason_text
    assert bot.requests() == []
    assert not bot.replies(template="keys_issued") and not bot.replies(PAPELERIA)


def test_reply_to_never_receives_keys_nor_any_answer(tmp_path):
    bot = harness(tmp_path)
    bot.run(request_mail(sender=RAUL, serial=FREE, system=FACTURA,
                         subject="Solicitud de claves para actualización sin costo",
                         reply_to="atacante@example.net"))
    assert [(r.template, r.to) for r in bot.replies()] == [("keys_issued", RAUL)]
    assert bot.replies("atacante@example.net") == []
    assert "reply_to_differs" in bot.mails()[0].notes


def test_addresses_are_compared_after_idna_normalisation(tmp_path):
    bot = harness(tmp_path)
    punycode = "ventas@xn--aorada-wwa.mx"  # how "ventas@añorada.mx" often arrives
    bot.run(request_mail(sender=punycode, serial=ANORADA_SERIAL, system=FACTURA,
                         subject="Solicitud de claves para actualización sin costo"))
    # The sender IS the registered contact: the key goes straight to them, not "redirected".
    [reply] = bot.replies()
    assert (reply.template, reply.to) == ("keys_issued", punycode)
    assert "2012-" in reply.text
    hits = json.loads(bot.requests()[0].hits)
    assert any("is the registered contact" in h["reason"] for h in hits)


def test_a_mail_with_two_from_mailboxes_goes_to_review_unanswered(tmp_path):
    bot = harness(tmp_path)
    mail = request_mail(sender=TALLER, serial=SUBSCRIPTION, system=COMERCIAL)
    mail = mail.replace(f"From: Cliente <{TALLER}>".encode(),
                        f"From: Cliente <{TALLER}>, Otro <otro@example.net>".encode())
    bot.run(mail)
    [task] = bot.tasks()
    assert (task.kind, task.reason) == ("sender", "sender_from_mailboxes")
    assert bot.replies() == [] and bot.ledger() == []


# --- throttles ----------------------------------------------------------------------------------

def test_more_mails_for_one_serial_than_allowed_go_to_review(tmp_path):
    bot = harness(tmp_path, "max_requests_per_serial = 2\n")
    mail = request_mail(sender=RAUL, serial=FREE, system=FACTURA,
                        subject="Solicitud de claves para actualización sin costo")
    for minutes in (0, 10, 20):
        bot.run(mail.replace(b"Message-ID: <", f"Message-ID: <{minutes}.".encode()),
                at=TUESDAY_10 + dt.timedelta(minutes=minutes))
    assert [r.outcome for r in bot.requests()] == ["issued", "issued", "review"]
    [task] = bot.tasks()
    assert (task.kind, task.reason) == ("free_update", "throttled_serial")
    assert "max_requests_per_serial" in task.reason_text
    assert bot.replies()[-1].template == "under_review"
    # After the window the serial is answered again.
    bot.run(mail.replace(b"Message-ID: <", b"Message-ID: <late."),
            at=TUESDAY_10 + dt.timedelta(days=2))
    assert bot.requests()[-1].outcome == "issued"


def test_more_mails_for_one_company_than_allowed_go_to_review(tmp_path):
    bot = harness(tmp_path, "max_requests_per_company = 2\n")
    for n, serial in enumerate((FREE, OTHER_FREE, OTHER_FREE)):
        system = FACTURA if serial == FREE else "CONTPAQ i Contabilidad"
        bot.run(request_mail(sender=RAUL, serial=serial, system=system,
                             subject="Solicitud de claves para actualización sin costo"),
                at=TUESDAY_10 + dt.timedelta(minutes=n))
    assert [r.outcome for r in bot.requests()] == ["issued", "issued", "review"]
    assert [t.reason for t in bot.tasks()] == ["throttled_company"]


def test_an_unlock_over_the_serial_limit_goes_to_review_and_an_operator_can_approve_it(tmp_path):
    bot = harness(tmp_path, "max_requests_per_serial = 1\n")
    bot.run(unlock_mail())
    bot.run(unlock_mail(), at=TUESDAY_10 + dt.timedelta(minutes=5))
    [task] = bot.tasks()
    assert (task.kind, task.reason, task.unlock) == ("unlock", "throttled_serial", None)
    assert [e.status for e in bot.ledger()] == ["approved"]  # the 2nd mail did not count
    assert bot.replies()[-1].template == "unlock_review"


def test_more_answers_to_one_sender_than_allowed_hold_the_mail(tmp_path):
    bot = harness(tmp_path, throttle="max_replies_per_sender = 1\n")
    # The outbox stamps messages with the real time, so this test runs on the real clock.
    now = dt.datetime.now(dt.UTC)
    bot.run(unlock_mail(), at=now)
    bot.run(request_mail(sender=TALLER, serial=FREE, system=FACTURA, contact_email=RAUL,
                         subject="Solicitud de claves para actualización sin costo"),
            at=now + dt.timedelta(minutes=1))
    [task] = bot.tasks()
    assert (task.kind, task.reason) == ("throttled", "throttled_sender")
    assert len(bot.replies()) == 1  # nothing more went out: no reply, no keys
    assert [r.serial for r in bot.requests()] == [SUBSCRIPTION]  # the rules did not run
    # An operator lets it through: decided now, the keys go to the registered address only.
    result = review_actions.approve(bot.app, task.id, operator="ana")
    assert ("keys_issued", RAUL) in result.messages
    assert ("keys_redirected", TALLER) in result.messages
