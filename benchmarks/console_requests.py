"""What the console adds to a request over a store with a history: GET /api/v1/summary (the
panel's JSON twin) and GET /metrics, each authenticated by an API token, against floors measured
in the same run: the same store queries called directly, without HTTP, the guard or rendering.

    .venv/bin/python benchmarks/console_requests.py [--mails 20000] [--requests 200]

Prints milliseconds per request and the ratio to its floor: what routing, the token look-up
(and its last-use update) and JSON or Prometheus encoding cost on top of the counts. Every count
is grouped in the database, so the figures follow the number of outcomes and systems, not of
mails; /healthz is shown for scale.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from argon2 import PasswordHasher  # noqa: E402
from botconfig import write_config  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from timing import per_call  # noqa: E402

from mailbot import config as config_module  # noqa: E402
from mailbot.ops.web.app import create_app  # noqa: E402
from mailbot.store import Store, panel  # noqa: E402
from mailbot.store.schema import mails  # noqa: E402

OUTCOMES = ("answered", "review", "ignored", "incomplete", "duplicate")


def fill(store: Store, count: int) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [dict(source="bench", mail_id=str(n), fingerprint=f"{n:064d}", reference=f"CLV-{n}",
                 status="done", outcome=OUTCOMES[n % len(OUTCOMES)], filed=True, attempts=0,
                 size=100, received_at=now - dt.timedelta(minutes=n)) for n in range(count)]
    with store.transaction() as conn:
        conn.execute(mails.insert(), rows)
        store.add_keys(conn, [SimpleNamespace(system="CONTPAQ i Nóminas", key=f"K-{n}")
                              for n in range(1000)])
        store.log_event(conn, panel.PASS_FINISHED, duration_seconds=1.0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path = write_config(directory, '[store]\nurl = "sqlite:///mailbot.db"\n')
        config = config_module.load(path)
        app = create_app(config, hasher=PasswordHasher(time_cost=1, memory_cost=8,
                                                       parallelism=1))
        web = app.state.web
        fill(web.store, args.mails)
        web.accounts.add("bench", "operator", "x" * 12, now=web.now())
        token = web.accounts.new_token("bench", now=web.now())
        client = TestClient(app)
        headers = {"authorization": f"Bearer {token}"}

        def summary_queries() -> None:  # what the summary view asks the store
            with web.store.transaction() as conn:
                panel.mails_by_outcome(conn, since=web.today_start())
                panel.review_counts(conn, web.now())
                web.store.pool_counts(conn)
                panel.outbox_counts(conn)
                panel.last_pass(conn)
                panel.recent_alerts(conn, limit=10)

        collector = next(iter(app.state.metrics._collector_to_names))

        def metrics_queries() -> None:
            list(collector.collect())

        def get(path: str):
            def call() -> None:
                response = client.get(path, headers=headers)
                assert response.status_code in (200, 503), (path, response.status_code)
            return call

        print(f"mails in the store: {args.mails}; median of {args.requests} calls each")
        print(f"GET /healthz            {per_call(get('/healthz'), args.requests):8.2f} ms")
        for path, floor in (("/api/v1/summary", summary_queries), ("/metrics", metrics_queries)):
            base = per_call(floor, args.requests)
            ms = per_call(get(path), args.requests)
            print(f"GET {path:<18} {ms:8.2f} ms; its store queries alone {base:8.2f} ms; "
                  f"{ms / base:5.2f} x")
        web.store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
