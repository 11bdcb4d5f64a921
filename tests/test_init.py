"""`mailbot init`: a starting installation written from the shipped defaults, never over a
file that is already there."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

import pytest

from mailbot import config as config_module
from mailbot.errors import MailbotError
from mailbot.ops import init as init_module
from mailbot.ops.cli import main
from mailbot.ops.init import CONFIG_HEADER, init, report_lines

ROOT = Path(__file__).resolve().parents[1]
RULES = sorted(p.name for p in (ROOT / "rules").iterdir() if p.is_file())
TEMPLATES = sorted(p.name for p in (ROOT / "templates").iterdir() if p.is_file())


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def settings(config: config_module.Config) -> dict:
    """Every setting, without where the config came from."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.name not in ("base_dir", "path")}


def test_the_example_config_parses_and_is_the_embedded_defaults():
    data = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    example = config_module.from_mapping(data, base_dir=ROOT)
    assert settings(example) == settings(config_module.Config())


def test_init_writes_config_rules_and_templates(tmp_path):
    site = tmp_path / "srv" / "mailbot"  # made with its parents
    result = init(site)
    assert result.kept == ()
    assert sorted(result.written) == sorted(["config.toml", *(f"rules/{n}" for n in RULES),
                                             *(f"templates/{n}" for n in TEMPLATES)])
    files = tree(site)
    assert set(files) == set(result.written)
    for name in RULES:
        assert files[f"rules/{name}"] == (ROOT / "rules" / name).read_bytes()
    for name in TEMPLATES:
        assert files[f"templates/{name}"] == (ROOT / "templates" / name).read_bytes()
    example = (ROOT / "config.example.toml").read_bytes()
    assert files["config.toml"] == CONFIG_HEADER.encode() + example
    assert not [p for p in site.rglob(".*")]  # no temporary file left


def test_the_written_config_loads_and_points_at_the_written_rules(tmp_path):
    init(tmp_path)
    config = config_module.load(tmp_path / "config.toml")
    assert settings(config) == settings(config_module.Config())
    assert config.resolve(config.bot.rules_dir) == tmp_path / "rules"
    assert config.resolve(config.bot.templates_dir) == tmp_path / "templates"
    assert config.store_url == f"sqlite:///{tmp_path / 'var' / 'mailbot.db'}"


def test_existing_files_are_kept_and_reported(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "config.toml").write_text("# mine\n", encoding="utf-8")
    (tmp_path / "rules" / "kinds.toml").write_text("# my kinds\n", encoding="utf-8")
    result = init(tmp_path)
    assert result.kept == ("config.toml", "rules/kinds.toml")
    assert "rules/catalogue.toml" in result.written and "config.toml" not in result.written
    assert (tmp_path / "config.toml").read_text(encoding="utf-8") == "# mine\n"
    assert (tmp_path / "rules" / "kinds.toml").read_text(encoding="utf-8") == "# my kinds\n"
    lines = report_lines(result, program="mailbot")
    assert "  kept  config.toml (already there; not overwritten)" in lines
    assert "  kept  rules/kinds.toml (already there; not overwritten)" in lines
    assert not any("wrote config.toml" in line for line in lines)
    assert any(line.startswith(f"  wrote rules/ ({len(RULES) - 1} file(s)") for line in lines)
    assert any(line.startswith(f"  wrote templates/ ({len(TEMPLATES)} file(s)") for line in lines)


def test_a_second_init_writes_nothing_and_says_so(tmp_path):
    init(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    result = init(tmp_path)
    assert result.written == () and len(result.kept) == 1 + len(RULES) + len(TEMPLATES)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    lines = report_lines(result, program="mailbot")
    assert "  nothing written: every file was already there" in lines
    assert (f"  kept  templates/ (all {len(TEMPLATES)} files were already there; "
            "none overwritten)") in lines


def test_the_report_gives_the_next_steps(tmp_path, monkeypatch):
    result = init(tmp_path / "site")
    lines = report_lines(result, program="mailbot")
    assert lines[0] == f"mailbot init: {tmp_path / 'site'}"
    steps = lines[lines.index("next steps:"):]
    assert any(f"edit {tmp_path / 'site' / 'config.toml'}" in s for s in steps)
    assert f"  2. mailbot --config {tmp_path / 'site' / 'config.toml'} doctor" in steps
    assert f"  3. mailbot --config {tmp_path / 'site' / 'config.toml'} run --once" in steps
    monkeypatch.chdir(tmp_path / "site")  # in the installation itself: no --config needed
    here = report_lines(init("."), program="mailbot")
    assert "  2. mailbot doctor" in here and "  3. mailbot run --once" in here


def test_the_command_prints_the_report_and_exits_0(tmp_path, capsys):
    assert main(["init", str(tmp_path / "site")]) == 0
    out = capsys.readouterr().out
    assert "wrote config.toml" in out and "next steps:" in out and "doctor" in out
    assert (tmp_path / "site" / "config.toml").is_file()


def test_the_directory_defaults_to_the_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert (tmp_path / "config.toml").is_file() and (tmp_path / "rules" / "kinds.toml").is_file()


def assert_cli_error(capsys, argv: list[str], *fragments: str) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("mailbot: error: ")
    for fragment in fragments:
        assert fragment in line


def test_a_file_in_place_of_the_directory_is_an_error(tmp_path, capsys):
    target = tmp_path / "site"
    target.write_text("not a directory")
    with pytest.raises(MailbotError, match="is not a directory"):
        init(target)
    assert_cli_error(capsys, ["init", str(target)], str(target), "is not a directory")
    assert target.read_text() == "not a directory"


def test_a_file_in_place_of_rules_fails_before_anything_is_written(tmp_path):
    (tmp_path / "rules").write_text("oops")
    with pytest.raises(MailbotError, match=r"rules: exists and is not a directory"):
        init(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rules"]


def test_a_directory_in_place_of_config_toml_is_an_error(tmp_path):
    (tmp_path / "config.toml").mkdir()
    with pytest.raises(MailbotError, match="is a directory"):
        init(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_a_directory_that_is_not_writable_is_an_error(tmp_path, monkeypatch, capsys):
    # The tests may run as root, whom file modes do not stop: the check is what is tested.
    real_access = os.access

    def access(path, mode):
        return False if Path(path) == tmp_path else real_access(path, mode)

    monkeypatch.setattr(init_module.os, "access", access)
    assert_cli_error(capsys, ["init", str(tmp_path)], str(tmp_path), "not writable")
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fails_is_one_error_line(tmp_path, monkeypatch, capsys):
    def refuse(self, data):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "write_bytes", refuse)
    assert_cli_error(capsys, ["init", str(tmp_path)], "cannot write: Permission denied")


def test_missing_shipped_defaults_fail_before_anything_is_written(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nowhere"
    real = init_module.shipped
    monkeypatch.setattr(init_module, "shipped",
                        lambda name: missing / name if name == "templates" else real(name))
    site = tmp_path / "site"
    assert_cli_error(capsys, ["init", str(site)], "templates", "reinstall mailbot")
    assert not site.exists()
