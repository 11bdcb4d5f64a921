"""The log (`/correos`) and its JSON twin (`GET /api/v1/mails`): every mail, newest first,
filtered by sender, serial, reference, outcome, kind and date, searched in subject and sender,
50 to a page; and `/correos.csv`, the whole filtered selection as a spreadsheet.

Dates are days of the business zone (what an operator means by "the 3rd"); an outcome must be
one mailbot stores (`logview.check_outcome`), a kind one of the rules', so a typo is told, not
answered with an empty page.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from mailbot.errors import MailbotError
from mailbot.ops.logview import OUTCOMES, check_outcome
from mailbot.ops.timefmt import operator_time
from mailbot.ops.web.auth import is_api
from mailbot.ops.web.context import WebContext, context
from mailbot.ops.web.mail_view import csv_cell
from mailbot.ops.web.pages import N_, page
from mailbot.read.fields import normalise_serial
from mailbot.store import mail_log

router = APIRouter()

PAGE_SIZE = 50
CSV_CHUNK = 1000  # mails per transaction while the export is written
MAX_TEXT = 200  # characters of a filter or a search: longer is no one's typing


class MailLine(BaseModel):
    reference: str | None
    received_at: str
    sender: str | None
    subject: str | None
    kind: str | None
    outcome: str | None
    status: str
    folder: str | None
    serials: list[str]


class MailLog(BaseModel):
    items: list[MailLine]
    page: int
    page_size: int
    total: int
    has_next: bool
    filters: dict[str, str]  # the filters applied, as given (empty ones left out)
    outcomes: list[str]  # what `outcome` may be
    kinds: list[str]  # what `kind` may be


@dataclass(frozen=True)
class LogQuery:
    """The filters as typed (strings, empty for "any"), before they are read."""

    sender: str = ""
    serial: str = ""
    reference: str = ""
    outcome: str = ""
    kind: str = ""
    since: str = ""
    until: str = ""
    q: str = ""

    def given(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v}


Text = Annotated[str, Query(max_length=MAX_TEXT)]


def iso(moment: dt.datetime | None) -> str | None:
    """Naive UTC from the store as ISO 8601 with its Z."""
    return moment.isoformat() + "Z" if moment is not None else None


def _refuse(request: Request, english: str, spanish: str) -> HTTPException:
    """422 in the caller's language: English for the API, the catalog's Spanish for a page."""
    return HTTPException(422, english if is_api(request) else spanish)


def _day_start(request: Request, web: WebContext, name: str, text: str,
               days: int = 0) -> dt.datetime | None:
    """The start of day `text` (YYYY-MM-DD, business zone) plus `days`, as naive UTC."""
    if not text.strip():
        return None
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        _ = request.app.state.renderer.gettext
        raise _refuse(request, f"{name} {text!r} is not a date (YYYY-MM-DD)",
                      _("“%(value)s” is not a date; write it as YYYY-MM-DD.",
                        value=text)) from None
    midnight = dt.datetime.combine(day + dt.timedelta(days=days), dt.time(), web.zone)
    return midnight.astimezone(dt.UTC).replace(tzinfo=None)


def read_filter(request: Request, query: LogQuery) -> mail_log.MailFilter:
    """The store's filter from what was typed, or a 422 that says what is wrong."""
    web = context(request)
    _ = request.app.state.renderer.gettext
    for name, value in query.given().items():
        if any(ord(c) < 32 or ord(c) == 127 for c in value):  # PostgreSQL refuses a NUL
            raise _refuse(request, f"{name} holds a control character",
                          _("A filter holds a control character; type it again."))
    outcome = None
    if query.outcome.strip():
        try:
            outcome = check_outcome(query.outcome)
        except MailbotError:
            raise _refuse(request, f"outcome {query.outcome!r} is not an outcome; use one of "
                                   f"{', '.join(OUTCOMES)}",
                          _("“%(value)s” is not an outcome; use one of: %(outcomes)s.",
                            value=query.outcome, outcomes=", ".join(OUTCOMES))) from None
    kinds = [k.id for k in web.rules.kinds]
    kind = query.kind.strip().lower() or None
    if kind is not None and kind not in kinds:
        raise _refuse(request, f"kind {query.kind!r} is not a kind; use one of "
                               f"{', '.join(kinds)}",
                      _("“%(value)s” is not a kind of request; use one of: %(kinds)s.",
                        value=query.kind, kinds=", ".join(kinds)))
    serial = query.serial.strip()
    return mail_log.MailFilter(
        sender=query.sender.strip().lower() or None,
        serial=(normalise_serial(serial) or serial.upper()) if serial else None,
        reference=query.reference.strip().upper() or None,
        outcome=outcome, kind=kind,
        since=_day_start(request, web, "since", query.since),
        until=_day_start(request, web, "until", query.until, days=1),
        text=query.q.strip() or None)


def _line(row: Any, serials: dict[int, list[str]]) -> dict[str, Any]:
    return {"reference": row.reference, "received_at": iso(row.received_at),
            "sender": row.sender, "subject": row.subject, "kind": row.kind,
            "outcome": row.outcome, "status": row.status, "folder": row.folder,
            "serials": serials.get(row.id, [])}


@page(router, html="/correos", api="/api/v1/mails", template="mails.html",
      title=N_("Mail log"), response_model=MailLog,
      summary="The log: mails newest first, filtered, 50 to a page")
def mail_log_page(request: Request, sender: Text = "", serial: Text = "", reference: Text = "",
                  outcome: Text = "", kind: Text = "", since: Text = "", until: Text = "",
                  q: Text = "", page: Annotated[int, Query(ge=1, le=100_000)] = 1
                  ) -> dict[str, Any]:
    web = context(request)
    query = LogQuery(sender, serial, reference, outcome, kind, since, until, q)
    selection = read_filter(request, query)
    with web.store.transaction() as conn:
        total = mail_log.count(conn, selection)
        rows = mail_log.search(conn, selection, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        serials = mail_log.serials_of(conn, [r.id for r in rows])
    return {"items": [_line(r, serials) for r in rows], "page": page, "page_size": PAGE_SIZE,
            "total": total, "has_next": page * PAGE_SIZE < total, "filters": query.given(),
            "outcomes": list(OUTCOMES), "kinds": [k.id for k in web.rules.kinds]}


@router.get("/correos.csv", include_in_schema=False)
def mail_log_csv(request: Request, sender: Text = "", serial: Text = "", reference: Text = "",
                 outcome: Text = "", kind: Text = "", since: Text = "", until: Text = "",
                 q: Text = "") -> StreamingResponse:
    """The whole filtered selection (not one page), written as it is read, a chunk of mails
    per short transaction; times in the business zone, marked; no cell a spreadsheet runs."""
    web = context(request)
    selection = read_filter(request, LogQuery(sender, serial, reference, outcome, kind, since,
                                              until, q))
    _ = request.app.state.renderer.gettext
    header = [_("Reference"), _("Received"), _("Sender"), _("Subject"), _("Kind"),
              _("Outcome"), _("Status"), _("Folder"), _("Serials")]

    def rows() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        yield "\ufeff" + out.getvalue()  # the BOM: spreadsheets then read UTF-8 accents
        before: int | None = None
        while True:
            with web.store.transaction() as conn:
                chunk = mail_log.search_before(conn, selection, before_id=before,
                                               limit=CSV_CHUNK)
                serials = mail_log.serials_of(conn, [r.id for r in chunk])
            if not chunk:
                return
            out.seek(0)
            out.truncate()
            for r in chunk:
                writer.writerow([csv_cell(v) for v in (
                    r.reference, operator_time(r.received_at, web.zone), r.sender, r.subject,
                    r.kind, r.outcome, r.status, r.folder, " ".join(serials.get(r.id, [])))])
            yield out.getvalue()
            before = chunk[-1].id

    day = web.clock().astimezone(web.zone).date().isoformat()
    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="correos-{day}.csv"',
        "X-Content-Type-Options": "nosniff"})
