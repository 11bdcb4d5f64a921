"""The request throttle: too many earlier mails for one serial or one company within the window
of [security] send a request to an operator instead of answering it.

Pure: the counts come from the store (`Store.request_counts`); this says what they mean.
"""

from __future__ import annotations

from mailbot.config import SecurityConfig
from mailbot.model import RuleHit


def request_throttle_hit(*, serial: str, company: str, by_serial: int, by_company: int,
                         security: SecurityConfig) -> tuple[str, RuleHit] | None:
    """(review reason code, the rule's hit) when a limit is reached; None otherwise."""
    if by_serial >= security.max_requests_per_serial:
        return "throttled_serial", RuleHit(
            "throttle.serial", f"{by_serial} earlier mail(s) asked for {serial} in the last "
                               f"{security.window_minutes} min; the limit is "
                               f"{security.max_requests_per_serial} ([security] "
                               "max_requests_per_serial): held for an operator")
    if by_company >= security.max_requests_per_company:
        return "throttled_company", RuleHit(
            "throttle.company", f"{by_company} earlier mail(s) asked for licences of {company} "
                                f"in the last {security.window_minutes} min; the limit is "
                                f"{security.max_requests_per_company} ([security] "
                                "max_requests_per_company): held for an operator")
    return None
