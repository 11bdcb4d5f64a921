"""How the two throttle look-ups scale with the store's history (a script, not a test).

For each history size it builds a store at migration 0002 (before the throttle indexes), fills
it with a synthetic history (decided mails spread over the last 30 days, 1.6 requests per mail,
one reply per mail, the registry), times the throttle queries as mailbot ran them before
(`LIKE` over outbox.recipients; the request throttle's two joins without indexes), then
upgrades it to the newest revision (0003: outbox_recipients, the indexes) and times the queries
mailbot runs now. Times are per mail: one sender look-up and 1.6 request look-ups.

Run: `.venv/bin/python benchmarks/throttle_scaling.py [--sizes 1000,20000,100000]
[--postgresql URL]` (PostgreSQL: an admin URL; a scratch database is created and dropped).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from mailbot.store.database import Store  # noqa: E402

REQUESTS_PER_MAIL = 1.6
SAMPLES = 300


def fill(store: Store, mails: int, now: dt.datetime, rnd: random.Random) -> list[tuple]:
    """A history of `mails` decided mails; returns (sender, serial, company) samples."""
    companies = [f"Empresa {n:05d}, S.A. de C.V." for n in range(max(10, mails // 3))]
    licences, mail_rows, request_rows, outbox_rows, samples = [], [], [], [], []
    serial_no = 0
    for n in range(mails):
        company = rnd.choice(companies)
        sender = f"contacto{n % (mails // 2 + 1)}@empresa{companies.index(company)}.com.mx" \
            if n < 200 else f"contacto{n}@example{n % 97}.com.mx"
        decided = now - dt.timedelta(minutes=rnd.randrange(30 * 24 * 60))
        mail_rows.append(dict(id=n + 1, source="imap:bench", mail_id=f"1:{n + 1}",
                              fingerprint=f"{n:064x}", reference=f"CLV-{n + 1:06d}",
                              sender=sender, status="done", filed=True, attempts=1,
                              received_at=decided, decided_at=decided))
        for _ in range(2 if rnd.random() < REQUESTS_PER_MAIL - 1 else 1):
            serial_no += 1
            serial = f"S{serial_no:06d}-AAAA-BBBB"[:19]
            licences.append(dict(serial=serial, system="CONTPAQ i Bancos", company=company,
                                 purchase_date=dt.date(2012, 1, 1), modality="fisico",
                                 updated_at=now))
            request_rows.append(dict(mail=n + 1, position=0, kind="free_update",
                                     company=company, contact_name="X", contact_email=sender,
                                     system="CONTPAQ i Bancos", serial=serial, source="body",
                                     outcome="issued", hits="[]", created_at=decided,
                                     updated_at=decided))
        outbox_rows.append(dict(id=n + 1, mail=n + 1, purpose="reply", template="keys_issued",
                                message_id=f"<{n}@bench>", envelope_from="claves@example.com",
                                recipients=json.dumps([sender]), data=b"x" * 3000,
                                status="sent", attempts=1, created_at=decided))
        samples.append((sender, request_rows[-1]["serial"], company))
    with store.transaction() as conn:
        md = sa.MetaData()
        md.reflect(conn, only=["mails", "requests", "licences", "outbox"])
        for table, rows in (("mails", mail_rows), ("licences", licences),
                            ("requests", request_rows), ("outbox", outbox_rows)):
            for start in range(0, len(rows), 5000):
                conn.execute(md.tables[table].insert(), rows[start:start + 5000])
    return samples


OLD_SENDER = sa.text("SELECT count(*) FROM outbox WHERE outbox.purpose != 'alert' AND "
                     "outbox.created_at >= :since AND outbox.recipients LIKE :pattern")
OLD_SERIAL = sa.text("SELECT count(DISTINCT requests.mail) FROM requests JOIN mails ON "
                     "requests.mail = mails.id WHERE mails.decided_at >= :since AND "
                     "requests.serial = :serial")
OLD_COMPANY = sa.text("SELECT count(DISTINCT requests.mail) FROM requests JOIN mails ON "
                      "requests.mail = mails.id WHERE mails.decided_at >= :since AND "
                      "(requests.serial IN (SELECT licences.serial FROM licences WHERE "
                      "licences.company = :company) OR requests.company = :company)")


def per_mail_ms(store: Store, samples: list[tuple], new: bool, now: dt.datetime) -> float:
    sender_since = now - dt.timedelta(minutes=60)
    request_since = now - dt.timedelta(minutes=1440)
    times = []
    with store.transaction() as conn:
        for sender, serial, company in samples[:SAMPLES]:
            t = time.perf_counter()
            if new:
                store.replies_to_since(conn, sender, sender_since)
            else:
                conn.execute(OLD_SENDER, {"since": sender_since,
                                          "pattern": f"%{json.dumps(sender)}%"}).scalar_one()
            for _ in range(2 if random.random() < REQUESTS_PER_MAIL - 1 else 1):
                if new:
                    store.request_counts(conn, serials=[serial], companies=[company],
                                         since=request_since, mail=None)
                else:
                    conn.execute(OLD_SERIAL, {"since": request_since, "serial": serial}).one()
                    conn.execute(OLD_COMPANY, {"since": request_since,
                                               "company": company}).one()
            times.append(time.perf_counter() - t)
    return 1000 * statistics.fmean(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,20000,100000",
                    help="history sizes in mails (comma-separated)")
    ap.add_argument("--postgresql", metavar="ADMIN_URL",
                    help="also measure on PostgreSQL (e.g. postgresql://postgres@127.0.0.1/postgres)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    backends = ["sqlite"] + (["postgresql"] if args.postgresql else [])
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    print(f"throttle look-ups per mail (1 sender + {REQUESTS_PER_MAIL} request look-ups), "
          f"mean of {SAMPLES} mails")
    for backend in backends:
        for size in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                admin = None
                if backend == "sqlite":
                    url = f"sqlite:///{tmp}/throttle.db"
                else:
                    name = f"mailbot_throttle_{uuid.uuid4().hex[:8]}"
                    admin = sa.create_engine(args.postgresql, isolation_level="AUTOCOMMIT")
                    with admin.connect() as c:
                        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
                    url = args.postgresql.rsplit("/", 1)[0] + f"/{name}"
                store = Store(url)
                try:
                    store.migrate("0002")
                    samples = fill(store, size, now, random.Random(size))
                    if backend == "postgresql":
                        with store.engine.connect() as c:
                            c.execute(sa.text("ANALYZE"))
                            c.commit()
                    before = per_mail_ms(store, samples, False, now)
                    t = time.perf_counter()
                    store.migrate()  # 0003: outbox_recipients (filled from the history), indexes
                    migrated = time.perf_counter() - t
                    if backend == "postgresql":
                        with store.engine.connect() as c:
                            c.execute(sa.text("ANALYZE"))
                            c.commit()
                    after = per_mail_ms(store, samples, True, now)
                finally:
                    store.close()
                    if admin is not None:
                        with admin.connect() as c:
                            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                        admin.dispose()
            print(f"  {backend:10s} history {size:>7,} mails: before {before:8.3f} ms/mail, "
                  f"after {after:6.3f} ms/mail  (migration 0003 took {migrated:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
