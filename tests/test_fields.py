"""How customers write each field, and what mailbot reads from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbot.read.fields import (
    LabelMatcher,
    SystemMatcher,
    find_serials,
    fold,
    normalise_serial,
    parse_email,
)
from mailbot.ruleset import Catalogue, System, load_rules

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"


@pytest.fixture(scope="module")
def rules():
    return load_rules(RULES_DIR)


@pytest.fixture(scope="module")
def labels(rules):
    return LabelMatcher(rules.labels, rules.label_matching, SystemMatcher(rules.catalogue))


@pytest.fixture(scope="module")
def systems(rules):
    return SystemMatcher(rules.catalogue)


# --- fold -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, folded", [
    ("CONTPAQ i – Factura Electrónica.", "contpaq i factura electronica"),
    ("  NÚMERO   DE\tSERIE: ", "numero de serie"),
    ("Nóminas—2012", "nominas 2012"),
    ("E-mail", "e mail"),
    ("Razón  social", "razon social"),
    ("", ""),
])
def test_fold_ignores_case_accents_dashes_punctuation_and_spacing(text, folded):
    assert fold(text) == folded


# --- serials ----------------------------------------------------------------------------------

@pytest.mark.parametrize("written", [
    "AAAA-BBBB-CCCC-DDDD",
    "Aaaa-Bbbb-Cccc-Dddd",
    "aaaa-bbbb-cccc-dddd",
    "aaaabbbbccccdddd",
    "AAAA BBBB CCCC DDDD",
    "aaaa.bbbb.cccc.dddd",
    "AAAA–BBBB—CCCC-DDDD",
    "AAAA - BBBB - CCCC - DDDD",
    "AAAA-BBBB CCCC-DDDD",
    "  AAAA-BBBB-CCCC-DDDD.",
    "mi serie es aaaa-bbbb-cccc-dddd, gracias",
    "serie:AAAABBBBCCCCDDDD",
])
def test_normalise_serial_accepts_how_customers_write_it(written):
    assert normalise_serial(written) == "AAAA-BBBB-CCCC-DDDD"


def test_normalise_serial_keeps_digits():
    assert normalise_serial("1a2b 3c4d 5e6f 7a8b") == "1A2B-3C4D-5E6F-7A8B"


@pytest.mark.parametrize("written", [
    "AAAABBBBCCCCDDD",  # 15 characters
    "AAAABBBBCCCCDDDDE",  # 17 characters
    "AAAA-BBBB-CCCC",  # three groups
    "AAAA-BBBB-CCCC-DDDD-EEEE",  # five groups
    "AAA-BBBBB-CCCC-DDDD",  # misaligned groups
    "ÁAAA-BBBB-CCCC-DDDD",  # not ASCII
    "para esta AAAA BBBB CCCC DDDD",  # cannot tell the words from the groups
    "no la tengo",
    "",
])
def test_normalise_serial_refuses_what_is_not_one_serial(written):
    assert normalise_serial(written) is None


def test_normalise_serial_refuses_two_serials_but_find_serials_lists_both():
    text = "AAAA-BBBB-CCCC-DDDD y aaaa-bbbb-cccc-eeee"
    assert normalise_serial(text) is None
    assert find_serials(text) == ["AAAA-BBBB-CCCC-DDDD", "AAAA-BBBB-CCCC-EEEE"]


def test_find_serials_lists_a_repeated_serial_once():
    assert find_serials("AAAA-BBBB-CCCC-DDDD (aaaabbbbccccdddd)") == ["AAAA-BBBB-CCCC-DDDD"]


# --- e-mail addresses -------------------------------------------------------------------------

@pytest.mark.parametrize("written, address", [
    ("rgonzalez@empresamuestra.com.mx", "rgonzalez@empresamuestra.com.mx"),
    ("RGonzalez@EmpresaMuestra.com.mx", "rgonzalez@empresamuestra.com.mx"),
    ("Raul Gonzalez <rgonzalez@empresamuestra.com.mx>", "rgonzalez@empresamuestra.com.mx"),
    ('"Gonzalez, Raul" <rgonzalez@empresamuestra.com.mx>', "rgonzalez@empresamuestra.com.mx"),
    ("mailto:rgonzalez@empresamuestra.com.mx", "rgonzalez@empresamuestra.com.mx"),
    ("rgonzalez@empresamuestra.com.mx<mailto:rgonzalez@empresamuestra.com.mx>",
     "rgonzalez@empresamuestra.com.mx"),
    ("rgonzalez@empresamuestra.com.mx[mailto:rgonzalez@empresamuestra.com.mx]",
     "rgonzalez@empresamuestra.com.mx"),
    ("rgonzalez@empresamuestra.com.mx.", "rgonzalez@empresamuestra.com.mx"),
    ("rgonzalez@empresamuestra.com.mx (Raul Gonzalez)", "rgonzalez@empresamuestra.com.mx"),
    ("\"rgonzalez@empresamuestra.com.mx\";", "rgonzalez@empresamuestra.com.mx"),
    ("ventas@compañía.mx", "ventas@compañía.mx"),
    ("r.gonzalez+claves@sub.empresa-muestra.com", "r.gonzalez+claves@sub.empresa-muestra.com"),
])
def test_parse_email_finds_the_address(written, address):
    assert parse_email(written) == address


@pytest.mark.parametrize("written", [
    "rgonzalez",
    "rgonzalez@empresamuestra",  # no dot in the domain
    "rgonzalez@@empresamuestra.com",
    "r gonzalez@empresamuestra.com",
    "rgonzalez@empresa muestra.com",
    "rgonzalez@.com",
    "rgonzalez@empresa.c",
    ".rgonzalez@empresa.com",
    "a@b.com, c@d.com",  # two addresses: which one?
    "",
])
def test_parse_email_refuses_what_is_not_one_valid_address(written):
    assert parse_email(written) is None


# --- labels -----------------------------------------------------------------------------------

@pytest.mark.parametrize("line, field", [
    ("Nombre de la empresa: X", "company"),
    ("Nombre de la empresa / Nombre de la persona física: X", "company"),
    ("NOMBRE DE LA EMPRESA: X", "company"),
    ("Empresa: X", "company"),
    ("Razón social: X", "company"),
    ("Razon Social: X", "company"),
    ("Nombre del contacto: X", "contact_name"),
    ("Contacto: X", "contact_name"),
    ("Nombre: X", "contact_name"),
    ("Correo electrónico del contacto: X", "contact_email"),
    ("CORREO ELECTRONICO DEL CONTACTO: X", "contact_email"),
    ("Correo: X", "contact_email"),
    ("E-mail: X", "contact_email"),
    ("e-mail: X", "contact_email"),
    ("Email: X", "contact_email"),
    ("Tipo de sistema: X", "system"),
    ("Sistema: X", "system"),
    ("Número de serie: X", "serial"),
    ("NUMERO DE SERIE: X", "serial"),
    ("Numero de serie: X", "serial"),
    ("No. de serie: X", "serial"),
    ("No de serie: X", "serial"),
    ("Núm. de serie: X", "serial"),
    ("Num de serie: X", "serial"),
    ("Nº de serie: X", "serial"),
    ("N° de serie: X", "serial"),
    ("Serie: X", "serial"),
])
def test_label_matcher_knows_every_spelling(labels, line, field):
    assert labels.match(line) == (field, "X")


@pytest.mark.parametrize("line", [
    "Número de serie: X",
    "Número de serie:X",
    "Número de serie - X",
    "Número de serie – X",
    "Número de serie\tX",
    "Número de serie    X",
    "Número de serie = X",
    "Número de serie | X",
    "• Número de serie: X",
    "- Número de serie: X",
    "* Número de serie: X",
    "1. Número de serie: X",
    "5) Número de serie: X",
    "   Número de serie: X",
    "*Número de serie:* X",
    "**Número de serie**: X",
    "Número de serie (actual): X",
    "Número de serie del sistema: X",
])
def test_label_matcher_accepts_separators_bullets_and_asides(labels, line):
    assert labels.match(line) == ("serial", "X")


@pytest.mark.parametrize("line", [
    "Número de serie",
    "Número de serie:",
    "NÚMERO DE SERIE.",
    "• Número de serie:  ",
])
def test_label_alone_means_the_value_is_on_the_next_line(labels, line):
    assert labels.match(line) == ("serial", "")


def test_longest_label_wins(labels):
    assert labels.match("Nombre de la empresa: X") == ("company", "X")
    assert labels.match("Nombre del contacto: X") == ("contact_name", "X")
    assert labels.match("Correo electrónico del contacto: X") == ("contact_email", "X")
    assert labels.match("Número de serie actual: X") == ("serial", "X")


def test_value_keeps_the_customers_spelling(labels):
    assert labels.match("Tipo de sistema: CONTPAQ i – Factura electrónica") == (
        "system", "CONTPAQ i – Factura electrónica")


def test_aside_copied_from_the_instructions_is_skipped(labels):
    line = ("Correo electrónico del contacto (recomendable que sea el mismo que envía la "
            "solicitud): rgonzalez@empresamuestra.com.mx")
    assert labels.match(line) == ("contact_email", "rgonzalez@empresamuestra.com.mx")


@pytest.mark.parametrize("line", [
    "Buenas tardes",
    "Me permito solicitar mis claves para la actualización sin costo de mi sistema.",
    "Empresa de muestra S.A. de C.V.",  # a value, not a label
    "Sistema de 1 y 2 usuarios",
    "Serie AAAA-BBBB-CCCC-DDDD no funciona",  # one space, then prose: not a label
    "Sistema contable nuevo",  # one space, and not a catalogue spelling
    "Mi número de serie: X",
    "",
])
def test_prose_is_not_a_label(labels, line):
    assert labels.match(line) is None


@pytest.mark.parametrize("cell, field", [
    ("Nombre de la empresa", "company"),
    ("Correo electrónico", "contact_email"),
    ("  Número de serie ", "serial"),
    ("Número de serie (actual)", "serial"),
    ("TIPO DE SISTEMA", "system"),
    ("No. de serie:", "serial"),
])
def test_header_cells_name_their_field(labels, cell, field):
    assert labels.match_header(cell) == field


@pytest.mark.parametrize("cell", [
    "Empresa de muestra, S.A. de C.V.",
    "AAAA-BBBB-CCCC-DDDD",
    "Observaciones",
    "Serie: AAAA-BBBB-CCCC-DDDD",
])
def test_data_cells_are_not_headers(labels, cell):
    assert labels.match_header(cell) is None


# --- systems ----------------------------------------------------------------------------------

@pytest.mark.parametrize("written", [
    "CONTPAQ i Factura electrónica",
    "CONTPAQ i – Factura electrónica",
    "CONTPAQi factura electronica",
    "contpaq i - FACTURA ELECTRONICA",
    "Factura Electrónica",
    "CONTPAQ i® Factura electrónica",
    "CONTPAQ i Factura electrónica 2011",
    "CONTPAQ i Factura electronca",  # typo
])
def test_system_matcher_finds_the_canonical_name(systems, written):
    assert systems.match(written) == "CONTPAQ i Factura electrónica"


@pytest.mark.parametrize("written, name", [
    ("Nominas", "CONTPAQ i Nóminas"),
    ("CONTPAQi Nómina", "CONTPAQ i Nóminas"),
    ("contabilidad", "CONTPAQ i Contabilidad"),
    ("CONTPAQ i Contabilidda", "CONTPAQ i Contabilidad"),
    ("Bancos", "CONTPAQ i Bancos"),
    ("Aspel Facture", "Aspel FACTURE"),
])
def test_system_matcher_knows_aliases_and_typos(systems, written, name):
    assert systems.match(written) == name


@pytest.mark.parametrize("written", [
    "CONTPAQ i",  # which one?
    "Contabilidad y Bancos",  # two systems
    "SAP Business One",
    "Aspel NOI",
    "",
    "---",
])
def test_system_matcher_refuses_unknown_or_ambiguous_names(systems, written):
    assert systems.match(written) is None


def test_system_matcher_explains_an_ambiguous_guess(systems):
    name, why = systems.explain("Contabilidad y Bancos")
    assert name is None
    assert "CONTPAQ i Contabilidad" in why and "CONTPAQ i Bancos" in why


def test_system_matcher_uses_the_catalogues_min_score():
    catalogue = Catalogue(systems=(System("CONTPAQ i Nóminas", ()),), min_score=100)
    assert SystemMatcher(catalogue).match("CONTPAQ i Nominas") == "CONTPAQ i Nóminas"
    assert SystemMatcher(catalogue).match("CONTPAQ i Nomina") is None


def test_a_quoted_line_is_not_a_label(labels):
    assert labels.match("> Número de serie: AAAA-BBBB-CCCC-DDDD") is None


# --- labels as people type them (issue 11, section 4) ------------------------------------------

@pytest.mark.parametrize("line, field", [
    ("Nombre de empresa: X", "company"),  # was read as "Nombre" (the contact) plus filler
    ("Nombre empresa: X", "company"),
    ("Nombre de la persona física: X", "company"),
    ("Nombre de persona fisica: X", "company"),
    ("Tipo sistema: X", "system"),  # was no label at all
    ("No de serie: X", "serial"),
    ("Correo electronico: X", "contact_email"),
])
def test_label_variants_name_the_right_field(labels, line, field):
    assert labels.match(line) == (field, "X")


@pytest.mark.parametrize("line, field", [
    ("Contaco: X", "contact_name"),
    ("Nombre de contaco: X", "contact_name"),
    ("Sitema: X", "system"),
    ("Tipo de sitema: X", "system"),
    ("Seire: X", "serial"),
    ("Número de seire: X", "serial"),
    ("Nombre de la empersa: X", "company"),
    ("Coreo electrónico: X", "contact_email"),
])
def test_label_typos_are_read_as_their_field(labels, line, field):
    assert labels.match(line) == (field, "X")


@pytest.mark.parametrize("line", [
    "Contrato: X",  # two edits from "Contacto": another word, not a typo
    "Sede: X",  # not "Serie"
    "Main: X",  # short words must be exact ("Mail")
    "Seires de pago: X",  # a typo'd label takes no filler words
    "Sitema Contabilidad",  # nor goes without its colon
    "Nombre de sistema: X",  # "Nombre" + filler naming another field: no label
    "Correo del cliente: Juan",  # the same, unless the value is an address
    "Serie del sistema: X",
])
def test_near_labels_of_another_field_are_not_matched(labels, line):
    assert labels.match(line) is None


def test_filler_naming_another_field_is_accepted_when_the_value_validates(labels):
    assert labels.match("Correo del cliente: ana@empresa.mx") == ("contact_email",
                                                                   "ana@empresa.mx")
    assert labels.match("Serie del sistema: aaaa bbbb cccc dddd") == ("serial",
                                                                       "aaaa bbbb cccc dddd")


def test_a_typo_between_two_fields_is_no_label(rules):
    # "Seriel" is as close to "Serial" (serial) as to "Seriol" (made a company label here).
    labels = dict(rules.labels)
    labels["company"] = (*labels["company"], "Seriol")
    matcher = LabelMatcher(labels, rules.label_matching)
    assert matcher.match("Seriel: X") is None
    assert matcher.match("Serial: X") == ("serial", "X")


def test_typos_are_off_at_similarity_100(rules):
    from mailbot.ruleset import LabelMatching
    matcher = LabelMatcher(rules.labels, LabelMatching(min_similarity=100))
    assert matcher.match("Sitema: X") is None
    assert matcher.match("Sistema: X") == ("system", "X")


@pytest.mark.parametrize("line, field, value", [
    ("Serie AAAA-BBBB-CCCC-DDDD", "serial", "AAAA-BBBB-CCCC-DDDD"),
    ("Numero de serie aaaa bbbb cccc dddd", "serial", "aaaa bbbb cccc dddd"),
    ("Sistema Contabilidad", "system", "Contabilidad"),
    ("Tipo de sistema CONTPAQi Nóminas", "system", "CONTPAQi Nóminas"),
    ("Correo ana@empresa.mx", "contact_email", "ana@empresa.mx"),
])
def test_no_colon_is_accepted_when_the_value_validates(labels, line, field, value):
    assert labels.match(line) == (field, value)


@pytest.mark.parametrize("line", [
    "Serie AAAA-BBBB-CCCC-DDDD no funciona",
    "Serie AAAA-BBBB-CCCC",  # not a whole serial
    "Sistema Contabilidad y Bancos",  # not one catalogue spelling
    "Sistema Contabilidad Electronica",  # close, but only exact spellings go without a colon
    "Empresa Acme SA",  # a company has no form to check: a colon is needed
    "Correo enviado a ana@empresa.mx",
])
def test_no_colon_with_a_value_that_does_not_validate_is_prose(labels, line):
    assert labels.match(line) is None


@pytest.mark.parametrize("cell, field", [
    ("Nombre empresa", "company"),
    ("Tipo sistema", "system"),
    ("Numero de seire", "serial"),
    ("Corre electronico", "contact_email"),
])
def test_header_variants_and_typos(labels, cell, field):
    assert labels.match_header(cell) == field


def test_header_with_another_fields_word_is_no_header(labels):
    assert labels.match_header("Correo del cliente") is None
    assert labels.match_header("Nombre sistema") is None


def _rules_with(tmp_path: Path, old: str, new: str) -> Path:
    import shutil
    target = tmp_path / "rules"
    shutil.copytree(RULES_DIR, target)
    text = (target / "fields.toml").read_text(encoding="utf-8")
    assert old in text
    (target / "fields.toml").write_text(text.replace(old, new, 1), encoding="utf-8")
    return target


@pytest.mark.parametrize("old, new, message", [
    ("min_similarity = 80", "min_similarity = 40", "label_typos.min_similarity: must be at least 50"),
    ("min_similarity = 80", "min_similarity = 120", "label_typos.min_similarity: must be at most 100"),
    ("min_margin = 10", "min_margin = 0", "label_typos.min_margin: must be at least 1"),
    ("min_word_length = 5", "min_length = 5", "label_typos.min_length: unknown key"),
    ('  "Producto",\n', '  "Producto",\n  "Razon social",\n',
     "labels.system: 'Razon social' is already a label of company"),
])
def test_rules_check_refuses_bad_label_settings(tmp_path, old, new, message):
    from mailbot.errors import RulesError
    with pytest.raises(RulesError, match="fields.toml") as err:
        load_rules(_rules_with(tmp_path, old, new))
    assert message in str(err.value)


def test_shipped_label_typo_settings(rules):
    assert (rules.label_matching.min_similarity, rules.label_matching.min_margin,
            rules.label_matching.min_word_length) == (80, 10, 5)


# --- whole mails (tests/data/mail) ------------------------------------------------------------

def _read_mail(rules, name: str):
    from mailbot.config import LimitsConfig
    from mailbot.read.extract import read_mail
    path = Path(__file__).resolve().parent / "data" / "mail" / name
    return read_mail(path.read_bytes(), rules, LimitsConfig(), ["claves@example.com"])[1]


def test_a_phone_mail_with_typos_and_labels_without_colon_is_read(rules):
    got = _read_mail(rules, "labels_iphone_typos_no_colon.eml")
    assert got.problems == ()
    [request] = got.requests
    assert (request.company, request.contact_name, request.contact_email, request.system,
            request.serial) == ("Ferretería El Clavo", "Jorge Ramírez",
                                "jramirez@ferreteriaelclavo.mx", "CONTPAQ i Comercial",
                                "QW3E-R5TY-U7IO-P9AS")
    assert request.notes == ()  # the address came from "Correo ...", not from the sender


def test_label_variants_from_webmail_are_read_as_their_fields(rules):
    got = _read_mail(rules, "labels_variants_empresa_tipo_sistema.eml")
    assert got.problems == ()
    [request] = got.requests
    assert (request.company, request.contact_name, request.contact_email, request.system,
            request.serial) == ("Transportes Villa, S.C.", "Luis Villa Mendoza",
                                "lvilla@tvilla.mx", "CONTPAQ i Nóminas", "TVIL-2012-NOMI-0001")
