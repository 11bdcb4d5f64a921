"""The shortcuts issue 10 took for speed give exactly what the slow paths gave."""

from __future__ import annotations

import re

import idna
import pytest

from mailbot.addresses import normalise_domain
from mailbot.store.database import REFERENCE_ALPHABET, REFERENCE_CODE_LENGTH, new_reference


def _idna(domain: str) -> str | None:
    domain = domain.strip().rstrip(".")
    try:
        return idna.encode(domain, uts46=True).decode("ascii") if domain else None
    except (idna.IDNAError, UnicodeError):
        return None


@pytest.mark.parametrize("domain", [
    "Example.COM", "ferreteria0001.com.mx.", "a-b.mx", "-a.mx", "a-.mx", "ab--c.mx",
    "xn--aorada-wwa.mx", "xn--bad.mx", "a..b", "1.2.3.4", "a" * 63 + ".mx", "a" * 64 + ".mx",
    "foo_bar.mx", "Añorada.MX", "ｅｘａｍｐｌｅ.com", ("a" * 60 + ".") * 4 + "mx", "",
])
def test_plain_domains_skip_idna_with_the_same_answer(domain):
    assert normalise_domain.__wrapped__(domain) == _idna(domain)


def test_a_reference_code_is_drawn_from_its_alphabet_and_varies():
    codes = {new_reference("CLV", 42) for _ in range(200)}
    pattern = re.compile(rf"CLV-000042-[{REFERENCE_ALPHABET}]{{{REFERENCE_CODE_LENGTH}}}\Z")
    assert all(pattern.match(code) for code in codes)
    assert len(codes) == 200  # 31**6 codes: no repeats in 200 draws
    assert len({c[-1] for c in codes}) > 20 and len({c[-6] for c in codes}) > 20
