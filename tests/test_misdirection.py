"""Keys and data only to the registered contact (issue 8 §1), each test an attack end to end.

- A request that waited for keys is decided again against the registry when its key is bound.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import json
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from smtp_server import SmtpTestServer
from test_unlock_flow import (
    CONSTRUCTORA,
    FACTURA,
    FREE,
    KEYS,
    NOMINAS,
    PDF,
    PHYSICAL,
    RAUL,
    REGISTRY,
    Harness,
    request_mail,
    unlock_mail,
)

from mailbot.addresses import normalise_domain
from mailbot.ops import review_actions
from mailbot.ops.imports import KeyRecord, LicenceRecord
from mailbot.run.pending import fulfil_pending
from mailbot.store.database import keys, outbox

FREE_SUBJECT = "Solicitud de claves para actualización sin costo"
STRANGER = "curioso@competencia.com.mx"
NEW_CONTACT = "sistemas@empresamuestra.com.mx"
LAURA = "compras@otrodominio.com"


def free_request(sender: str = RAUL, **kw) -> bytes:
    return request_mail(sender=sender, serial=FREE, system=FACTURA, subject=FREE_SUBJECT, **kw)


def registered(serial: str, **changes) -> LicenceRecord:
    [record] = [r for r in REGISTRY if r.serial == serial]
    return dataclasses.replace(record, **changes)


def key_rows(bot: Harness) -> list:
    with bot.app.store.transaction() as conn:
        return conn.execute(sa.select(keys).order_by(keys.c.id)).all()


# --- a stale recipient: the registry changes while a request waits for keys ------------------

@pytest.fixture
def waiting(tmp_path):
    """Raúl asked for the keys of FREE while the Factura pool was empty: his request waits."""
    bot = Harness(tmp_path, keys=tuple(k for k in KEYS if k.system != FACTURA))
    bot.run(free_request())
    assert [r.template for r in bot.replies()] == ["pending_keys"]
    assert [r.outcome for r in bot.requests()] == ["pending"]
    yield bot
    bot.close()


def import_keys(bot: Harness) -> int:
    with bot.app.store.transaction() as conn:
        bot.app.store.add_keys(conn, [KeyRecord(FACTURA, "2012-FACT-NEW1")])
    return fulfil_pending(bot.app)


@pytest.mark.parametrize("change", [
    {"contact_email": NEW_CONTACT},  # the company changed its contact
    {"system": "CONTPAQ i Contabilidad"},  # the registry corrected the serial's system
], ids=["contact", "system"])
def test_a_waiting_request_goes_to_review_when_the_registry_changed_meanwhile(waiting, change):
    with waiting.app.store.transaction() as conn:
        waiting.app.store.upsert_licences(conn, [registered(FREE, **change)])

    assert import_keys(waiting) == 0
    waiting.run()

    assert [r.template for r in waiting.replies()] == ["pending_keys"]  # no keys to anyone
    assert all(k.serial is None for k in key_rows(waiting))  # and none bound in waiting
    [req] = waiting.requests()
    assert req.outcome == "review"
    assert json.loads(req.hits)[-1]["rule"] == "keys.imported"
    [task] = waiting.tasks()
    assert (task.kind, task.reason, task.request, task.status) == (
        "free_update", "registry_changed", req.id, "open")
    assert any("Solicitud para revisión" in a for a in waiting.alerts())


def test_an_approved_stale_request_sends_the_keys_to_the_contact_registered_now(waiting):
    with waiting.app.store.transaction() as conn:
        waiting.app.store.upsert_licences(conn, [registered(FREE, contact_email=NEW_CONTACT)])
    import_keys(waiting)
    [task] = waiting.tasks()
    assert NEW_CONTACT in task.reason_text and RAUL in task.reason_text

    result = review_actions.approve(waiting.app, task.id, operator="ana")

    assert ("keys_issued", NEW_CONTACT) in result.messages
    [keys_mail] = waiting.replies(NEW_CONTACT)
    assert "2012-FACT-NEW1" in keys_mail.text
    assert all("2012-FACT-NEW1" not in r.text for r in waiting.replies(RAUL))


def test_a_waiting_request_still_gets_its_keys_when_the_registry_did_not_change(waiting):
    assert import_keys(waiting) == 1
    waiting.run()
    keys_mail = waiting.replies(template="keys_issued")
    assert [(r.to, "2012-FACT-NEW1" in r.text) for r in keys_mail] == [(RAUL, True)]
    assert [r.outcome for r in waiting.requests()] == ["issued"]
    assert waiting.tasks() == []
    assert import_keys(waiting) == 0  # decided once: a second import sends nothing again
    assert len(waiting.replies(template="keys_issued")) == 1
