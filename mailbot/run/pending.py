"""Requests that waited for keys get them as soon as `mailbot keys import` filled the pool.

A request waits for days or weeks, and the registry may change meanwhile (a new contact, a
corrected serial or system). So a waiting request is decided again against the registry as it
is when its key is bound: the keys go out only if the rules still send them to the address the
request was decided for; anything else goes to an operator, with no key bound.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from typing import Any

from mailbot.addresses import addresses_match
from mailbot.answer import plan as answer
from mailbot.decide.free_update import decide_free_update
from mailbot.model import ISSUED, PENDING, REVIEW, Decision, Request, RuleHit
from mailbot.run.app import App
from mailbot.run.deciding import StoreKeyPool, request_task
from mailbot.run.reading import Reading
from mailbot.run.replies import queue_message
from mailbot.store import Connection
from mailbot.wording import N_

log = logging.getLogger("mailbot")

REVIEW_REGISTRY_CHANGED = "registry_changed"  # the review reason of a request re-decided here


class RegistryCheckPool:
    """The key pool as the registry check sees it: keys already bound are found, but no new
    one is taken, so a request that ends in review consumes no key."""

    def __init__(self, pool: StoreKeyPool) -> None:
        self.pool = pool

    def existing(self, serial: str) -> tuple[str, dt.datetime | None] | None:
        return self.pool.existing(serial)

    def assign(self, system: str, serial: str) -> str | None:
        return None


def fulfil_pending(app: App) -> int:
    """Decide every waiting request again; returns how many got their keys."""
    done = 0
    with app.store.transaction() as conn:
        waiting = [r.id for r in app.store.pending_requests(conn)]
    for request_id in waiting:
        with app.store.transaction() as conn:
            if fulfil_one(app, conn, request_id) == ISSUED:
                done += 1
    return done


def fulfil_one(app: App, conn: Connection, request_id: int) -> str | None:
    """Decide one waiting request again, in the caller's transaction: ISSUED (the keys are
    queued), PENDING (still no key), REVIEW (the registry changed), or None (no longer
    waiting: another run took it)."""
    req = app.store.request(conn, request_id)
    if req.outcome != PENDING:
        return None
    request = Request(req.company, req.contact_name, req.contact_email, req.system,
                      req.serial, req.source)
    mail = app.store.get_mail(conn, req.mail)
    reading = stored_reading(app, conn, mail.id)
    requester = reading.extraction.sender
    licence = app.store.licence(conn, req.serial)
    pool = StoreKeyPool(app.store, conn)
    check = decide_free_update(request, requester=requester, licence=licence,
                               today=app.today(), rules=app.rules, pool=RegistryCheckPool(pool))
    same_contact = bool(check.recipient and req.recipient
                        and addresses_match(check.recipient, req.recipient))
    if check.outcome not in (ISSUED, PENDING) or not same_contact:
        send_to_review(app, conn, mail, reading, req, check)
        return REVIEW
    decision = decide_free_update(request, requester=requester, licence=licence,
                                  today=app.today(), rules=app.rules, pool=pool)
    if decision.outcome != ISSUED:
        return decision.outcome  # the pool of this system is still empty
    hits = [*stored_hits(req), RuleHit.said("keys.imported", N_(
        "keys were imported: the request was decided again against the registry as it is "
        "now")), *decision.hits]
    key_id = pool.assigned[req.serial]
    app.store.update_request(conn, req.id, outcome=ISSUED, hits=hits, key_id=key_id)
    app.store.bind_key_to_request(conn, key_id, req.id)
    assert decision.recipient is not None
    planned = answer.Planned("keys", "keys_issued", decision.recipient,
                             (answer.row(decision, show_key=True, requester=requester),))
    queue_message(app, conn, mail, dataclasses.replace(reading.extraction, problems=()), None,
                  planned)
    app.store.log_event(conn, "pending_fulfilled", mail=req.mail, serial=req.serial)
    return ISSUED


def send_to_review(app: App, conn: Connection, mail: Any, reading: Reading, req: Any,
                   check: Decision) -> None:
    """The registry no longer sends this request's keys where it was promised: an operator
    decides (approving decides it again against the registry of that moment)."""
    if check.outcome in (ISSUED, PENDING):
        hit = RuleHit.said("keys.imported", N_(
            "the registered contact of %(serial)s is now %(now)s, not %(then)s as when the "
            "request was decided; the keys wait for an operator"),
            serial=req.serial, now=str(check.recipient), then=str(req.recipient))
    else:  # the rule's own reason stays in English inside (a value is text, not words)
        hit = RuleHit.said("keys.imported", N_(
            "the registry changed while the request waited for keys: %(why)s"),
            why=check.hits[-1].reason if check.hits else check.outcome)
    hits = (*stored_hits(req), hit)
    decision = Decision(check.request, REVIEW, hits, recipient=check.recipient,
                        facts={"review_reason": REVIEW_REGISTRY_CHANGED})
    app.store.update_request(conn, req.id, outcome=REVIEW, hits=hits, key_id=None)
    request_task(app, conn, mail, reading, request_id=req.id, entry_id=None, decision=decision,
                 repeat=False)
    app.store.log_event(conn, "alert", mail=mail.id, title="Solicitud para revisión",
                        detail=f"{mail.reference}: {req.serial}: {hit.reason}")
    log.info("event=pending_review reference=%s serial=%s", mail.reference, req.serial)


def stored_reading(app: App, conn: Connection, mail_id: int) -> Reading:
    """The reading of a decided mail, from what the store kept of it; read now, so that a
    review task opened on it is due counting from now."""
    stored = json.loads(app.store.mail_extraction(conn, mail_id) or "{}")
    return Reading.from_json({"extraction": stored,
                              "received_at": app.clock().astimezone(dt.UTC).isoformat()})


def stored_hits(req: Any) -> list[RuleHit]:
    return [RuleHit.from_json(h) for h in json.loads(req.hits or "[]")]
