"""What durable commits cost (issue 8 §7): SQLite's synchronous=FULL against NORMAL, in WAL mode.

mailbot now runs SQLite with synchronous=FULL: a commit is on the disk when it returns, so a
power cut cannot undo a decision whose reply the SMTP server already took. NORMAL (the floor
here, measured in the same run) syncs the WAL only at checkpoints. Two figures each:

- commits/s of one small transaction (an event row), the store's bare cost per commit;
- mails/s of one end-to-end `run_once` (Maildir inbox, reply files, SQLite; the mails of
  benchmarks/imap_throughput.py: read, decided, keys assigned, replies written and fsynced,
  mails filed), which commits 3 to 4 times per mail.

It prints the figures and the ratio FULL / NORMAL, and exits 0 whatever they are. The disk
under the temporary directory decides the figures (an fsync on tmpfs costs nothing): pass
`--dir` to measure on the disk mailbot's store will live on.

Run: `.venv/bin/python benchmarks/commit_durability.py [--mails 300] [--commits 500]
[--dir PATH] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT, ROOT / "tests", ROOT / "benchmarks"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import imap_throughput as bench  # noqa: E402  (its realistic mails)
from botconfig import write_config  # noqa: E402

import mailbot.store.database as database  # noqa: E402
from mailbot import config as config_module  # noqa: E402
from mailbot.ops.imports import read_keys, read_registry  # noqa: E402
from mailbot.run.pipeline import run_once  # noqa: E402
from mailbot.run.wiring import open_app  # noqa: E402

MODES = ("NORMAL", "FULL")


@contextmanager
def synchronous(mode: str) -> Iterator[None]:
    """Run the store with PRAGMA synchronous=`mode` (mailbot's own pragmas otherwise)."""
    real = database._sqlite_pragmas

    def pragmas(dbapi_connection: Any, record: Any) -> None:
        real(dbapi_connection, record)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA synchronous={mode}")
        cursor.close()

    database._sqlite_pragmas = pragmas
    try:
        yield
    finally:
        database._sqlite_pragmas = real


def commits_per_second(directory: Path, mode: str, commits: int) -> float:
    with synchronous(mode):
        store = database.Store(f"sqlite:///{directory / f'commits-{mode}.db'}")
        store.migrate()
        try:
            started = time.perf_counter()
            for n in range(commits):
                with store.transaction() as conn:
                    store.log_event(conn, "bench", n=n)
            return commits / (time.perf_counter() - started)
        finally:
            store.close()


def mails_per_second(directory: Path, mode: str, data: Any) -> tuple[float, int]:
    """(mails/s, replies written) of one pass over the dataset with synchronous=`mode`."""
    home = directory / f"bot-{mode}"
    (home / "inbox" / "new").mkdir(parents=True)
    config = write_config(home, """
[source]
path = "inbox"
[sink]
path = "outbox"
[store]
url = "sqlite:///mailbot.db"
[throttle]
max_replies_per_sender = 1000
""")
    registry_csv, keys_csv = bench.write_imports(home, data)
    for n, mail in enumerate(data.mails):
        (home / "inbox" / "new" / f"{n:06d}.bench").write_bytes(mail.data)
    with synchronous(mode):
        app = open_app(config_module.load(config))
        app.read_workers = 0  # the same reading work in both runs: the store is what differs
        try:
            with app.store.transaction() as conn:
                app.store.upsert_licences(conn, read_registry(registry_csv, app.rules.catalogue))
                app.store.add_keys(conn, read_keys(keys_csv, app.rules.catalogue))
            started = time.perf_counter()
            report = run_once(app)
            elapsed = time.perf_counter() - started
        finally:
            app.source.close()
            app.store.close()
    if report.errors or report.decided != len(data.mails):
        raise SystemExit(f"the {mode} pass went wrong: {report}")
    return len(data.mails) / elapsed, report.sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=300)
    parser.add_argument("--commits", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=None,
                        help="measure on this disk (default: the system's temporary directory)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mailbot-durability-", dir=args.dir))
    try:
        data = bench.make_dataset(args.mails)
        figures: dict[str, Any] = {"dir": str(work), "mails": args.mails,
                                   "commits": args.commits}
        for mode in MODES:
            figures[f"commits_per_s_{mode.lower()}"] = commits_per_second(work, mode,
                                                                          args.commits)
            rate, sent = mails_per_second(work, mode, data)
            figures[f"mails_per_s_{mode.lower()}"] = rate
            figures[f"replies_{mode.lower()}"] = sent
        figures["commit_ratio"] = figures["commits_per_s_full"] / figures["commits_per_s_normal"]
        figures["mail_ratio"] = figures["mails_per_s_full"] / figures["mails_per_s_normal"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"store in {figures['dir']} (removed)")
    print(f"commits/s   NORMAL (floor) {figures['commits_per_s_normal']:9.0f}   FULL "
          f"{figures['commits_per_s_full']:9.0f}   ratio {figures['commit_ratio']:.2f}")
    print(f"mails/s     NORMAL (floor) {figures['mails_per_s_normal']:9.1f}   FULL "
          f"{figures['mails_per_s_full']:9.1f}   ratio {figures['mail_ratio']:.2f}   "
          f"({args.mails} mails, {figures['replies_full']} replies)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
