"""mailbot.read.mime: any bytes in, a complete ParsedMail out, as the customer's client meant it."""

from __future__ import annotations

import email
import io
import os
import random
import time
from pathlib import Path

import openpyxl
import pytest
import test.test_email

from mailbot.model import ParsedMail
from mailbot.read import mime
from mailbot.read.mime import decode_header_text, decode_text, parse_mail
from mailbot.read.text import html_to_text

CORPUS = Path(__file__).parent / "data" / "mail"
CPYTHON_CORPUS = Path(os.path.dirname(test.test_email.__file__)) / "data"


def parsed(name: str) -> ParsedMail:
    return parse_mail((CORPUS / name).read_bytes())


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


# --- The whole corpus --------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.eml")), ids=lambda p: p.name)
def test_every_corpus_mail_parses_to_a_complete_parsed_mail(path):
    data = path.read_bytes()
    mail = parse_mail(data)
    assert isinstance(mail, ParsedMail)
    assert mail.size == len(data)
    assert all(a == a.lower() and "@" in a for a in mail.from_addresses)
    assert all(name == name.lower() for name in mail.headers)
    assert "\r" not in mail.text
    assert mail.text.strip(), "every corpus mail has some body text"


def test_corpus_readme_lists_every_file():
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    for path in CORPUS.glob("*.eml"):
        assert f"`{path.name}`" in readme


@pytest.mark.parametrize("path", sorted(CPYTHON_CORPUS.glob("msg_*.txt")), ids=lambda p: p.name)
def test_every_cpython_test_mail_goes_through_parse_mail(path):
    data = path.read_bytes()
    mail = parse_mail(data)
    assert isinstance(mail, ParsedMail)
    assert mail.size == len(data)


def test_cpython_corpus_is_found():
    assert len(list(CPYTHON_CORPUS.glob("msg_*.txt"))) > 40


# --- Headers -----------------------------------------------------------------------------------


def test_seed_example_reads_subject_sender_and_message_id():
    mail = parsed("seed_example_plain_utf8.eml")
    assert mail.subject == "Solicitud de claves para actualización sin costo."
    assert mail.sender == "rgonzalez@empresamuestra.com.mx"
    assert mail.from_addresses == ("rgonzalez@empresamuestra.com.mx",)
    assert mail.message_id == "<8d2f61a3-5b7e-4c1e-9f0a-3e6b2d9c4a10@empresamuestra.com.mx>"
    assert mail.references == ()
    assert mail.header("Content-Type") == "text/plain; charset=UTF-8"
    assert mail.defects == ()


def test_seed_example_text_is_the_body_exactly():
    mail = parsed("seed_example_plain_utf8.eml")
    assert mail.text.splitlines()[4:9] == [
        "Nombre de la empresa: Empresa de muestra S.A. de C.V.",
        "Nombre del contacto: Raul Gonzalez Rivera",
        "Correo electrónico del contacto: rgonzalez@empresamuestra.com.mx",
        "Tipo de sistema: CONTPAQ i – Factura electrónica",
        "Número de serie: Aaaa-Bbbb-Cccc-Dddd",
    ]
    assert mail.html == ""


def test_sender_is_lower_cased_and_display_name_decoded_in_headers():
    mail = parsed("outlook_html_cp1252_qp.eml")
    assert mail.sender == "rgonzalez@empresamuestra.com.mx"
    assert mail.headers["from"] == ("Raúl González Rivera <RGonzalez@EmpresaMuestra.com.mx>",)


def test_folded_message_id_keeps_its_angle_brackets():
    mail = parsed("outlook_html_cp1252_qp.eml")
    assert mail.message_id == (
        "<MN2PR11MB45671A2B3C4D5E6F7A8B9C0DA1B2@MN2PR11MB4567.namprd11.prod.outlook.com>"
    )


@pytest.mark.parametrize(
    "name, subject",
    [
        ("subject_utf8_base64_folded.eml", "Solicitud de claves para actualización sin costo"),
        ("subject_iso8859_1_q_upper_no_accents.eml", "RE: RV: SOLICITUD DE CLAVES PARA ACTUALIZACION SIN COSTO"),
        ("legacy_iso8859_1_8bit.eml", "Solicitud de claves para actualización sin costo"),
        ("gmail_forward_inline_trailing_text.eml",
         "Fwd: Solicitud de claves para actualización sin costo - Taller Esquivel"),
        ("mailing_list_post.eml", "[contadores-mx] Solicitud de claves para actualización sin costo"),
        ("auto_reply_outlook_out_of_office.eml",
         "Respuesta automática: Solicitud de claves para actualización sin costo"),
        ("read_receipt_disposition_notification.eml",
         "Leído: RE: Solicitud de claves para actualización sin costo"),
        ("broken_unknown_charset.eml", "Solicitud de claves para actualización sin costo"),
        ("subject_external_tag_trailing_period.eml",
         "[EXTERNAL] Solicitud de claves para actualizacion sin costo."),
    ],
)
def test_encoded_word_and_folded_subjects_are_decoded(name, subject):
    assert parsed(name).subject == subject


def test_references_hold_in_reply_to_then_references_once_each():
    mail = parsed("reply_quoted_gt.eml")
    assert mail.references == (
        "<reply-CLV-000042@example.com>",
        "<8d2f61a3-5b7e-4c1e-9f0a-3e6b2d9c4a10@empresamuestra.com.mx>",
    )


def test_headers_keep_every_occurrence_in_order():
    data = (b"Received: from a by b; Mon, 3 Oct 2022 10:00:00 -0500\r\n"
            b"Received: from c by d; Mon, 3 Oct 2022 09:59:00 -0500\r\n"
            b"From: x@example.com\r\nX-Custom: =?utf-8?q?caf=C3=A9?=\r\n\r\nhola\r\n")
    mail = parse_mail(data)
    assert mail.headers["received"] == ("from a by b; Mon, 3 Oct 2022 10:00:00 -0500",
                                        "from c by d; Mon, 3 Oct 2022 09:59:00 -0500")
    assert mail.headers["x-custom"] == ("café",)
    assert mail.header("RECEIVED") == "from a by b; Mon, 3 Oct 2022 10:00:00 -0500"


def test_raw_8bit_latin1_header_is_decoded():
    mail = parse_mail("From: Martín <m@x.mx>\nSubject: Número de serie\n\nx".encode("latin-1"))
    assert mail.subject == "Número de serie"
    assert mail.sender == "m@x.mx"


def test_missing_from_gives_no_sender():
    mail = parsed("no_from_header.eml")
    assert mail.sender is None
    assert mail.from_addresses == ()


def test_two_mailboxes_in_from_give_no_single_sender():
    mail = parsed("from_two_mailboxes.eml")
    assert mail.sender is None
    assert mail.from_addresses == ("ventas@mueblesrojas.mx", "compras@mueblesrojas.mx")


def test_from_without_an_address_gives_no_sender():
    mail = parse_mail(b"From: Juan Perez\r\nSubject: x\r\n\r\nhola")
    assert mail.sender is None
    assert mail.from_addresses == ()


# --- Bodies and charsets -----------------------------------------------------------------------


def test_outlook_html_only_cp1252_becomes_text_with_each_label_on_its_line():
    mail = parsed("outlook_html_cp1252_qp.eml")
    assert "MsoNormal" in mail.html
    assert mail.text == html_to_text(mail.html)
    assert "Tipo de sistema: CONTPAQ i – Factura electrónica" in lines(mail.text)
    assert "Correo electrónico del contacto: rgonzalez@empresamuestra.com.mx" in lines(mail.text)
    assert "Número de serie: Aaaa-Bbbb-Cccc-Dddd" in lines(mail.text)
    assert "\xa0" not in mail.text


def test_gmail_alternative_takes_the_plain_part_as_text_and_keeps_the_html():
    mail = parsed("gmail_alternative_utf8_base64.eml")
    assert "Número de serie: 7KQ2-M8XD-4PLR-93TW" in lines(mail.text)
    assert "<div" not in mail.text
    assert mail.html.startswith('<div dir="ltr">')
    assert "C.P. Laura Méndez Ortiz" in lines(mail.text)


def test_iphone_quoted_printable_utf8_is_decoded():
    mail = parsed("iphone_plain_qp_value_next_line.eml")
    assert lines(mail.text)[2:4] == ["Empresa:", "Ferretería El Clavo"]
    assert "Enviado desde mi iPhone" in mail.text


def test_iso8859_1_8bit_body_is_decoded():
    mail = parsed("legacy_iso8859_1_8bit.eml")
    assert "Razón social: Panadería La Espiga S.A. de C.V." in lines(mail.text)
    assert "Nombre del contacto: Martín Núñez Peña" in lines(mail.text)
    assert mail.headers["from"] == ("Martín Núñez <compras@panaderialaespiga.com.mx>",)


def test_unknown_charset_falls_back_to_windows_1252_and_says_so():
    mail = parsed("broken_unknown_charset.eml")
    assert "Razón social: Orozco Hermanos" in lines(mail.text)
    assert "Tipo de sistema: CONTPAQ i Nóminas – versión 2011" in lines(mail.text)
    assert any("x-unknown" in d for d in mail.defects)


def test_bad_base64_is_decoded_leniently_and_reported():
    mail = parsed("broken_bad_base64.eml")
    assert "Número de serie: 1PLM-2OKN-3IJB-4UHV" in lines(mail.text)
    assert any("base64" in d for d in mail.defects)


def test_multipart_without_boundary_is_recovered_from_the_body():
    mail = parsed("broken_missing_boundary.eml")
    assert lines(mail.text)[:2] == ["Nombre de la empresa: Orozco Hermanos",
                                    "Número de serie: 1PLM-2OKN-3IJB-4UHV"]
    assert "--=_NextPart" not in mail.text
    assert any("boundary" in d for d in mail.defects)


def test_format_flowed_soft_breaks_are_joined():
    mail = parsed("thunderbird_format_flowed.eml")
    assert ("Nombre de la empresa / Nombre de la persona física: Despacho Rivas y Asociados, "
            "Sociedad Civil de Contadores Públicos") in lines(mail.text)
    assert "--" in lines(mail.text)  # the signature separator is not a soft break


def test_html_table_only_mail_has_label_and_value_on_one_line():
    mail = parsed("html_table_label_value_cells.eml")
    assert "Número de serie\t6MNB-5VCX-4ZAS-3DFG" in mail.text.splitlines()
    assert "Correo electrónico del contacto\thgarza@comnorte.com.mx" in mail.text.splitlines()


def test_bounce_text_is_the_notification_not_the_returned_message():
    mail = parsed("bounce_mailer_daemon_report.eml")
    assert mail.text.startswith("This is the mail system at host mx.example.com.")
    assert "1MKO-2NJI-3BHU-4VGY" not in mail.text
    assert "Reporting-MTA" not in mail.text
    assert mail.attachments == ()


def test_forwarded_inline_message_text_is_not_the_body_but_its_files_are_attachments():
    mail = parsed("forwarded_inline_rfc822.eml")
    assert mail.text.strip() == "Les reenvío la solicitud de nuestro cliente."
    assert [(a.filename, a.content_type) for a in mail.attachments] == [("Constancia.pdf", "application/pdf")]
    assert mail.attachments[0].payload.startswith(b"%PDF-1.4")


def test_forwarded_eml_attachment_is_one_attachment_holding_the_whole_mail():
    mail = parsed("forwarded_eml_attachment.eml")
    assert mail.text.strip() == "Va adjunto el correo del cliente."
    assert [(a.filename, a.content_type) for a in mail.attachments] == [
        ("Solicitud de claves.eml", "message/rfc822")]
    inner = email.message_from_bytes(mail.attachments[0].payload)
    assert inner["Message-ID"] == "<inner-123@tortilleriaelsol.mx>"


def test_mail_forwarded_as_attachment_without_own_text_reads_the_forwarded_body():
    data = (b"From: a@x.mx\r\nSubject: RV: Desbloqueo\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
            b"--b1\r\nContent-Type: message/rfc822\r\n\r\n"
            b"From: c@y.mx\r\nSubject: Desbloqueo\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            b"Serie: QQQQ-WWWW-EEEE-RRRR\r\n--b1--\r\n")
    assert parse_mail(data).text.strip() == "Serie: QQQQ-WWWW-EEEE-RRRR"


# --- Attachments -------------------------------------------------------------------------------


def test_xlsx_attachment_has_its_rfc2231_name_and_exact_bytes():
    mail = parsed("attachment_xlsx_rfc2231_filename.eml")
    (sheet,) = mail.attachments
    assert sheet.filename == "Relación de sistemas sin costo.xlsx"
    assert sheet.content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    workbook = openpyxl.load_workbook(io.BytesIO(sheet.payload), read_only=True)
    rows = list(workbook.active.iter_rows(values_only=True))
    assert rows[0][4] == "Número de serie"
    assert rows[1][4] == "AAAA-BBBB-CCCC-DDDD"
    assert "anexo un archivo" in mail.text


def test_pdf_and_docx_attachments_with_encoded_word_filename():
    mail = parsed("attachments_pdf_docx.eml")
    assert [(a.filename, a.content_type) for a in mail.attachments] == [
        ("Constancia de situación fiscal.pdf", "application/pdf"),
        ("Solicitud claves.docx",
         "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ]
    assert mail.attachments[0].payload.startswith(b"%PDF")
    assert mail.attachments[1].payload.startswith(b"PK\x03\x04")
    assert mail.text.strip().startswith("Buenas tardes, adjunto la solicitud")


def test_signature_logo_embedded_in_outlook_html_is_not_an_attachment():
    mail = parsed("reply_outlook_de_enviado_related_logo.eml")
    assert mail.attachments == ()
    assert "Número de serie: 8UHB-7YGV-6TFC-5RDX" in lines(mail.text)
    assert "cid:image001.png" in mail.html


def test_attachment_without_a_filename_gets_a_stable_name():
    data = (b"From: a@x.mx\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nhola\r\n"
            b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n")
    mail = parse_mail(data)
    assert [(a.filename, a.payload) for a in mail.attachments] == [("attachment-1.pdf", b"%PDF-")]
    assert mail.text.strip() == "hola"


def test_attachment_filename_never_carries_a_path():
    data = (b"From: a@x.mx\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/csv; name=\"..\\\\..\\\\lista.csv\"\r\n\r\na,b\r\n--b--\r\n")
    assert [a.filename for a in parse_mail(data).attachments] == ["lista.csv"]


def test_signature_of_a_signed_mail_is_not_an_attachment():
    data = (b"From: a@x.mx\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; "
            b"protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=s\r\n\r\n"
            b"--s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSerie: AAAA-BBBB-CCCC-DDDD\r\n"
            b"--s\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n"
            b"Content-Disposition: attachment; filename=smime.p7s\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n--s--\r\n")
    mail = parse_mail(data)
    assert mail.attachments == ()
    assert mail.text.strip() == "Serie: AAAA-BBBB-CCCC-DDDD"


# --- decode_text / decode_header_text ----------------------------------------------------------


@pytest.mark.parametrize(
    "data, charset, expected",
    [
        ("Número – ñ".encode("cp1252"), "iso-8859-1", "Número – ñ"),  # Outlook labels cp1252 as Latin-1
        ("Número".encode(), "iso-8859-1", "Número"),  # UTF-8 under a Latin-1 label
        ("Número".encode("cp1252"), "utf-8", "Número"),  # Latin-1 under a UTF-8 label
        ("Número".encode("cp1252"), "x-unknown", "Número"),
        ("Número".encode(), "unknown-8bit", "Número"),
        ("Número".encode(), "base64", "Número"),  # a codec that is not a charset
        ("Número".encode(), None, "Número"),
        ("\ufeffHola\r\nmundo".encode("utf-8"), "utf-8", "Hola\nmundo"),
        ("Nu\u0301mero".encode("utf-8"), "utf-8", "Número"),  # macOS decomposed accents
        ("Žluťoučký".encode("iso-8859-2"), "iso-8859-2", "Žluťoučký"),
    ],
)
def test_decode_text_tolerates_wrong_and_unknown_charsets(data, charset, expected):
    assert decode_text(data, charset) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("=?utf-8?Q?actualizaci=C3=B3n?= sin costo", "actualización sin costo"),
        ("=?UTF-8?B?U29saWNpdHVk?=\r\n =?UTF-8?B?IGRl?= claves", "Solicitud de claves"),
        ("=?utf-8?Q?actualizaci=C3?= =?utf-8?Q?=B3n?=", "actualización"),  # a character split in two
        ("=?x-unknown?Q?Ra=FAl?=", "Raúl"),
        ("=?utf-8?B?not-base64!!?=", "=?utf-8?B?not-base64!!?="),  # left as written
        ("no encoding here", "no encoding here"),
        ("=?iso-8859-1?q?Le=EDdo:?= RE: x", "Leído: RE: x"),
    ],
)
def test_decode_header_text_decodes_sloppy_encoded_words(raw, expected):
    assert decode_header_text(raw) == expected


# --- Never raises ------------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    head = b"From: a@x.mx\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    body = b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
                    for i in range(depth))
    return head + body + b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep\r\n" % depth


HOSTILE = {
    "empty": b"",
    "whitespace": b"\r\n\r\n  \r\n",
    "nul bytes": b"\x00" * 300,
    "random bytes": random.Random(7).randbytes(5000),
    "headers only": b"From: a@x.mx\r\nSubject: hola",
    "body only": b"just some text\nwithout headers",
    "bad encoded words": b"Subject: =?utf-8?B?####?= =?bogus?Q?x?= =?utf-8?X?y?=\r\n\r\nx",
    "undefined charset": b"Content-Type: text/plain; charset=undefined\r\n\r\n\xff\xfe",
    "utf-16 odd bytes": b"Content-Type: text/plain; charset=utf-16\r\n\r\n\x00a\x00",
    "boundary never closed": b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\nabc",
    "boundary not found": b"Content-Type: multipart/alternative; boundary=zz\r\n\r\nplain text",
    "garbage content type": b"Content-Type: ;;;===\r\nContent-Transfer-Encoding: ???\r\n\r\nx",
    "rfc2231 garbage": b"Content-Type: application/pdf; name*=zz'zz'%ZZ%\r\nContent-Disposition: attachment"
                       b"; filename*0*=x''%FF; filename*1=\"\r\n\r\nx",
    "deep nesting": _nested(300),
    "many headers": b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\nx",
    "message/rfc822 empty": b"Content-Type: message/rfc822\r\n\r\n",
    "long line": b"Subject: x\r\n\r\n" + b"On " + b"a" * 200_000 + b" wrote:",
}


@pytest.mark.parametrize("data", list(HOSTILE.values()), ids=list(HOSTILE))
def test_parse_mail_never_raises(data):
    mail = parse_mail(data)
    assert isinstance(mail, ParsedMail)
    assert mail.size == len(data)


def test_when_no_parser_copes_the_headers_and_body_are_read_raw(monkeypatch):
    def fail(data):
        raise RuntimeError("parser bug")

    monkeypatch.setattr(mime.email, "message_from_bytes", fail)
    mail = parse_mail("From: Raúl <R@X.mx>\r\nSubject: =?utf-8?q?Desbloqueo_r=C3=A1pido?=\r\n"
                      "\r\nSerie: AAAA\r\n".encode())
    assert (mail.subject, mail.sender, mail.text.strip()) == ("Desbloqueo rápido", "r@x.mx", "Serie: AAAA")
    assert any("email package failed" in d for d in mail.defects)


def test_empty_input_is_reported_as_a_defect():
    assert parse_mail(b"").defects == ("empty message",)


def test_a_large_attachment_is_parsed_quickly():
    blob = random.Random(1).randbytes(5 * 1024 * 1024)
    message = email.message.EmailMessage()
    message["From"] = "a@x.mx"
    message.set_content("ver adjunto")
    message.add_attachment(blob, maintype="application", subtype="octet-stream", filename="big.bin")
    data = message.as_bytes()
    started = time.perf_counter()
    mail = parse_mail(data)
    assert time.perf_counter() - started < 3.0
    assert mail.attachments[0].payload == blob
