"""The reply templates render with the contract's data, and every failure is one clear line."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.answer.preview import preview
from mailbot.answer.render import _COLUMN, _LIST_MARK, Renderer, _wrapped, tidy_text
from mailbot.answer.samples import sample_context, sample_contexts, sample_installation
from mailbot.errors import TemplateError
from mailbot.ruleset import Ruleset, load_rules

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
PUBLIC = ["documents_needed", "documents_received", "keys_issued", "keys_redirected",
          "missing_data", "not_eligible", "operator_alert", "pending_keys", "results",
          "results_summary",
          "review_rejected", "under_review", "unlock_missing_data", "unlock_rejected",
          "unlock_review", "unlocked"]


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


@pytest.fixture(scope="module")
def rules() -> Ruleset:
    """The shipped rules, which the sample contexts take their prices and texts from."""
    return load_rules(ROOT / "rules")


@pytest.fixture
def tmp_templates(tmp_path: Path) -> Path:
    """A private copy of templates/ that a test may break."""
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES, target)
    return target


def both(rendered) -> str:
    return rendered.text + "\n" + (rendered.html or "")


def flat(text: str) -> str:
    """The text with the wrapping undone, to look for phrases."""
    return " ".join(text.split())


# --- the text part ---------------------------------------------------------------------

def test_tidy_text_wraps_long_lines_with_a_hanging_indent():
    text = tidy_text("  - " + "palabra " * 30 + "\n\n\n\nfin\n")
    lines = text.splitlines()
    assert all(len(line) <= 76 for line in lines)
    assert lines[1].startswith("    palabra")
    assert "\n\n\n" not in text


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(st.text(alphabet=st.sampled_from(" \t\n\r\x0b\x0c\xa0\u2003-*•1.aéZ$,"), max_size=200),
       st.sampled_from(["", "  ", "\t", "  - ", " 2. "]))
def test_wrapping_a_line_is_what_textwrap_makes_of_it(words, start):
    """`_wrapped` hands textwrap the line with its whitespace already made spaces: the same
    lines as textwrap doing it itself, under the line's list mark or column."""
    line = start + words
    for width in (5, 20, 76):
        mark = _LIST_MARK.match(line) or _COLUMN.match(line)
        indent = line[: len(line) - len(line.lstrip())]
        hanging = " " * len(mark.group(0)) if mark else indent
        assert _wrapped.__wrapped__(line, width) == tuple(textwrap.wrap(
            line.strip(), width=width, initial_indent=indent, subsequent_indent=hanging,
            break_long_words=False, break_on_hyphens=False))


# --- every template ------------------------------------------------------------------------

def test_names_lists_the_public_templates(renderer):
    assert renderer.names() == PUBLIC


def test_check_passes_on_the_shipped_templates(renderer, rules):
    assert renderer.check(rules) == []


@pytest.mark.parametrize("name", PUBLIC)
def test_every_template_renders_every_sample(renderer, name, rules):
    for label, context in sample_contexts(name, rules).items():
        rendered = renderer.render(name, context)
        assert rendered.text.strip(), label
        assert rendered.html and rendered.html.lstrip().startswith("<!DOCTYPE html>"), label
        if name != "operator_alert":
            assert "CLV-000042" in rendered.text and "CLV-000042" in rendered.html, label
            assert "Claves de actualización" in rendered.text, label  # the sign-off


def test_keys_issued_shows_system_serial_and_key(renderer, rules):
    rendered = renderer.render("keys_issued",
                               sample_contexts("keys_issued", rules)["sin póliza, marzo"])
    for part in (rendered.text, rendered.html):
        assert "CONTPAQ i Factura electrónica" in part
        assert "AAAA-BBBB-CCCC-DDDD" in part
        assert "FE12-7KQ4-M2ZP-99XA" in part


def test_installation_without_support_offers_renewal_and_per_event_prices(renderer, rules):
    rendered = renderer.render("keys_issued",
                               sample_contexts("keys_issued", rules)["sin póliza, marzo"])
    for part in (rendered.text, rendered.html):
        for price in ("$2,500.00", "$4,000.00", "$6,500.00", "$800.00", "$1,200.00",
                      "$1,900.00", "$2,200.00"):
            assert price in part
        assert "Se cotizará por proyecto." in part
        assert "precios de promoción" in part
        assert "llámanos al 5141-5110" not in part
    assert "tiene 5 usuarios" in rendered.text  # the registry's users pick the per-event row


def test_january_discount_appears_only_in_january(renderer, rules):
    samples = sample_contexts("keys_issued", rules)
    march = both(renderer.render("keys_issued", samples["sin póliza, marzo"]))
    january = both(renderer.render("keys_issued",
                                   sample_contexts("keys_issued", rules)["sin póliza, enero"]))
    assert "descuento" not in march and "enero" not in march
    assert "$3,200.00" in january and "$5,200.00" in january  # 20% off half-year and yearly
    assert "20% de descuento" in january
    assert "$2,500.00" in january  # the quarterly policy has no discount


def test_installation_with_support_says_call_us_it_is_included(renderer, rules):
    rendered = renderer.render("keys_issued",
                               sample_contexts("keys_issued", rules)["con póliza vigente"])
    for part in (flat(rendered.text), rendered.html):
        assert "5141-5110" in part
        assert "incluido en tu póliza" in part
        assert "31 de diciembre de 2026" in part
        assert "$2,500.00" not in part and "$800.00" not in part
    assert "llámanos al 5141-5110" in flat(rendered.text)


def test_installation_over_twenty_users_is_quoted_by_project(renderer, rules):
    context = sample_context("keys_issued", rules)
    context["rows"][0]["installation"] = sample_installation(
        rules, has_support=False, today=context["today"], users=35)
    text = flat(renderer.render("keys_issued", context).text)
    assert "tiene 35 usuarios" in text
    assert "«Mayor a 20 usuarios»: se cotizará por proyecto." in text


def test_keys_issued_to_the_registered_contact_says_who_asked(renderer, rules):
    context = sample_contexts("keys_issued", rules)["enviadas al contacto registrado"]
    text = renderer.render("keys_issued", context).text
    assert "co*****@ot***.com" in text and "compras@otrodominio.com" not in text
    assert "FE12-7KQ4-M2ZP-99XA" in text


def test_results_shows_each_outcome_and_keys_only_where_allowed(renderer, rules):
    context = sample_contexts("results", rules)["resultados mixtos con filas ilegibles"]
    rendered = renderer.render("results", context)
    for part in (rendered.text, rendered.html):
        assert "FE12-7KQ4-M2ZP-99XA" in part  # issued to the requester
        assert "co*******@em***.com.mx" in part  # issued to the registered contact: no key
        assert "3 de noviembre de 2010" in part and "1 de julio de 2011" in part
        assert "revisará" in part
        assert "en cuanto esté lista" in part
        assert "fila 4" in part and "no es válido" in part  # an unreadable row
        assert "no reconocemos el tipo de sistema" in part.lower()
    assert "FE12" in rendered.text and rendered.text.count("Clave nueva") == 1


def test_missing_data_names_each_field_and_shows_the_seed_example(renderer, rules):
    context = sample_contexts("missing_data", rules)["todos los problemas"]
    rendered = renderer.render("missing_data", context)
    for part in (rendered.text, rendered.html):
        assert "Número de serie" in part and "Falta este dato" in part
        assert "Correo electrónico del contacto" in part
        assert "Nombre de la empresa: Empresa de muestra S.A. de C.V." in part
        assert "Número de serie: Aaaa-Bbbb-Cccc-Dddd" in part
        assert "Tipo de sistema: CONTPAQ i – Factura electrónica" in part
        assert "hoja de cálculo" in part
        assert "Solicitud de claves para actualización sin costo" in part
        assert "no labelled fields found" not in part  # operator details stay out


def test_not_eligible_states_the_eligibility_date(renderer, rules):
    rendered = renderer.render("not_eligible", sample_context("not_eligible", rules))
    for part in (rendered.text, rendered.html):
        assert "1 de julio de 2011" in part
        assert "3 de noviembre de 2010" in part
        assert "AAAA-BBBB-CCCC-DDDD" in part


def test_under_review_and_pending_keys_promise_a_follow_up(renderer, rules):
    context = sample_contexts("under_review", rules)["desbloqueo, sin filas"]
    review = renderer.render("under_review", context)
    assert "solicitud de desbloqueo" in review.text and "revis" in review.text
    pending = renderer.render("pending_keys", sample_context("pending_keys", rules))
    assert "te la enviaremos por correo" in pending.text


def test_keys_redirected_shows_where_but_never_the_key(renderer, rules):
    context = sample_contexts("keys_redirected", rules)["un sistema"]
    context["rows"][0]["key"] = "SECRET-KEY-MUST-NOT-SHOW"
    rendered = renderer.render("keys_redirected", context)
    assert "rg*******@em***.com.mx" in rendered.text
    assert "SECRET-KEY" not in both(rendered)


def test_operator_alert_lists_every_alert(renderer, rules):
    rendered = renderer.render("operator_alert", sample_context("operator_alert", rules))
    assert "Sin claves disponibles [CLV-000043]" in rendered.text
    assert "Envío fallido" in rendered.text
    assert "&lt;abc@example.com&gt;" in rendered.html  # autoescaped in HTML


def test_html_part_escapes_customer_text_and_text_part_does_not(renderer, rules):
    context = sample_context("keys_issued", rules)
    context["rows"][0]["contact_name"] = "<b>Raúl & Cía</b>"
    context["requester"]["name"] = "<script>alert(1)</script>"
    rendered = renderer.render("keys_issued", context)
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert "<script>alert(1)</script>" in rendered.text


# --- failures are one line -----------------------------------------------------------------

def test_undefined_variable_names_the_template_and_line(renderer, rules):
    context = sample_context("not_eligible", rules)
    del context["eligible_from"]
    with pytest.raises(TemplateError) as err:
        renderer.render("not_eligible", context)
    message = str(err.value)
    assert "not_eligible.txt.j2, line" in message and "eligible_from" in message
    assert "\n" not in message


def test_undefined_variable_in_a_partial_names_the_partial(renderer, rules):
    context = sample_context("keys_issued", rules)
    del context["rows"][0]["installation"]["phone"]
    with pytest.raises(TemplateError) as err:
        renderer.render("keys_issued", context)
    assert "_installation.txt.j2, line" in str(err.value)
    assert "included from keys_issued.txt.j2" in str(err.value)


def test_missing_template_and_bad_names(renderer, tmp_path):
    with pytest.raises(TemplateError, match=r"nope\.txt\.j2: template not found"):
        renderer.render("nope", {})
    for bad in ("../etc/passwd", "_layout", "a/b", ""):
        with pytest.raises(TemplateError):
            renderer.render(bad, {})
    with pytest.raises(TemplateError, match="templates directory not found"):
        Renderer(tmp_path / "missing").render("keys_issued", {})


def test_text_part_is_required_html_part_optional(tmp_path):
    (tmp_path / "plain.txt.j2").write_text("Hola {{ name }}\n")
    rendered = Renderer(tmp_path).render("plain", {"name": "Raúl"})
    assert rendered.text == "Hola Raúl\n" and rendered.html is None


def test_syntax_error_names_file_and_line(tmp_path):
    (tmp_path / "broken.txt.j2").write_text("Hola\n{% if %}\n")
    with pytest.raises(TemplateError, match=r"broken\.txt\.j2, line 2: syntax error"):
        Renderer(tmp_path).render("broken", {})


def test_check_finds_a_broken_template_in_a_copy(tmp_templates, rules):
    path = tmp_templates / "not_eligible.html.j2"
    path.write_text(path.read_text(encoding="utf-8").replace("{{ phone }}", "{{ telefono }}"),
                    encoding="utf-8")
    (tmp_templates / "_installation.txt.j2").write_text(
        (tmp_templates / "_installation.txt.j2").read_text(encoding="utf-8") + "{% endif %}\n",
        encoding="utf-8")
    (tmp_templates / "orphan.html.j2").write_text("<p>x</p>\n", encoding="utf-8")
    errors = Renderer(tmp_templates).check(rules)
    assert any("not_eligible.html.j2, line" in e and "telefono" in e for e in errors)
    assert any("_installation.txt.j2, line" in e and "syntax error" in e for e in errors)
    assert any("orphan.html.j2" in e and "without a text part" in e for e in errors)
    assert all("\n" not in e for e in errors)


def test_check_covers_templates_without_registered_samples(tmp_templates, rules):
    (tmp_templates / "custom.txt.j2").write_text(
        "{% extends '_layout.txt.j2' %}{% block body %}{{ no_such_key }}{% endblock %}\n",
        encoding="utf-8")
    (tmp_templates / "custom.html.j2").write_text(  # a reply template has both parts
        "{% extends '_layout.html.j2' %}{% block body %}<p>x</p>{% endblock %}\n",
        encoding="utf-8")
    errors = Renderer(tmp_templates).check(rules)
    assert len(errors) == 1 and "custom.txt.j2" in errors[0] and "no_such_key" in errors[0]


def test_an_edited_template_is_picked_up_without_restart(tmp_templates, rules):
    """Compiled once (issue 10): a render looks at no file; the next pass's refresh() picks
    the edit up (run_once calls it first)."""
    renderer = Renderer(tmp_templates)
    before = renderer.render("under_review", sample_context("under_review", rules)).text
    path = tmp_templates / "under_review.txt.j2"
    path.write_text("Nuevo texto {{ reference }}\n", encoding="utf-8")
    os.utime(path, (path.stat().st_atime + 5, path.stat().st_mtime + 5))
    assert renderer.render("under_review", sample_context("under_review", rules)).text == before
    assert renderer.refresh() is True and renderer.refresh() is False
    assert renderer.render("under_review", sample_context("under_review", rules)).text == \
        "Nuevo texto CLV-000042\n"
    (tmp_templates / "under_review.html.j2").unlink()  # a part removed: gone after a refresh
    assert renderer.render("under_review", sample_context("under_review", rules)).html
    renderer.refresh()
    assert renderer.render("under_review", sample_context("under_review", rules)).html is None


def test_preview_prints_a_readable_mail(renderer, rules):
    text = preview(renderer, "keys_issued", rules, from_address="claves@ejemplo.mx",
                            from_name="Bot MX")
    assert text.startswith("From: Bot MX <claves@ejemplo.mx>\n")
    assert "Subject: RE: Solicitud de claves para actualización sin costo\n" in text
    assert "FE12-7KQ4-M2ZP-99XA" in text and "----- text/html -----" in text
    assert "\nBot MX\n" in text  # the sign-off uses the configured name
    january = preview(renderer, "keys_issued", rules, "sin póliza, enero")
    assert "$3,200.00" in january
    assert "Avisos para operadores" in preview(renderer, "operator_alert", rules)
    with pytest.raises(TemplateError, match="no sample"):
        preview(renderer, "keys_issued", rules, "no such sample")


def test_problems_from_the_extractor_read_in_spanish(renderer, rules):
    context = sample_context("missing_data", rules)
    context["problems"] = [
        {"code": code, "field": None, "field_label": None, "source": "message",
         "detail": "english operator detail"}
        for code in ("message_too_large", "too_many_requests", "too_many_attachments",
                     "internal_error", "something_new")]
    text = flat(renderer.render("missing_data", context).text)
    assert "english operator detail" not in text and "message" not in text
    assert "Tu correo: Es demasiado grande" in text
    assert "atendimos los primeros" in text
