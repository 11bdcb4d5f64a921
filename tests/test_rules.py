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


# --- issue 12 §4: every problem in one run, the fix in words, prices with cents, clashes ------

def break_files(tmp_path: Path, edits: dict[str, list[tuple[str, str]]]) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    for name, pairs in edits.items():
        text = (target / name).read_text(encoding="utf-8")
        for old, new in pairs:
            assert old in text, f"{old!r} not in {name}"
            text = text.replace(old, new, 1)
        (target / name).write_text(text, encoding="utf-8")
    return target


def line_of_text(path: Path, fragment: str) -> int:
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if fragment in line)


def test_every_problem_of_the_folder_is_reported_in_one_run(tmp_path):
    directory = break_files(tmp_path, {
        "free_update.toml": [("eligible_from = 2011-07-01", 'eligible_from = "2011-07-01"'),
                             ("price = 4000", 'price = "4000"'),
                             ("max_users = 10", "max_users = 3")],
        "catalogue.toml": [("min_score = 88", "min_score = 188")],
        "kinds.toml": [('id = "unlock"', 'id = "free_update"')],
        "unlock.toml": [("period_days = 365", 'period_days = "365"'),
                        ('2 = { policy = "review"', '2 = { policy = "revisar"')],
    })
    with pytest.raises(RulesError) as err:
        load_rules(directory)
    lines = [str(p) for p in err.value.problems]
    free = directory / "free_update.toml"
    expected = [
        (directory / "kinds.toml", "duplicate kind id 'free_update'"),
        (directory / "catalogue.toml", "min_score: must be between 0 and 100"),
        (free, "eligible_from: must be a date"),
        (free, "installation.policies[1].price: must be a number"),
        (free, "installation.per_event[2].max_users: rows must be in increasing order"),
        (directory / "unlock.toml", "unlocks.2.policy: unknown policy 'revisar'"),
        (directory / "unlock.toml", "period_days: must be a whole number"),
    ]
    for path, fragment in expected:
        assert any(line.startswith(f"{path}: ") and fragment in line for line in lines), \
            (fragment, lines)
    assert len(lines) == len(expected), lines
    assert str(err.value) == "\n".join(lines)  # `run` refuses the folder with all of them
    assert f"(line {line_of_text(free, 'eligible_from =')})" in lines[2]


@pytest.mark.parametrize("name, old, new, key, fix", [
    ("free_update.toml", "eligible_from = 2011-07-01", 'eligible_from = "2011-07-01"',
     "eligible_from", "remove the quotes around the date: write 2011-07-01"),
    ("free_update.toml", "eligible_from = 2011-07-01", 'eligible_from = "1/7/2011"',
     "eligible_from", "write it year-month-day without quotes: 2011-07-01"),
    ("free_update.toml", "price = 2500", 'price = "2500"',
     "installation.policies[0].price", "remove the quotes: write 2500"),
    ("free_update.toml", "price = 2500", 'price = "$2,500.50"',
     "installation.policies[0].price", "remove the quotes, the $ and the commas: write 2500.50"),
    ("free_update.toml", "price = 2500", 'price = "dos mil"',
     "installation.policies[0].price", "write the price as a number: 2500 or 2500.50"),
    ("free_update.toml", "price = 800", "price = 800.125",
     "installation.per_event[0].price", "more than two decimals"),
    ("free_update.toml", 'phone = "5141-5110"', "phone = 51415110",
     "installation.phone", 'put it in quotes: "51415110"'),
    ("catalogue.toml", "min_score = 88", "min_score = 88.5", "min_score",
     "write it without decimals"),
    ("catalogue.toml", "min_score = 88", 'min_score = "88"', "min_score",
     "remove the quotes: write 88"),
    ("catalogue.toml", 'aliases = ["Bancos"]', 'aliases = "Bancos"', "system[3].aliases",
     'write it in brackets: ["Bancos"]'),
    ("catalogue.toml", 'aliases = ["Bancos"]', 'alias = ["Bancos"]', "system[3].alias",
     "did you mean 'aliases'?"),
])
def test_a_problem_names_file_key_line_and_the_fix_in_words(tmp_path, name, old, new, key, fix):
    directory = copy_with(tmp_path, name, old, new)
    path = directory / name
    with pytest.raises(RulesError) as err:
        load_rules(directory)
    assert len(err.value.problems) == 1, err.value.problems
    message = str(err.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert fix in message
    assert message.endswith(f"(line {line_of_text(path, new.splitlines()[0])})"), message


def test_a_syntax_error_in_one_file_does_not_hide_the_problems_of_the_others(tmp_path):
    directory = break_files(tmp_path, {
        "fields.toml": [("[labels]", "[labels\n")],
        "free_update.toml": [("eligible_from = 2011-07-01", 'eligible_from = "julio"')],
        "unlock.toml": [('lunes = "09:00-18:00"', 'lunes = "9-18"')],
    })
    with pytest.raises(RulesError) as err:
        load_rules(directory)
    lines = [str(p) for p in err.value.problems]
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"{directory / 'fields.toml'}: invalid TOML") and "line " in lines[0]
    assert lines[1].startswith(f"{directory / 'free_update.toml'}: eligible_from: ")
    unlock = directory / "unlock.toml"
    assert lines[2].startswith(f"{unlock}: business_hours: days.lunes: ")
    assert lines[2].endswith(f"(line {line_of_text(unlock, 'lunes = ')})")


def test_a_broken_table_is_one_problem_not_one_per_missing_key(tmp_path):
    directory = copy_with(tmp_path, "free_update.toml", "[installation.above_max]",
                          "[installation.above_maximo]")
    with pytest.raises(RulesError) as err:
        load_rules(directory)
    lines = [str(p) for p in err.value.problems]
    assert len(lines) == 2, lines  # the unknown table, and the one that is missing
    assert "installation.above_maximo: unknown key" in lines[0]
    assert "installation.above_max: missing" in lines[1]


def test_prices_with_cents_are_kept_exact_and_discounted_to_the_cent(tmp_path):
    from decimal import Decimal

    directory = break_files(tmp_path, {"free_update.toml": [
        ("price = 2500", "price = 2500.50"), ("price = 4000", "price = 4000.10"),
        ("price = 800", "price = 799.99")]})
    rules = load_rules(directory)
    inst = rules.free_update.installation
    assert [p.price for p in inst.policies] == [Decimal("2500.50"), Decimal("4000.10"), 6500]
    assert inst.per_event[0].price == Decimal("799.99")
    import datetime as dt

    offer = inst.offer(support_until=None, users=2, today=dt.date(2027, 1, 10))
    assert [p["discounted_price"] for p in offer["policies"]] == [None, Decimal("3200.08"), 5200]


def test_a_price_with_cents_reads_as_pesos_and_cents_in_the_reply(tmp_path):
    from mailbot.answer.render import Renderer
    from mailbot.answer.samples import sample_contexts

    directory = break_files(tmp_path, {"free_update.toml": [("price = 2500", "price = 2500.50"),
                                                            ("price = 1200", "price = 1200.5")]})
    rules = load_rules(directory)
    renderer = Renderer(RULES.parent / "templates")
    assert renderer.check(rules) == []
    rendered = [renderer.render("keys_issued", c) for c in
                sample_contexts("keys_issued", rules).values()]
    assert any("$2,500.50" in r.text and "$2,500.50" in (r.html or "") for r in rendered)
    assert any("$1,200.50" in r.text for r in rendered)


@pytest.mark.parametrize("old, new, spelling, other", [
    ('aliases = ["Bancos"]', 'aliases = ["Bancos", "nominas"]', "'nominas'",
     "'CONTPAQ i Nóminas' (its alias 'Nóminas'), system[2];"),
    ('aliases = ["Bancos"]', 'aliases = ["Bancos", "CONTPAQ i NOMINAS"]', "'CONTPAQ i NOMINAS'",
     "'CONTPAQ i Nóminas', system[2];"),
    ('aliases = ["Bancos"]', 'aliases = ["Bancos", "contpaqi-nóminas"]', "'contpaqi-nóminas'",
     "'CONTPAQ i Nóminas', system[2];"),
    ('name = "CONTPAQ i Bancos"', 'name = "contpaq i nóminas"', "'contpaq i nóminas'",
     "'CONTPAQ i Nóminas', system[2];"),
])
def test_a_duplicate_system_or_alias_is_refused_naming_both_entries(tmp_path, old, new, spelling,
                                                                     other):
    directory = copy_with(tmp_path, "catalogue.toml", old, new)
    with pytest.raises(RulesError) as err:
        load_rules(directory)
    message = str(err.value)
    assert message.startswith(f"{directory / 'catalogue.toml'}: system[3]."), message
    assert f"{spelling} already names {other}" in message, message
    assert "without accents, case" in message


def test_an_old_style_loader_still_stops_at_its_first_problem_outside_a_check():
    from mailbot.rules_table import Problems, Table

    table = Table({"price": "2500", "name": 5}, "x.toml")
    with pytest.raises(RulesError, match=r"x.toml: price: .*remove the quotes"):
        table.price("price")
    problems = Problems()
    checked = Table({"price": "2500", "name": 5, "sub": {"n": "1"}}, "x.toml", problems=problems)

    def old_style() -> None:
        checked.get("name", str)  # recorded; the loader goes on with ""
        raise checked.fail("price", "must be a number")

    assert problems.attempt(old_style) is None
    assert checked.table("sub").number("n") == 0
    assert [str(p) for p in problems.items] == [
        'x.toml: name: must be text, not 5; put it in quotes: "5"',
        "x.toml: price: must be a number",
        "x.toml: sub.n: must be a whole number, not text '1'; remove the quotes: write 1"]


def test_key_lines_follow_tables_arrays_and_multiline_values():
    from mailbot.toml_lines import key_lines, line_of

    text = ('top = 1\n[a]\nb = """\nc = 2\n"""\nd = [\n  "x",\n]\n[[a.e]]\nf = 1\n[[a.e]]\n'
            'f = 2\ng = { h = 1 }\n"quoted key" = 3\n')
    lines = key_lines(text)
    assert lines["top"] == 1 and lines["a.b"] == 3 and "a.c" not in lines and lines["a.d"] == 6
    assert lines["a.e[0].f"] == 10 and lines["a.e[1].f"] == 12
    assert line_of(lines, "a.e[1].g.h") == 13 and line_of(lines, "a.d[0]") == 6
    assert lines["a.e[1].quoted key"] == 14
    assert line_of(lines, "zzz") is None


def _single_per_event_table(text: str) -> str:
    head, *rows = text.split("[[installation.per_event]]")
    last = rows[-1][rows[-1].index("[installation.above_max]"):]
    return head + "[installation.per_event]" + rows[0] + last


@pytest.mark.parametrize("edit, key, fix", [
    (lambda text: text.replace('[installation.above_max]\nlabel = "Mayor a 20 usuarios"\n'
                               'text = "Se cotizará por proyecto."', ""),
     "installation.above_max", "missing; add the table [installation.above_max] with its keys"),
    (_single_per_event_table, "installation.per_event",
     "write each entry under [[installation.per_event]] (double brackets)"),
])
def test_a_missing_or_single_table_says_how_to_write_it(tmp_path, edit, key, fix):
    directory = tmp_path / "rules"
    shutil.copytree(RULES, directory)
    path = directory / "free_update.toml"
    before = path.read_text(encoding="utf-8")
    path.write_text(edit(before), encoding="utf-8")
    assert path.read_text(encoding="utf-8") != before
    with pytest.raises(RulesError) as err:
        load_rules(directory)
    assert len(err.value.problems) == 1, err.value.problems
    message = str(err.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert fix in message
