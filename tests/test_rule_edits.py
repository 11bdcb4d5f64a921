"""Writing the rules page's values into rules/*.toml (mailbot.ops.rule_edits): only the keys that
change are touched, so the admin's comments and layout survive; money keeps its cents; what is
written passes the same check `mailbot rules check` runs."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from botconfig import ROOT

from mailbot.ops import rule_edits
from mailbot.run.versions import folder_files

RULES = ROOT / "rules"


def _files() -> dict[str, bytes]:
    return folder_files(RULES, ".toml")


def _changed(old: dict[str, bytes], new: dict[str, bytes]) -> list[str]:
    return sorted(p for p in new if new[p] != old.get(p))


def test_the_values_written_back_unchanged_leave_every_file_byte_for_byte():
    files = _files()
    assert rule_edits.written(files, rule_edits.values(files)) == files


def test_a_price_with_cents_is_written_with_its_two_decimals_and_the_comments_kept():
    files = _files()
    values = rule_edits.values(files)
    values.policies[0].price = Decimal("2500.50")
    new = rule_edits.written(files, values)
    assert _changed(files, new) == ["free_update.toml"]
    text = new["free_update.toml"].decode("utf-8")
    assert 'name = "Trimestral"\nprice = 2500.50\n' in text
    old_lines = files["free_update.toml"].decode("utf-8").splitlines()
    assert [line for line in old_lines if line.startswith("#")] == \
        [line for line in text.splitlines() if line.startswith("#")]
    assert rule_edits.check(new, RULES, ROOT / "templates") == []


def test_another_unlock_policy_rewrites_its_entry_in_the_files_style():
    files = _files()
    values = rule_edits.values(files)
    first = values.unlock.modalities[0].unlocks[0]
    assert (first.policy, first.low, first.high) == ("auto", 10, 15)
    first.policy, first.low, first.high = "review", 4, 24.5
    text = rule_edits.written(files, values)["unlock.toml"].decode("utf-8")
    assert "1 = { policy = \"review\", min_hours = 4, max_hours = 24.5 }" in text


def test_a_system_removed_and_one_added_keep_the_other_entries_as_written():
    files = _files()
    values = rule_edits.values(files)
    del values.systems[3]
    values.systems.append(rule_edits.SystemRow("Aspel SAE", ["SAE"]))
    text = rule_edits.written(files, values)["catalogue.toml"].decode("utf-8")
    assert "CONTPAQ i Bancos" not in text
    assert text.endswith('\n\n[[system]]\nname = "Aspel SAE"\naliases = ["SAE"]\n')
    assert text.startswith(files["catalogue.toml"].decode("utf-8")[:300])


def test_a_bad_folder_is_refused_with_the_real_files_name_and_line(tmp_path: Path):
    files = _files()
    values = rule_edits.values(files)
    values.per_event[1].max_users = 1  # below the row before: the loader refuses the order
    problems = rule_edits.check(rule_edits.written(files, values), tmp_path / "reglas", None)
    assert len(problems) == 1
    assert re.match(rf"{tmp_path / 'reglas' / 'free_update.toml'}: "
                    r"installation\.per_event\[1\]\.max_users: .* \(line \d+\)", problems[0])


def test_business_hours_left_out_of_the_file_are_shown_as_the_bots_defaults():
    files = _files()
    text = files["unlock.toml"].decode("utf-8")
    files["unlock.toml"] = re.sub(r"\[business_hours\.days\].*?domingo = \"\"\n", "", text,
                                  flags=re.S).encode("utf-8")
    values = rule_edits.values(files)
    assert values.unlock.days["lunes"] == "09:00-18:00" and values.unlock.days["sabado"] == ""
    assert rule_edits.written(files, values) == files  # nothing to write for the defaults
    values.unlock.days["sabado"] = "09:00-13:00"
    new = rule_edits.written(files, values)
    assert 'sabado = "09:00-13:00"' in new["unlock.toml"].decode("utf-8")
    assert rule_edits.check(new, RULES, None) == []
