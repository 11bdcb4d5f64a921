"""Issue 12 §4: the checks an admin runs before going live name every mistake at once, and
`mailbot run` does not start on rules or templates it could not use. Real processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from botconfig import ROOT, write_config
from test_cli import assert_clean_error, mailbot

BROKEN_RULES = {
    "free_update.toml": [("eligible_from = 2011-07-01", 'eligible_from = "2011-07-01"'),
                         ("price = 4000", 'price = "$4,000"')],
    "catalogue.toml": [('aliases = ["Bancos"]', 'aliases = ["Bancos", "nominas"]')],
    "unlock.toml": [("period_days = 365", 'period_days = "365"')],
}
FIXES = [
    "free_update.toml: eligible_from: must be a date, not text '2011-07-01'; remove the quotes "
    "around the date: write 2011-07-01 (line 5)",
    "free_update.toml: installation.policies[1].price: must be a number, not text '$4,000'; "
    "remove the quotes, the $ and the commas: write 4000 (line 21)",
    "catalogue.toml: system[3].aliases: 'nominas' already names 'CONTPAQ i Nóminas' (its alias "
    "'Nóminas'), system[2]",
    "unlock.toml: period_days: must be a whole number, not text '365'; remove the quotes: "
    "write 365 (line 20)",
]


def broken_rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", target)
    for name, edits in BROKEN_RULES.items():
        text = (target / name).read_text(encoding="utf-8")
        for old, new in edits:
            assert old in text
            text = text.replace(old, new, 1)
        (target / name).write_text(text, encoding="utf-8")
    return target


def local_bot(tmp_path: Path, *, rules: Path = ROOT / "rules",
              templates: Path = ROOT / "templates") -> Path:
    config = write_config(tmp_path, '[source]\npath = "inbox"\n[sink]\npath = "outbox"\n'
                                    '[store]\nurl = "sqlite:///mailbot.db"\n', rules=rules)
    text = config.read_text(encoding="utf-8").replace(
        f'templates_dir = "{ROOT / "templates"}"', f'templates_dir = "{templates}"')
    config.write_text(text, encoding="utf-8")
    for sub in ("new", "cur", "tmp"):
        (tmp_path / "inbox" / sub).mkdir(parents=True, exist_ok=True)
    (tmp_path / "inbox" / "new" / "m1").write_bytes(
        b"From: raul@example.com\r\nTo: claves@example.com\r\nSubject: Actualizacion\r\n"
        b"Message-ID: <m1@example.com>\r\n\r\nHola\r\n")
    return config


def test_rules_check_names_every_problem_with_its_line_and_fix(tmp_path):
    config = local_bot(tmp_path, rules=broken_rules(tmp_path))
    result = mailbot("--config", str(config), "rules", "check")
    assert_clean_error(result)
    lines = result.stderr.splitlines()
    assert lines[0] == (f"mailbot: error: {len(FIXES)} problems in the rules; fix each, then "
                        "run `mailbot rules check` again:")
    for fix in FIXES:
        assert any(line.startswith(f"  {tmp_path / 'rules'}/") and fix in line
                   for line in lines[1:]), (fix, lines)
    assert len(lines) == 1 + len(FIXES)


def test_rules_check_passes_on_the_shipped_rules_and_the_demo(tmp_path):
    assert mailbot("rules", "check").returncode == 0
    demo = mailbot("demo", "--dir", str(tmp_path / "demo"))
    assert demo.returncode == 0, demo.stderr
    configs = sorted((tmp_path / "demo").rglob("config.toml"))
    assert configs
    checked = mailbot("--config", str(configs[0]), "rules", "check")
    assert checked.returncode == 0, checked.stderr
    assert "OK" in checked.stdout


@pytest.mark.parametrize("command", [("run", "--once"), ("run",)])
def test_run_refuses_invalid_rules_naming_every_problem(tmp_path, command):
    config = local_bot(tmp_path, rules=broken_rules(tmp_path))
    result = subprocess.run([sys.executable, "-m", "mailbot", "--config", str(config), *command],
                            capture_output=True, text=True, timeout=60)
    assert_clean_error(result, *FIXES)
    assert sorted(p.name for p in (tmp_path / "inbox" / "new").iterdir()) == ["m1"]
    assert not (tmp_path / "outbox").exists() and not (tmp_path / "mailbot.db").exists()


def copy_templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", target)
    return target


@pytest.mark.parametrize("lost, message", [
    ("keys_issued.html.j2", "missing: template 'keys_issued' has its text part "
                            "(keys_issued.txt.j2) but not its HTML part"),
    ("not_eligible.txt.j2", "HTML part without a text part (not_eligible.txt.j2)"),
])
def test_templates_check_fails_when_a_template_lost_a_part(tmp_path, lost, message):
    templates = copy_templates(tmp_path)
    (templates / lost).unlink()
    config = local_bot(tmp_path, templates=templates)
    result = mailbot("--config", str(config), "templates", "check")
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    named = [line for line in result.stdout.splitlines() if message in line]
    assert len(named) == 1, result.stdout
    stem = lost.split(".")[0]
    assert named[0].startswith(f"{templates / stem}."), named[0]


def test_run_refuses_to_start_when_a_template_lost_its_html_part(tmp_path):
    templates = copy_templates(tmp_path)
    (templates / "under_review.html.j2").unlink()
    config = local_bot(tmp_path, templates=templates)
    result = mailbot("--config", str(config), "run", "--once")
    assert_clean_error(result, str(templates / "under_review.html.j2"), "missing",
                       "mailbot templates check")
    assert sorted(p.name for p in (tmp_path / "inbox" / "new").iterdir()) == ["m1"]


def test_doctor_lists_every_rules_problem_as_a_fault(tmp_path):
    config = local_bot(tmp_path, rules=broken_rules(tmp_path))
    result = mailbot("--config", str(config), "doctor")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    faults = [line for line in result.stdout.splitlines() if line.startswith("FAULT  rules: ")]
    assert len(faults) == len(FIXES), result.stdout
    for fix in FIXES:
        assert any(fix in line for line in faults), (fix, faults)
    assert any(line.startswith("FAULT  templates: not rendered") for line in
               result.stdout.splitlines()), result.stdout
