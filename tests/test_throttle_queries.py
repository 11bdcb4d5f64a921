"""The indexed throttle look-ups count exactly what the old full-scan queries counted."""

from __future__ import annotations

import datetime as dt
import json
import random

import sqlalchemy as sa

from mailbot.store.database import licences, mails, outbox, requests, utcnow

NOW = dt.datetime(2026, 11, 23, 12, 0)
COMPANIES = [f"Empresa {n}" for n in range(6)] + ["x" * 3000]  # a long name: no btree limit
SERIALS = [f"SER{n:02d}-AAAA-BBBB-CC"[:19] for n in range(15)]
ADDRESSES = [f"cliente{n}@example.com" for n in range(5)]


def old_counts(conn, serial: str, company: str, since: dt.datetime) -> tuple[int, int]:
    """The request throttle as it was: two joins, an OR with IN (subquery)."""
    recent = (sa.select(sa.func.count(sa.distinct(requests.c.mail)))
              .select_from(requests.join(mails, requests.c.mail == mails.c.id))
              .where(mails.c.decided_at >= since))
    by_serial = conn.execute(recent.where(requests.c.serial == serial)).scalar_one()
    of_company = sa.select(licences.c.serial).where(licences.c.company == company)
    by_company = conn.execute(recent.where(sa.or_(
        requests.c.serial.in_(of_company), requests.c.company == company))).scalar_one()
    return by_serial, by_company


def fill(store, rnd: random.Random) -> None:
    with store.transaction() as conn:
        for serial in SERIALS[:10]:  # five serials are not in the registry
            conn.execute(licences.insert().values(
                serial=serial, system="CONTPAQ i Bancos", company=rnd.choice(COMPANIES),
                purchase_date=dt.date(2012, 1, 1), modality="fisico", updated_at=NOW))
        for n in range(60):
            decided = None if n % 7 == 0 else NOW - dt.timedelta(minutes=rnd.randrange(3000))
            mail = conn.execute(mails.insert().values(
                source="s", mail_id=str(n), fingerprint=f"{n:064x}", status="done",
                filed=True, attempts=1, received_at=NOW, decided_at=decided)
            ).inserted_primary_key[0]
            for position in range(rnd.randint(1, 3)):
                conn.execute(requests.insert().values(
                    mail=mail, position=position, kind="free_update",
                    company=rnd.choice(COMPANIES), contact_name="x", contact_email="a@b.mx",
                    system="CONTPAQ i Bancos", serial=rnd.choice(SERIALS), source="body",
                    outcome="issued", hits="[]", created_at=NOW, updated_at=NOW))
            for _ in range(rnd.randint(0, 2)):
                store.enqueue(conn, mail=mail, purpose=rnd.choice(("reply", "keys", "alert")),
                              template="t", message_id=f"<{n}.{rnd.random()}@x>",
                              envelope_from="claves@example.com",
                              recipients=rnd.sample(ADDRESSES, rnd.randint(1, 2)), data=b"x")


def test_the_request_throttle_counts_as_before(store):
    fill(store, random.Random(3))
    checked = 0
    with store.transaction() as conn:
        for serial in SERIALS:
            for company in COMPANIES:
                for minutes in (60, 1440, 5000):
                    since = NOW - dt.timedelta(minutes=minutes)
                    found = store.request_counts(conn, serials=[serial], companies=[company],
                                                 since=since, mail=None)
                    new = (found[0].get(serial, 0), found[1].get(company, 0))
                    assert new == old_counts(conn, serial, company, since), (serial, company)
                    checked += new != (0, 0)
    assert checked > 50  # the data really hit both counts


def test_one_grouped_look_up_counts_every_serial_and_company_as_one_at_a_time(store):
    fill(store, random.Random(5))
    since = NOW - dt.timedelta(minutes=1440)
    with store.transaction() as conn:
        by_serial, by_company = store.request_counts(conn, serials=SERIALS * 2,
                                                     companies=COMPANIES, since=since, mail=None)
        assert {s: by_serial.get(s, 0) for s in SERIALS} == {
            s: old_counts(conn, s, "-", since)[0] for s in SERIALS}
        assert {c: by_company.get(c, 0) for c in COMPANIES} == {
            c: old_counts(conn, "-", c, since)[1] for c in COMPANIES}
        assert sum(by_serial.values()) > 10 and sum(by_company.values()) > 10


def test_the_mail_being_decided_is_not_counted(store):
    fill(store, random.Random(6))
    since = NOW - dt.timedelta(minutes=5000)
    with store.transaction() as conn:
        mail, serial, company = conn.execute(
            sa.select(requests.c.mail, requests.c.serial, requests.c.company)
            .join(mails, mails.c.id == requests.c.mail)
            .where(mails.c.decided_at.is_not(None)).limit(1)).one()
        everyone = store.request_counts(conn, serials=[serial], companies=[company],
                                        since=since, mail=None)
        others = store.request_counts(conn, serials=[serial], companies=[company],
                                      since=since, mail=mail)
    assert others[0].get(serial, 0) == everyone[0][serial] - 1
    assert others[1].get(company, 0) == everyone[1][company] - 1


def test_the_sender_throttle_counts_as_before_and_ignores_case(store):
    fill(store, random.Random(4))
    with store.transaction() as conn:
        rows = conn.execute(sa.select(outbox.c.purpose, outbox.c.recipients,
                                      outbox.c.created_at)).all()
        since = utcnow() - dt.timedelta(hours=1)
        for address in ADDRESSES + ["nobody@example.com"]:
            expected = sum(1 for r in rows if r.purpose != "alert" and r.created_at >= since
                           and address in json.loads(r.recipients))
            assert store.replies_to_since(conn, address, since) == expected
            assert store.replies_to_since(conn, address.upper(), since) == expected
        assert store.replies_to_since(conn, ADDRESSES[0], utcnow() + dt.timedelta(hours=1)) == 0
