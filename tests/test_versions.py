"""Versions of the rules and templates (issue 12 §2): each distinct content of either folder is a
numbered version kept in the store with its files; every decided mail and every queued message
records the versions it was made with; a pass picks up a valid edit and refuses an invalid one
(the last good version stays, operators are alerted once per bad content); `mailbot rules|
templates versions|diff`, `mailbot log` and the console's mail page show them; migration 0007
upgrades a store at 0006 and downgrades again. SQLite and PostgreSQL where the store matters."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path

import pytest
import sqlalchemy as sa
from botconfig import ROOT, local_sections, write_config
from test_unlock_flow import FACTURA, FREE, OTHER_FREE, RAUL, Harness, request_mail
from web_console import build_console, empty_accounts

from mailbot.answer.render import Renderer
from mailbot.ops.cli import main
from mailbot.ruleset import load_rules
from mailbot.run import versions as watching
from mailbot.run.pipeline import run_once
from mailbot.run.versions import content_hash, folder_files
from mailbot.store import versions
from mailbot.store.database import Store
from mailbot.store.schema import events, mails, outbox, outbox_recipients

FREE_UPDATE = "Solicitud de claves para actualización sin costo"
CONTABILIDAD = "CONTPAQ i Contabilidad"


def asks(serial: str = FREE, system: str = FACTURA) -> bytes:
    return request_mail(sender=RAUL, serial=serial, system=system, subject=FREE_UPDATE)


class Bot(Harness):
    """The unlock flow's harness, deciding with a private copy of the rules and templates that a
    test edits, and a config.toml naming them (for the commands)."""

    def __init__(self, tmp_path: Path, store: Store | None = None) -> None:
        super().__init__(tmp_path, store=store)
        self.rules_dir = tmp_path / "rules"
        self.templates_dir = tmp_path / "templates"
        shutil.copytree(ROOT / "rules", self.rules_dir)
        shutil.copytree(ROOT / "templates", self.templates_dir)
        self.app.rules = load_rules(self.rules_dir)
        self.app.renderer = Renderer(self.templates_dir)
        text = self.config_path.read_text(encoding="utf-8")
        text = text.replace(json.dumps(str(ROOT / "rules")), json.dumps(str(self.rules_dir)))
        text = text.replace(json.dumps(str(ROOT / "templates")),
                            json.dumps(str(self.templates_dir)))
        if store is not None:
            text = text.replace('url = "sqlite:///mailbot.db"', f'url = "{store.url}"')
        self.config_path.write_text(text, encoding="utf-8")

    def edit(self, path: Path, old: str, new: str) -> None:
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def last_mail(self):
        return self.mails()[-1]

    def messages(self, purpose: str | None = None):
        with self.app.store.transaction() as conn:
            query = sa.select(outbox).order_by(outbox.c.id)
            if purpose:
                query = query.where(outbox.c.purpose == purpose)
            return conn.execute(query).all()

    def alert_events(self) -> list[dict]:
        with self.app.store.transaction() as conn:
            return [json.loads(d) for d in conn.execute(
                sa.select(events.c.detail).where(events.c.event == "alert")
                .order_by(events.c.id)).scalars()]

    def listing(self, kind: str) -> list[dict]:
        with self.app.store.transaction() as conn:
            return versions.listing(conn, kind)


@pytest.fixture
def bot(tmp_path):
    made = Bot(tmp_path / "bot")
    yield made
    made.close()


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- the version of a folder ------------------------------------------------------------------

def test_the_hash_covers_the_sorted_paths_and_bytes_of_the_versioned_files_only(tmp_path):
    folder = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", folder)
    files = watching.folder_files(folder, ".toml")
    assert sorted(files) == sorted(p.name for p in (ROOT / "rules").glob("*.toml"))
    digest = watching.content_hash(files)
    assert watching.content_hash(dict(reversed(list(files.items())))) == digest
    (folder / "notes.txt").write_text("not a rules file\n")
    assert watching.content_hash(watching.folder_files(folder, ".toml")) == digest
    (folder / "kinds.toml").write_bytes((folder / "kinds.toml").read_bytes() + b"\n")
    assert watching.content_hash(watching.folder_files(folder, ".toml")) != digest
    # a byte moved from one file's name to its content is another folder
    assert (watching.content_hash({"ab": b"c"}) != watching.content_hash({"a": b"bc"}))


def test_recording_a_version_is_idempotent_and_keeps_its_files(store):
    one = {"catalogue.toml": b"a = 1\n", "kinds.toml": b"b = 2\n"}
    two = {**one, "catalogue.toml": b"a = 2\n"}
    first = versions.record(store, "rules", watching.content_hash(one), one)
    again = versions.record(store, "rules", watching.content_hash(one), one)
    second = versions.record(store, "rules", watching.content_hash(two), two)
    templates = versions.record(store, "templates", watching.content_hash(one), one)
    assert (first, again, second, templates) == (1, 1, 2, 1)  # numbered per kind
    with store.transaction() as conn:
        listed = versions.listing(conn, "rules")
        assert [(v["number"], v["hash"]) for v in listed] == [
            (1, watching.content_hash(one)), (2, watching.content_hash(two))]
        assert listed[0]["files"] == ["catalogue.toml", "kinds.toml"]
        assert versions.files_of(conn, "rules", 2) == two
        assert versions.files_of(conn, "rules", 3) is None
        assert conn.execute(sa.text("SELECT count(*) FROM config_versions")).scalar() == 3


# --- decisions and replies carry them ---------------------------------------------------------

def test_decisions_and_replies_record_the_versions_they_were_made_with(store, tmp_path):
    bot = Bot(tmp_path / "bot", store=store)
    try:
        with store.transaction() as conn:  # something for the operators' grouped alert
            store.log_event(conn, "alert", title="Prueba", detail="un aviso")
        bot.run(asks())
        [mail] = bot.mails()
        [reply] = bot.messages("reply")
        [alert] = bot.messages("alert")
        assert (mail.rules_version, mail.templates_version) == (1, 1)
        assert (reply.rules_version, reply.templates_version) == (1, 1)
        assert (alert.rules_version, alert.templates_version) == (1, 1)
        [rules] = bot.listing("rules")
        [templates] = bot.listing("templates")
        assert rules["hash"] == watching.content_hash(
            watching.folder_files(bot.rules_dir, ".toml"))
        assert len(templates["files"]) == len(list(bot.templates_dir.glob("*.j2")))
        bot.run(asks(OTHER_FREE, CONTABILIDAD))  # nothing changed: the same versions
        assert [(m.rules_version, m.templates_version) for m in bot.mails()] == [(1, 1), (1, 1)]
        assert len(bot.listing("rules")) == len(bot.listing("templates")) == 1
    finally:
        bot.close()


def test_a_pass_after_editing_a_price_uses_the_new_rules_and_records_their_version(bot):
    bot.run(asks(OTHER_FREE, CONTABILIDAD))
    assert "$2,500.00" in bot.replies()[0].text
    bot.edit(bot.rules_dir / "free_update.toml", "price = 2500", "price = 2750")
    bot.run(asks(OTHER_FREE, CONTABILIDAD))
    first, second = bot.replies()
    assert "$2,750.00" in second.text and "$2,500.00" not in second.text
    assert [m.rules_version for m in bot.mails()] == [1, 2]
    assert [m.rules_version for m in bot.messages("reply")] == [1, 2]
    assert [v["number"] for v in bot.listing("rules")] == [1, 2]
    with bot.app.store.transaction() as conn:
        assert b"price = 2750" in versions.files_of(conn, "rules", 2)["free_update.toml"]
        assert b"price = 2500" in versions.files_of(conn, "rules", 1)["free_update.toml"]


def test_an_invalid_rules_edit_keeps_the_old_rules_alerts_once_and_a_fix_is_picked_up(bot):
    bot.run(asks(OTHER_FREE, CONTABILIDAD))
    before = len(bot.alert_events())
    bot.edit(bot.rules_dir / "free_update.toml", "price = 2500", 'price = "dos mil"')
    bot.edit(bot.rules_dir / "free_update.toml", "eligible_from = 2011-07-01",
             'eligible_from = "2011-07-01"')
    bot.run(asks(OTHER_FREE, CONTABILIDAD))
    bot.run()  # a second pass over the same bad folder
    refused = [a for a in bot.alert_events()[before:] if a["title"].startswith("Reglas")]
    assert len(refused) == 1  # two passes, one alert
    assert "v1" in refused[0]["title"] and "2 problema(s)" in refused[0]["detail"]
    assert "price" in refused[0]["detail"] and "eligible_from" in refused[0]["detail"]
    assert "$2,500.00" in bot.replies()[1].text  # the last good rules decided it
    assert [m.rules_version for m in bot.mails()] == [1, 1]
    assert len(bot.listing("rules")) == 1  # a refused content is no version
    bot.edit(bot.rules_dir / "free_update.toml", 'price = "dos mil"', "price = 2900")
    bot.edit(bot.rules_dir / "free_update.toml", 'eligible_from = "2011-07-01"',
             "eligible_from = 2011-07-01")
    bot.run(asks(OTHER_FREE, CONTABILIDAD))
    assert "$2,900.00" in bot.replies()[-1].text
    assert bot.last_mail().rules_version == 2
    assert len(bot.alert_events()) == before + 1  # the fix alerts nobody


def test_an_invalid_template_edit_keeps_the_last_good_templates_until_it_is_fixed(bot):
    bot.run(asks(OTHER_FREE, CONTABILIDAD))
    keys_issued = bot.templates_dir / "keys_issued.txt.j2"
    good = keys_issued.read_text(encoding="utf-8")
    keys_issued.write_text(good + "\n{{ reference }\n", encoding="utf-8")  # does not compile
    bot.run(asks(OTHER_FREE, CONTABILIDAD))
    bot.run()
    second = bot.replies()[1]
    assert second.template == "keys_issued" and "2012-" in second.text  # rendered, as before
    assert bot.last_mail().templates_version == 1
    refused = [a for a in bot.alert_events() if a["title"].startswith("Plantillas")]
    assert len(refused) == 1 and "keys_issued.txt.j2" in refused[0]["detail"]
    keys_issued.write_text(good.replace("Esta es tu clave", "Buen día, esta es tu clave", 1),
                           encoding="utf-8")  # valid
    bot.run(asks(FREE, FACTURA))
    assert "Buen día" in bot.replies()[-1].text
    assert bot.last_mail().templates_version == 2
    assert bot.app.renderer.templates_dir == bot.templates_dir  # on the folder again


def break_prices(bot: Bot) -> None:
    bot.edit(bot.rules_dir / "free_update.toml", "price = 2500", 'price = "dos mil"')


def test_a_bad_content_alerts_once_also_for_another_process_on_the_same_store(tmp_path):
    first = Bot(tmp_path / "one")
    second = Bot(tmp_path / "two", store=Store(f"sqlite:///{tmp_path / 'one' / 'mailbot.db'}"))
    try:
        first.run()
        second.run()
        break_prices(first)
        break_prices(second)  # the same bad content, in the other's folder
        first.run()
        second.run()
        refused = [a for a in first.alert_events() if a["title"].startswith("Reglas")]
        assert len(refused) == 1
        assert watching.watch(first.app).rules.number == watching.watch(second.app).rules.number \
            == 1  # both kept the last good rules
    finally:
        second.close()
        first.close()


def test_the_service_picks_up_an_edit_at_its_next_pass(bot):
    """`mailbot run`'s Runner: each pass starts with the versions' look at the folders."""
    from mailbot.run.service import Runner

    runner = Runner(bot.app)
    bot.deliver(asks(OTHER_FREE, CONTABILIDAD))
    runner.run_pass()
    bot.edit(bot.rules_dir / "free_update.toml", "price = 2500", "price = 2750")
    bot.deliver(asks(OTHER_FREE, CONTABILIDAD))
    runner.run_pass()
    assert [m.rules_version for m in bot.mails()] == [1, 2]
    assert "$2,750.00" in bot.replies()[-1].text


# --- the commands -----------------------------------------------------------------------------

def test_rules_versions_and_diff(bot, capsys):
    bot.run(asks())
    bot.edit(bot.rules_dir / "free_update.toml", "price = 2500", "price = 2750")
    bot.run(asks(OTHER_FREE, CONTABILIDAD))
    config = str(bot.config_path)
    code, out, _ = run_cli(capsys, "--config", config, "rules", "versions")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("rules v1  ") and "first used" in lines[0]
    assert lines[2].startswith("rules v2  ") and lines[2].endswith("<- the folder now")
    assert "free_update.toml" in lines[3]
    code, out, _ = run_cli(capsys, "--config", config, "rules", "versions", "--json")
    listed = [json.loads(line) for line in out.splitlines()]
    assert [(v["number"], v["in_folder"]) for v in listed] == [(1, False), (2, True)]
    assert "free_update.toml" in listed[0]["files"] and len(listed[0]["hash"]) == 64

    code, out, _ = run_cli(capsys, "--config", config, "rules", "diff", "1", "2")
    assert code == 0
    assert "--- rules v1/free_update.toml" in out and "+++ rules v2/free_update.toml" in out
    assert "-price = 2500" in out and "+price = 2750" in out
    assert "catalogue.toml" not in out  # unchanged files are left out
    bot.edit(bot.rules_dir / "free_update.toml", "price = 2750", "price = 3000")
    code, out, _ = run_cli(capsys, "--config", config, "rules", "diff", "2")
    assert "-price = 2750" in out and "+price = 3000" in out and "(folder " in out
    code, out, _ = run_cli(capsys, "--config", config, "rules", "versions")
    assert "not used by a pass yet" in out
    code, _, err = run_cli(capsys, "--config", config, "rules", "diff", "9")
    assert code == 2 and "rules v9: no such version" in err


def test_templates_versions_and_diff(bot, capsys):
    bot.run(asks())
    bot.edit(bot.templates_dir / "keys_issued.txt.j2", "Esta es tu clave", "Buen día, tu clave")
    (bot.templates_dir / "extra.txt.j2").write_text("Texto\n", encoding="utf-8")
    (bot.templates_dir / "extra.html.j2").write_text("<p>Texto</p>\n", encoding="utf-8")
    bot.run(asks(OTHER_FREE, CONTABILIDAD))
    config = str(bot.config_path)
    code, out, _ = run_cli(capsys, "--config", config, "templates", "versions")
    assert code == 0 and "templates v2" in out and "<- the folder now" in out
    code, out, _ = run_cli(capsys, "--config", config, "templates", "diff", "1", "2")
    assert "+++ templates v2/keys_issued.txt.j2" in out and "+Buen día, tu clave" in out
    assert "--- /dev/null" in out and "+++ templates v2/extra.txt.j2" in out
    code, out, _ = run_cli(capsys, "--config", config, "templates", "diff", "2")
    assert code == 0 and "no difference" in out


def test_rules_revert_writes_an_old_version_back_checked_and_refuses_a_bad_one(bot, capsys):
    bot.run(asks())
    original = folder_files(bot.rules_dir, ".toml")
    bot.edit(bot.rules_dir / "free_update.toml", "price = 2500", "price = 2750")
    bot.run(asks(OTHER_FREE, CONTABILIDAD))
    config = str(bot.config_path)
    code, out, _ = run_cli(capsys, "--config", config, "rules", "revert", "1")
    assert code == 0
    assert "-price = 2750" in out and "+price = 2500" in out
    assert "rules v1 written back (free_update.toml); it is rules v1 now (it was v2)" in out
    assert folder_files(bot.rules_dir, ".toml") == original
    code, out, _ = run_cli(capsys, "--config", config, "rules", "revert", "1")
    assert code == 0 and "already holds rules v1: nothing to write" in out
    # a version that no longer passes the check (here: a date written as text)
    bad = dict(original, **{"free_update.toml": original["free_update.toml"].replace(
        b"eligible_from = 2011-07-01", b'eligible_from = "2011-07-01"')})
    number = versions.record(bot.app.store, "rules", content_hash(bad), bad)
    code, out, err = run_cli(capsys, "--config", config, "rules", "revert", str(number))
    assert code == 2 and f"rules v{number} does not pass the check: nothing was written" in err
    assert re.search(r"free_update\.toml: eligible_from: .*remove the quotes.*\(line \d+\)", err)
    assert folder_files(bot.rules_dir, ".toml") == original
    code, _, err = run_cli(capsys, "--config", config, "rules", "revert", "99")
    assert code == 2 and "rules v99: no such version" in err


def test_templates_revert_writes_an_old_version_back_and_refuses_a_bad_one(bot, capsys):
    bot.run(asks())
    original = folder_files(bot.templates_dir, ".j2")
    bot.edit(bot.templates_dir / "keys_issued.txt.j2", "Esta es tu clave", "Buen día, tu clave")
    bot.run(asks(OTHER_FREE, CONTABILIDAD))
    config = str(bot.config_path)
    code, out, _ = run_cli(capsys, "--config", config, "templates", "revert", "1")
    assert code == 0 and "-Buen día, tu clave" in out and "+Esta es tu clave" in out
    assert "templates v1 written back (keys_issued.txt.j2)" in out
    assert folder_files(bot.templates_dir, ".j2") == original
    bad = dict(original, **{"not_eligible.txt.j2": b"{{ variable_que_ya_no_existe }}\n"})
    number = versions.record(bot.app.store, "templates", content_hash(bad), bad)
    code, _, err = run_cli(capsys, "--config", config, "templates", "revert", str(number))
    assert code == 2 and "does not pass the check" in err and "undefined" in err
    assert folder_files(bot.templates_dir, ".j2") == original


def test_the_log_shows_the_versions_in_text_and_json(bot, capsys):
    bot.run(asks())
    [rules] = bot.listing("rules")
    [templates] = bot.listing("templates")
    config = str(bot.config_path)
    code, out, _ = run_cli(capsys, "--config", config, "log", "--json")
    [entry] = [json.loads(line) for line in out.splitlines()]
    assert entry["rules_version"] == {"number": 1, "hash": rules["hash"]}
    assert entry["templates_version"] == {"number": 1, "hash": templates["hash"]}
    assert entry["messages"][0]["templates_version"]["number"] == 1
    code, out, _ = run_cli(capsys, "--config", config, "log")
    assert (f"decided with: rules v1 ({rules['hash'][:8]}), templates v1 "
            f"({templates['hash'][:8]})") in out


def test_the_consoles_mail_page_shows_the_versions(bot):
    bot.run(asks())
    [rules] = bot.listing("rules")
    [templates] = bot.listing("templates")
    empty_accounts(bot.app.store)
    (bot.root / "web").mkdir()
    console = build_console(bot.app.store, bot.root / "web")
    client = console.logged_in()
    page = unescape(client.get(f"/correos/{bot.last_mail().reference}").text)
    assert "Decidido con" in page
    assert f"reglas v1 (<code>{rules['hash'][:8]}</code>)" in page
    assert f"plantillas v1 (<code>{templates['hash'][:8]}</code>)" in page
    assert "generada con" in page  # the reply's line


# --- the migration ----------------------------------------------------------------------------

def test_migration_0007_upgrades_a_store_at_0006_and_downgrades(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from mailbot.store.schema import metadata

    store.downgrade("0006")
    with store.transaction() as conn:
        assert "config_versions" not in sa.inspect(conn).get_table_names()
        assert "rules_version" not in {c["name"] for c in sa.inspect(conn).get_columns("mails")}
        mail = conn.execute(sa.text(
            "INSERT INTO mails (source, mail_id, fingerprint, status, filed, attempts, "
            "received_at) VALUES ('inbox', 'm1', 'f', 'done', true, 0, '2026-12-01 10:00') "
            "RETURNING id")).scalar()
        message = conn.execute(sa.text(
            "INSERT INTO outbox (mail, purpose, template, message_id, envelope_from, "
            "recipients, data, status, attempts, created_at, copy_pending) VALUES (:mail, "
            "'reply', 'keys_issued', '<x@example.com>', 'claves@example.com', "
            "'[\"a@example.com\"]', :data, 'sent', 1, '2026-12-01 10:00', false) RETURNING id"),
            {"mail": mail, "data": b"bytes"}).scalar()
        conn.execute(outbox_recipients.insert().values(
            message=message, address="a@example.com", purpose="reply",
            created_at=sa.func.now()))
    store.migrate()
    with store.transaction() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        assert conn.execute(sa.select(mails.c.rules_version, mails.c.templates_version)).one() \
            == (None, None)  # decided before versions existed
        assert conn.execute(sa.select(outbox.c.rules_version)).scalar() is None
    assert versions.record(store, "rules", "0" * 64, {"a.toml": b"x"}) == 1
    store.downgrade("0006")
    with store.transaction() as conn:
        names = sa.inspect(conn).get_table_names()
        assert "config_versions" not in names and "config_version_files" not in names
        for table in ("mails", "outbox"):
            assert "templates_version" not in {c["name"] for c in
                                               sa.inspect(conn).get_columns(table)}
        # outbox was altered in place, not rebuilt: its recipients' rows are still there
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox_recipients)).scalar() \
            == 1
    store.migrate()


def test_run_once_with_the_shipped_wiring_records_versions_of_the_configured_folders(tmp_path):
    """The App as `mailbot run` builds it: the folders of config.toml are the versions."""
    from mailbot import config as config_module
    from mailbot.run.wiring import open_app

    path = write_config(tmp_path, local_sections())
    app = open_app(config_module.load(path))
    try:
        run_once(app)
        with app.store.transaction() as conn:
            assert [v["number"] for v in versions.listing(conn, "rules")] == [1]
            assert [v["number"] for v in versions.listing(conn, "templates")] == [1]
        assert watching.watch(app).columns() == {"rules_version": 1, "templates_version": 1}
    finally:
        app.store.close()
