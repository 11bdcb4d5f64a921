"""The console's "Vista previa de los cambios" (`/admin/reglas`): how long the admin waits, and
how long one transaction of it holds the store (issue 12, §3).

A script, not a test: it prints its figures and exits 0 even when the target is missed (a crash
or a broken run is still an error, exit 1).

1. The floor-like reference: N mails (default 300; benchmarks/imap_throughput.py's generator)
   written into a Maildir and ONE `run_once` (Maildir + reply files + SQLite, or --postgres)
   records, decides, answers and files them: its wall time per mail.
2. `mailbot.ops.rule_edits.preview`, the engine the page runs, with the Trimestral price changed
   to 2600.50 in a copy of the rules: the newest MAX_PREVIEW_MAILS (100) of the stored mails
   of the last 7 days decided twice (rules in use, proposed rules), each run one transaction on
   its own snapshot. Checked: the number of mails decided, and the store's row counts unchanged.

Printed: the preview's seconds (target < 5 s for 100 mails), ms per mail decided (each mail is
decided twice), the ratio of that to run_once's ms per mail, and the longest single dry run
(on PostgreSQL: the longest a row lock of the preview is held).

Run: `.venv/bin/python benchmarks/rules_preview.py [--mails 300] [--postgres URL] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "benchmarks", ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from botconfig import local_sections, write_config  # noqa: E402
from dry_run import row_counts  # noqa: E402
from imap_throughput import close_app, import_registry, make_dataset, write_imports, write_maildir  # noqa: E402

from mailbot import config as config_module  # noqa: E402
from mailbot.ops import rule_edits  # noqa: E402
from mailbot.run import dryrun  # noqa: E402
from mailbot.run.pipeline import run_once  # noqa: E402
from mailbot.run.versions import folder_files  # noqa: E402
from mailbot.run.wiring import open_app  # noqa: E402

TARGET_SECONDS = 5.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mails", type=int, default=300, help="stored mails (default 300)")
    ap.add_argument("--postgres", metavar="URL", help="an empty PostgreSQL database instead "
                                                     "of SQLite")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args(argv)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else \
        (lambda *a: print(*a, flush=True))
    work = Path(tempfile.mkdtemp(prefix="mailbot-rules-preview-bench-"))
    logging.basicConfig(level=logging.WARNING, filename=str(work / "mailbot.log"), force=True)
    figures: dict[str, Any] = {"cores": os.cpu_count(), "mails": args.mails,
                               "target_seconds": TARGET_SECONDS,
                               "cap": rule_edits.MAX_PREVIEW_MAILS}
    problems: list[str] = []
    try:
        data = make_dataset(args.mails)
        imports = write_imports(work, data)
        config_path = write_config(work, local_sections(args.postgres or "sqlite:///mailbot.db"))
        config = config_module.load(config_path)
        write_maildir(config, data.mails)
        app = open_app(config)
        try:
            import_registry(app, *imports)
            t = time.perf_counter()
            report = run_once(app)
            figures["run_once_s"] = time.perf_counter() - t
            if report.errors or report.decided != args.mails:
                problems.append(f"run_once decided {report.decided} of {args.mails}")
            before = row_counts(app)
            files = folder_files(app.rules.directory, ".toml")
            values = rule_edits.values(files)
            values.policies[0].price = Decimal("2600.50")
            proposed = rule_edits.written(files, values)

            runs: list[float] = []
            real = dryrun.dry_run

            def timed(*a: Any, **k: Any) -> Any:
                t = time.perf_counter()
                try:
                    return real(*a, **k)
                finally:
                    runs.append(time.perf_counter() - t)

            dryrun.dry_run = timed  # type: ignore[assignment]
            try:
                t = time.perf_counter()
                found = rule_edits.preview(config, app.store, app.rules,
                                           app.renderer.templates_dir, proposed, 7)
                seconds = time.perf_counter() - t
            finally:
                dryrun.dry_run = real  # type: ignore[assignment]
            if row_counts(app) != before:
                problems.append("the store's row counts changed")
        finally:
            close_app(app)
        wanted = min(args.mails, rule_edits.MAX_PREVIEW_MAILS)
        if found.mails != wanted:
            problems.append(f"the preview decided {found.mails} mails, not {wanted}")
        per_mail = 1000 * seconds / (2 * max(found.mails, 1))
        floor = 1000 * figures["run_once_s"] / args.mails
        verdict = "PASS" if seconds < TARGET_SECONDS and not problems else "MISS"
        figures.update(preview_s=seconds, decided=found.mails, changed=len(found.changes),
                       ms_per_decision=per_mail, run_once_ms_per_mail=floor,
                       ratio=per_mail / floor, longest_run_s=max(runs), verdict=verdict,
                       problems=problems)
        shown = ", ".join(f"{r:.2f}" for r in runs)
        say(f"rules preview benchmark: {args.mails} stored mails, {os.cpu_count()} cores, "
            f"store {'PostgreSQL' if args.postgres else 'SQLite'}")
        say(f"  floor: run_once {floor:.2f} ms per mail")
        say(f"  preview: {seconds:.2f} s for {found.mails} mails decided twice "
            f"({len(found.changes)} answers change) = {per_mail:.2f} ms per decision, "
            f"{per_mail / floor:.2f}x run_once; longest single dry run (one transaction) "
            f"{max(runs):.2f} s (each run: {shown} s); target < {TARGET_SECONDS:g} s: {verdict}")
        for problem in problems:
            say(f"    PROBLEM: {problem}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
