"""rules/reading.toml (forward markers, the notes, the plain-text stubs): loaded, validated with
file and key named, and read from the shipped rules when an older rules directory lacks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailbot.errors import RulesError
from mailbot.reading_rules import fold_marker
from mailbot.ruleset import load_rules

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"


def copy_with(tmp_path: Path, old: str, new: str) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    path = target / "reading.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return target


def test_the_shipped_reading_rules_load():
    reading = load_rules(RULES).reading
    clients = {m.client for m in reading.forwards}
    assert {"Gmail", "Thunderbird", "iOS / Apple Mail"} <= clients
    assert reading.header_block_client == "Outlook"
    assert "{client}" in reading.forward_note
    assert "este mensaje requiere un cliente html" in reading.plain_stubs


@pytest.mark.parametrize("old, new, message", [
    ('phrase = "forwarded message"', 'phrase = "---"', "forwards[0].phrase: has no words"),
    ('client = "Gmail"', 'client = ""', "forwards[0].client: must not be empty"),
    ("min_dashes = 10", "min_dashes = -1", "forwards[0].min_dashes: must be at least 0"),
    ('forward_note = "reenvío ({client})', 'forward_note = "reenvío (',
     "forward_note: must contain {client}"),
    ('html_note = "el texto', 'html_note = "{otro} el texto', "html_note: may hold only"),
    ("[[forwards]]\nphrase", "[[forwards]]\nfrase = 1\nphrase", "forwards[0].frase: unknown key"),
    ("plain_stubs = [", "plain_stub = [", "plain_stub: unknown key"),
])
def test_a_mistake_in_reading_toml_is_named_with_its_key(tmp_path, old, new, message):
    with pytest.raises(RulesError) as err:
        load_rules(copy_with(tmp_path, old, new))
    assert message in str(err.value)
    assert "reading.toml" in str(err.value)


def test_rules_check_refuses_a_bad_reading_toml(tmp_path):
    directory = copy_with(tmp_path, 'client = "Gmail"', 'client = ""')
    config = tmp_path / "config.toml"
    config.write_text(f"[mailbot]\nrules_dir = \"{directory}\"\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "mailbot", "--config", str(config),
                             "rules", "check"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0
    assert "reading.toml" in result.stderr


def test_a_rules_directory_without_reading_toml_reads_the_shipped_one(tmp_path):
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    (target / "reading.toml").unlink()
    assert load_rules(target).reading == load_rules(RULES).reading


def test_markers_are_compared_without_case_accents_dashes_or_colon():
    assert fold_marker("---------- Mensaje Reenviado ---------") == "mensaje reenviado"
    assert fold_marker("Inicio del mensaje reenviado:") == "inicio del mensaje reenviado"
    assert fold_marker("Begin  Forwarded\tMessage:") == "begin forwarded message"
