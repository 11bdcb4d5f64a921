"""A config.toml for a test bot that uses the project's own rules and templates."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_config(directory: Path, sections: str = "", *,
                 operators: tuple[str, ...] = ("operadores@example.com",)) -> Path:
    """Write `directory/config.toml`: our address, operators, rules and templates, plus
    `sections` (more TOML tables: source, sink, store, security...)."""
    path = directory / "config.toml"
    path.write_text(f"""
[mailbot]
address = "claves@example.com"
operators = {json.dumps(list(operators))}
rules_dir = {json.dumps(str(ROOT / "rules"))}
templates_dir = {json.dumps(str(ROOT / "templates"))}
{sections}
""", encoding="utf-8")
    return path
