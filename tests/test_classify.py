"""mailbot.read.classify: the request kind from the subject, and the mails never to answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbot.read.classify import ignored_reason, is_forwarded, match_kind, normalise_subject
from mailbot.read.mime import parse_mail
from mailbot.ruleset import Kind, load_rules

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).parent / "data" / "mail"
OURS = ("claves@example.com",)
KINDS = load_rules(ROOT / "rules").kinds


def mail(headers: str, body: str = "Número de serie: AAAA-BBBB-CCCC-DDDD\n"):
    """A parsed mail from header lines written as in a message (a From is added if missing)."""
    if not any(line.lower().startswith("from:") for line in headers.splitlines()):
        headers = "From: Cliente <cliente@empresa.mx>\n" + headers
    return parse_mail((headers.strip("\n") + "\n\n" + body).encode("utf-8"))


# --- normalise_subject -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject, expected",
    [
        ("Solicitud de claves para actualización sin costo", "solicitud de claves para actualizacion sin costo"),
        ("RE: RV: Fwd: FW: ENC: Solicitud de desbloqueo", "solicitud de desbloqueo"),
        ("Re[2]: RE (3): Re^2: Desbloqueo", "desbloqueo"),
        ("AW: WG: TR: R: SV: Desbloqueo", "desbloqueo"),
        ("RE : RE:RE: Desbloqueo", "desbloqueo"),
        ("[External] RE: [EXTERNO] Desbloqueo", "desbloqueo"),
        ("*** EXTERNAL *** Desbloqueo", "desbloqueo"),
        ("SOLICITUD   DE  DESBLOQUEO...", "solicitud de desbloqueo"),
        ("Solicitud de desbloqueo - Serie AAAA-BBBB", "solicitud de desbloqueo serie aaaa bbbb"),
        ("Núm. de serie: ÑANDÚ", "num de serie nandu"),
        ("Reporte de ventas", "reporte de ventas"),  # "Re" at the start of a word is not a prefix
        ("Trámite: desbloqueo", "tramite desbloqueo"),
        ("", ""),
    ],
)
def test_normalise_subject(subject, expected):
    assert normalise_subject(subject) == expected


# --- match_kind --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        "Solicitud de claves para actualización sin costo",
        "Solicitud de claves para actualización sin costo.",
        "SOLICITUD DE CLAVES PARA ACTUALIZACION SIN COSTO",
        "solicitud de claves para actualizacion sin costo",
        "RE: RV: Solicitud de claves para actualización sin costo",
        "Fwd: Solicitud de claves para actualización sin costo - Taller Esquivel",
        "[EXTERNAL] Solicitud de claves para actualizacion sin costo.",
        "Solicitud de claves para actualización sin costo 2012 (4 sistemas)",
        "Claves para actualización sin costo",
        "  Solicitud  de claves, para actualización: sin costo!",
    ],
)
def test_free_update_subjects_match_whatever_the_spelling(subject):
    assert match_kind(subject, KINDS) == "free_update"


@pytest.mark.parametrize(
    "subject", ["Solicitud de desbloqueo", "RE: Desbloqueo", "DESBLOQUEO.", "Desbloqueo - serie 1QAZ urgente"]
)
def test_unlock_subjects_match(subject):
    assert match_kind(subject, KINDS) == "unlock"


@pytest.mark.parametrize(
    "subject",
    [
        "",
        "Solicitud de claves",  # not the whole kind subject
        "Cotización de póliza de soporte",
        "Desbloqueos",  # whole words only
        "Pregunta: Solicitud de claves para actualización sin costo",  # not at the start
        "Respuesta automática: Solicitud de claves para actualización sin costo",
    ],
)
def test_other_subjects_match_no_kind(subject):
    assert match_kind(subject, KINDS) is None


def test_longest_kind_subject_wins():
    kinds = [Kind("general", "General", ("Solicitud",)), Kind("unlock", "Desbloqueo", ("Solicitud de desbloqueo",))]
    assert match_kind("RE: Solicitud de desbloqueo urgente", kinds) == "unlock"
    assert match_kind("Solicitud de otra cosa", kinds) == "general"


def test_kind_subjects_written_with_punctuation_still_match():
    kinds = [Kind("x", "X", ("¿Desbloqueo?",))]
    assert match_kind("desbloqueo por favor", kinds) == "x"


@pytest.mark.parametrize(
    "name, kind",
    [
        ("seed_example_plain_utf8.eml", "free_update"),
        ("subject_iso8859_1_q_upper_no_accents.eml", "free_update"),
        ("subject_external_tag_trailing_period.eml", "free_update"),
        ("gmail_forward_inline_trailing_text.eml", "free_update"),
        ("subject_utf8_base64_folded.eml", "free_update"),
        ("subject_trailing_text_unlock.eml", "unlock"),
        ("subject_not_a_request.eml", None),
        ("auto_reply_outlook_out_of_office.eml", None),
        ("bounce_mailer_daemon_report.eml", None),
    ],
)
def test_corpus_mails_get_their_kind(name, kind):
    assert match_kind(parse_mail((CORPUS / name).read_bytes()).subject, KINDS) == kind


@pytest.mark.parametrize(
    "subject, forwarded",
    [("RV: Solicitud", True), ("Fwd: x", True), ("FW: x", True), ("[EXTERNAL] ENC: x", True),
     ("TR: x", True), ("RE: RV: x", False), ("Solicitud", False), ("Reenvío solicitud", False)],
)
def test_is_forwarded_reads_the_first_prefix(subject, forwarded):
    assert is_forwarded(subject) is forwarded


# --- ignored_reason: the corpus ----------------------------------------------------------------

EXPECTED_IGNORED = {
    "auto_reply_outlook_out_of_office.eml": "auto_reply",
    "read_receipt_disposition_notification.eml": "auto_reply",
    "bounce_mailer_daemon_report.eml": "bounce",
    "mailing_list_post.eml": "mailing_list",
    "bulk_newsletter_precedence.eml": "bulk",
    "own_mail_looped_back.eml": "own_mail",
    "no_from_header.eml": "no_sender",
    "from_two_mailboxes.eml": "no_sender",
}


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.eml")), ids=lambda p: p.name)
def test_corpus_mail_is_ignored_only_when_it_must_be(path):
    parsed = parse_mail(path.read_bytes())
    assert ignored_reason(parsed, OURS) == EXPECTED_IGNORED.get(path.name)


# --- ignored_reason: each rule -----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, reason",
    [
        ("Subject: Solicitud", None),
        ("Auto-Submitted: no", None),
        ("Auto-Submitted: No (manual)", None),
        ("Auto-Submitted: auto-replied", "auto_reply"),
        ("Auto-Submitted: auto-generated; owner-email=x@y", "auto_reply"),
        ("Auto-Submitted: auto-notified", "auto_reply"),
        ("X-Auto-Response-Suppress: All", "auto_reply"),
        ("X-Auto-Response-Suppress: DR, RN, NRN, OOF, AutoReply", "auto_reply"),
        ("X-Autoreply: yes", "auto_reply"),
        ("X-Autorespond: Vacaciones", "auto_reply"),
        ("X-Autogenerated: Reply", "auto_reply"),
        ("Precedence: auto_reply", "auto_reply"),
        ("Subject: Respuesta automática: Solicitud de claves", "auto_reply"),
        ("Subject: Automatic reply: Solicitud de claves", "auto_reply"),
        ("Subject: Out of Office: Solicitud de claves", "auto_reply"),
        ("Subject: Out of Office AutoReply: Solicitud de claves", "auto_reply"),
        ("Subject: Fuera de la oficina: Solicitud de claves", "auto_reply"),
        ("Subject: [EXTERNAL] Respuesta automática: Solicitud", "auto_reply"),
        ("Subject: Leído: Solicitud de claves", "auto_reply"),
        ("Subject: RE: Respuesta automática: Solicitud", None),  # a person answering one
        ("Subject: Leído el manual, tengo dudas", None),
        ("Return-Path: <>", "bounce"),
        ("Return-Path: < >", "bounce"),
        ("From: Mail Delivery Subsystem <MAILER-DAEMON@googlemail.com>", "bounce"),
        ("From: MAILER-DAEMON", "bounce"),
        ("From: postmaster@empresa.mx", "bounce"),
        ("Content-Type: multipart/report; report-type=delivery-status; boundary=x", "bounce"),
        ("X-Failed-Recipients: nadie@empresa.mx", "bounce"),
        ("Subject: Undeliverable: Solicitud de claves", "bounce"),
        ("Subject: Delivery Status Notification (Failure)", "bounce"),
        ("Subject: No se puede entregar: Solicitud de claves", "bounce"),
        ("List-Id: Foro <foro.listas.mx>", "mailing_list"),
        ("List-Unsubscribe: <mailto:baja@listas.mx>", "mailing_list"),
        ("List-Post: <mailto:foro@listas.mx>", "mailing_list"),
        ("List-Archive: <https://listas.mx/foro>", "mailing_list"),
        ("Precedence: list", "mailing_list"),
        ("X-Mailing-List: foro@listas.mx", "mailing_list"),
        ("Precedence: bulk", "bulk"),
        ("Precedence: junk", "bulk"),
        ("Precedence: BULK", "bulk"),
    ],
)
def test_ignored_reason_for_each_header(headers, reason):
    assert ignored_reason(mail(headers), OURS) == reason


def test_own_address_is_recognised_in_any_case_and_any_own_address_form():
    parsed = mail("From: Claves <CLAVES@Example.COM>")
    assert ignored_reason(parsed, ["Claves de actualización <claves@example.com>"]) == "own_mail"
    assert ignored_reason(parsed, ["otra@example.com"]) is None


def test_own_mail_comes_before_auto_reply():
    parsed = mail("From: claves@example.com\nAuto-Submitted: auto-replied\nPrecedence: bulk")
    assert ignored_reason(parsed, OURS) == "own_mail"


def test_bounce_comes_before_auto_reply():
    parsed = mail("From: MAILER-DAEMON@mx.example.com\nAuto-Submitted: auto-replied")
    assert ignored_reason(parsed, OURS) == "bounce"


def test_auto_reply_comes_before_mailing_list_and_bulk():
    parsed = mail("Auto-Submitted: auto-replied\nList-Id: <x.y>\nPrecedence: bulk")
    assert ignored_reason(parsed, OURS) == "auto_reply"


def test_missing_sender_is_reported_only_when_nothing_explains_it_better():
    assert ignored_reason(mail("From: Nadie"), OURS) == "no_sender"
    assert ignored_reason(mail("From: Nadie\nAuto-Submitted: auto-replied"), OURS) == "auto_reply"


def test_one_of_several_from_addresses_being_ours_is_our_own_mail():
    assert ignored_reason(mail("From: claves@example.com, otro@empresa.mx"), OURS) == "own_mail"


def test_a_plain_customer_request_is_not_ignored():
    parsed = mail("Subject: Solicitud de claves para actualización sin costo\nPrecedence: normal")
    assert ignored_reason(parsed, OURS) is None
    assert ignored_reason(parsed, ()) is None
