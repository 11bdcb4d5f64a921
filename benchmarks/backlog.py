"""Per-mail cost of `run --once` over a backlog: linear at any size? (issue 10, §1).

A script, not a test: it prints its figures and exits 0 even when a target is missed (a crash
or a broken run is still an error). For each size (default 1,000 and 10,000 waiting mails):

1. MAILDIR + FILES, the embedded defaults as `make demo` uses them (Maildir var/inbox, reply
   files in var/outbox, SQLite var/mailbot.db, the shipped rules and templates): the mails are
   written into var/inbox/new, the registry and key pool imported, then ONE `run_once` decides,
   answers and files them all; its wall time / mails = ms per mail;
2. IMAP + SMTP: a private Dovecot (tests/dovecot.py, plaintext on loopback) and an aiosmtpd
   server (tests/smtp_server.py), fresh for each size, the mails APPENDed to the INBOX, then one
   `run_once` with ImapSource + SmtpSink (replies accepted by SMTP, copies in Sent, mails filed).

The mails, registry and keys are benchmarks/imap_throughput.py's generator (`make_dataset`: a
fifth with an .xlsx, the rest in the body from several mail clients; every request issues a
key); the largest size is generated once and the smaller ones are its prefix, with the whole
registry imported every time, so only the backlog differs. The floor of each line is its own
smallest size: the figure is the ratio (largest size's ms per mail) / (smallest size's), with
the target <= 1.2x. Skipped with a note when Dovecot is not installed (--no-imap skips it too).

Run: `.venv/bin/python benchmarks/backlog.py [--sizes 1000,10000] [--json] [--no-imap]
[--keep]`. A default run takes a few minutes on 2 cores (generating the mails is a part).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "benchmarks", ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from botconfig import server_config  # noqa: E402
from dovecot import DovecotServer, dovecot_available  # noqa: E402
from imap_throughput import (  # noqa: E402
    Dataset,
    close_app,
    folder_count,
    import_registry,
    make_dataset,
    write_imports,
    write_maildir,
)
from smtp_server import SmtpTestServer, make_tls_files  # noqa: E402

from mailbot import config as config_module  # noqa: E402
from mailbot.run.pipeline import run_once  # noqa: E402
from mailbot.run.wiring import open_app  # noqa: E402

TARGET_GROWTH = 1.2  # largest size's ms per mail at most 1.2x the smallest size's


def _check(report, expected: int) -> list[str]:
    problems = []
    if report.seen != expected:
        problems.append(f"saw {report.seen} mails, expected {expected}")
    if report.filed < expected:
        problems.append(f"filed {report.filed} of {expected} mails")
    if report.errors:
        problems.append(f"{len(report.errors)} errors, first: {report.errors[0]}")
    return problems


def run_maildir(work: Path, data: Dataset, size: int, imports: tuple[Path, Path]) -> dict:
    """The embedded defaults in `work`: var/inbox, var/outbox, var/mailbot.db."""
    config = config_module.from_mapping({}, base_dir=work)
    new = write_maildir(config, data.mails[:size])
    app = open_app(config)
    try:
        import_registry(app, *imports)
        t0 = time.perf_counter()
        report = run_once(app)
        seconds = time.perf_counter() - t0
    finally:
        close_app(app)
    outbox = config.resolve(config.sink.path)
    replies = sum(1 for _ in outbox.glob("*.eml"))
    left = sum(1 for _ in new.iterdir()) + sum(1 for _ in (new.parent / "cur").iterdir())
    problems = _check(report, size)
    if left:
        problems.append(f"{left} mails left in the inbox")
    return {"mails": size, "seconds": seconds, "ms_per_mail": 1000 * seconds / size,
            "replies": replies, "filed": report.filed, "problems": problems}


def run_imap(work: Path, data: Dataset, size: int, imports: tuple[Path, Path]) -> dict:
    """A fresh Dovecot and SMTP server for `size` mails in the INBOX."""
    imap = DovecotServer(tls=False)
    smtp: SmtpTestServer | None = None
    try:
        imap.start()
        smtp = SmtpTestServer(make_tls_files(work / "smtp-tls")).start()
        config = config_module.load(server_config(work, imap, smtp, imap_timeout=60,
                                                  smtp_timeout=60))
        imap.append_many("INBOX", (m.data for m in data.mails[:size]))
        app = open_app(config)
        try:
            import_registry(app, *imports)
            t0 = time.perf_counter()
            report = run_once(app)
            seconds = time.perf_counter() - t0
        finally:
            close_app(app)
        problems = _check(report, size)
        left = folder_count(imap, "INBOX")
        if left:
            problems.append(f"{left} mails left in the INBOX")
        return {"mails": size, "seconds": seconds, "ms_per_mail": 1000 * seconds / size,
                "replies": report.sent, "filed": report.filed,
                "copies_in_sent": folder_count(imap, "Sent"), "problems": problems}
    finally:
        if smtp is not None:
            with contextlib.suppress(Exception):
                smtp.stop()
        imap.stop()
        imap.remove()


def verdict(rows: list[dict]) -> dict[str, Any]:
    """Growth of the per-mail cost from the smallest to the largest size."""
    if len(rows) < 2:
        return {"growth": None, "verdict": "n/a"}
    growth = rows[-1]["ms_per_mail"] / rows[0]["ms_per_mail"]
    broken = any(row["problems"] for row in rows)
    return {"growth": growth, "target_max": TARGET_GROWTH,
            "verdict": "PASS" if growth <= TARGET_GROWTH and not broken else "MISS"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000",
                    help="backlog sizes, comma-separated, smallest first (default 1000,10000)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--no-imap", action="store_true", help="only Maildir + files")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        ap.error("--sizes takes whole numbers, e.g. 1000,10000")
    if not sizes or sizes[0] < 1:
        ap.error("--sizes must be >= 1")
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else \
        (lambda *a: print(*a, flush=True))

    work = Path(tempfile.mkdtemp(prefix="mailbot-backlog-"))
    logging.basicConfig(level=logging.WARNING, filename=str(work / "mailbot.log"), force=True)
    figures: dict[str, Any] = {"cores": os.cpu_count(), "python": sys.version.split()[0],
                               "sizes": sizes}
    t_start = time.perf_counter()
    try:
        t = time.perf_counter()
        data = make_dataset(sizes[-1])
        imports = write_imports(work, data)
        figures["generate_s"] = time.perf_counter() - t
        say(f"mailbot backlog benchmark: sizes {', '.join(map(str, sizes))}; generated "
            f"{sizes[-1]} mails in {figures['generate_s']:.1f} s; {os.cpu_count()} cores")
        lines = [("maildir_files", "Maildir + files (embedded defaults)", run_maildir)]
        if args.no_imap:
            say("  IMAP + SMTP: skipped (--no-imap)")
        elif not dovecot_available():
            say("  IMAP + SMTP: skipped: dovecot is not installed (`make system-deps`)")
        else:
            lines.append(("imap_smtp", "IMAP + SMTP (Dovecot, aiosmtpd)", run_imap))
        for key, title, runner in lines:
            rows = []
            for size in sizes:
                here = work / f"{key}-{size}"
                here.mkdir()
                row = runner(here, data, size, imports)
                rows.append(row)
                say(f"  {title}: {size} mails in {row['seconds']:.1f} s = "
                    f"{row['ms_per_mail']:.2f} ms per mail ({row['replies']} replies, "
                    f"{row['filed']} filed)")
                for problem in row["problems"]:
                    say(f"    PROBLEM: {problem}")
                if not args.keep:
                    shutil.rmtree(here, ignore_errors=True)
            result = verdict(rows)
            figures[key] = {"runs": rows, **result}
            if result["growth"] is not None:
                say(f"  {title}: {sizes[-1]}/{sizes[0]} per-mail ratio {result['growth']:.2f}x  "
                    f"target <= {TARGET_GROWTH:g}x: {result['verdict']}")
    finally:
        figures["run_s"] = time.perf_counter() - t_start
        if args.keep:
            say(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    say(f"  run time {figures['run_s']:.0f} s")
    if args.json:
        print(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
