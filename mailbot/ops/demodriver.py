"""`mailbot demo`: a whole working installation in one folder, run once, log printed."""

from __future__ import annotations

import json
from pathlib import Path

from mailbot import config as config_module
from mailbot.ops import logview
from mailbot.run import review
from mailbot.run import unlock_flow
from mailbot.ops.review_actions import format_list
from mailbot.ops.demo import write_demo
from mailbot.ops.imports import read_keys, read_registry
from mailbot.run.pipeline import fulfil_pending, run_once
from mailbot.run.wiring import open_app

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


def run_demo(root: Path, *, project: Path | None = None) -> int:
    project = (project or Path.cwd()).resolve()
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    files = write_demo(root)
    config_path = root / "config.toml"
    config_path.write_text(DEMO_CONFIG.format(
        rules=json.dumps(str(project / "rules")),
        templates=json.dumps(str(project / "templates"))), encoding="utf-8")
    config = config_module.load(config_path)
    app = open_app(config)
    catalogue_file = str(app.rules.directory / "catalogue.toml")
    try:
        with app.store.transaction() as conn:
            added, updated = app.store.upsert_licences(
                conn, read_registry(files.registry_csv, app.rules.catalogue,
                                    catalogue_file=catalogue_file))
            refused = app.store.add_keys(conn, read_keys(files.keys_csv, app.rules.catalogue,
                                                         catalogue_file=catalogue_file))
        print(f"registry: {added} licence(s) added, {updated} updated ({files.registry_csv})")
        print(f"key pool: {len(refused)} key(s) already stored were not added again "
              f"({files.keys_csv})")
        fulfil_pending(app)
        report = run_once(app)
        print(f"run: {report.seen} mail(s) in the inbox, {report.decided} decided, "
              f"{report.duplicates} recognised as already handled, {report.sent} "
              f"message(s) written, {report.filed} filed\n")
        print("processing log (newest first):\n")
        print(logview.format_text(logview.query(app.store, limit=100)))
        with app.store.transaction() as conn:
            tasks = review.tasks(conn)
            ledger = unlock_flow.entries(conn)
        print("unlock ledger:\n")
        for entry in ledger:
            print(f"#{entry.id}  {entry.serial}  {entry.status}  unlock {entry.number or '?'} "
                  f"({entry.modality or '?'}), approved by {entry.approved_by or '-'}: "
                  f"{entry.reason}")
        if not ledger:
            print("(no unlock yet)")
        print("\nreview queue (mailbot review list):\n")
        print(format_list(tasks, now=app.now(), calendar=app.calendar()))
    finally:
        app.store.close()
    print(f"replies (.eml files):   {config.resolve(config.sink.path)}")
    print(f"handled mails:          {config.resolve(config.source.path)}/.processed, .review, "
          ".ignored")
    print(f"configuration:          {config_path}")
    print(f"see the log again with: .venv/bin/mailbot --config {config_path} log")
    print(f"work the review queue:  .venv/bin/mailbot --config {config_path} review show ID")
    return 0
