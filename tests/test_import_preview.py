"""The import preview and the import that writes exactly it (mailbot.ops.import_preview), pool
levels and the exports, on SQLite and PostgreSQL; and `mailbot registry|keys import --dry-run`,
`keys levels`, `registry export`, `keys export --issued` as users run them."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import sqlalchemy as sa
from botconfig import ROOT, write_config
from test_dry_run import every_row

from mailbot.errors import ImportError_
from mailbot.ops import import_preview as engine
from mailbot.ops import registry_files
from mailbot.ops.imports import BadRowsError
from mailbot.ops.pool_levels import levels
from mailbot.ruleset import load_rules
from mailbot.store.schema import keys as keys_table
from mailbot.store.schema import licences

RULES = load_rules(ROOT / "rules")
HEADER = "serial,system,company,contact_email,purchase_date,modality,support_until,users\n"
SAME = "AAAA-BBBB-CCCC-0001,CONTPAQ i Bancos,Igual SA,igual@example.mx,2012-01-01,fisico,,1\n"
OLD_B = "AAAA-BBBB-CCCC-0002,CONTPAQ i Bancos,Antes SA,b@example.mx,2012-01-01,fisico,,1\n"
NEW_B = "AAAA-BBBB-CCCC-0002,CONTPAQ i Bancos,Después SA,b@example.mx,2012-01-01,fisico,,3\n"
NEW_C = "AAAA-BBBB-CCCC-0003,Contabilidad,Nueva SA,,2013-05-06,electronico,2099-12-31,\n"
BAD_D = "AAAA-BBBB-CCCC-0004,CONTPAQ i Bancos,Mala SA,d@example.mx,2012-13-01,fisico,,1\n"
LONG_AGO = dt.datetime(2020, 1, 1)
NOW = dt.datetime(2026, 12, 1, 12, 0)
ZONE = ZoneInfo("America/Mexico_City")  # rules/unlock.toml's business zone


def _registry(store, text: str, *, when: dt.datetime = LONG_AGO) -> None:
    engine.commit(store, RULES, engine.REGISTRY, "seed.csv", (HEADER + text).encode(), now=when)


def _updated_at(store) -> dict[str, dt.datetime]:
    with store.transaction() as conn:
        return dict(conn.execute(sa.select(licences.c.serial, licences.c.updated_at)).all())


# --- the registry ------------------------------------------------------------------------------

def test_a_registry_preview_tells_add_change_with_old_and_new_unchanged_and_refused(store):
    _registry(store, SAME + OLD_B)
    result = engine.preview(store, RULES, engine.REGISTRY, "registro.csv",
                            (HEADER + SAME + NEW_B + NEW_C + BAD_D).encode())
    assert [(p.line, p.record.serial) for p in result.add] == [(4, "AAAA-BBBB-CCCC-0003")]
    assert result.add[0].record.system == "CONTPAQ i Contabilidad"
    [changed] = result.change
    assert (changed.line, changed.record.serial) == (3, "AAAA-BBBB-CCCC-0002")
    assert [(c.field, c.old, c.new) for c in changed.changes] == [
        ("company", "Antes SA", "Después SA"), ("users", "1", "3")]
    assert [p.record.serial for p in result.unchanged] == ["AAAA-BBBB-CCCC-0001"]
    [refused] = result.refuse
    assert (refused.line, refused.column, refused.blocking) == (5, "purchase_date", True)
    assert "is not a date" in refused.reason and refused.fix.startswith("write YYYY-MM-DD")
    assert result.blocked and result.counts() == {"add": 1, "change": 1, "unchanged": 1,
                                                  "refuse": 1}
    out = result.to_json()
    assert out["change"][0]["changes"][0] == {"field": "company", "old": "Antes SA",
                                              "new": "Después SA"}


def test_the_import_writes_exactly_the_preview_and_leaves_unchanged_licences_alone(store):
    """The old import rewrote every row of the file (updated_at too); now an unchanged
    licence is not written, a changed one gets the file's fields, a new one is added."""
    _registry(store, SAME + OLD_B)
    before = _updated_at(store)
    payload = (HEADER + SAME + NEW_B + NEW_C).encode()
    shown = engine.preview(store, RULES, engine.REGISTRY, "registro.csv", payload)
    done = engine.commit(store, RULES, engine.REGISTRY, "registro.csv", payload,
                         expected=shown.digest, now=NOW)
    assert done.digest == shown.digest
    after = _updated_at(store)
    assert after["AAAA-BBBB-CCCC-0001"] == before["AAAA-BBBB-CCCC-0001"] == LONG_AGO
    assert after["AAAA-BBBB-CCCC-0002"] == after["AAAA-BBBB-CCCC-0003"] == NOW
    with store.transaction() as conn:
        b = store.licence(conn, "AAAA-BBBB-CCCC-0002")
    assert (b.company, b.users) == ("Después SA", 3)
    again = engine.preview(store, RULES, engine.REGISTRY, "registro.csv", payload)
    assert again.counts() == {"add": 0, "change": 0, "unchanged": 3, "refuse": 0}


def test_a_file_with_a_bad_row_imports_nothing(store):
    _registry(store, OLD_B)
    rows = every_row(store)
    with pytest.raises(BadRowsError) as refused:
        engine.commit(store, RULES, engine.REGISTRY, "registro.csv",
                      (HEADER + NEW_B + NEW_C + BAD_D).encode(), now=NOW)
    assert refused.value.problems[0].startswith("line 4: purchase_date: ")
    assert every_row(store) == rows


def test_a_confirm_of_a_preview_the_store_has_outgrown_is_refused(store):
    payload = (HEADER + NEW_C).encode()
    shown = engine.preview(store, RULES, engine.REGISTRY, "registro.csv", payload)
    _registry(store, NEW_C.replace("Nueva SA", "Otra SA"))  # someone else imported meanwhile
    rows = every_row(store)
    with pytest.raises(engine.PreviewOutdated):
        engine.commit(store, RULES, engine.REGISTRY, "registro.csv", payload,
                      expected=shown.digest, now=NOW)
    assert every_row(store) == rows


def test_a_file_that_cannot_be_read_as_a_whole_is_an_error_naming_it(store):
    with pytest.raises(ImportError_, match="registro.csv: line 1: missing column users"):
        engine.preview(store, RULES, engine.REGISTRY, "registro.csv",
                       HEADER.replace(",users", "").encode())


# --- the keys ------------------------------------------------------------------------------

def _keys(store, rows: list[tuple[str, str]]) -> None:
    with store.transaction() as conn:
        store.add_keys(conn, [SimpleNamespace(system=s, key=k) for s, k in rows])


def test_a_keys_preview_adds_new_keys_and_refuses_those_in_the_pool_or_issued(store):
    _keys(store, [("CONTPAQ i Bancos", "K-GIVEN"), ("CONTPAQ i Bancos", "K-FREE"),
                  ("CONTPAQ i Comercial", "K-ELSEWHERE")])
    with store.transaction() as conn:  # the first free key of the system: K-GIVEN
        given = store.assign_key(conn, system="CONTPAQ i Bancos", serial="AAAA-BBBB-CCCC-0009")
    assert given.key == "K-GIVEN"
    payload = (b"system,key\nBancos,K-NEW\nBancos,K-GIVEN\nBancos,K-FREE\n"
               b"Bancos,K-ELSEWHERE\n")
    result = engine.preview(store, RULES, engine.KEYS, "claves.csv", payload)
    assert [(p.line, p.record.key) for p in result.add] == [(2, "K-NEW")]
    assert [(r.line, r.blocking) for r in result.refuse] == [(3, False), (4, False), (5, False)]
    reasons = [r.reason for r in result.refuse]
    assert reasons[0] == "already issued to the serial AAAA-BBBB-CCCC-0009"
    assert reasons[1] == "already in the pool, free"
    assert reasons[2] == ("already in the pool, free for CONTPAQ i Comercial, "
                          "not for CONTPAQ i Bancos")
    assert not result.blocked
    engine.commit(store, RULES, engine.KEYS, "claves.csv", payload, expected=result.digest,
                  now=NOW)
    with store.transaction() as conn:
        stored = conn.execute(sa.select(keys_table.c.key, keys_table.c.system)).all()
    assert sorted(stored) == [("K-ELSEWHERE", "CONTPAQ i Comercial"),
                              ("K-FREE", "CONTPAQ i Bancos"), ("K-GIVEN", "CONTPAQ i Bancos"),
                              ("K-NEW", "CONTPAQ i Bancos")]


def test_a_key_twice_in_the_file_is_a_blocking_refusal_naming_both_lines(store):
    payload = b"system,key\nBancos,K-1\nBancos,K-2\nComercial,K-1\n"
    result = engine.preview(store, RULES, engine.KEYS, "claves.csv", payload)
    [twice] = result.refuse
    assert (twice.line, twice.blocking) == (4, True) and "also on line 2" in twice.reason
    assert result.blocked and [p.record.key for p in result.add] == ["K-1", "K-2"]
    with pytest.raises(BadRowsError):
        engine.commit(store, RULES, engine.KEYS, "claves.csv", payload, now=NOW)
    with store.transaction() as conn:
        assert store.pool_counts(conn) == {}


def test_levels_list_every_system_of_the_catalogue_with_zero_for_an_empty_one(store):
    _keys(store, [("CONTPAQ i Bancos", "K-1"), ("CONTPAQ i Bancos", "K-2"),
                  ("Sistema retirado", "K-3")])
    with store.transaction() as conn:
        store.assign_key(conn, system="CONTPAQ i Bancos", serial="AAAA-BBBB-CCCC-0009")
        found = {level.system: level for level in levels(conn, store, RULES.catalogue,
                                                          low_stock_threshold=2)}
    assert list(found)[:len(RULES.catalogue.names)] == list(RULES.catalogue.names)
    bancos, comercial = found["CONTPAQ i Bancos"], found["CONTPAQ i Comercial"]
    assert (bancos.free, bancos.assigned, bancos.empty, bancos.low) == (1, 1, False, True)
    assert (comercial.free, comercial.assigned, comercial.empty) == (0, 0, True)
    assert not found["Sistema retirado"].in_catalogue


# --- exports -----------------------------------------------------------------------------------

FORMULAS = ("AAAA-BBBB-CCCC-0007,CONTPAQ i Bancos,\"=HYPERLINK(\"\"http://x\"\",\"\"a\"\")\","
            "e@example.mx,2012-01-01,fisico,,1\n"
            "AAAA-BBBB-CCCC-0008,CONTPAQ i Bancos,-Guion SA,+f@example.mx,2012-01-01,fisico,,\n")


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_an_exported_registry_imports_back_unchanged_with_formulas_neutralised(store, fmt):
    _registry(store, SAME + NEW_C + FORMULAS)
    with store.transaction() as conn:
        data = registry_files.registry_file(conn, fmt)
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
        assert rows[0] == list(registry_files.REGISTRY_COLUMNS)
        companies = {r[0]: r[2] for r in rows[1:]}
        assert companies["AAAA-BBBB-CCCC-0007"] == "'=HYPERLINK(\"http://x\",\"a\")"
        assert companies["AAAA-BBBB-CCCC-0008"] == "'-Guion SA"
    else:
        sheet = openpyxl.load_workbook(io.BytesIO(data)).active
        cells = {row[0].value: row[2] for row in sheet.iter_rows(min_row=2)}
        formula = cells["AAAA-BBBB-CCCC-0007"]
        assert formula.value == '=HYPERLINK("http://x","a")' and formula.data_type == "s"
        assert formula.quotePrefix and cells["AAAA-BBBB-CCCC-0008"].quotePrefix
        assert not cells["AAAA-BBBB-CCCC-0001"].quotePrefix
    again = engine.preview(store, RULES, engine.REGISTRY, f"registro.{fmt}", data)
    assert again.counts() == {"add": 0, "change": 0, "unchanged": 4, "refuse": 0}


def test_issued_keys_export_names_serial_recipient_business_time_and_reference(store):
    _keys(store, [("CONTPAQ i Bancos", "=K-1"), ("CONTPAQ i Bancos", "K-2")])
    with store.transaction() as conn:
        key = store.assign_key(conn, system="CONTPAQ i Bancos", serial="AAAA-BBBB-CCCC-0009")
        conn.execute(keys_table.update().where(keys_table.c.id == key.id)
                     .values(assigned_at=dt.datetime(2026, 12, 1, 18, 30)))
        mail = store.add_mail(conn, source="t", mail_id="1", fp="f" * 64, size=1)
        asked = SimpleNamespace(company="C", contact_name="N", contact_email="c@x.mx",
                                system="CONTPAQ i Bancos", serial="AAAA-BBBB-CCCC-0009",
                                source="body")
        request = store.add_request(conn, mail=mail.id, position=0, kind="free_update",
                                    request=asked, outcome="issued", hits=[],
                                    recipient="c@x.mx", key_id=key.id)
        store.bind_key_to_request(conn, key.id, request)
        data = registry_files.issued_file(conn, "csv", ZONE)
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows == [list(registry_files.ISSUED_COLUMNS),
                    ["CONTPAQ i Bancos", "'=K-1", "AAAA-BBBB-CCCC-0009", "c@x.mx",
                     "2026-12-01 12:30 CST", mail.reference]]


# --- the CLI -------------------------------------------------------------------------------

def mailbot(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailbot", "--config", str(config), *args],
                          cwd=config.parent, capture_output=True, text=True, timeout=120,
                          env=os.environ.copy())


def _cli_setup(store, tmp_path: Path) -> tuple[Path, Path, Path]:
    config = write_config(tmp_path, f'[store]\nurl = "{store.url}"\n')
    _registry(store, SAME + OLD_B)
    _keys(store, [("CONTPAQ i Bancos", "K-OLD")])
    registry = tmp_path / "registro.csv"
    registry.write_text(HEADER + SAME + NEW_B + NEW_C, encoding="utf-8")
    keys = tmp_path / "claves.csv"
    keys.write_text("system,key\nBancos,K-OLD\nNóminas,K-NEW\n", encoding="utf-8")
    return config, registry, keys


def test_cli_dry_runs_print_the_preview_and_write_no_row_of_any_table(store, tmp_path):
    config, registry, keys = _cli_setup(store, tmp_path)
    rows = every_row(store)
    result = mailbot(config, "registry", "import", "--dry-run", str(registry))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (f"{registry}: dry run, nothing written: licence(s): 1 to add, "
                        "1 to change, 1 unchanged, 0 refused")
    assert "  change  line 3: AAAA-BBBB-CCCC-0002: company: Antes SA -> Después SA; " \
           "users: 1 -> 3" in lines
    assert any(line.startswith("  add     line 4: AAAA-BBBB-CCCC-0003") for line in lines)
    result = mailbot(config, "keys", "import", "--dry-run", str(keys))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith("key(s): 1 to add, 1 refused")
    assert "  refuse  line 2: key: already in the pool, free; this row is skipped" \
        in result.stdout
    assert every_row(store) == rows


def test_cli_dry_run_json_and_a_bad_file_exit_2_writing_nothing(store, tmp_path):
    config, registry, _keys_file = _cli_setup(store, tmp_path)
    rows = every_row(store)
    result = mailbot(config, "registry", "import", "--dry-run", "--json", str(registry))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["dry_run"] is True and out["counts"] == {"add": 1, "change": 1, "unchanged": 1,
                                                         "refuse": 0}
    assert out["change"][0]["changes"][1] == {"field": "users", "old": "1", "new": "3"}
    registry.write_text(HEADER + NEW_C + BAD_D, encoding="utf-8")
    bad = mailbot(config, "registry", "import", "--dry-run", "--json", str(registry))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith(f"mailbot: error: {registry}: 1 row(s) are wrong")
    [refused] = json.loads(bad.stdout)["refuse"]
    assert (refused["line"], refused["column"], refused["blocking"]) == (3, "purchase_date", True)
    assert every_row(store) == rows
    real = mailbot(config, "registry", "import", str(registry))
    assert real.returncode == 2 and "line 3: purchase_date" in real.stderr
    assert every_row(store) == rows


def test_cli_import_levels_and_exports_round_trip(store, tmp_path):
    config, registry, keys = _cli_setup(store, tmp_path)
    result = mailbot(config, "registry", "import", str(registry))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (f"{registry}: licence(s): 1 added, 1 changed, "
                                             "1 unchanged, 0 refused")
    assert mailbot(config, "keys", "import", str(keys)).returncode == 0
    levels_out = mailbot(config, "keys", "levels", "--json")
    found = {line["system"]: line for line in map(json.loads, levels_out.stdout.splitlines())}
    assert set(found) == set(RULES.catalogue.names)
    assert found["CONTPAQ i Nóminas"]["free"] == 1 and found["Aspel FACTURE"]["empty"] is True
    text = mailbot(config, "keys", "levels").stdout
    assert "EMPTY: requests for it wait until keys are imported" in text
    for fmt in ("csv", "xlsx"):
        out = tmp_path / f"export.{fmt}"
        assert mailbot(config, "registry", "export", "--format", fmt, "-o",
                       str(out)).returncode == 0
        again = json.loads(mailbot(config, "registry", "import", "--dry-run", "--json",
                                   str(out)).stdout)
        assert again["counts"] == {"add": 0, "change": 0, "unchanged": 3, "refuse": 0}
    issued = mailbot(config, "keys", "export", "--issued")
    assert issued.returncode == 0
    assert issued.stdout.lstrip("\ufeff").splitlines() == [",".join(
        registry_files.ISSUED_COLUMNS)]
