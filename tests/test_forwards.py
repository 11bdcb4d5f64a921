"""Issue 11 §2-§3: the text that carries the request. Forwards (Gmail, Outlook, iOS, Apple
Mail, Thunderbird, as attachment) yield the forwarded request and say which client forwarded
it; the forwarder's note and signature neither swallow nor replace its fields; quoted history
under a reply is never read; a stub or summary text/plain gives way to the HTML part."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mailbot.config import LimitsConfig
from mailbot.read.extract import read_mail
from mailbot.read.forwards import marker_reader
from mailbot.read.text import scan_quoted, strip_quoted
from mailbot.ruleset import load_rules

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "mail"
OURS = ["claves@example.com"]
QUOTED_SERIAL = "ZZZZ-9999-YYYY-8888"


@pytest.fixture(scope="module")
def rules():
    return load_rules(ROOT / "rules")


def read(rules, name_or_bytes):
    data = name_or_bytes if isinstance(name_or_bytes, bytes) else (
        CORPUS / name_or_bytes).read_bytes()
    return read_mail(data, rules, LimitsConfig(), OURS)[1]


# (file, sender, [(company, contact, e-mail, system, serial)], the note on how it was read)
CASES = [
    ("forward_gmail_es_signature_tel_correo.eml", "pgomez@empresamuestra.com.mx",
     [("Empresa de muestra S.A. de C.V.", "Raul Gonzalez Rivera",
       "rgonzalez@empresamuestra.com.mx", "CONTPAQ i Factura electrónica",
       "AAAA-BBBB-CCCC-DDDD")], "reenvío (Gmail): se leyó la solicitud reenviada"),
    ("forward_gmail_en_accountant_signature.eml", "julieta.lopez.cp@gmail.com",
     [("Ferretería San Miguel", "Óscar Medina Ruiz", "compras@ferresanmiguel.mx",
       "CONTPAQ i Contabilidad", "F3SM-8K2L-4QWE-6RTY")],
     "reenvío (Gmail): se leyó la solicitud reenviada"),
    ("forward_outlook365_rv_enviado_el_signature.eml", "rsalinas@sistemascontablesnorte.mx",
     [("Transportes Herrera e Hijos, S.A. de C.V.", "Claudia Herrera Ibarra",
       "cherrera@transportesherrera.com.mx", "CONTPAQ i Nóminas", "X9HT-5B3N-1MKC-7VPL")],
     "reenvío (Outlook): se leyó la solicitud reenviada"),
    ("forward_outlook2016_rv_re_history.eml", "gtrevino@distribuidoracontable.mx",
     [("Abarrotes Cantú", "Silvia Cantú Garza", "scantu@abarrotescantu.mx",
       "CONTPAQ i Comercial", "C4NT-7G2Z-5SLV-9AQR")],
     "reenvío (Outlook): se leyó la solicitud reenviada"),
    ("forward_ios_inicio_quoted.eml", "monica.rios@icloud.com",
     [("Ferretería Vázquez", "Hugo Vázquez Ortiz", "hvazquez@ferreteriavazquez.com.mx",
       "CONTPAQ i Factura electrónica", "V4ZQ-1F8R-6HTO-3XMB")],
     "reenvío (iOS / Apple Mail): se leyó la solicitud reenviada"),
    ("forward_apple_mail_begin_forwarded.eml", "epena@me.com",
     [("Boutique Navarro", "Lucía Navarro Cruz", "lnavarro@boutiquenavarro.mx",
       "CONTPAQ i Punto de venta", "N4VR-2B7T-9QLC-5ZPE")],
     "reenvío (iOS / Apple Mail): se leyó la solicitud reenviada"),
    ("forward_thunderbird_mensaje_reenviado.eml", "soporte@asesoresdigitales.mx",
     [("Imprenta Aguilar", "Ernesto Aguilar Mora", "eaguilar@imprentaaguilar.mx",
       "CONTPAQ i Bancos", "4GLR-8M1P-3ZKD-6WQN")],
     "reenvío (Thunderbird): se leyó la solicitud reenviada"),
    ("forward_as_attachment_outlook_rfc822.eml", "contacto@gestoriafiscal.mx",
     [("Clínica Dental Olvera", "Beatriz Olvera Sánchez", "bolvera@clinicaolvera.mx",
       "CONTPAQ i Contabilidad", "0LVR-5D3N-7TAL-2CQX")],
     "reenvío como adjunto (attachment-1.eml): se leyó la solicitud del correo adjunto"),
    ("forward_as_attachment_apple_html_inner.eml", "jsoto@despachosoto.mx",
     [("Panadería La Espiga", "Rogelio Fuentes", "rfuentes@panaderialaespiga.mx",
       "CONTPAQ i Comercial", "E5PG-3L9A-1FRS-7KXT")],
     "reenvío como adjunto (Solicitud de claves para actualizacion sin costo.eml): se leyó "
     "la solicitud del correo adjunto"),
    ("alternative_plain_stub_html_fields.eml", "marisol@papeleriahidalgo.mx",
     [("Papelería y Regalos Hidalgo", "Marisol Hidalgo Vega", "marisol@papeleriahidalgo.mx",
       "CONTPAQ i Bancos", "H1DL-6G0V-4PRH-2MXV")],
     "el texto plano no trae la solicitud (es un aviso para clientes HTML); se leyó la parte "
     "HTML"),
    ("alternative_plain_summary_html_table.eml", "jarellano@comercialbajio.com.mx",
     [("Comercializadora del Bajío, S.A. de C.V.", "Jorge Arellano Pineda",
       "jarellano@comercialbajio.com.mx", "CONTPAQ i Comercial", "B4J1-9C0M-3RZL-7TQW")],
     "el texto plano no trae la solicitud (es un resumen); se leyó la parte HTML"),
    ("from_compat32_encoded_whole_value.eml", "rgonzalez@empresamuestra.com.mx",
     [("Empresa de muestra S.A. de C.V.", "Raul Gonzalez Rivera",
       "rgonzalez@empresamuestra.com.mx", "CONTPAQ i Factura electrónica",
       "AAAA-BBBB-CCCC-DDDD")], None),
    ("from_erp_encoded_q_whole_value_html.eml", "ana.ramirez@distribuidoranorte.com.mx",
     [("Distribuidora Norte de Chihuahua, S.A. de C.V.", "Ana Ramírez Soto",
       "ana.ramirez@distribuidoranorte.com.mx", "CONTPAQ i Nóminas", "N7DC-2H4K-8PLM-5QRS")],
     None),
    ("from_quoted_name_comma_8bit_utf8.eml", "ltorres@refaccionariatorres.mx",
     [("Refaccionaria Torres", "Luis Torres Núñez", "ltorres@refaccionariatorres.mx",
       "CONTPAQ i Contabilidad", "T0RR-3S5N-7UNZ-9LTA")], None),
]


@pytest.mark.parametrize("name, sender, wanted, note", CASES, ids=[c[0] for c in CASES])
def test_each_new_mail_yields_exactly_its_request(rules, name, sender, wanted, note):
    e = read(rules, name)
    assert e.kind == "free_update" and e.ignored is None
    assert e.sender == sender
    assert [(r.company, r.contact_name, r.contact_email, r.system, r.serial)
            for r in e.requests] == wanted
    assert e.problems == ()  # the forwarder's note and signature are no request of their own
    if note is not None:
        assert note in e.notes


@pytest.mark.parametrize("name", ["reply_outlook_re_request_only_in_history.eml",
                                  "reply_gmail_quoted_forward_not_read.eml"])
def test_a_request_in_a_replys_quoted_history_is_never_read(rules, name):
    e = read(rules, name)
    assert e.requests == ()
    assert [p.code for p in e.problems] == ["no_request_data"]
    assert "respuesta: el historial citado debajo no se leyó" in e.notes
    assert not any(n.startswith("reenvío") for n in e.notes)


def test_the_quoted_history_inside_a_forwarded_reply_is_not_read(rules):
    e = read(rules, "forward_outlook2016_rv_re_history.eml")
    assert QUOTED_SERIAL not in json.dumps(e.to_json())


def test_parse_json_reads_the_new_kinds_of_mail():
    names = [c[0] for c in CASES]
    result = subprocess.run([sys.executable, "-m", "mailbot", "parse", "--json",
                             *(str(CORPUS / n) for n in names)],
                            capture_output=True, text=True, check=True, cwd=ROOT)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    serials = {Path(p["file"]).name: [r["serial"] for r in p["requests"]] for p in lines}
    assert serials == {c[0]: [w[4] for w in c[2]] for c in CASES}


# --- the forwarder's text ---------------------------------------------------------------------

FORWARDED = """Nombre de la empresa: Vidrios Ocampo
Nombre del contacto: Irma Ocampo
Correo electrónico del contacto: irma@vidriosocampo.mx
Tipo de sistema: CONTPAQ i Bancos
Número de serie: 0CMP-4V1D-7RSQ-2WEX
"""


def mail(subject: str, body: str, sender: str = "asistente@despacho.mx") -> bytes:
    return (f"From: Asistente <{sender}>\nTo: claves@example.com\nSubject: {subject}\n"
            "Message-ID: <t1@despacho.mx>\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            + body).encode()


SUBJECT = "Fwd: Solicitud de claves para actualización sin costo"


def test_a_signature_with_correo_above_a_forward_does_not_split_the_request(rules):
    body = ("Les reenvío.\n\nLic. Ana Ruiz\nCorreo: ana@despacho.mx\nTel: 55 1234 5678\n\n"
            "---------- Forwarded message ---------\nFrom: Irma <irma@vidriosocampo.mx>\n"
            "Date: Fri, Nov 20, 2026\nSubject: Solicitud\nTo: <ana@despacho.mx>\n\n" + FORWARDED)
    e = read(rules, mail(SUBJECT, body))
    assert e.problems == ()
    [request] = e.requests
    assert (request.company, request.contact_email) == ("Vidrios Ocampo", "irma@vidriosocampo.mx")


def test_the_forwarders_correo_never_fills_the_forwarded_requests_email(rules):
    forwarded = "\n".join(line for line in FORWARDED.splitlines() if "Correo" not in line)
    body = ("Reenvío.\n\nCorreo: ana.personal@gmail.com\n\n"
            "---------- Mensaje reenviado ---------\nDe: Irma <irma@vidriosocampo.mx>\n"
            "Date: vie, 20 nov 2026\nSubject: Solicitud\nTo: <ana@despacho.mx>\n\n" + forwarded)
    [request] = read(rules, mail(SUBJECT, body)).requests
    assert request.contact_email == "asistente@despacho.mx"  # the sender, as without a forward
    assert request.notes == ("contact_email taken from From",)


def test_a_forward_and_a_reply_are_told_apart_by_the_marker(rules):
    forward = ("Inicio del mensaje reenviado:\n\n> De: Irma <irma@vidriosocampo.mx>\n"
               "> Fecha: 20 de noviembre de 2026\n> Asunto: Solicitud\n>\n"
               + "".join("> " + line + "\n" for line in FORWARDED.splitlines()))
    reply = ("Gracias.\n\nEl vie, 20 nov 2026 a las 10:00, Irma <irma@vidriosocampo.mx> "
             "escribió:\n\n" + "".join("> " + line + "\n" for line in FORWARDED.splitlines()))
    forwarded = read(rules, mail(SUBJECT, forward))
    replied = read(rules, mail("Re: Solicitud de claves para actualización sin costo", reply))
    assert [r.serial for r in forwarded.requests] == ["0CMP-4V1D-7RSQ-2WEX"]
    assert "reenvío (iOS / Apple Mail): se leyó la solicitud reenviada" in forwarded.notes
    assert replied.requests == ()
    assert "respuesta: el historial citado debajo no se leyó" in replied.notes


def test_a_quote_inside_an_ios_forward_stays_quoted():
    text = ("Inicio del mensaje reenviado:\n\n> De: Irma <irma@x.mx>\n> Asunto: Solicitud\n>\n"
            "> Número de serie: 0CMP-4V1D-7RSQ-2WEX\n>\n> > Número de serie: " + QUOTED_SERIAL
            + "\n")
    kept = strip_quoted(text)
    assert "Número de serie: 0CMP-4V1D-7RSQ-2WEX" in kept.splitlines()
    assert QUOTED_SERIAL not in kept


def test_the_marker_names_the_client_by_its_dashes(rules):
    read_marker = marker_reader(rules.reading)
    assert read_marker("---------- Forwarded message ---------") == "Gmail"
    assert read_marker("-------- Forwarded Message --------") == "Thunderbird"
    assert read_marker("Inicio del mensaje reenviado:") == "iOS / Apple Mail"
    assert read_marker("Mensaje reenviado") is None  # a sentence, not a marker
    assert read_marker("Nombre de la empresa: Mensaje reenviado:") is None


def test_a_marker_added_in_the_rules_is_a_forward(tmp_path, rules):
    import dataclasses

    from mailbot.reading_rules import ForwardMarker

    extra = dataclasses.replace(rules.reading, forwards=(
        *rules.reading.forwards, ForwardMarker("correo reenviado desde zimbra", "Zimbra")))
    text = ("Va.\n\n----- Correo reenviado desde Zimbra -----\nDe: Irma <irma@x.mx>\n"
            "Asunto: Solicitud\n\n" + FORWARDED)
    scan = scan_quoted(text, markers=marker_reader(extra))
    assert [p.client for p in scan.parts] == ["", "Zimbra"]
    assert "Número de serie: 0CMP-4V1D-7RSQ-2WEX" in scan.parts[1].text


# --- the alternative that carries the data ----------------------------------------------------

def alternative(plain: str, html: str) -> bytes:
    return ("From: Irma <irma@vidriosocampo.mx>\nTo: claves@example.com\n"
            "Subject: Solicitud de claves para actualización sin costo\nMessage-ID: <a1@x.mx>\n"
            "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"b\"\n\n"
            "--b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            f"{plain}\n--b\nContent-Type: text/html; charset=utf-8\n"
            f"Content-Transfer-Encoding: 8bit\n\n{html}\n--b--\n").encode()


HTML = "<html><body>" + "".join(f"<div>{line}</div>" for line in FORWARDED.splitlines()) + \
       "</body></html>"


def test_when_both_alternatives_hold_the_request_it_is_read_once_from_the_plain_text(rules):
    e = read(rules, alternative(FORWARDED, HTML))
    assert [r.serial for r in e.requests] == ["0CMP-4V1D-7RSQ-2WEX"]
    assert not any("HTML" in n for n in e.notes)


def test_a_plain_text_with_a_different_request_is_not_overruled_by_the_html(rules):
    plain = FORWARDED.replace("0CMP-4V1D-7RSQ-2WEX", "1AAA-2BBB-3CCC-4DDD")
    e = read(rules, alternative(plain, HTML))
    assert [r.serial for r in e.requests] == ["1AAA-2BBB-3CCC-4DDD"]


def test_an_html_part_without_a_request_leaves_the_plain_texts_problems(rules):
    e = read(rules, alternative("Solicito mis claves.", "<p>Solicito mis claves.</p>"))
    assert e.requests == ()
    assert [p.code for p in e.problems] == ["no_request_data"]


def test_a_mail_that_is_not_a_request_never_reads_the_html_part(rules):
    data = alternative("Este mensaje requiere un cliente HTML", HTML).replace(
        b"Subject: Solicitud de claves para actualizaci\xc3\xb3n sin costo", b"Subject: Hola")
    e = read(rules, data)
    assert e.kind is None and e.requests == ()
