"""The fixed words the command line offers as choices (outcomes, roles, templates, fields).

They live here, importing nothing heavier than mailbot.model, so `mailbot --help` and the
parser can list them without importing the store, the review actions or argon2 (issue 10,
§4: cold start). The modules that act on them re-export them under their old names.
"""

from __future__ import annotations

from mailbot.model import DOCUMENTS_NEEDED, ISSUED, NOT_ELIGIBLE, PENDING, REVIEW, UNLOCKED

# Review actions (mailbot.ops.review_actions).
REJECTION_TEMPLATES = ("review_rejected", "unlock_rejected", "not_eligible", "missing_data",
                       "unlock_missing_data")
EDITABLE = ("serial", "system", "contact_email", "company", "contact_name")
REJECTED = "rejected"  # a request's outcome after an operator rejected it
CLOSED_UNANSWERED = "closed"  # a request's outcome after an operator closed it without an answer

# The console's roles (mailbot.ops.accounts).
OPERATOR = "operator"
ADMIN = "admin"
ROLES = (OPERATOR, ADMIN)

# What `log --outcome` may ask for. A request's outcome (mailbot.model and the unlock rules; an
# operator's rejection); a mail's outcome is the outcomes of its requests joined by commas, or
# one word when none was decided: the plans of mailbot.answer.plan and mailbot.run.holds, and
# the duplicates and quarantined mails of mailbot.run.record.
REQUEST_OUTCOMES: tuple[str, ...] = (ISSUED, NOT_ELIGIBLE, REVIEW, PENDING, UNLOCKED,
                                     DOCUMENTS_NEEDED, REJECTED, CLOSED_UNANSWERED)
MAIL_OUTCOMES: tuple[str, ...] = ("incomplete", "ignored", "not_a_request", "sender_check",
                                  "throttled", "too_large", "duplicate", "quarantined")
OUTCOMES: tuple[str, ...] = REQUEST_OUTCOMES + MAIL_OUTCOMES
