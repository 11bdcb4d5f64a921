"""The console's log over a store with a history: GET /api/v1/mails (unfiltered, by serial, by
a text search, and a deep page) and the CSV export of every mail, each authenticated by an API
token, against floors measured in the same run: the same store queries called directly
(`mailbot.store.mail_log`), without HTTP, the guard, validation or encoding.

    .venv/bin/python benchmarks/console_log.py [--mails 20000] [--requests 50] [--store URL]

Prints milliseconds per request and the ratio to its floor. Every page costs a COUNT and one
page of rows; the text search is a LIKE over subject and sender, so it reads every mail: its
figure grows with the history, which is what this shows. The export walks the whole selection
in chunks of CSV_CHUNK mails, one short transaction each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import sqlalchemy as sa  # noqa: E402
from argon2 import PasswordHasher  # noqa: E402
from botconfig import write_config  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from timing import per_call  # noqa: E402

from mailbot import config as config_module  # noqa: E402
from mailbot.ops.web.app import create_app  # noqa: E402
from mailbot.ops.web.views.mails import CSV_CHUNK, PAGE_SIZE  # noqa: E402
from mailbot.store import Store, mail_log  # noqa: E402
from mailbot.store.schema import mails, requests  # noqa: E402

OUTCOMES = ("issued", "review", "ignored", "incomplete", "not_eligible")
SERIAL = "AAAA-BBBB-CCCC-0042"


def serial_of(n: int) -> str:
    return f"AAAA-BBBB-CCCC-{n % 5000:04d}"


def fill(store: Store, count: int) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with store.transaction() as conn:
        conn.execute(mails.insert(), [dict(
            source="bench", mail_id=str(n), fingerprint=f"{n:064d}", reference=f"CLV-{n:06d}-X",
            status="done", outcome=OUTCOMES[n % len(OUTCOMES)], filed=True, attempts=0,
            size=100, kind="free_update", sender=f"cliente{n % 3000}@empresa{n % 700}.com.mx",
            subject=("Solicitud de claves para actualización sin costo" if n % 7
                     else f"RE: Factura {n}"),
            received_at=now - dt.timedelta(minutes=n)) for n in range(count)])
        ids = conn.execute(sa.select(mails.c.id).order_by(mails.c.id)).scalars().all()
        conn.execute(requests.insert(), [dict(
            mail=mail, position=0, kind="free_update", company="Empresa", contact_name="Ana",
            contact_email="ana@example.com", system="CONTPAQ i Nóminas", serial=serial_of(n),
            source="body", outcome=OUTCOMES[n % len(OUTCOMES)], hits="[]", created_at=now,
            updated_at=now) for n, mail in enumerate(ids)])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--store", default="", help="a store URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        url = args.store or f"sqlite:///{directory / 'mailbot.db'}"
        path = write_config(directory, f'[store]\nurl = "{url}"\n'
                                       f'[web]\nsecret_key_file = "{directory / "key"}"\n')
        app = create_app(config_module.load(path),
                         hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        web = app.state.web
        with web.store.transaction() as conn:
            if conn.execute(sa.select(mails.c.id).limit(1)).first() is not None:
                print("the store is not empty; give an empty one", file=sys.stderr)
                return 2
        fill(web.store, args.mails)
        web.accounts.add("bench", "operator", "x" * 12, now=web.now())
        token = web.accounts.new_token("bench", now=web.now())
        client = TestClient(app)
        headers = {"authorization": f"Bearer {token}"}
        deep = max(1, args.mails // PAGE_SIZE // 2)

        def floor(selection: mail_log.MailFilter, page: int = 1):
            def call() -> None:
                with web.store.transaction() as conn:
                    mail_log.count(conn, selection)
                    found = mail_log.search(conn, selection, offset=(page - 1) * PAGE_SIZE,
                                            limit=PAGE_SIZE)
                    mail_log.serials_of(conn, [r.id for r in found])
            return call

        def export_floor() -> None:
            before = None
            while True:
                with web.store.transaction() as conn:
                    chunk = mail_log.search_before(conn, mail_log.MailFilter(),
                                                   before_id=before, limit=CSV_CHUNK)
                    mail_log.serials_of(conn, [r.id for r in chunk])
                if not chunk:
                    return
                before = chunk[-1].id

        def get(path: str, **params):
            def call() -> None:
                response = client.get(path, params=params, headers=headers)
                assert response.status_code == 200, (path, response.status_code)
            return call

        print(f"mails in the store: {args.mails} ({web.store.engine.dialect.name}); "
              f"median of {args.requests} calls each")
        cases = [
            ("page 1, no filter", get("/api/v1/mails"), floor(mail_log.MailFilter())),
            (f"serial={SERIAL}", get("/api/v1/mails", serial=SERIAL),
             floor(mail_log.MailFilter(serial=SERIAL))),
            ("q=factura (LIKE)", get("/api/v1/mails", q="factura"),
             floor(mail_log.MailFilter(text="factura"))),
            (f"page {deep}", get("/api/v1/mails", page=deep), floor(mail_log.MailFilter(), deep)),
        ]
        for name, call, base_call in cases:
            base = per_call(base_call, args.requests)
            ms = per_call(call, args.requests)
            print(f"GET /api/v1/mails {name:<28} {ms:8.2f} ms; its store queries alone "
                  f"{base:8.2f} ms; {ms / base:5.2f} x")
        repeat = max(3, args.requests // 10)
        base = per_call(export_floor, repeat)
        ms = per_call(get("/correos.csv"), repeat)
        print(f"GET /correos.csv, all {args.mails} mails    {ms:8.2f} ms "
              f"({args.mails / ms * 1000:,.0f} mails/s); its store queries alone {base:8.2f} ms;"
              f" {ms / base:5.2f} x")
        web.store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
