"""The review queue in the operator's words: reason codes, task kinds, statuses, rejection
templates, editable fields and action errors, each an English msgid the catalog translates.

The codes are the ones the rules and the pipeline store (mailbot.decide, mailbot.run.holds,
mailbot.run.pending); a code with no entry here falls back to its kind's words, so a new rule
never shows an empty reason.
"""

from __future__ import annotations

from mailbot.decide import free_update, sender, unlock
from mailbot.model import REVIEW_DOCUMENTS
from mailbot.ops.web.pages import N_
from mailbot.run import review
from mailbot.run.pending import REVIEW_REGISTRY_CHANGED
from mailbot.store import reviews

REASONS: dict[str, str] = {
    free_update.REVIEW_UNKNOWN_SERIAL: N_("The serial is not in the licence registry"),
    free_update.REVIEW_SYSTEM_MISMATCH: N_("The system written differs from the registry's"),
    unlock.REVIEW_NO_REGISTERED_ADDRESS: N_("The registry has no contact address for the "
                                            "serial"),
    unlock.REVIEW_OTHER_REQUESTER: N_("Someone other than the registered contact asks"),
    unlock.REVIEW_UNKNOWN_MODALITY: N_("The licence's modality is not in the rules"),
    unlock.REVIEW_BEYOND_CONFIGURED: N_("More unlocks than the rules provide for"),
    unlock.REVIEW_RATE_CAP: N_("Too many unlocks of this serial in the period"),
    unlock.REVIEW_POLICY: N_("The rules ask a person to approve this unlock"),
    unlock.REVIEW_NO_RULES: N_("No unlock rules are configured"),
    REVIEW_DOCUMENTS: N_("Documents arrived: check them"),
    REVIEW_REGISTRY_CHANGED: N_("The registry changed while the request waited for a key"),
    "throttled_serial": N_("Too many recent mails asked for this serial"),
    "throttled_company": N_("Too many recent mails asked for this company's licences"),
    "throttled_sender": N_("Too many recent answers to this sender"),
    "message_too_large": N_("The mail is over the size limit and was not read"),
    "unrecognised_subject": N_("The subject is not one of a request"),
    sender.NOT_AUTHENTICATED: N_("The sender's domain did not authenticate the mail"),
    sender.DOMAIN_SUSPICIOUS: N_("The sender's domain looks like an impersonation"),
    sender.REPLY_TO_DIFFERS: N_("The reply address differs from the sender's"),
    sender.FROM_HEADERS: N_("The mail has no single sender"),
    sender.FROM_MAILBOXES: N_("The mail has no usable sender address"),
    sender.ADDRESS_INVALID: N_("The sender's address is not valid"),
    sender.UNDELIVERABLE: N_("The sender's address cannot receive mail"),
}

KINDS: dict[str, str] = {
    "free_update": N_("Free update"),
    "unlock": N_("Unlock"),
    review.SENDER: N_("Sender check"),
    review.THROTTLED: N_("Throttled sender"),
    review.UNRECOGNISED: N_("Not a request"),
    review.TOO_LARGE: N_("Too large"),
}

# A kind's words when its reason code has none of its own.
KIND_REASONS: dict[str, str] = {
    review.SENDER: N_("The sender failed the sender checks"),
    review.THROTTLED: N_("Too many recent answers to this sender"),
    review.UNRECOGNISED: N_("The subject is not one of a request"),
    review.TOO_LARGE: N_("The mail is over the size limit and was not read"),
}
OTHER_REASON = N_("The rules sent it to review (see their reason)")

STATUSES: dict[str, str] = {
    reviews.OPEN: N_("open"),
    reviews.APPROVED: N_("approved"),
    reviews.REJECTED: N_("rejected"),
    reviews.RESOLVED: N_("resolved by the rules"),
    reviews.CLOSED: N_("closed without an answer"),
}

REJECTION_TEMPLATES: dict[str, str] = {
    "review_rejected": N_("Request rejected (general)"),
    "unlock_rejected": N_("Unlock rejected"),
    "not_eligible": N_("Not eligible for the free update"),
    "missing_data": N_("Data missing from the request"),
    "unlock_missing_data": N_("Data missing from the unlock request"),
}

FIELDS: dict[str, str] = {
    "serial": N_("Serial number"),
    "system": N_("System"),
    "contact_email": N_("Contact e-mail"),
    "company": N_("Company"),
    "contact_name": N_("Contact name"),
}

# The states of a reply in the outbox: the console queues, the running service sends.
REPLY_STATES: dict[str, str] = {
    "queued": N_("queued"),
    "sent": N_("sent"),
    "failed": N_("failed"),
}

# ReviewError.code -> (HTTP status, words).
ERRORS: dict[str, tuple[int, str]] = {
    "taken": (409, N_("Someone else already attended to this task.")),
    "not_found": (404, N_("There is no such review task.")),
    "rules_cannot_answer": (422, N_("The rules still cannot answer it: correct what was read, "
                                    "fix the registry, or reject it.")),
    "nothing_changes": (422, N_("Nothing changes: the values were already read that way.")),
    "bad_value": (422, N_("A value does not read; nothing was changed.")),
    "no_sender": (422, N_("The mail has no sender address to answer; close it without an "
                          "answer.")),
    "whole_mail": (422, N_("This task is about the whole mail, not one request: approve, "
                           "reject or close it.")),
    "not_an_unlock": (422, N_("This task is not about an unlock request; choose another "
                              "template.")),
    "refused": (422, N_("The action could not be done; nothing was changed.")),
}

# What the page says after an action (?done=...).
DONE: dict[str, str] = {
    "approve": N_("Approved. Its answers are queued until the service sends them."),
    "approve_silent": N_("Approved. The rules send no answer for this mail."),
    "reject": N_("Rejected. The answer is queued until the service sends it."),
    "edit": N_("Corrected: the rules decided, and their answers are queued until the service "
               "sends them."),
    "edit_open": N_("Corrected, but the rules still send it to review: the task stays open."),
    "assign": N_("The task is assigned to you."),
    "close": N_("Closed without an answer."),
}


def done_code(action: str, status: str, queued: int) -> str:
    """Which DONE notice an action's result gets."""
    if action == "approve" and not queued:
        return "approve_silent"
    if action == "edit" and status == reviews.OPEN:
        return "edit_open"
    return action


def reason_words(kind: str, reason: str) -> str:
    """The msgid that says why a task is in the queue."""
    return REASONS.get(reason) or KIND_REASONS.get(kind) or OTHER_REASON
