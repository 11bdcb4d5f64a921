"""A bounded list of problems for one mail, as requests are bounded (`too_many_requests`).

Every problem is a paragraph of the customer's answer and a line in the operator's log: a mail
of 3,000 lines of ``Tipo de sistema:`` gives some 12,000 problems, and an answer listing them
all goes past the renderer's output cap, so the mail would get no answer at all. The answer
lists the first problems and says how many more there were.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailbot.model import Problem

# Problems listed for one mail, the summary included: 100 paragraphs are some 30,000
# characters of answer, far under the renderer's 500,000.
MAX_PROBLEMS = 100
# Problems that say why a part of the mail was not read: kept before any other, since the
# customer cannot fix what they did not know was skipped. At most one per attachment or part.
WHY_UNREAD = frozenset({
    "internal_error", "message_too_large", "header_too_large", "body_too_large",
    "too_many_attachments", "too_many_requests", "too_many_rows", "attachment_too_large",
    "sheet_too_large",
})


def cap_problems(problems: Sequence[Problem]) -> list[Problem]:
    """`problems` when there are at most MAX_PROBLEMS; else the first of them in their order
    (those in WHY_UNREAD first), and a last ``too_many_problems`` saying how many were left
    out."""
    if len(problems) <= MAX_PROBLEMS:
        return list(problems)
    room = MAX_PROBLEMS - 1
    unread = [n for n, p in enumerate(problems) if p.code in WHY_UNREAD][:room]
    others = [n for n, p in enumerate(problems) if p.code not in WHY_UNREAD][:room - len(unread)]
    kept = [problems[n] for n in sorted(unread + others)]
    left_out = len(problems) - len(kept)
    return [*kept, Problem(
        "too_many_problems",
        f"{left_out:,} more problems were left out (only the first {len(kept)} are listed); "
        "fix these and send the rest in another mail, or attach an .xlsx list with one row "
        "per system", source="message")]
