"""The request throttle: too many earlier mails for one serial or one company within the window
of [security] send a request to an operator instead of answering it.

Pure: the counts come from the store (`Store.request_counts`); this says what they mean.
"""

from __future__ import annotations

from mailbot.config import SecurityConfig
from mailbot.model import RuleHit
from mailbot.wording import N_


def request_throttle_hit(*, serial: str, company: str, by_serial: int, by_company: int,
                         security: SecurityConfig) -> tuple[str, RuleHit] | None:
    """(review reason code, the rule's hit) when a limit is reached; None otherwise."""
    if by_serial >= security.max_requests_per_serial:
        return "throttled_serial", RuleHit.said(
            "throttle.serial", N_("%(count)s earlier mail(s) asked for %(serial)s in the last "
                                  "%(minutes)s min; the limit is %(limit)s ([security] "
                                  "max_requests_per_serial): held for an operator"),
            count=by_serial, serial=serial, minutes=security.window_minutes,
            limit=security.max_requests_per_serial)
    if by_company >= security.max_requests_per_company:
        return "throttled_company", RuleHit.said(
            "throttle.company", N_("%(count)s earlier mail(s) asked for licences of %(company)s "
                                   "in the last %(minutes)s min; the limit is %(limit)s "
                                   "([security] max_requests_per_company): held for an "
                                   "operator"),
            count=by_company, company=company, minutes=security.window_minutes,
            limit=security.max_requests_per_company)
    return None
