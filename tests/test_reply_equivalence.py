"""build_reply writes replies directly; they must be byte for byte what EmailMessage writes."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from mailbot.answer.message import _build_reply_stdlib, build_reply
from mailbot.answer.render import Rendered

WHEN = dt.datetime(2026, 3, 10, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-6)))
TEXT = "Hola, Raúl:\n\nTu clave: FE12-7KQ4-M2ZP-99XA\n"
HTML = "<p>Hola, Raúl:</p><p>Tu clave: <b>FE12-7KQ4-M2ZP-99XA</b></p>\n"

SUBJECTS = [
    "Solicitud de claves para actualización sin costo", "RE: Solicitud", "", "   ", "RE:",
    "Hola\r\nBcc: x@y\r\n\r\nbody", "Solicitud " + "muy larga " * 60,
    "Solicitud de claves para actualización sin costo — Nóminas ñandú 日本",
    "=?utf-8?q?ya_codificado?=", "a  b   c", "(comentario) <no> \"comillas\" ; : , @",
    "x" * 73, "x" * 74, "x" * 75, "palabra " * 9 + "x" * 40, "A\x00B\x1b[31mC\u2028D\u202eE",
    "Ω" * 90, "ASCII only but very long " * 5, "tab\there", "emoji 😀 en el asunto",
    "RE: RE: re:Solicitud", "=?", "?=", "a=?b", "Solicitud: 50% = mitad?",
]
NAMES = ["Claves de actualización", "mailbot", "", "Claves, Soporte \"MX\"", "Ñ" * 80,
         "José (soporte)", "a" * 120]
RECIPIENTS = [["rgonzalez@empresamuestra.com.mx"], ["ana@bücher.example"],
              ["a@example.com", "b@example.com"], ["x" * 60 + "@example.com"],
              ["Mixed.Case@Example.COM"], ["o'brien+tag@example.org"],
              [f"user{i}@example.com" for i in range(6)]]
IDS = ["<0123456789abcdef@example.com>", "<" + "a" * 120 + "@mail.example.com>",
       "<x@[127.0.0.1]>", " <padded@example.com> "]
BODIES = [Rendered(TEXT, HTML), Rendered(TEXT, None), Rendered("", None), Rendered("", ""),
          Rendered("línea con espacio al final \nx" + "y" * 200 + "\n", "<p>" + "z" * 300),
          Rendered("sin salto final", "sin salto final"),
          Rendered("a\r\nb\rc\n\n\n", "=3D = signo igual\n"),
          Rendered("--===============0000000000000000000==\n", None),
          Rendered("tab\tfinal\t\n" + "é" * 40 + "\n", "日本語\n")]


ARGS = dict(from_address="claves@example.com", from_name="Claves de actualización",
            to=["rgonzalez@empresamuestra.com.mx"],
            original_subject="Solicitud de claves para actualización sin costo",
            in_reply_to="<CAFx1234@mail.gmail.com>", references=["<first@example.net>"],
            rendered=Rendered(TEXT, HTML), reference="CLV-000042",
            message_id="<0123456789abcdef@example.com>", date=WHEN)


def both(**kwargs) -> tuple[bytes, bytes]:
    args = {**ARGS, **kwargs}
    random.seed(12345)
    fast = build_reply(**args)
    random.seed(12345)
    slow = _build_reply_stdlib(**args)
    return fast, slow


@pytest.mark.parametrize("subject", SUBJECTS)
def test_subjects(subject):
    fast, slow = both(original_subject=subject)
    assert fast == slow


@pytest.mark.parametrize("name", NAMES)
def test_from_names(name):
    fast, slow = both(from_name=name)
    assert fast == slow


@pytest.mark.parametrize("to", RECIPIENTS)
def test_recipients(to):
    fast, slow = both(to=to)
    assert fast == slow


@pytest.mark.parametrize("message_id", IDS)
def test_message_ids(message_id):
    fast, slow = both(message_id=message_id, in_reply_to=message_id.strip())
    assert fast == slow


@pytest.mark.parametrize("rendered", BODIES)
def test_bodies(rendered):
    fast, slow = both(rendered=rendered)
    assert fast == slow


def test_threading_headers_and_flags():
    for kwargs in (dict(in_reply_to=None, references=[]),
                   dict(in_reply_to="<bad>", references=["<a@b>", "junk", "<c@d>"]),
                   dict(references=[f"<{i}{'b' * 80}@x.example>" for i in range(30)]),
                   dict(auto_submitted=False), dict(reference=""),
                   dict(reference="X" * 64)):
        fast, slow = both(**kwargs)
        assert fast == slow, kwargs


def test_dates():
    for when in (None, dt.datetime(2026, 1, 1, 0, 0, tzinfo=dt.UTC),
                 dt.datetime(2026, 7, 4, 23, 59, 59),
                 dt.datetime(2026, 3, 10, 12, 30, 15, 999,
                             tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))):
        if when is None:
            continue
        fast, slow = both(date=when)
        assert fast == slow, when


def test_random_mixtures():
    rnd = random.Random(7)
    alphabet = "abcdefghij ABC áéíóúñÑ—日本 \t=?()<>@,;:\"'.-_ 0123456789"
    for _ in range(300):
        subject = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 120)))
        name = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 40)))
        text = "".join(rnd.choice(alphabet + "\n\n") for _ in range(rnd.randrange(0, 400)))
        html = None if rnd.random() < 0.3 else "".join(
            rnd.choice(alphabet + "\n<>") for _ in range(rnd.randrange(0, 400)))
        fast, slow = both(original_subject=subject, from_name=name,
                          rendered=Rendered(text, html))
        assert fast == slow, (subject, name, text, html)


def test_bad_values_are_refused_the_same_way():
    for kwargs in (dict(message_id="not-an-id"), dict(to=[]), dict(to="a@example.com"),
                   dict(to=["a@example.com\r\nBcc: x@y"]), dict(reference="CLV 1\r\nX: y"),
                   dict(from_address="no-at-sign")):
        with pytest.raises(ValueError):
            build_reply(**{**dict(
                from_address="claves@example.com", from_name="x", to=["a@example.com"],
                original_subject="s", in_reply_to=None, references=[],
                rendered=Rendered(TEXT, HTML), reference="CLV-1",
                message_id="<1@example.com>", date=WHEN), **kwargs})


def test_every_template_with_its_sample_contexts():
    from pathlib import Path

    from mailbot.answer.render import Renderer
    from mailbot.answer.samples import sample_contexts
    from mailbot.ruleset import load_rules

    root = Path(__file__).resolve().parent.parent
    renderer = Renderer(root / "templates")
    rules = load_rules(root / "rules")
    checked = 0
    for name in renderer.names():
        for context in sample_contexts(name, rules).values():
            fast, slow = both(rendered=renderer.render(name, context))
            assert fast == slow, name
            checked += 1
    assert checked >= 5


XLSX = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
FILES = [[("resultados-CLV-000042.xlsx", bytes(range(256)) * 21, XLSX)],
         [("resultados-CLV-000042.xlsx", b"", XLSX)],
         [("r.xlsx", b"x" * 57, XLSX), ("otro archivo.txt", b"hola\n" * 30, ("text", "plain"))],
         [("resultados-" + "x" * 90 + ".xlsx", b"PK\x03\x04" * 100, XLSX)],
         [('comillas "y" \\barra.xlsx', b"abc", XLSX)],
         [("año-ñ.xlsx", b"abc", XLSX)],  # not ASCII: the standard library writes it
         [(" espacio.xlsx\r\n", b"abc", XLSX)]]


@pytest.mark.parametrize("files", FILES)
@pytest.mark.parametrize("rendered", BODIES[:2] + BODIES[4:8])
def test_replies_with_attachments(files, rendered):
    fast, slow = both(rendered=rendered, attachments=files)
    assert fast == slow


def test_a_reply_with_the_results_spreadsheet_is_written_directly(monkeypatch):
    """The common case does not reach the standard library's writer at all."""
    from mailbot.answer import message

    def refused(**_kwargs):
        raise AssertionError("written by the standard library")

    random.seed(1)
    expected = _build_reply_stdlib(**ARGS, attachments=FILES[0])
    monkeypatch.setattr(message, "_build_reply_stdlib", refused)
    random.seed(1)
    assert build_reply(**ARGS, attachments=FILES[0]) == expected



def test_header_text_skips_the_per_character_pass_only_where_it_changes_nothing():
    """clean_header_text leaves printable text to `str.isprintable`; no printable character
    is one the per-character pass would blank."""
    import sys
    import unicodedata

    from mailbot.answer.message import _INVISIBLE, clean_header_text

    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue  # lone surrogates become "?" first
        blanked = unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _INVISIBLE
        assert not (ch.isprintable() and blanked), hex(code)
        if blanked:
            assert clean_header_text(f"a{ch}b") == "a b", hex(code)
