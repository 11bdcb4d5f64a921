"""mailbot.read.text: HTML made into readable lines, and a reply's quoted history cut away."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailbot.read.mime import parse_mail
from mailbot.read.text import html_to_text, strip_quoted

CORPUS = Path(__file__).parent / "data" / "mail"
QUOTED_SERIAL = "ZZZZ-9999-YYYY-8888"  # what our earlier answer said, quoted in every corpus reply


def parsed(name: str):
    return parse_mail((CORPUS / name).read_bytes())


# --- html_to_text ------------------------------------------------------------------------------


def test_outlook_msonormal_paragraphs_are_one_line_each_and_empty_ones_one_blank_line():
    html = ('<div class=WordSection1><p class=MsoNormal>Buenas tardes<o:p></o:p></p>'
            '<p class=MsoNormal><o:p>&nbsp;</o:p></p>'
            '<p class=MsoNormal>Empresa:<o:p></o:p></p>'
            '<p class=MsoNormal>Ferretería El Clavo<o:p></o:p></p></div>')
    assert html_to_text(html) == "Buenas tardes\n\nEmpresa:\nFerretería El Clavo"


def test_nbsp_and_entities_become_plain_characters():
    html = "<p>Número&nbsp;de&nbsp;serie:&nbsp;&nbsp;AAAA &amp; m&aacute;s &lt;x&gt; a&#8211;b &eacute;</p>"
    assert html_to_text(html) == "Número de serie: AAAA & más <x> a–b é"


def test_br_breaks_lines():
    assert html_to_text("uno<br>dos<br/>tres<BR >cuatro") == "uno\ndos\ntres\ncuatro"


def test_mailto_link_keeps_its_address_when_the_text_is_a_name():
    html = '<p>Correo: <a href="mailto:r.gonzalez@x.com.mx?subject=Hola">Raúl González</a></p>'
    assert html_to_text(html) == "Correo: Raúl González <r.gonzalez@x.com.mx>"


def test_mailto_link_showing_its_address_is_not_doubled():
    html = '<p>Correo: <a href="mailto:RG@x.com">rg@x.com</a></p>'
    assert html_to_text(html) == "Correo: rg@x.com"


def test_empty_mailto_link_shows_the_address():
    assert html_to_text('Correo: <a href="mailto:a%40b.com"></a>') == "Correo: a@b.com"


def test_label_and_value_cells_of_a_table_row_share_one_line():
    html = ("<table><tr><td><p class=MsoNormal><b>Número de serie</b></p></td>"
            "<td><p class=MsoNormal>AAAA-BBBB-CCCC-DDDD</p></td></tr>"
            "<tr><th align=left>Tipo de sistema:</th><td>CONTPAQ i Bancos</td></tr></table>")
    assert html_to_text(html) == "Número de serie\tAAAA-BBBB-CCCC-DDDD\nTipo de sistema:\tCONTPAQ i Bancos"


def test_label_wrapped_inside_its_cell_stays_one_label():
    html = "<table><tr><td>Correo electrónico<br>del contacto</td><td>a@b.com</td></tr></table>"
    assert html_to_text(html) == "Correo electrónico del contacto\ta@b.com"


def test_spacer_cell_between_label_and_value_is_dropped():
    html = "<table><tr><td>Serie</td><td>&nbsp;</td><td>AAAA-BBBB-CCCC-DDDD</td></tr></table>"
    assert html_to_text(html) == "Serie\tAAAA-BBBB-CCCC-DDDD"


def test_pasted_spreadsheet_keeps_its_columns_including_empty_cells():
    html = ("<table><tr><th>Empresa</th><th>Sistema</th><th>Serie</th></tr>"
            "<tr><td>X</td><td></td><td>AAAA</td></tr></table>")
    assert html_to_text(html) == "Empresa\tSistema\tSerie\nX\t\tAAAA"


def test_layout_table_around_the_whole_mail_keeps_the_lines_in_order():
    html = ("<table><tr><td><p>Hola</p><p>Empresa: X</p><p>Serie: A</p></td>"
            "<td><img src='logo.png'></td></tr></table>")
    assert html_to_text(html) == "Hola\nEmpresa: X\nSerie: A"


def test_nested_tables_are_flattened_from_the_inside():
    html = ("<table><tr><td><table><tr><td>Serie</td><td>AAAA</td></tr>"
            "<tr><td>Empresa</td><td>X</td></tr></table><p>firma</p></td></tr></table>")
    assert html_to_text(html) == "Serie\tAAAA\nEmpresa\tX\nfirma"


def test_gmail_quote_comes_out_with_quote_marks():
    html = ('<div>Nuevo</div><div class="gmail_quote"><div class="gmail_attr">El lun, 3 oct 2022 '
            'a las 10:00, Claves (&lt;claves@example.com&gt;) escribió:<br></div>'
            '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid '
            'rgb(204,204,204);padding-left:1ex">Serie: ZZZZ<blockquote type="cite">más viejo'
            '</blockquote></blockquote></div>')
    assert html_to_text(html).splitlines() == [
        "Nuevo",
        "El lun, 3 oct 2022 a las 10:00, Claves (<claves@example.com>) escribió:",
        "",
        "> Serie: ZZZZ",
        ">",
        "> > más viejo",
    ]


def test_gmail_indent_blockquote_is_not_a_quote():
    html = '<div>Hola</div><blockquote style="margin:0 0 0 40px;border:none;padding:0px"><div>Serie: A</div></blockquote>'
    assert html_to_text(html) == "Hola\nSerie: A"


def test_head_style_script_and_conditional_comments_are_not_text():
    html = ("<html><head><title>Título</title><style>p{color:red}</style>"
            "<script>var x = 1;</script><!--[if gte mso 9]><xml><o:x/></xml><![endif]--></head>"
            "<body><p>Texto</p></body></html>")
    assert html_to_text(html) == "Texto"


@pytest.mark.parametrize("html", ["", "   ", "<html></html>", "<!-- nada -->"])
def test_empty_html_gives_empty_text(html):
    assert html_to_text(html) == ""


@pytest.mark.parametrize(
    "html",
    ["<<<>>> &&& </p></div><td>", "hola\x00mundo", '<?xml version="1.0" encoding="utf-8"?><p>x</p>',
     "<table><tr><td>" * 200, "\udcff<p>lone surrogate</p>", "<p>" + "x" * 100_000 + "</p>"],
)
def test_html_to_text_never_raises(html):
    assert isinstance(html_to_text(html), str)


def test_html_to_text_is_fast_on_a_long_mail():
    html = "".join(f"<table><tr><td>Label {i}</td><td>Value {i}</td></tr></table><p>x</p>" for i in range(500))
    started = time.perf_counter()
    text = html_to_text(html)
    assert time.perf_counter() - started < 2.0
    assert "Label 499\tValue 499" in text.splitlines()


# --- strip_quoted: corpus replies --------------------------------------------------------------


@pytest.mark.parametrize(
    "name, new_serial",
    [
        ("reply_quoted_gt.eml", "AAAA-BBBB-CCCC-DDDD"),
        ("reply_outlook_de_enviado_related_logo.eml", "8UHB-7YGV-6TFC-5RDX"),
        ("reply_gmail_escribio_wrapped.eml", "2WSX-3EDC-4RFV-5TGB"),
        ("reply_apple_mail_cite.eml", "7IKM-8OLP-9QAZ-1WSX"),
    ],
)
def test_reply_keeps_the_new_request_and_drops_the_quoted_serial(name, new_serial):
    mail = parsed(name)
    assert QUOTED_SERIAL in mail.text
    new_text = strip_quoted(mail.text)
    assert f"Número de serie: {new_serial}" in new_text.splitlines()
    assert QUOTED_SERIAL not in new_text
    assert "escribió" not in new_text and "Enviado:" not in new_text


@pytest.mark.parametrize(
    "name, new_serial",
    [
        ("reply_outlook_de_enviado_related_logo.eml", "8UHB-7YGV-6TFC-5RDX"),
        ("reply_gmail_escribio_wrapped.eml", "2WSX-3EDC-4RFV-5TGB"),
        ("reply_apple_mail_cite.eml", "7IKM-8OLP-9QAZ-1WSX"),
    ],
)
def test_reply_html_part_also_loses_its_quoted_history(name, new_serial):
    new_text = strip_quoted(html_to_text(parsed(name).html))
    assert f"Número de serie: {new_serial}" in new_text.splitlines()
    assert QUOTED_SERIAL not in new_text


def test_gmail_attribution_wrapped_over_two_lines_is_removed_too():
    text = strip_quoted(parsed("reply_gmail_escribio_wrapped.eml").text)
    assert "claves@example.com>) escribió:" not in text
    assert text.splitlines()[-1] == "Número de serie: 2WSX-3EDC-4RFV-5TGB"


WITH_HISTORY = {
    "reply_quoted_gt.eml", "reply_outlook_de_enviado_related_logo.eml",
    "reply_gmail_escribio_wrapped.eml", "reply_apple_mail_cite.eml",
    "outlook_forward_inline_rv.eml", "gmail_forward_inline_trailing_text.eml",
    # our answer forwarded back, or ending in our "-- " (kept without its space)
    *(p.name for p in CORPUS.glob("own_reply_*.eml")),
    # issue 11's forwards (their marker and header lines go) and replies
    *(p.name for p in CORPUS.glob("forward_*.eml")), *(p.name for p in CORPUS.glob("reply_*.eml")),
    # issue 11's replies that complete a request: our "missing data" answer is quoted below
    *(p.name for p in CORPUS.glob("completion_reply_*.eml")),
}


@pytest.mark.parametrize(
    "path", sorted(p for p in CORPUS.glob("*.eml") if p.name not in WITH_HISTORY), ids=lambda p: p.name
)
def test_mail_without_history_is_returned_whole(path):
    mail = parse_mail(path.read_bytes())
    assert strip_quoted(mail.text) == mail.text.strip()


def test_signature_with_request_data_survives():
    text = strip_quoted(parsed("signature_holds_contact_email.eml").text)
    assert "Correo: psalas@laboratoriosnova.com" in text.splitlines()
    assert "No. de serie: 4RFV-5TGB-6YHN-7UJM" in text.splitlines()


def test_sent_from_iphone_mail_keeps_every_field():
    mail = parsed("iphone_plain_qp_value_next_line.eml")
    text = strip_quoted(mail.text)
    assert text == mail.text.strip()
    assert text.splitlines()[-4:] == ["Serie:", "QW3E-R5TY-U7IO-P9AS", "", "Enviado desde mi iPhone"]


def test_gmail_forwarded_message_is_content_not_history():
    text = strip_quoted(parsed("gmail_forward_inline_trailing_text.eml").text)
    assert "Número de serie: 6TFC-5RDX-4ESZ-3WAQ" in text.splitlines()
    assert "Forwarded message" not in text
    assert "Date: vie, 14 oct 2022 a las 18:22" not in text


def test_outlook_forward_is_read_only_when_the_subject_says_it_is_a_forward():
    mail = parsed("outlook_forward_inline_rv.eml")
    assert "3WAQ-2MKO-1NJI-0BHU" not in strip_quoted(mail.text)
    forwarded = strip_quoted(mail.text, forwarded=True)
    assert "Número de serie: 3WAQ-2MKO-1NJI-0BHU" in forwarded.splitlines()
    assert "Enviado: miércoles, 19 de octubre de 2022 09:30" not in forwarded
    assert forwarded.startswith("Les reenvío la solicitud de nuestro cliente.")


# --- strip_quoted: every client's marker -------------------------------------------------------

NEW = "Número de serie: AAAA-BBBB-CCCC-DDDD"
OLD = f"Número de serie: {QUOTED_SERIAL}"


@pytest.mark.parametrize(
    "history",
    [
        # Outlook (Spanish), with the rule above the block
        f"________________________________\nDe: Claves <claves@example.com>\nEnviado: lunes, 3 de octubre"
        f" de 2022 12:10\nPara: Raúl <r@x.mx>\nAsunto: RE: Solicitud\n\n{OLD}",
        # Outlook without the rule, "Enviado el:" and CC
        f"De: Claves [mailto:claves@example.com]\nEnviado el: lunes, 3 de octubre de 2022 12:10\n"
        f"Para: Raúl\nCC: Otro\nAsunto: RE: Solicitud\n\n{OLD}",
        # Outlook in English, with *bold* markers as Gmail renders them
        f"*From:* Claves <claves@example.com>\n*Sent:* Monday, October 3, 2022 12:10 PM\n"
        f"*To:* Raul <r@x.com>\n*Subject:* RE: Solicitud\n\n{OLD}",
        # Outlook for Mac (Spanish)
        f"De: Claves <claves@example.com>\nFecha: lunes, 3 de octubre de 2022, 12:10\n"
        f"Para: Raúl <r@x.mx>\nAsunto: RE: Solicitud\n\n{OLD}",
        # Outlook 2010
        f"-----Mensaje original-----\nDe: Claves [mailto:claves@example.com]\n"
        f"Enviado el: lunes, 3 de octubre de 2022 12:10\nPara: Raúl\nAsunto: RE: Solicitud\n\n{OLD}",
        f"-----Original Message-----\n{OLD}",
        # Gmail, one line and wrapped
        f"El lun, 3 oct 2022 a las 10:00, Claves (<claves@example.com>) escribió:\n\n> {OLD}",
        f"El lun, 3 oct 2022 a las 10:00, Claves de actualización (<\nclaves@example.com>) "
        f"escribió:\n\n> {OLD}",
        # Gmail in English, wrapped
        f"On Mon, Oct 3, 2022 at 10:00 AM Claves de actualización <claves@example.com>\nwrote:\n\n> {OLD}",
        # Thunderbird, the history not quoted (HTML converted by a gateway)
        f"El 03/10/2022 a las 17:05, Claves escribió:\n\n{OLD}",
        # Yahoo
        f"En lunes, 3 de octubre de 2022 10:00:00 CDT, Claves <claves@example.com> escribió:\n\n{OLD}",
        # plain ">" quoting without any attribution
        f"> {OLD}\n> Referencia: CLV-000042",
    ],
    ids=["outlook-es", "outlook-es-no-rule", "outlook-en-bold", "outlook-mac", "mensaje-original",
         "original-message", "gmail-es", "gmail-es-wrapped", "gmail-en-wrapped", "thunderbird",
         "yahoo", "gt-only"],
)
def test_every_client_history_marker_cuts_the_quoted_serial(history):
    text = f"Hola, este es el bueno:\n{NEW}\n\nSaludos\n\n{history}\n"
    assert strip_quoted(text) == f"Hola, este es el bueno:\n{NEW}\n\nSaludos"


def test_crlf_text_is_handled():
    text = f"{NEW}\r\n\r\n-----Mensaje original-----\r\n{OLD}\r\n"
    assert strip_quoted(text) == NEW


def test_bottom_posted_answer_below_the_quote_is_kept():
    text = f"El 03/10/2022 a las 17:05, Claves escribió:\n> {OLD}\n>\n\n{NEW}\n"
    assert strip_quoted(text) == NEW


def test_sentence_starting_with_el_above_the_attribution_is_kept():
    text = (f"El número de serie correcto va abajo\n{NEW}\nEl lun, 3 oct 2022 a las 10:00, Claves "
            f"(<claves@example.com>)\nescribió:\n> {OLD}")
    assert strip_quoted(text) == f"El número de serie correcto va abajo\n{NEW}"


def test_a_mail_that_is_all_quote_has_no_new_text():
    assert strip_quoted(f"> {OLD}\n> gracias\n") == ""


@pytest.mark.parametrize(
    "text",
    [
        f"De: Juan Pérez\nEmpresa: Abarrotes Don Pepe\n{NEW}",  # "De:" in a request is not a header block
        f"Para: claves@example.com\nAsunto: Solicitud de claves\n{NEW}",  # the seed's example pasted
        f"Buenas tardes\n\nNombre de la empresa: X\nCorreo: a@b.com\n{NEW}\n\n--\nJuan\nTel. 555",
        f"Fecha de compra: 2022-01-01\n{NEW}",
        f"De: Contabilidad\nPara: Claves\nAsunto: Solicitud de claves\n\n{NEW}",  # a memo heading
    ],
)
def test_new_text_that_only_looks_like_headers_is_kept_whole(text):
    assert strip_quoted(text) == text


def test_apple_forwarded_message_marker_keeps_the_forwarded_request():
    text = (f"Mira esto\n\nInicio del mensaje reenviado:\n\nDe: Cliente <c@x.mx>\nAsunto: Solicitud\n"
            f"Fecha: 3 de octubre de 2022, 10:00:00 CDT\nPara: Yo <y@x.mx>\n\n{NEW}")
    assert strip_quoted(text) == f"Mira esto\n\n{NEW}"


def test_forward_of_a_reply_keeps_the_forwarded_text_but_not_its_history():
    text = (f"Te lo reenvío\n\n---------- Forwarded message ---------\nDe: Cliente <c@x.mx>\n"
            f"Date: lun, 3 oct 2022\nSubject: Re: Solicitud\nTo: Yo <y@x.mx>\n\n{NEW}\n\n"
            f"El lun, 3 oct 2022 a las 10:00, Claves (<claves@example.com>) escribió:\n> {OLD}\n")
    assert strip_quoted(text) == f"Te lo reenvío\n\n{NEW}"


def test_empty_text_stays_empty():
    assert strip_quoted("") == ""


def test_strip_quoted_is_fast_on_hostile_lines():
    text = "On " + "a " * 100_000 + "\n" + "De: x\n" * 5000 + "El " + "b" * 100_000
    started = time.perf_counter()
    strip_quoted(text)
    assert time.perf_counter() - started < 2.0
