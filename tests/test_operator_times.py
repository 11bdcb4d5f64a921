"""One time zone in every operator view: `mailbot log`, `review list` and `review show` print
each time in the business zone (rules/unlock.toml [business_hours] timezone), marked with it."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from zoneinfo import ZoneInfo

import pytest
from botconfig import ROOT, local_sections, write_config
from test_unlock_flow import FACTURA, FREE, RAUL, TUESDAY_10, Harness, request_mail

from mailbot import config as config_module
from mailbot.ops.cli import main
from mailbot.ops.review_actions import edit
from mailbot.ops.timefmt import business_zone, operator_time
from mailbot.run.pipeline import run_once
from mailbot.run.wiring import open_app, open_rules

TYPO = "AAAA-BBBB-CCCC-DDDE"  # not in the registry: the request goes to review
SUBJECT = "Solicitud de claves para actualización sin costo"
# A date and time with anything after it up to the end of the word that follows.
STAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d)?(?:[^\s,)]*)(?: (\S+))?")


def typo_request() -> bytes:
    return request_mail(sender=RAUL, serial=TYPO, system=FACTURA, subject=SUBJECT)


@pytest.fixture
def bot(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def cli(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def marks(text: str) -> list[str]:
    """The word after each printed time (its zone), one per time."""
    return [m.group(1) for m in STAMP.finditer(text)]


def received_at(capsys, *config: str, zone: str) -> str:
    """When the store says the mail came (it stamps the real clock), as read in `zone`."""
    [entry] = [json.loads(line) for line in cli(capsys, *config, "log", "--json").splitlines()]
    stored = dt.datetime.fromisoformat(entry["received_at"]).replace(tzinfo=dt.UTC)
    return stored.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def logged_reference(capsys, *config: str) -> str:
    """The reference of the one mail in the log (its code part is random)."""
    [entry] = [json.loads(line) for line in cli(capsys, *config, "log", "--json").splitlines()]
    assert entry["reference"].startswith("CLV-000001-")
    return entry["reference"]


def test_operator_time_reads_naive_moments_as_utc_and_marks_the_zone():
    mexico = ZoneInfo("America/Mexico_City")
    assert operator_time(dt.datetime(2026, 12, 1, 16, 0), mexico) == "2026-12-01 10:00 CST"
    assert operator_time(TUESDAY_10, mexico) == "2026-12-01 10:00 CST"
    assert operator_time("2026-12-01T16:00:00", mexico) == "2026-12-01 10:00 CST"
    assert operator_time("2026-12-01T10:00:00-06:00", mexico) == "2026-12-01 10:00 CST"
    assert operator_time(None, mexico) == "-"


def test_log_review_list_and_show_print_every_time_in_the_business_zone(bot, capsys):
    bot.run(typo_request())  # read Tuesday 1 December, 10:00 Mexico City (16:00 UTC)
    bot.now = TUESDAY_10 + dt.timedelta(minutes=30)
    edit(bot.app, 1, {"serial": FREE}, operator="ana")  # closes the task, one more history line
    config = ("--config", str(bot.config_path))

    log = cli(capsys, *config, "log")
    listed = cli(capsys, *config, "review", "list", "--all")
    shown = cli(capsys, *config, "review", "show", "1")

    assert (f"{logged_reference(capsys, *config)}  "
            f"{received_at(capsys, *config, zone='America/Mexico_City')} CST  ") in log
    assert "due 2026-12-03 16:00 CST" in log  # 24 business hours later (rules/unlock.toml)
    assert "2026-12-01 10:00 CST  created by mailbot" in log
    assert "2026-12-01 10:30 CST  edit by ana" in log
    assert "due 2026-12-03 16:00 CST" in listed
    assert f"from {RAUL}, read 2026-12-01 10:00 CST" in shown
    assert "due:       2026-12-03 16:00 CST" in shown
    assert "closed:    2026-12-01 10:30 CST by ana" in shown
    assert "2026-12-01 10:00 CST  created by mailbot" in shown
    assert "2026-12-01 10:30 CST  edit by ana" in shown
    for view, count in ((log, 4), (listed, 1), (shown, 5)):
        assert marks(view) == ["CST"] * count, view
        assert "UTC" not in view


def test_the_zone_is_the_rules_business_hours_zone(tmp_path, capsys):
    """Another [business_hours] timezone moves every view, and only that setting does."""
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    unlock = rules / "unlock.toml"
    text = unlock.read_text(encoding="utf-8")
    assert text.count('timezone = "America/Mexico_City"') == 1
    unlock.write_text(text.replace('timezone = "America/Mexico_City"',
                                   'timezone = "America/Cancun"'), encoding="utf-8")
    path = write_config(tmp_path, local_sections(), rules=rules)
    config = config_module.load(path)
    assert str(business_zone(config, open_rules(config))) == "America/Cancun"
    (tmp_path / "inbox" / "new").mkdir(parents=True)
    (tmp_path / "inbox" / "new" / "1.eml").write_bytes(typo_request())
    app = open_app(config)
    assert app.calendar().tz_name == "America/Cancun"  # the zone the due times run on
    app.clock = lambda: TUESDAY_10
    try:
        assert run_once(app).errors == []
    finally:
        app.store.close()
    argv = ("--config", str(path))
    log = cli(capsys, *argv, "log")
    shown = cli(capsys, *argv, "review", "show", "1")
    assert (f"{logged_reference(capsys, *argv)}  "
            f"{received_at(capsys, *argv, zone='America/Cancun')} EST  ") in log
    assert "read 2026-12-01 11:00 EST" in shown  # 10:00 in Mexico City
    assert set(marks(log)) == set(marks(shown)) == {"EST"}


def test_without_unlock_rules_the_zone_is_the_configured_one(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "unlock.toml").unlink()
    path = tmp_path / "config.toml"
    path.write_text(f'[mailbot]\ntimezone = "America/Tijuana"\nrules_dir = "{rules}"\n',
                    encoding="utf-8")
    config = config_module.load(path)
    assert str(business_zone(config, open_rules(config))) == "America/Tijuana"
