"""Previews and `templates check` use the admin's rules files, not prices copied into code."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailbot.answer.preview import preview
from mailbot.answer.render import Renderer
from mailbot.answer.samples import (
    SAMPLE_JANUARY,
    SAMPLE_TODAY,
    sample_contexts,
    sample_installation,
)
from mailbot.decide.free_update import installation_offer
from mailbot.ruleset import Ruleset, load_rules

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(ROOT / "templates")


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    """A private copy of rules/ that a test may edit."""
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_preview_prices_come_from_the_rules_file(renderer, rules_copy):
    edit(rules_copy / "free_update.toml", 'name = "Semestral"\nprice = 4000',
         'name = "Semestral"\nprice = 4400')
    edit(rules_copy / "free_update.toml", "max_users = 5\nprice = 1200",
         "max_users = 5\nprice = 1350")
    edit(rules_copy / "free_update.toml", 'phone = "5141-5110"', 'phone = "5555-0199"')
    rules = load_rules(rules_copy)

    march = preview(renderer, "keys_issued", rules, "sin póliza, marzo")
    assert "$4,400.00" in march and "$4,000.00" not in march
    assert "$1,350.00" in march and "$1,200.00" not in march
    january = preview(renderer, "keys_issued", rules, "sin póliza, enero")
    assert "$3,520.00" in january  # the rules' 20% January discount, on the new price
    supported = preview(renderer, "keys_issued", rules, "con póliza vigente")
    assert "5555-0199" in supported and "5141-5110" not in supported


def test_preview_texts_come_from_the_unlock_rules_file(renderer, rules_copy):
    edit(rules_copy / "unlock.toml", "¿Cómo puedo identificar la serie y su modalidad",
         "¿Dónde encuentro la serie y su modalidad")
    edit(rules_copy / "unlock.toml", 'label = "Licenciamiento físico"',
         'label = "Licencia en caja"')
    edit(rules_copy / "unlock.toml", 'document_types = ["pdf", "jpg", "jpeg", "png"]',
         'document_types = ["pdf", "png"]')
    rules = load_rules(rules_copy)

    text = preview(renderer, "documents_needed", rules, "licencia física")
    assert "¿Dónde encuentro la serie" in text
    assert "Licencia en caja" in text
    assert rules.unlock is not None
    assert rules.unlock.modalities["fisico"].documents_required.split()[-1] in text
    received = preview(renderer, "documents_received", rules, "con un archivo no aceptado")
    assert "PDF o PNG" in received


def test_every_template_checks_without_unlock_rules(renderer, rules_copy):
    (rules_copy / "unlock.toml").unlink()
    assert renderer.check(load_rules(rules_copy)) == []


def test_sample_rows_stay_on_their_side_of_the_eligibility_date(rules_copy):
    edit(rules_copy / "free_update.toml", "eligible_from = 2011-07-01",
         "eligible_from = 2013-02-01")
    rules = load_rules(rules_copy)
    for name in ("not_eligible", "results", "keys_issued"):
        for label, context in sample_contexts(name, rules).items():
            assert context["eligible_from"] == dt.date(2013, 2, 1)
            for row in context["rows"]:
                bought = row["purchase_date"]
                if bought is None:
                    continue
                eligible = bought >= context["eligible_from"]
                assert eligible == (row["outcome"] != "not_eligible"), (name, label)


@dataclass(frozen=True)
class _Licence:
    support_until: dt.date | None
    users: int | None


@pytest.mark.parametrize("has_support, today, users", [
    (True, SAMPLE_TODAY, 2),
    (False, SAMPLE_TODAY, 5),
    (False, SAMPLE_JANUARY, 10),
    (True, SAMPLE_JANUARY, 20),
    (False, SAMPLE_TODAY, None),
    (False, SAMPLE_TODAY, 35),
])
def test_sample_installation_is_what_the_free_update_rules_offer(has_support, today, users):
    """A preview shows the installation section the decision would give the same licence."""
    rules: Ruleset = load_rules(ROOT / "rules")
    support_until = dt.date(today.year, 12, 31) if has_support else None
    offer = installation_offer(rules.free_update.installation, _Licence(support_until, users),
                               today)
    assert sample_installation(rules, has_support=has_support, today=today, users=users) == offer
