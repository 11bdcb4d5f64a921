"""Every rules file loads, and every mistake an admin can make is named with file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailbot.errors import RulesError
from mailbot.ruleset import load_rules

RULES = Path(__file__).resolve().parent.parent / "rules"


def test_the_shipped_rules_load():
    rules = load_rules(RULES)
    assert {k.id for k in rules.kinds} >= {"free_update", "unlock"}
    assert "CONTPAQ i Factura electrónica" in rules.catalogue.names
    assert rules.free_update.eligible_from.isoformat() == "2011-07-01"
    assert [p.price for p in rules.free_update.installation.policies] == [2500, 4000, 6500]
    assert [e.price for e in rules.free_update.installation.per_event] == [800, 1200, 1900, 2200]
    assert set(rules.labels) == {"company", "contact_name", "contact_email", "system", "serial"}


def copy_with(tmp_path: Path, name: str, old: str, new: str) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    text = (target / name).read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {name}"
    (target / name).write_text(text.replace(old, new, 1), encoding="utf-8")
    return target


@pytest.mark.parametrize("name, old, new, message", [
    ("free_update.toml", "eligible_from = 2011-07-01", 'eligible_from = "julio"',
     "eligible_from: must be a date"),
    ("free_update.toml", "price = 4000", "price = -4000", "policies[1].price: must be at least 0"),
    ("free_update.toml", "max_users = 10", "max_users = 3", "per_event[2].max_users: rows must be in increasing order"),
    ("free_update.toml", "january_discount_percent = 20", "january_discount_percent = 120",
     "january_discount_percent: must be between 0 and 100"),
    ("catalogue.toml", 'aliases = ["Bancos"]', 'aliases = ["Contabilidad"]',
     "'Contabilidad' already names 'CONTPAQ i Contabilidad'"),
    ("catalogue.toml", "min_score = 88", "min_score = 188", "min_score: must be between 0 and 100"),
    ("kinds.toml", 'id = "unlock"', 'id = "free_update"', "duplicate kind id"),
    ("fields.toml", "serial = [", "serie = [", "labels.serie: unknown key"),
    ("fields.toml", "[labels]", "[labels\n", "invalid TOML"),
])
def test_a_bad_rules_file_is_named_with_its_key(tmp_path, name, old, new, message):
    directory = copy_with(tmp_path, name, old, new)
    with pytest.raises(RulesError) as err:
        load_rules(directory)
    assert message in str(err.value)
    assert name in str(err.value)


def test_a_missing_rules_file_is_named(tmp_path):
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    (target / "catalogue.toml").unlink()
    with pytest.raises(RulesError, match="catalogue.toml: missing rules file"):
        load_rules(target)
