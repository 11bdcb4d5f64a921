"""Mails the rules must not decide: each becomes a review task instead of an answer
(too large, no usable sender, no request subject, failed sender checks, throttled sender)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from mailbot.addresses import undeliverable_reason
from mailbot.answer import plan as answer
from mailbot.decide.sender import FROM_HEADERS, FROM_MAILBOXES, check_sender
from mailbot.model import ParsedMail, RawMail, RuleHit
from mailbot.run import review
from mailbot.run.app import App
from mailbot.run.reading import Reading
from mailbot.run.replies import queue_message
from mailbot.store import Connection, MailRecord, reviews
from mailbot.transport.seams import REVIEW
from mailbot.wording import N_

log = logging.getLogger("mailbot")


def hold(app: App, conn: Connection, rec: MailRecord, raw: RawMail, parsed: ParsedMail | None,
          reading: Reading) -> answer.Plan | None:
    """Mails the rules must not decide: each becomes a review task instead of an answer.

    Too large to read; a request without one usable From mailbox; no request subject; a From
    address that fails the sender checks ([security]); more answers to one sender than
    [throttle] allows. None: the rules may decide.
    """
    extraction = reading.extraction
    if raw.oversized and extraction.sender is None:
        text = "over the size limit ([limits] max_message_bytes): not read"
        mail_task(app, conn, rec, reading, review.TOO_LARGE, "message_too_large", text)
        return answer.Plan("too_large", REVIEW, (), (text,))
    if extraction.ignored:
        if extraction.ignored == "no_sender" and extraction.kind and parsed is not None:
            verdict = check_sender(parsed, require_authentication=False,
                                   trusted_authserv_ids=())
            hit = (verdict.hits[0] if verdict.hits
                   else RuleHit.said(FROM_MAILBOXES, N_("the mail has no usable From address")))
            mail_task(app, conn, rec, reading, review.SENDER, hit.rule, hit.reason)
            return answer.Plan("sender_check", REVIEW, (), (f"not answered: {hit.reason}",))
        return None
    if extraction.kind is None:
        text = (f"the subject {extraction.subject!r} is no request subject of "
                "rules/kinds.toml: not answered")
        mail_task(app, conn, rec, reading, review.UNRECOGNISED, "unrecognised_subject", text)
        return answer.Plan("not_a_request", REVIEW, (),
                           ("no recognised request subject: filed for operators, not answered",))
    security = app.config.security
    if parsed is not None:
        verdict = check_sender(parsed, require_authentication=security.require_authentication,
                               trusted_authserv_ids=security.trusted_authserv_ids)
        if not verdict.ok:
            hit = verdict.hits[-1]
            mail_task(app, conn, rec, reading, review.SENDER, hit.rule, hit.reason,
                       sender_checks=[h.to_json() for h in verdict.hits])
            messages: tuple[answer.Planned, ...] = ()
            if extraction.sender and hit.rule not in (FROM_HEADERS, FROM_MAILBOXES) \
                    and undeliverable_reason(extraction.sender) is None \
                    and not sender_throttled(app, conn, extraction.sender):
                # Tell the sender we have it (if a reply can reach them at all); the answer
                # waits for an operator.
                messages = (answer.Planned("reply", "under_review", extraction.sender, ()),)
            for planned in messages:
                queue_message(app, conn, rec, extraction, parsed, planned)
            return answer.Plan("sender_check", REVIEW, messages,
                               (f"held for operators: {hit.rule}: {hit.reason}",))
    if sender_throttled(app, conn, extraction.sender):
        text = (f"throttled: {app.config.throttle.max_replies_per_sender} or more answers to "
                f"{extraction.sender} in {app.config.throttle.window_minutes} min "
                "([throttle]); held for operators")
        mail_task(app, conn, rec, reading, review.THROTTLED, "throttled_sender", text)
        return answer.Plan("throttled", REVIEW, (), (text,))
    return None



def mail_task(app: App, conn: Connection, rec: MailRecord, reading: Reading, kind: str,
               reason: str, text: str, **snapshot: Any) -> int:
    due = review.due_at(app.rules, app.calendar(), reading.received_at)
    return reviews.create(conn, mail=rec.id, kind=kind, reason=reason, reason_text=text,
                         due_at=due, snapshot={"reading": reading.to_json(), **snapshot},
                         now=app.now())



def sender_throttled(app: App, conn: Connection, sender: str | None) -> bool:
    if not sender:
        return False
    since = app.now() - dt.timedelta(minutes=app.config.throttle.window_minutes)
    replies = app.store.replies_to_since(conn, sender, since)
    return replies >= app.config.throttle.max_replies_per_sender
