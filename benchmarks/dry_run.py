"""`mailbot dry-run --since 30d --json` over 1,000 stored mails: in seconds? (issue 12, §1).

A script, not a test: it prints its figures and exits 0 even when the target is missed (a crash
or a broken run is still an error, exit 1).

1. The floor-like reference: N mails (default 1,000; benchmarks/imap_throughput.py's generator,
   `make_dataset`: a fifth with an .xlsx, every request issues a key) are written into a Maildir
   and ONE `run_once` on Maildir + reply files + SQLite (tests/botconfig.py's local sections,
   the shipped rules and templates) records, decides, answers and files them: its wall time.
2. `mailbot dry-run --since 30d --json` as a user runs it, a subprocess (so its start-up is
   counted): every stored mail's bytes read from the Maildir folders it was filed in, decided
   again on a snapshot (a copy of the SQLite file), replies rendered, one JSON line per mail.
   Checked: N lines, no mail failed, and the store's row counts unchanged.

Printed: the dry run's seconds (target < 10 s), ms per mail, and the ratio dry run / run_once
(the same mails through the real pass, measured in the same run: noise on a busy machine hits
both); also the CPU seconds of each, which a busy machine disturbs less than wall time.
`--postgres URL` runs both on a PostgreSQL database instead (it must be empty).

Run: `.venv/bin/python benchmarks/dry_run.py [--mails 1000] [--json] [--keep]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "benchmarks", ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import sqlalchemy as sa  # noqa: E402
from botconfig import local_sections, write_config  # noqa: E402
from imap_throughput import close_app, import_registry, make_dataset, write_imports, write_maildir  # noqa: E402

from mailbot import config as config_module  # noqa: E402
from mailbot.run.pipeline import run_once  # noqa: E402
from mailbot.run.wiring import open_app  # noqa: E402
from mailbot.store.snapshot import table_names  # noqa: E402

TARGET_SECONDS = 10.0


def row_counts(app) -> dict[str, int]:
    with app.store.transaction() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in table_names()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mails", type=int, default=1000, help="stored mails (default 1000)")
    ap.add_argument("--postgres", metavar="URL", help="an empty PostgreSQL database instead "
                                                     "of SQLite")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    if args.mails < 1:
        ap.error("--mails must be >= 1")
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else \
        (lambda *a: print(*a, flush=True))
    work = Path(tempfile.mkdtemp(prefix="mailbot-dry-run-bench-"))
    logging.basicConfig(level=logging.WARNING, filename=str(work / "mailbot.log"), force=True)
    figures: dict[str, Any] = {"cores": os.cpu_count(), "mails": args.mails,
                               "target_seconds": TARGET_SECONDS}
    problems: list[str] = []
    try:
        t = time.perf_counter()
        data = make_dataset(args.mails)
        imports = write_imports(work, data)
        config_path = write_config(work, local_sections(args.postgres or "sqlite:///mailbot.db"))
        config = config_module.load(config_path)
        write_maildir(config, data.mails)
        figures["generate_s"] = time.perf_counter() - t
        say(f"mailbot dry-run benchmark: {args.mails} mails generated in "
            f"{figures['generate_s']:.1f} s; {os.cpu_count()} cores; "
            f"store {'PostgreSQL' if args.postgres else 'SQLite'}")

        app = open_app(config)
        try:
            import_registry(app, *imports)
            t, c = time.perf_counter(), time.process_time()
            report = run_once(app)
            figures["run_once_s"] = time.perf_counter() - t
            figures["run_once_cpu_s"] = time.process_time() - c  # without its read-ahead workers
            if report.errors or report.decided != args.mails:
                problems.append(f"run_once decided {report.decided} of {args.mails}, "
                                f"{len(report.errors)} errors")
            before = row_counts(app)
        finally:
            close_app(app)
        say(f"  reference: run_once over {args.mails} mails (Maildir + files): "
            f"{figures['run_once_s']:.2f} s = "
            f"{1000 * figures['run_once_s'] / args.mails:.2f} ms per mail")

        out = work / "dry-run.jsonl"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        with out.open("wb") as stdout:
            done = subprocess.run(
                [sys.executable, "-m", "mailbot", "--config", str(config_path), "dry-run",
                 "--since", "30d", "--json"], stdout=stdout, stderr=subprocess.PIPE, env=env,
                check=False)
        seconds = time.perf_counter() - t
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        if done.returncode != 0:
            problems.append(f"dry-run exited {done.returncode}: "
                            f"{done.stderr.decode(errors='replace')[-500:]}")
        if len(lines) != args.mails:
            problems.append(f"dry-run printed {len(lines)} lines for {args.mails} mails")
        failed = [r for r in lines if r.get("error") or r.get("problem")]
        if failed:
            problems.append(f"{len(failed)} mails failed, first: {failed[0]}")
        app = open_app(config)
        try:
            if row_counts(app) != before:
                problems.append("the store's row counts changed")
        finally:
            close_app(app)
        replies = sum(len(r.get("replies") or ()) for r in lines)
        ratio = seconds / figures["run_once_s"]
        verdict = "PASS" if seconds < TARGET_SECONDS and not problems else "MISS"
        figures.update(dry_run_s=seconds, dry_run_cpu_s=cpu,
                       ms_per_mail=1000 * seconds / args.mails,
                       ratio_to_run_once=ratio, replies=replies, verdict=verdict,
                       problems=problems)
        say(f"  dry-run --since 30d --json: {seconds:.2f} s = "
            f"{figures['ms_per_mail']:.2f} ms per mail ({len(lines)} lines, {replies} replies); "
            f"{ratio:.2f}x run_once; target < {TARGET_SECONDS:g} s: {verdict}")
        say(f"  CPU seconds (less noisy on a busy machine): dry-run {cpu:.2f} s (with its "
            f"read-ahead workers), run_once {figures['run_once_cpu_s']:.2f} s (main process "
            "only)")
        for problem in problems:
            say(f"    PROBLEM: {problem}")
    finally:
        if args.keep:
            say(f"  work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, default=str))
    return 1 if problems and any("exited" in p or "lines" in p for p in problems) else 0


if __name__ == "__main__":
    sys.exit(main())
