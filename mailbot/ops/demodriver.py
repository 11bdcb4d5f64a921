"""`mailbot demo`: a whole working installation in one folder, run once, log printed."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import tomllib
from pathlib import Path

from mailbot import config as config_module
from mailbot.errors import MailbotError
from mailbot.ops import logview
from mailbot.ops.cli_review import format_list
from mailbot.ops.demo import DemoFiles, write_demo
from mailbot.ops.imports import read_keys, read_registry
from mailbot.ops.init import invoked_as
from mailbot.ruleset import Ruleset
from mailbot.run.pending import fulfil_pending
from mailbot.run.pipeline import run_once
from mailbot.run.wiring import open_app, open_renderer, open_rules
from mailbot.shipped import shipped
from mailbot.store import ledger, reviews

DEMO_CONFIG = """\
# Written by `mailbot demo`. The embedded defaults, with paths inside this folder.
[mailbot]
address = "claves@example.com"
from_name = "Claves CONTPAQ i (demo)"
operators = ["operadores@example.com"]
rules_dir = {rules}
templates_dir = {templates}

[source]
type = "maildir"
path = "inbox"

[sink]
type = "files"
path = "outbox"

[store]
url = "sqlite:///mailbot.db"
"""


def run_demo(root: Path) -> int:
    """Write the demo into `root` (made whole, or not at all), import it, run once, print."""
    root = Path(root).resolve()
    config_text = DEMO_CONFIG.format(rules=json.dumps(str(shipped("rules"))),
                                     templates=json.dumps(str(shipped("templates"))))
    # Everything the demo needs is checked before its first file is written: the config it
    # writes, the shipped rules and templates it points to (the same calls open_app makes).
    config = config_module.from_mapping(tomllib.loads(config_text), base_dir=root,
                                        path=root / "config.toml")
    rules = open_rules(config)
    open_renderer(config)
    if root.exists() and not root.is_dir():
        raise MailbotError(f"{root}: exists and is not a directory; choose another --dir")
    if root.is_dir():
        files, licences, keys = _write(root, config_text, rules)  # a rerun: rewritten identically
    else:
        files, licences, keys = _write_new(root, config_text, rules)
    config_path = root / "config.toml"
    config = config_module.load(config_path)
    app = open_app(config)
    try:
        with app.store.transaction() as conn:
            added, updated = app.store.upsert_licences(conn, licences)
            refused = app.store.add_keys(conn, keys)
        print(f"registry: {added} licence(s) added, {updated} updated ({files.registry_csv})")
        print(f"key pool: {len(refused)} key(s) already stored were not added again "
              f"({files.keys_csv})")
        fulfil_pending(app)
        report = run_once(app)
        print(f"run: {report.seen} mail(s) in the inbox, {report.decided} decided, "
              f"{report.duplicates} recognised as already handled, {report.sent} "
              f"message(s) written, {report.filed} filed\n")
        print("processing log (newest first):\n")
        print(logview.format_text(logview.query(app.store, limit=100), app.calendar().tz))
        with app.store.transaction() as conn:
            tasks = reviews.tasks(conn)
            unlocks = ledger.entries(conn)
        print("unlock ledger:\n")
        for entry in unlocks:
            print(f"#{entry.id}  {entry.serial}  {entry.status}  unlock {entry.number or '?'} "
                  f"({entry.modality or '?'}), approved by {entry.approved_by or '-'}: "
                  f"{entry.reason}")
        if not unlocks:
            print("(no unlock yet)")
        print("\nreview queue (mailbot review list):\n")
        print(format_list(tasks, now=app.now(), zone=app.calendar().tz))
    finally:
        app.store.close()
    print(f"replies (.eml files):   {config.resolve(config.sink.path)}")
    print(f"handled mails:          {config.resolve(config.source.path)}/.processed, .review, "
          ".ignored")
    print(f"configuration:          {config_path}")
    program = invoked_as()
    print(f"see the log again with: {program} --config {config_path} log")
    print(f"work the review queue:  {program} --config {config_path} review show ID")
    return 0


def _write(root: Path, config_text: str, rules: Ruleset) -> tuple[DemoFiles, list, list]:
    """The demo files and its config.toml under `root`; the registry and keys read back
    against the catalogue (so a catalogue they do not fit fails here, not halfway through)."""
    files = write_demo(root)
    config_path = root / "config.toml"
    tmp = config_path.with_name(".config.toml.tmp")
    tmp.write_text(config_text, encoding="utf-8")
    os.replace(tmp, config_path)
    catalogue_file = str(rules.directory / "catalogue.toml")
    licences = read_registry(files.registry_csv, rules.catalogue, catalogue_file=catalogue_file)
    keys = read_keys(files.keys_csv, rules.catalogue, catalogue_file=catalogue_file)
    return files, licences, keys


def _write_new(root: Path, config_text: str, rules: Ruleset) -> tuple[DemoFiles, list, list]:
    """A new demo folder is written beside `root` under a temporary name and renamed into
    place when it is complete: a failure leaves no half-written folder behind."""
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial",
                                        dir=root.parent))
        umask = os.umask(0o022)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would make the demo private
    except OSError as exc:
        raise MailbotError(f"{exc.filename or root.parent}: cannot write the demo: "
                           f"{exc.strerror}") from None
    try:
        _, licences, keys = _write(staging, config_text, rules)
        os.rename(staging, root)
    except OSError as exc:
        raise MailbotError(f"{root}: cannot write the demo: {exc.strerror}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when the rename succeeded
    return write_demo(root), licences, keys  # unchanged files; their paths now under root

