"""The request throttle's statements (Store.request_counts), built once at import: the counts
per serial and per company of a mail's requests among other mails decided within the window.

Kept apart from mailbot.store.database, which runs them, so each stays a readable size.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mailbot.store.prepared import Prepared
from mailbot.store.schema import licences, mails, requests


def _request_count_statements(values: Any = None) -> tuple[Any, Any]:
    """The request throttle's two grouped counts: per serial, the distinct other mails,
    decided within the window, that asked for it; per company, those that asked for a licence
    of it (a registered serial of it, or the company as the request wrote it).

    The company count is a UNION ALL of two index look-ups (licences.company joined to
    requests.serial; requests.company) so that SQLite and PostgreSQL both look up only the
    companies' own requests: an OR with `IN (subquery)` makes PostgreSQL scan every request.
    The cost follows the history of the mail's serials and companies, not the table's.
    """
    values = sa.bindparam("_values", expanding=True) if values is None else values
    window = sa.and_(mails.c.decided_at >= sa.bindparam("_since"),
                     mails.c.id != sa.bindparam("_mail"))
    by_serial = (sa.select(requests.c.serial, sa.func.count(sa.distinct(requests.c.mail)))
                 .select_from(requests.join(mails, mails.c.id == requests.c.mail))
                 .where(requests.c.serial.in_(values), window)
                 .group_by(requests.c.serial))
    by_licence = (sa.select(requests.c.mail.label("mail"), licences.c.company.label("company"))
                  .select_from(requests.join(licences, licences.c.serial == requests.c.serial))
                  .where(licences.c.company.in_(values)))
    by_name = sa.select(requests.c.mail, requests.c.company).where(requests.c.company.in_(values))
    asked = sa.union_all(by_licence, by_name).subquery("asked")
    by_company = (sa.select(asked.c.company, sa.func.count(sa.distinct(asked.c.mail)))
                  .select_from(asked.join(mails, mails.c.id == asked.c.mail))
                  .where(window)
                  .group_by(asked.c.company))
    return by_serial, by_company


SERIAL_COUNTS, COMPANY_COUNTS = _request_count_statements()


def _both_counts_statement(*, one_each: bool = False) -> Any:
    """The two counts in one statement, each row tagged "s" (serial) or "c" (company): one
    round trip through SQLAlchemy and the driver per mail instead of two, the same plans.

    `one_each`: for the usual mail, with one serial and one company (`_serial`, `_company`):
    the same statement with a list of one value each, which needs no expanding at run time
    and so runs on the driver's cursor (mailbot.store.prepared)."""
    if one_each:
        serials, companies = [sa.bindparam("_serial")], [sa.bindparam("_company")]
    else:
        serials = sa.bindparam("_serials", expanding=True)
        companies = sa.bindparam("_companies", expanding=True)
    by_serial, _ = _request_count_statements(serials)
    _, by_company = _request_count_statements(companies)
    return sa.union_all(*(statement.add_columns(sa.literal_column(f"'{tag}'").label("kind"))
                          for statement, tag in ((by_serial, "s"), (by_company, "c"))))


BOTH_COUNTS = _both_counts_statement()
ONE_EACH_COUNTS = Prepared(_both_counts_statement(one_each=True))
