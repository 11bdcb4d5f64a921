"""Configuration: embedded defaults, the documented example, and one-line errors."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from mailbot import config
from mailbot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_without_a_file_the_embedded_defaults_need_no_server(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = config.load(None)
    assert (c.source.type, c.sink.type) == ("maildir", "files")
    assert c.store_url == f"sqlite:///{tmp_path}/var/mailbot.db"


def test_the_example_documents_every_setting_with_its_default():
    data = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    loaded = config.load(ROOT / "config.example.toml")
    defaults = config.Config()
    for name, (attr, cls) in config._SECTIONS.items():
        documented = set(data[name])
        assert documented == {f.name for f in dataclasses.fields(cls)}, name
        assert getattr(loaded, attr) == getattr(defaults, attr), name


def test_relative_paths_follow_the_config_file(tmp_path):
    (tmp_path / "c.toml").write_text('[source]\npath = "in"\n')
    c = config.load(tmp_path / "c.toml")
    assert c.resolve(c.source.path) == tmp_path / "in"


@pytest.mark.parametrize("text, message", [
    ("[nope]\n", "unknown section [nope]"),
    ("[limits]\nmax_rows = \"5\"\n", "[limits] max_rows must be a whole number"),
    ("[limits]\nmax_rows = 0\n", "[limits] max_rows must be greater than zero"),
    ("[source]\ntype = \"pop3\"\n", "[source] type must be"),
    ("[source]\ntype = \"imap\"\n", "[imap] host is not set"),
    ("[mailbot]\ntimezone = \"Mars/Base\"\n", "not a known time zone"),
    ("[imap]\nsecurity = \"ssl\"\n", "[imap] security must be"),
    ("[mailbot\n", "invalid TOML"),
])
def test_mistakes_are_named_in_one_line(tmp_path, text, message):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        config.load(tmp_path / "absent.toml")
