"""The shortcuts that make a 10,000-row list cheap read exactly what the long way reads.

A sheet's every row is tried as a header, its every system, address and serial checked: the
shortcuts (a row matched cell by cell only when three cells could start a label, a cell refused
on its first plain word, plain addresses and serials taken as they are, systems cached per
spelling) must never change a result. Each is compared here with the long way on cells built
from the shipped labels, typos, bullets, accents and the values of real lists.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mailbot.config import LimitsConfig
from mailbot.read.extract import extract_sheet
from mailbot.read.fields import LabelMatcher, SystemMatcher, find_serials, parse_email
from mailbot.read.sheet_rows import header_columns
from mailbot.ruleset import load_rules

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"


class _Folding(LabelMatcher):
    """The matcher without the first-word shortcut: every text is folded and matched."""

    def could_name(self, text: str) -> bool:
        return True


@pytest.fixture(scope="module")
def rules():
    return load_rules(RULES_DIR)


@pytest.fixture(scope="module")
def matchers(rules):
    systems = SystemMatcher(rules.catalogue)
    return (LabelMatcher(rules.labels, rules.label_matching, systems),
            _Folding(rules.labels, rules.label_matching, systems))


def _cells(rules, count: int) -> list[str]:
    """Label-like and value-like cells: spellings, typos, bullets, accents, names, addresses."""
    words = [w for spellings in rules.labels.values() for s in spellings for w in s.split()]
    words += ["contaco", "sitema", "seire", "Cliente", "S.A.", "de", "C.V.", "Juan", "Pérez",
              "AAAA-BBBB-CCCC-DDDD", "ventas@cliente.com.mx", "N°", "Nº", "(actual)", "a)",
              "1.", "•", "**", "12", "2024", "CONTPAQ", "i", "Nóminas", "Ñandú", "ß", "x" * 45]
    separators = [" ", "", ": ", " - ", "  ", "\t", " (", ")", "é", "\n", "@", "."]
    rnd = random.Random(11)
    cells = []
    for _ in range(count):
        parts = [rnd.choice(words) + rnd.choice(separators) for _ in range(rnd.randint(1, 4))]
        cells.append("".join(parts).strip(" "))
    return cells


def test_the_first_word_shortcut_decides_every_cell_as_folding_would(rules, matchers):
    fast, folding = matchers
    cells = _cells(rules, 20_000)
    for cell in cells:
        assert fast.match_header(cell) == folding.match_header(cell), cell
        assert fast.match(cell) == folding.match(cell), cell
    refused = sum(not fast.could_name(c) for c in cells)
    assert refused > len(cells) // 10  # the shortcut is taken, not only ever passed


@pytest.mark.parametrize("cell", ["Empresa", "EMPRESA", "Razón social", "No de serie",
                                  "Número de serie", "N° de serie", "• Serie", "1. Sistema",
                                  "**Correo**", "a) Contacto", "Contaco", "Sitema"])
def test_every_way_of_writing_a_label_may_name_a_field(matchers, cell):
    fast, _ = matchers
    assert fast.could_name(cell)
    assert fast.match_header(cell) is not None


@pytest.mark.parametrize("cell", ["Farmacia Lopez, S.A. de C.V.", "ventas@cliente.com.mx",
                                  "RSLR-0001-0002-ABCD", "CONTPAQ i Nóminas", "Juan", "12345"])
def test_the_values_of_a_list_name_no_field(matchers, cell):
    fast, _ = matchers
    assert not fast.could_name(cell)


def test_a_data_row_is_no_header_and_a_header_row_is(matchers):
    fast, _ = matchers
    assert header_columns(("1", "Cliente 1, S.A.", "Juan Pérez", "juan@cliente.mx",
                           "CONTPAQ i Nóminas", "AAAA-BBBB-CCCC-DDDD"), fast) == {}
    assert header_columns(("No.", "Razón social", "Contacto", "Correo electrónico",
                           "Tipo sistema", "No de serie"), fast) == {
        "company": 1, "contact_name": 2, "contact_email": 3, "system": 4, "serial": 5}


def _serial(i: int) -> str:
    return f"RSLR-{i // 10000:04d}-{i % 10000:04d}-ABCD"


def test_a_second_list_far_down_a_big_sheet_is_read_with_its_own_columns(rules):
    lines = ["Lista de clientes 2026", "",
             "Empresa,Contacto,Correo,Sistema,Serie"]
    lines += [f"Cliente {i},Contacto {i},c{i}@cliente.mx,CONTPAQ i Nóminas,{_serial(i)}"
              for i in range(3000)]
    lines += ["", "Serie,Sistema,Correo,Contacto,Empresa"]
    lines += [f"{_serial(i)},Contabilidad,d{i}@otro.mx,Otra {i},Otra empresa {i}"
              for i in range(3000, 3500)]
    requests, problems = extract_sheet("lista.csv", "\n".join(lines).encode(), rules,
                                       LimitsConfig())
    assert problems == []
    assert len(requests) == 3500
    first, second = requests[0], requests[-1]
    assert (first.company, first.contact_email, first.serial) == (
        "Cliente 0", "c0@cliente.mx", _serial(0))
    assert (second.company, second.contact_name, second.contact_email, second.serial) == (
        "Otra empresa 3499", "Otra 3499", "d3499@otro.mx", _serial(3499))
    assert first.system == SystemMatcher(rules.catalogue).match("CONTPAQ i Nóminas")
    assert second.system == SystemMatcher(rules.catalogue).match("Contabilidad")
    assert second.system is not None


@pytest.mark.parametrize("written, address", [
    ("Ventas@Cliente.com.MX", "ventas@cliente.com.mx"),
    ("juan.perez+licencias@cliente-uno.mx", "juan.perez+licencias@cliente-uno.mx"),
    ("a@b.c", None),
    ("-x@b.com", "-x@b.com"),
    ("x.@b.com", None),
    ("x..y@b.com", None),
    ("x@-b.com", None),
    ("x@b-.com", None),
    ("'x'@b.com", "x'@b.com"),
    ("x" * 250 + "@b.com", None),
])
def test_plain_addresses_read_as_the_unwrapping_reads_them(written, address):
    assert parse_email(written) == address


@pytest.mark.parametrize("written, serials", [
    ("abcd-EFGH-1234-zzzz", ["ABCD-EFGH-1234-ZZZZ"]),
    ("abcd-EFGH-1234-zzz", []),
    ("ABCD-1234-5678-9012-", ["ABCD-1234-5678-9012"]),
    ("ABCD-1234-5678-9012-3456", []),
])
def test_plain_serials_read_as_the_word_by_word_reading_reads_them(written, serials):
    assert find_serials(written) == serials


def test_systems_are_remembered_per_spelling_within_a_bound(rules):
    systems = SystemMatcher(rules.catalogue)
    first = systems.explain("contpaq nominas")
    assert first[0] is not None
    assert systems.explain("contpaq nominas") == first
    for i in range(6000):
        systems.explain(f"sistema {i}")
    assert len(systems._explained) <= 4097
    assert systems.explain("contpaq nominas") == first
