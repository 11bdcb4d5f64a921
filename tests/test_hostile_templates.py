"""No hostile HTML in our replies: whatever a sender puts in a value reaches the HTML part as
text, through every template, partial and macro (issue 8 §4), and never reaches a header."""

from __future__ import annotations

from email import message_from_bytes, policy
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mailbot.answer.message import build_reply
from mailbot.answer.render import HTML_SUFFIX, Renderer
from mailbot.answer.samples import hostile_context, sample_contexts
from mailbot.ruleset import load_rules

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
RULES = load_rules(ROOT / "rules")
RENDERER = Renderer(TEMPLATES)
HOSTILE = '<img src=x onerror=alert(1)><a href="http://evil">x</a>"\'&'
# The issue's own example: an attachment whose file name is markup.
EVIL_ATTACHMENT = ('<img src=x onerror=alert(1)><a href="http://evil">'
                   'Descarga aquí tus claves.pdf')

WITH_HTML = [name for name in RENDERER.names() if (TEMPLATES / (name + HTML_SUFFIX)).is_file()]
CASES = [(name, label) for name in WITH_HTML for label in sample_contexts(name, RULES)]


class _Parsed(HTMLParser):
    """The elements and the text a mail client would see in an HTML part."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def assert_no_markup_from(html: str, value: str) -> None:
    parsed = _Parsed(html)
    assert not [tag for tag, _ in parsed.elements if tag in ("img", "a", "script")]
    assert not [attrs for _, attrs in parsed.elements
                if "onerror" in attrs or "src" in attrs or attrs.get("href") == "http://evil"]
    assert value in "".join(parsed.texts)  # shown, as the literal text it was


def words(text: str) -> str:
    return " ".join(text.split())  # the text part wraps long lines


def test_every_public_template_has_an_html_part_under_test():
    assert len(WITH_HTML) >= 15 and "missing_data" in WITH_HTML and "results" in WITH_HTML


@pytest.mark.parametrize("name, label", CASES)
def test_hostile_values_are_text_in_the_html_part_and_literal_in_the_text_part(name, label):
    context = hostile_context(sample_contexts(name, RULES)[label], HOSTILE)
    rendered = RENDERER.render(name, context)
    assert rendered.html is not None
    assert_no_markup_from(rendered.html, HOSTILE)
    assert words(HOSTILE) in words(rendered.text)
    assert "&lt;" not in rendered.text and "&#34;" not in rendered.text


@pytest.mark.parametrize("name", ["missing_data", "results"])
def test_attachment_named_like_markup_is_text_in_the_problem_list(name):
    """The problem lines come from macros in _problem_text.txt.j2, imported by the HTML part."""
    context = next(iter(sample_contexts(name, RULES).values()))
    problems = [dict(p, source=f"attachment:{EVIL_ATTACHMENT}") for p in context["problems"]]
    assert problems
    rendered = RENDERER.render(name, dict(context, problems=problems))
    assert_no_markup_from(rendered.html, f"rchivo {EVIL_ATTACHMENT}")  # "Archivo", "(archivo"
    assert f"rchivo {EVIL_ATTACHMENT}" in words(rendered.text)


def test_users_line_macro_from_the_text_partial_escapes_in_the_html_part():
    """keys_issued's HTML installation section prints users_line from _installation.txt.j2."""
    context = sample_contexts("keys_issued", RULES)["sin póliza, marzo"]
    context["rows"][0]["system"] = EVIL_ATTACHMENT
    rendered = RENDERER.render("keys_issued", context)
    assert "tiene 5 usuarios" in rendered.html
    assert_no_markup_from(rendered.html, f"{EVIL_ATTACHMENT} (AAAA-BBBB-CCCC-DDDD) tiene 5")


def test_hostile_reply_keeps_its_headers_and_its_html_harmless():
    context = hostile_context(sample_contexts("results", RULES)["resultados mixtos con filas "
                                                                 "ilegibles"], HOSTILE)
    rendered = RENDERER.render("results", context)
    data = build_reply(
        from_address="claves@example.com", from_name="Claves de actualización",
        to=["rgonzalez@empresamuestra.com.mx"],
        original_subject=f"{HOSTILE}\r\nBcc: evil@example.net\r\n\r\n{HOSTILE}\u2028To: x@y",
        in_reply_to="<CAFx1234@mail.gmail.com>", references=[], rendered=rendered,
        reference="CLV-000042", message_id="<0123456789abcdef@example.com>")
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [line.split(":", 1)[0] for line in head.split("\r\n") if line[:1] not in " \t"]
    assert names == ["From", "To", "Subject", "Date", "Message-ID", "In-Reply-To",
                     "References", "Auto-Submitted", "X-Auto-Response-Suppress",
                     "X-Mailbot-Reference", "MIME-Version", "Content-Type", "Content-Language"]
    msg = message_from_bytes(data, policy=policy.default)
    assert msg["To"] == "rgonzalez@empresamuestra.com.mx"
    assert msg["Subject"] == f"RE: {HOSTILE} Bcc: evil@example.net {HOSTILE} To: x@y"
    html = msg.get_body(("html",)).get_content()
    assert_no_markup_from(html, HOSTILE)
    assert words(HOSTILE) in words(msg.get_body(("plain",)).get_content())
