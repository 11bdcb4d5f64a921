"""Replies are well-formed mail whose headers never carry unchecked customer text."""

from __future__ import annotations

import datetime as dt
import re
from email import message_from_bytes, policy

import pytest

from mailbot.answer.message import (
    build_alert,
    build_reply,
    is_msg_id,
    make_message_id,
    reply_subject,
)
from mailbot.answer.render import Rendered

WHEN = dt.datetime(2026, 3, 10, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-6)))
RENDERED = Rendered(text="Hola, Raúl:\n\nTu clave: FE12-7KQ4-M2ZP-99XA\n",
                    html="<p>Hola, Raúl:</p><p>Tu clave: <b>FE12-7KQ4-M2ZP-99XA</b></p>\n")


def reply(**overrides) -> bytes:
    args = dict(
        from_address="claves@example.com", from_name="Claves de actualización",
        to=["rgonzalez@empresamuestra.com.mx"],
        original_subject="Solicitud de claves para actualización sin costo",
        in_reply_to="<CAFx1234@mail.gmail.com>", references=["<first@example.net>"],
        rendered=RENDERED, reference="CLV-000042",
        message_id="<0123456789abcdef@example.com>", date=WHEN)
    args.update(overrides)
    return build_reply(**args)


def parse(data: bytes):
    return message_from_bytes(data, policy=policy.default)


def header_names(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if line and line[0] not in " \t"]


def test_reply_headers_exactly():
    data = reply()
    assert header_names(data) == [
        "From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
        "Auto-Submitted", "X-Auto-Response-Suppress", "X-Mailbot-Reference", "MIME-Version",
        "Content-Type", "Content-Language"]
    msg = parse(data)
    assert msg["From"] == "Claves de actualización <claves@example.com>"
    assert msg["From"].addresses[0].addr_spec == "claves@example.com"
    assert msg["To"] == "rgonzalez@empresamuestra.com.mx"
    assert msg["Subject"] == "RE: Solicitud de claves para actualización sin costo"
    assert msg["Date"] == "Tue, 10 Mar 2026 12:30:00 -0600"
    assert msg["Message-ID"] == "<0123456789abcdef@example.com>"
    assert msg["In-Reply-To"] == "<CAFx1234@mail.gmail.com>"
    assert msg["References"].split() == ["<first@example.net>", "<CAFx1234@mail.gmail.com>"]
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Mailbot-Reference"] == "CLV-000042"
    assert b"\r\n" in data and not re.search(rb"[^\r]\n", data)  # CRLF everywhere
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert max(data) < 128  # 7-bit clean: encoded words and quoted-printable


def test_body_is_multipart_alternative_utf8_and_parses_back():
    msg = parse(reply())
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text.get_content_charset() == "utf-8"
    assert text.get_content().replace("\r\n", "\n") == RENDERED.text
    assert html.get_content().replace("\r\n", "\n") == RENDERED.html
    assert not msg.defects and not text.defects


def test_text_only_when_there_is_no_html():
    msg = parse(reply(rendered=Rendered(text="Sólo texto\n", html=None)))
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().replace("\r\n", "\n") == "Sólo texto\n"


def test_auto_submitted_can_be_left_out():
    assert "Auto-Submitted" not in parse(reply(auto_submitted=False))


def test_subject_is_not_doubled_re():
    for original in ("RE: Solicitud", "Re: RE: re:Solicitud", "RE[2]: Solicitud",
                     "  re :  Solicitud"):
        assert parse(reply(original_subject=original))["Subject"] == "RE: Solicitud"
    assert parse(reply(original_subject="RV: Solicitud"))["Subject"] == "RE: RV: Solicitud"
    assert parse(reply(original_subject="Respuesta"))["Subject"] == "RE: Respuesta"


def test_header_injection_in_subject_does_not_create_a_header():
    data = reply(original_subject="Hola\r\nBcc: x@y\r\n\r\nbody")
    msg = parse(data)
    assert msg["Bcc"] is None
    assert "Bcc" not in header_names(data)
    assert msg["Subject"] == "RE: Hola Bcc: x@y body"
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == RENDERED.text


def test_control_and_invisible_characters_are_removed_from_the_subject():
    subject = reply_subject("A\x00B\x1b[31mC\u2028D\u202eE\x85F\tG", "CLV-1")
    assert subject == "RE: A B [31mC D E F G"


def test_long_subject_is_truncated():
    msg = parse(reply(original_subject="Solicitud " + "muy larga " * 60))
    assert len(msg["Subject"]) <= 4 + 200 + 1
    assert msg["Subject"].endswith("…")


def test_empty_subject_gets_a_fixed_spanish_subject_with_the_reference():
    for original in ("", "   ", "RE:", "\r\n"):
        assert parse(reply(original_subject=original))["Subject"] == \
            "Respuesta a tu solicitud (referencia CLV-000042)"


def test_non_ascii_subject_round_trips():
    original = "Solicitud de claves para actualización sin costo — Nóminas ñandú 日本"
    data = reply(original_subject=original)
    assert b"=?utf-8?" in data
    assert parse(data)["Subject"] == f"RE: {original}"


def test_invalid_in_reply_to_and_references_are_dropped():
    data = reply(in_reply_to="<no at sign>", references=["garbage", "<a b@c>", "x@y",
                                                          "<ok@example.net>\r\nBcc: z@z"])
    msg = parse(data)
    assert msg["In-Reply-To"] is None
    assert msg["References"] is None
    assert msg["Bcc"] is None


def test_missing_in_reply_to_keeps_valid_references():
    msg = parse(reply(in_reply_to=None, references=["<a@b>", "bad", "<c@d>"]))
    assert msg["In-Reply-To"] is None
    assert msg["References"].split() == ["<a@b>", "<c@d>"]


def test_long_message_ids_are_not_encoded():
    parent = "<" + "a" * 120 + "@mail.example.com>"
    data = reply(in_reply_to=parent, references=[f"<{i}{'b' * 80}@x.example>" for i in range(30)])
    assert b"=?utf-8?q?=3C" not in data
    msg = parse(data)
    assert msg["In-Reply-To"] == parent
    refs = msg["References"].split()
    assert refs[-1] == parent and len(refs) == 20


def test_is_msg_id():
    assert is_msg_id("<abc.def@example.com>")
    assert is_msg_id(" <x@[127.0.0.1]> ")
    for bad in (None, "", "abc@example.com", "<abc>", "<a b@c>", "<a@b>\nX: y", "<ñ@b>",
                "<" + "a" * 300 + "@b>"):
        assert not is_msg_id(bad)


def test_make_message_id_is_unique_and_valid():
    ids = {make_message_id("example.com") for _ in range(100)}
    assert len(ids) == 100
    assert all(is_msg_id(i) and i.endswith("@example.com>") for i in ids)
    assert make_message_id("bücher.example").endswith("@xn--bcher-kva.example>")
    with pytest.raises(ValueError):
        make_message_id("bad domain\r\nX: y")


def test_our_own_bad_values_are_refused():
    with pytest.raises(ValueError):
        reply(message_id="not-an-id")
    with pytest.raises(ValueError):
        reply(to=[])
    with pytest.raises(ValueError):
        reply(to="a@example.com")
    with pytest.raises(ValueError):
        reply(to=["a@example.com\r\nBcc: x@y"])
    with pytest.raises(ValueError):
        reply(reference="CLV 1\r\nX: y")


def test_display_name_with_specials_is_quoted_and_idn_domain_encoded():
    msg = parse(reply(from_name="Claves, Soporte \"MX\"", to=["ana@bücher.example"]))
    assert msg["From"].addresses[0].display_name == "Claves, Soporte \"MX\""
    assert msg["To"].addresses[0].addr_spec == "ana@xn--bcher-kva.example"


def test_alert_headers():
    data = build_alert(from_address="claves@example.com", to=["ops@example.com", "b@example.com"],
                       subject="[mailbot] 2 aviso(s) para operadores\r\nBcc: x@y",
                       rendered=Rendered("Avisos\n", None), message_id="<al1@example.com>",
                       date=WHEN)
    msg = parse(data)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Subject"] == "[mailbot] 2 aviso(s) para operadores Bcc: x@y"
    assert msg["Bcc"] is None
    assert [a.addr_spec for a in msg["To"].addresses] == ["ops@example.com", "b@example.com"]
    assert msg["Message-ID"] == "<al1@example.com>"
    assert msg["In-Reply-To"] is None and msg["X-Mailbot-Reference"] is None
    assert msg.get_content().replace("\r\n", "\n") == "Avisos\n"


def test_reply_with_a_rendered_template_end_to_end():
    from pathlib import Path

    from mailbot.answer.render import Renderer
    from mailbot.answer.samples import sample_context
    from mailbot.ruleset import load_rules

    root = Path(__file__).resolve().parent.parent
    renderer = Renderer(root / "templates")
    rendered = renderer.render("keys_issued", sample_context("keys_issued",
                                                             load_rules(root / "rules")))
    msg = parse(reply(rendered=rendered))
    assert "FE12-7KQ4-M2ZP-99XA" in msg.get_body(("plain",)).get_content()
    assert "FE12-7KQ4-M2ZP-99XA" in msg.get_body(("html",)).get_content()
