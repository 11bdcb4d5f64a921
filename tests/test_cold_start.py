"""Cold start (issue 10, §4): what each command imports, and the cheap schema check.

Behaviour, not timing: the whole-process times are benchmarks/cold_start.py's. Each test runs
the command in a fresh interpreter and reads back which top-level packages it imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from mailbot.store import schema_version
from mailbot.store.database import MIGRATIONS, Store

ROOT = Path(__file__).resolve().parent.parent
SEED_MAIL = ROOT / "tests" / "data" / "mail" / "seed_example_plain_utf8.eml"
HEAVY = ("sqlalchemy", "alembic", "mako", "jinja2", "holidays", "argon2", "fastapi",
         "uvicorn", "openpyxl", "mailparser", "apscheduler", "mailbot.run.pipeline",
         "mailbot.store")

_PROBE = """
import json, runpy, sys
sys.argv = ["mailbot", *json.loads(sys.argv[1])]
try:
    runpy.run_module("mailbot", run_name="__main__")
except SystemExit as exit_:
    code = exit_.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def imported_by(*args: str, cwd: Path) -> set[str]:
    """The modules `mailbot ARGS` imported (it must exit 0)."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    result = json.loads(proc.stderr.strip().splitlines()[-1])
    assert result["code"] in (0, None), proc.stderr
    return set(result["modules"])


def heavy(modules: set[str]) -> set[str]:
    return {h for h in HEAVY if any(m == h or m.startswith(h + ".") for m in modules)}


def test_help_imports_nothing_heavy(tmp_path):
    modules = imported_by("--help", cwd=tmp_path)
    assert "mailbot.ops.cli" in modules  # the probe did run the command
    assert heavy(modules) == set()


@pytest.mark.parametrize("command", [["review", "--help"], ["users", "add", "--help"],
                                     ["web", "--help"], ["log", "--help"]])
def test_a_sub_commands_help_imports_nothing_heavy(command, tmp_path):
    assert heavy(imported_by(*command, cwd=tmp_path)) == set()


def test_parse_needs_neither_the_store_nor_the_templates_nor_the_holidays(tmp_path):
    modules = imported_by("parse", str(SEED_MAIL), cwd=tmp_path)
    assert "mailbot.read.extract" in modules and "mailparser" in modules
    assert heavy(modules) - {"mailparser", "openpyxl"} == set()


def test_run_once_on_a_current_store_does_not_import_alembic(tmp_path):
    first = imported_by("run", "--once", cwd=tmp_path)  # creates the store: Alembic runs
    assert "alembic" in first
    again = imported_by("run", "--once", cwd=tmp_path)
    assert "sqlalchemy" in again and "alembic" not in again and "mako" not in again


# --- the cheap schema check -------------------------------------------------------------------

def test_the_head_is_the_newest_migration_file():
    scripts = sorted(p.name for p in (MIGRATIONS / "versions").glob("0*.py"))
    assert schema_version.head_revision(MIGRATIONS / "versions") == scripts[-1].split("_")[0]


def test_a_store_behind_the_head_is_upgraded(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'behind.db'}")
    store.migrate()
    head = schema_version.head_revision(MIGRATIONS / "versions")
    store.downgrade("0005")
    assert not schema_version.is_current(store.engine, MIGRATIONS / "versions")

    store.migrate()

    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head
        assert "assigned_to" in {c["name"] for c in sa.inspect(conn).get_columns("reviews")}
    assert schema_version.is_current(store.engine, MIGRATIONS / "versions")


def test_an_empty_or_new_store_is_not_current(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'new.db'}")
    assert not schema_version.is_current(store.engine, MIGRATIONS / "versions")


def _versions(tmp_path: Path, *scripts: str) -> Path:
    folder = tmp_path / "versions"
    folder.mkdir(parents=True)
    for n, text in enumerate(scripts):
        (folder / f"{n:04d}_x.py").write_text(text)
    return folder


def test_a_history_that_is_not_plain_leaves_the_decision_to_alembic(tmp_path):
    merge = _versions(tmp_path, "revision = 'a'\ndown_revision = None\n",
                      "revision = 'b'\ndown_revision = 'a'\n",
                      "revision = 'c'\ndown_revision = 'a'\n",
                      "revision = 'd'\ndown_revision = ('b', 'c')\n")
    assert schema_version.head_revision(merge) is None
    assert schema_version.head_revision(_versions(tmp_path / "two", *[
        "revision = 'a'\ndown_revision = None\n", "revision = 'b'\ndown_revision = 'a'\n",
        "revision = 'c'\ndown_revision = 'a'\n"])) is None
    assert schema_version.head_revision(_versions(tmp_path / "ok", *[
        'revision: str = "a"\ndown_revision = None\n',
        'revision: str = "b"\ndown_revision: str | None = "a"\n'])) == "b"
