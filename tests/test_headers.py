"""Issue 11 §1: a From whose whole value is one RFC 2047 encoded-word is read (as Python's
compat32 email library and ERP mailers write it), and decoding never makes up a sender."""

from __future__ import annotations

import base64
from email.charset import QP, Charset
from email.header import Header
from email.mime.text import MIMEText

import pytest

from mailbot.read.mime import parse_mail


def with_from(value: str) -> bytes:
    return (f"From: {value}\nTo: claves@example.com\nSubject: Solicitud\n"
            "Message-ID: <h1@x.mx>\n\nNúmero de serie: AAAA-BBBB-CCCC-DDDD\n").encode()


def b_word(text: str, charset: str = "utf-8") -> str:
    return f"=?{charset}?b?{base64.b64encode(text.encode(charset)).decode()}?="


def test_compat32_writes_the_whole_from_as_one_word_and_it_is_read():
    """What Python's own compat32 mailer sends for a display name with a comma and accents."""
    msg = MIMEText("Número de serie: AAAA-BBBB-CCCC-DDDD", "plain", "utf-8")
    msg["From"] = Header('"Pérez, Juan" <juan.perez@ferreteria.mx>', "utf-8")
    msg["To"] = "claves@example.com"
    msg["Subject"] = Header("Solicitud de claves para actualización sin costo", "utf-8")
    data = msg.as_bytes()
    assert b"From: =?utf-8?b?" in data  # the whole value is one encoded-word
    mail = parse_mail(data)
    assert mail.sender == "juan.perez@ferreteria.mx"
    assert mail.from_addresses == ("juan.perez@ferreteria.mx",)


@pytest.mark.parametrize("value", [
    b_word('"Pérez, Juan" <juan.perez@ferreteria.mx>'),
    b_word('"Pérez, Juan" <juan.perez@ferreteria.mx>', "iso-8859-1"),
    "=?ISO-8859-1?Q?=22P=E9rez=2C_Juan=22_=3Cjuan.perez@ferreteria.mx=3E?=",
    '"Pérez, Juan" <juan.perez@ferreteria.mx>',
    '=?utf-8?q?=22P=C3=A9rez=2C_Juan=22?= <juan.perez@ferreteria.mx>',
])
def test_every_form_of_the_same_from_gives_the_same_sender(value):
    assert parse_mail(with_from(value)).sender == "juan.perez@ferreteria.mx"


def test_a_q_word_with_its_at_sign_is_never_taken_whole_as_the_address():
    """Before, the raw word "=?iso-8859-1?q?=22ram=edrez...@...=3e?=" was the sender."""
    charset = Charset("iso-8859-1")
    charset.header_encoding = QP
    word = Header('"Ramírez, Ana" <ana@norte.mx>', charset).encode()
    mail = parse_mail(with_from(word))
    assert mail.sender == "ana@norte.mx"


def test_an_encoded_name_that_looks_like_an_address_never_replaces_the_real_one():
    mail = parse_mail(with_from(f"{b_word('director@banco.mx')} <juan@ferreteria.mx>"))
    assert mail.from_addresses == ("juan@ferreteria.mx",)


def test_an_encoded_word_with_two_mailboxes_gives_no_single_sender():
    mail = parse_mail(with_from(b_word("Juan <juan@ferreteria.mx>, ana@norte.mx")))
    assert mail.sender is None
    assert mail.from_addresses == ("juan@ferreteria.mx", "ana@norte.mx")


def test_an_encoded_from_without_any_address_stays_without_a_sender():
    assert parse_mail(with_from(b_word("Juan Pérez"))).sender is None
