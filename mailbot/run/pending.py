"""Requests that waited for keys get them as soon as `mailbot keys import` filled the pool."""

from __future__ import annotations

import json
import logging

from mailbot.answer import plan as answer
from mailbot.model import ISSUED, Decision, Extraction, Request, RuleHit
from mailbot.run.app import App
from mailbot.run.replies import queue_message

log = logging.getLogger("mailbot")


def fulfil_pending(app: App) -> int:
    """Requests that waited for keys get them as soon as the pool has some."""
    done = 0
    with app.store.transaction() as conn:
        waiting = app.store.pending_requests(conn)
    for req in waiting:
        with app.store.transaction() as conn:
            key = app.store.assign_key(conn, system=req.system, serial=req.serial)
            if key is None:
                continue
            hits = [RuleHit(**h) for h in json.loads(req.hits)]
            hits.append(RuleHit("keys.assign", f"keys were imported: a new key from the "
                                               f"{req.system} pool is bound to {req.serial}"))
            app.store.update_request(conn, req.id, outcome=ISSUED, hits=hits, key_id=key.id)
            app.store.bind_key_to_request(conn, key.id, req.id)
            request = Request(req.company, req.contact_name, req.contact_email, req.system,
                              req.serial, req.source)
            decision = Decision(request, ISSUED, tuple(hits), key=key.key, recipient=req.recipient)
            mail = app.store.get_mail(conn, req.mail)
            stored = json.loads(app.store.mail_extraction(conn, mail.id) or "{}")
            extraction = Extraction(kind=stored.get("kind"), ignored=None,
                                    sender=stored.get("sender"),
                                    subject=stored.get("subject", ""),
                                    message_id=stored.get("message_id"))
            planned = answer.Planned("keys", "keys_issued", req.recipient,
                                     (answer.row(decision, show_key=True,
                                                 requester=extraction.sender),))
            queue_message(app, conn, mail, extraction, None, planned)
            app.store.log_event(conn, "pending_fulfilled", mail=req.mail, serial=req.serial)
            done += 1
    return done
