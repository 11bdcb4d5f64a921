"""`mailbot dry-run`: the whole decision and rendering path on a snapshot of the store, with
nothing stored, bound, sent or filed (issue 12, §1)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from botconfig import ROOT, write_config

from mailbot import config as config_module
from mailbot.ops.cli import main
from mailbot.ops.demo import write_demo
from mailbot.ops.imports import read_keys, read_registry
from mailbot.ruleset import load_rules
from mailbot.run.dryrun import (
    DryMail,
    DryRunError,
    compare,
    dry_app,
    dry_run,
    reads_alike,
    stored_mails,
)
from mailbot.run.pipeline import run_once
from mailbot.run.wiring import open_app
from mailbot.store.snapshot import table_names


def _config(tmp_path: Path, store_url: str, rules: Path = ROOT / "rules") -> Path:
    return write_config(tmp_path, f"""
[source]
type = "maildir"
path = "demo/inbox"
[sink]
type = "files"
path = "outbox"
[store]
url = "{store_url}"
""", rules=rules)


def _app(tmp_path: Path, store_url: str):
    files = write_demo(tmp_path / "demo")
    app = open_app(config_module.load(_config(tmp_path, store_url)))
    with app.store.transaction() as conn:
        app.store.upsert_licences(conn, read_registry(files.registry_csv, app.rules.catalogue))
        app.store.add_keys(conn, read_keys(files.keys_csv, app.rules.catalogue))
    return app, files


def every_row(store) -> dict[str, list]:
    """Every row of every table, in a stable order: 'nothing changed' is this, equal."""
    out = {}
    with store.transaction() as conn:
        for name in table_names():
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            rows = conn.execute(sa.select(table)).all()
            out[name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def tree(path: Path) -> dict[str, bytes]:
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def _eml_copies(files, into: Path) -> list[Path]:
    """The demo's mails as .eml files outside the inbox (as an admin would keep them)."""
    into.mkdir()
    out = []
    for mail in files.mails:
        target = into / f"{mail.name}.eml"
        shutil.copyfile(mail.path, target)
        out.append(target)
    return out


@pytest.mark.parametrize("stored", [False, True], ids=["files", "stored"])
def test_a_dry_run_changes_no_row_of_any_table_nor_the_mailbox_nor_the_outbox(
        store, tmp_path, stored):
    """SQLite and PostgreSQL (the `store` fixture): every table is row for row what it was,
    the Maildir and the outbox folder are untouched, and the dry run still decided (keys bound
    and replies rendered, in its snapshot)."""
    app, files = _app(tmp_path, store.url)
    emls = _eml_copies(files, tmp_path / "eml")
    if stored:
        run_once(app)  # the demo is stored, answered and filed; then decided again
    rows, inbox, outbox = every_row(app.store), tree(files.maildir), tree(tmp_path / "outbox")
    dry = dry_app(app)
    mails = (stored_mails(dry, references=(), since=dt.timedelta(days=1))
             if stored else [DryMail(str(p), p.read_bytes()) for p in emls])
    results = dry_run(dry, mails)
    assert len(results) == len(files.mails) == 12
    assert all(r.error is None and r.problem is None for r in results), results
    issued = [d for r in results for d in r.decisions if d.outcome == "issued"]
    assert issued and any(r.replies for r in results)
    assert every_row(app.store) == rows
    assert tree(files.maildir) == inbox
    assert tree(tmp_path / "outbox") == outbox
    assert dry.source.filed == [] and dry.sink.sent == []
    app.store.close()


def test_a_stored_mail_decided_again_gets_what_its_pass_gave_it(tmp_path):
    """Its own earlier decision is taken out of the snapshot first: the seed request binds a
    key again ("a new key"), not "already has a key", and every mail's outcome and replies
    are those the real pass recorded."""
    app, _ = _app(tmp_path, "sqlite:///mailbot.db")
    run_once(app)
    with app.store.transaction() as conn:
        recorded = {r.reference: r.outcome for r in conn.execute(sa.text(
            "SELECT reference, outcome FROM mails"))}
        replies: dict[str, list] = {}
        for r in conn.execute(sa.text("SELECT m.reference, o.recipients, o.template "
                                      "FROM outbox o JOIN mails m ON m.id = o.mail")):
            replies.setdefault(r.reference, []).append((r.template, json.loads(r.recipients)))
    dry = dry_app(app)
    results = dry_run(dry, stored_mails(dry, references=sorted(recorded)))
    assert {r.label: r.outcome for r in results} == recorded
    first = next(r for r in results if r.decisions)
    assert any("a new key" in why for _, why in first.decisions[0].hits)
    for r in results:
        assert sorted((m.template, list(m.to)) for m in r.replies) == \
            sorted(replies.get(r.label, []))


def test_a_rules_change_shows_only_the_answers_it_alters(tmp_path):
    """--against: an eligibility date moved past some purchases turns those keys into 'not
    eligible' answers; mails it does not touch are not listed."""
    app, files = _app(tmp_path, "sqlite:///mailbot.db")
    other = tmp_path / "rules2"
    shutil.copytree(ROOT / "rules", other)
    text = (other / "free_update.toml").read_text(encoding="utf-8")
    assert "eligible_from = 2011-07-01" in text
    (other / "free_update.toml").write_text(
        text.replace("eligible_from = 2011-07-01", "eligible_from = 2011-10-01"),
        encoding="utf-8")
    mails = [DryMail(str(m.path), m.path.read_bytes()) for m in files.mails]
    before = dry_app(app)
    after = dry_app(before, rules=load_rules(other))
    changes = compare(before, after, mails)
    assert changes and len(changes) < len(mails)
    for change in changes:
        assert change.before.signature() != change.after.signature()
        assert any(d.outcome == "not_eligible" for d in change.after.decisions)
    same = compare(before, dry_app(before), mails)
    assert same == []  # the same rules twice: nothing changes, references and all


def test_compare_reads_each_mail_once_when_the_rules_read_alike_and_finds_the_same(tmp_path):
    """A price or date change reads mail as before: the second run reuses the first's readings
    (what it finds is what two separate runs find); a catalogue change reads again."""
    app, files = _app(tmp_path, "sqlite:///mailbot.db")
    other = tmp_path / "rules2"
    shutil.copytree(ROOT / "rules", other)
    text = (other / "free_update.toml").read_text(encoding="utf-8")
    (other / "free_update.toml").write_text(
        text.replace("eligible_from = 2011-07-01", "eligible_from = 2011-10-01"),
        encoding="utf-8")
    proposed = load_rules(other)
    assert reads_alike(app.rules, proposed)
    catalogue = other / "catalogue.toml"
    catalogue.write_text(catalogue.read_text(encoding="utf-8").replace(
        '"PDV"', '"PDV", "Caja"'), encoding="utf-8")
    assert not reads_alike(app.rules, load_rules(other))
    mails = [DryMail(str(m.path), m.path.read_bytes()) for m in files.mails]
    before = dry_app(app)
    after = dry_app(before, rules=proposed)
    reads: dict = {}
    shared = [r.signature() for r in dry_run(after, mails, reads=reads)]
    assert len(reads) == len([m for m in mails if m.data])
    again = [r.signature() for r in dry_run(after, mails, reads=reads)]
    alone = [r.signature() for r in dry_run(after, mails)]
    assert shared == again == alone
    assert [c.after.signature() for c in compare(before, after, mails)] == [
        a for a, b in zip(alone, [r.signature() for r in dry_run(before, mails)], strict=True)
        if a != b]


def test_cli_json_has_the_fields_of_the_contract(tmp_path, capsys):
    app, files = _app(tmp_path, "sqlite:///mailbot.db")
    app.store.close()
    config = str(tmp_path / "config.toml")
    seed = files.mails[0].path
    assert main(["--config", config, "dry-run", "--json", "--show", str(seed)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["file"] == str(seed)
    assert out["kind"] == "free_update" and out["requests"]
    assert out["decisions"][0]["outcome"] == "issued"
    assert {h["rule"] for h in out["decisions"][0]["hits"]} >= {"registry.known", "keys.assign"}
    reply = out["replies"][0]
    assert reply["template"] == "keys_issued" and reply["to"] and reply["subject"]
    assert out["reference"] in reply["text"]  # --show: the text, quoting the reference


def test_cli_reads_a_maildir_and_references_and_prints_text(tmp_path, capsys):
    app, files = _app(tmp_path, "sqlite:///mailbot.db")
    config = str(tmp_path / "config.toml")
    assert main(["--config", config, "dry-run", str(files.maildir)]) == 0
    text = capsys.readouterr().out
    assert text.count("\n    outcome: ") == 12 and "keys_issued ->" in text
    run_once(app)
    with app.store.transaction() as conn:
        reference = conn.execute(sa.text("SELECT reference FROM mails ORDER BY id")).first()[0]
    app.store.close()
    short = reference.rsplit("-", 1)[0]
    assert main(["--config", config, "dry-run", short]) == 0
    text = capsys.readouterr().out
    assert text.count("\n    outcome: ") == 1 and reference in text


@pytest.mark.parametrize("argv, named", [
    (["missing.eml"], "missing.eml: no such file or folder"),
    (["CLV-999999"], "CLV-999999: no stored mail"),
    (["--rules", "nowhere", "x"], "--rules nowhere: no such folder"),
    (["--templates", "nowhere", "CLV-000001"], "--templates nowhere"),
    ([], "give .eml files"),
])
def test_input_errors_name_the_input_and_exit_2(tmp_path, capsys, argv, named):
    _, files = _app(tmp_path, "sqlite:///mailbot.db")
    (tmp_path / "x").write_bytes(files.mails[0].path.read_bytes())
    config = str(tmp_path / "config.toml")
    code = main(["--config", config, "dry-run", *[str(tmp_path / a) if a == "x" else a
                                                    for a in argv]])
    assert code == 2
    assert named in capsys.readouterr().err


def test_an_invalid_rules_folder_gives_the_rules_check_message(tmp_path, capsys):
    _app(tmp_path, "sqlite:///mailbot.db")
    bad = tmp_path / "bad"
    shutil.copytree(ROOT / "rules", bad)
    (bad / "free_update.toml").write_text("eligible_from = \n", encoding="utf-8")
    config = str(tmp_path / "config.toml")
    assert main(["--config", config, "dry-run", "--against", str(bad), "--since", "1d"]) == 2
    err = capsys.readouterr().err
    assert f"--against {bad}" in err and "free_update.toml" in err


def test_an_unknown_reference_is_refused_before_anything_runs(tmp_path):
    app, _ = _app(tmp_path, "sqlite:///mailbot.db")
    with pytest.raises(DryRunError, match="CLV-424242"):
        stored_mails(app, references=["CLV-424242"])


def test_maildir_original_keeps_its_listing_yet_finds_mails_filed_or_moved_since(tmp_path):
    """The listing `original` keeps (a dry run reads a thousand originals of one folder) is
    listed again when it does not find a mail: one filed after it, or one moved away since."""
    from mailbot.store.database import fingerprint
    from mailbot.transport.maildir import MaildirSource

    box = MaildirSource(tmp_path / "inbox", max_message_bytes=1_000_000)
    processed = tmp_path / "inbox" / ".processed" / "cur"
    processed.mkdir(parents=True)

    def put(name: str, data: bytes) -> None:
        (processed / f"{name}:2,S").write_bytes(data)

    def read(name: str, data: bytes) -> bytes:
        return box.original(name, "processed", size=len(data),
                            matches=lambda got: fingerprint(got) == fingerprint(data))

    put("first", b"one")
    assert read("first", b"one") == b"one"
    put("second", b"two")  # filed after the listing was kept
    assert read("second", b"two") == b"two"
    (processed / "first:2,S").rename(processed / "first:2,RS")  # its flags changed
    assert read("first", b"one") == b"one"


def test_a_dry_run_on_the_live_store_never_takes_a_key_a_real_pass_needs(store, tmp_path):
    """PostgreSQL runs the dry run on the live database (SQLite on a copy). A key the dry run
    gives a mail must stay free for the real pass running meanwhile: with one free key left,
    the real pass still gets it while the dry run is in the middle of its mails. It used to
    be locked by the dry run's UPDATE (and by the FOR KEY SHARE of its request's foreign
    key), so a real customer was told "your key is being prepared" until the dry run ended."""
    app, files = _app(tmp_path, store.url)
    emls = _eml_copies(files, tmp_path / "eml")
    with app.store.transaction() as conn:
        systems = [s for (s,) in conn.execute(sa.text("SELECT DISTINCT system FROM keys"))]
        keep = {s: conn.execute(sa.text("SELECT min(id) FROM keys WHERE system = :s"),
                                {"s": s}).scalar() for s in systems}
        conn.execute(sa.text("DELETE FROM keys WHERE id NOT IN ({})".format(
            ", ".join(str(i) for i in keep.values()))))
    rows = every_row(app.store)
    live: list = []

    def meanwhile(result) -> None:
        """A real pass needs a key of each system now, while the snapshot is still open."""
        if live or not any(d.outcome == "issued" for d in result.decisions):
            return
        with app.store.transaction() as conn:
            for system in systems:
                live.append(app.store.assign_key(conn, system=system, serial="LIVE-0000-0000-"
                                                 f"{len(live):04d}"))
            raise _Undo  # the real pass is only pretended: nothing of it stays

    dry = dry_app(app)
    with pytest.raises(_Undo):
        dry_run(dry, [DryMail(str(p), p.read_bytes()) for p in emls], progress=meanwhile)
    assert live and all(row is not None for row in live), live
    assert every_row(app.store) == rows
    results = dry_run(dry, [DryMail(str(p), p.read_bytes()) for p in emls])
    issued = [d for r in results for d in r.decisions if d.outcome == "issued"]
    pending = [d for r in results for d in r.decisions if d.outcome == "pending"]
    assert issued and pending  # one key per system: the dry run's own mails still compete
    assert every_row(app.store) == rows
    app.store.close()


class _Undo(Exception):
    pass
